//! The worker as a function from request to response, natively, over the in-memory runtime:
//! routes, the callback, the admin API's authentication and validation, error mapping, the
//! capacity-aware transfer's budget.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::rc::Rc;

use wechat_kf_worker::app::{authorize, log_line, split_url, App, Response, Route, Served};
use wechat_kf_worker::runtime::Clock;
use wechat_kf_worker::testkit::fake::{run, FakeRuntime, Scripted, Task};
use wechat_kf_worker::testkit::{
    config, crypto, fixture, plain_query, request, safe_push, ADMIN_TOKEN, NONCE, NOW, TOKEN,
};
use wechat_kf_worker::wechat::signature::sign;
use wechat_kf_worker::Error;

fn app(rt: &FakeRuntime, vars: &[(&str, &str)]) -> Rc<App<FakeRuntime>> {
    Rc::new(App::new(Rc::new(config(vars)), Rc::default(), rt.clone()))
}

fn text(r: &Response) -> String {
    String::from_utf8(r.body.clone()).unwrap()
}

fn json(r: &Response) -> serde_json::Value {
    serde_json::from_slice(&r.body).unwrap()
}

#[test]
fn routes_and_their_body_limits() {
    let cases = [
        ("GET", "/wechat", Route::UrlCheck, None),
        ("POST", "/wechat", Route::Push, Some(64 * 1024)),
        ("PUT", "/wechat", Route::MethodNotAllowed("GET, POST"), None),
        ("GET", "/healthz", Route::Health, None),
        ("HEAD", "/healthz", Route::Health, None),
        ("POST", "/healthz", Route::MethodNotAllowed("GET, HEAD"), None),
        ("POST", "/api/messages", Route::Admin, Some(64 * 1024)),
        ("GET", "/api", Route::NotFound, None),
        ("GET", "/", Route::NotFound, None),
        ("GET", "/wechat/", Route::NotFound, None),
    ];
    for (method, path, route, limit) in cases {
        assert_eq!(Route::of(method, path), route, "{method} {path}");
        assert_eq!(route.body_limit(), limit, "{method} {path}");
    }
}

#[test]
fn split_url_takes_the_path_and_the_query() {
    assert_eq!(split_url("https://w.example/wechat?a=1&b=2"), ("/wechat", "a=1&b=2"));
    assert_eq!(split_url("http://127.0.0.1:8787/api/kf/accounts/a%40b"), ("/api/kf/accounts/a%40b", ""));
    assert_eq!(split_url("https://w.example"), ("/", ""));
    assert_eq!(split_url("https://w.example/?x"), ("/", "x"));
    assert_eq!(split_url("/healthz?x=1"), ("/healthz", "x=1"));
    // A "://" in the query is not the scheme's.
    assert_eq!(split_url("https://w.example/a?u=http://x/y"), ("/a", "u=http://x/y"));
    assert_eq!(split_url("/a?u=http://x/y"), ("/a", "u=http://x/y"));
}

#[test]
fn the_bearer_scheme_is_case_insensitive_and_the_token_exact() {
    let ok = ["Bearer s3cret", "bearer s3cret", "BEARER   s3cret", " Bearer s3cret "];
    for header in ok {
        assert_eq!(authorize(Some(header), "s3cret"), Ok(()), "{header:?}");
    }
    let bad = [
        None,
        Some(""),
        Some("Bearer"),
        Some("Bearer "),
        Some("s3cret"),
        Some("Basic s3cret"),
        Some("Bearer s3cre"),
        Some("Bearer s3cret2"),
        Some("Bearers3cret"),
    ];
    for header in bad {
        assert_eq!(authorize(header, "s3cret"), Err(Error::Unauthorized), "{header:?}");
    }
}

#[test]
fn the_url_check_applies_the_timestamp_window() {
    let rt = FakeRuntime::at(NOW);
    let app = app(&rt, &[]);
    let check = |ts: &str| {
        let sig = sign(&[TOKEN, ts, "42"]);
        request(
            &app,
            "GET",
            &format!("/wechat?signature={sig}&timestamp={ts}&nonce=42&echostr=5837397749323563137"),
            None,
            b"",
        )
    };
    let ok = check(&NOW.to_string());
    assert_eq!((ok.response.status, text(&ok.response)), (200, "5837397749323563137".to_string()));
    let stale = check(&(NOW - 301).to_string());
    assert_eq!((stale.response.status, json(&stale.response)["error"].clone()), (403, "stale_timestamp".into()));
    let junk = check("abc");
    assert_eq!(
        json(&junk.response),
        serde_json::json!({"error":"invalid_parameter","field":"timestamp","message":"a query parameter is malformed"})
    );
}

#[test]
fn a_push_is_transferred_or_acknowledged() {
    let rt = FakeRuntime::at(NOW);
    let app = app(&rt, &[("WECHAT_KF_ACCOUNT", "kf2001@gh_10f6c3c3ac5a")]);
    let served =
        request(&app, "POST", &format!("/wechat?{}", plain_query(NOW, NONCE)), None, &fixture("messages/text.xml"));
    assert_eq!(served.response.status, 200);
    assert_eq!(served.response.content_type, "application/xml; charset=utf-8");
    assert_eq!(text(&served.response), String::from_utf8(fixture("replies/transfer_kf.xml")).unwrap().trim_end());
    assert_eq!(served.outcome, "transfer text targeted");
    // An event whose MsgType WeChat never capitalises, but someone did: still an event.
    let event = String::from_utf8(fixture("events/subscribe.xml")).unwrap().replace("[event]", "[ EVENT ]");
    let served = request(&app, "POST", &format!("/wechat?{}", plain_query(NOW, NONCE)), None, event.as_bytes());
    assert_eq!((served.response.status, text(&served.response)), (200, "success".to_string()));
    assert_eq!(served.outcome, "ack event:subscribe");
}

#[test]
fn an_unsigned_safe_mode_push_is_403_even_without_an_aes_key() {
    let rt = FakeRuntime::at(NOW);
    let app = app(&rt, &[("WECHAT_ENCODING_AES_KEY", "")]);
    let (_, body) = safe_push(&crypto(), "<xml/>", NOW, "1", false);
    let served = request(
        &app,
        "POST",
        &format!("/wechat?encrypt_type=aes&msg_signature=junk&timestamp={NOW}&nonce=1"),
        None,
        body.as_bytes(),
    );
    assert_eq!(served.response.status, 403);
    assert_eq!(json(&served.response)["error"], "invalid_signature");
}

fn admin(app: &Rc<App<FakeRuntime>>, method: &str, path: &str, auth: &str, body: &str) -> Served {
    request(app, method, path, Some(auth), body.as_bytes())
}

#[test]
fn admin_calls_are_authenticated_validated_and_forwarded() {
    let rt = FakeRuntime::at(NOW);
    rt.upstream.script(|call| {
        if call.url.contains("stable_token") {
            Scripted::json(r#"{"access_token":"T","expires_in":7200}"#)
        } else {
            Scripted::json(r#"{"errcode":0,"errmsg":"ok"}"#)
        }
    });
    let app = app(&rt, &[]);
    let body = r#"{"touser":"o","msgtype":"text","text":{"content":"你好 😀"}}"#;
    let served = admin(&app, "POST", "/api/messages", &format!("bearer {ADMIN_TOKEN}"), body);
    assert_eq!((served.response.status, served.outcome.as_str()), (200, "/cgi-bin/message/custom/send"));
    let sent = rt.upstream.calls().pop().unwrap();
    assert_eq!(sent.body, wechat_kf_worker::api::http::Body::Json(body.as_bytes().to_vec()), "forwarded byte for byte");

    let unauthorized = admin(&app, "POST", "/api/messages", "Basic x", body);
    assert_eq!(unauthorized.response.status, 401);
    assert_eq!(unauthorized.response.headers, vec![("www-authenticate", "Bearer".to_string())]);

    // Two msgtypes in one document: which one would WeChat read? Refused, naming the key.
    rt.upstream.clear();
    let twice = r#"{"touser":"o","msgtype":"image","image":{"media_id":"M"},"msgtype":"text","text":{"content":"x"}}"#;
    let served = admin(&app, "POST", "/api/messages", &format!("Bearer {ADMIN_TOKEN}"), twice);
    assert_eq!(served.response.status, 400);
    assert_eq!(
        json(&served.response),
        serde_json::json!({"error":"invalid_request","field":"msgtype","message":"appears twice in the same object"})
    );
    assert!(rt.upstream.calls().is_empty(), "nothing reached WeChat");

    let closed = Rc::new(App::new(Rc::new(config(&[("ADMIN_TOKEN", "")])), Rc::default(), rt.clone()));
    assert_eq!(admin(&closed, "POST", "/api/messages", &format!("Bearer {ADMIN_TOKEN}"), body).response.status, 404);
}

#[test]
fn a_token_back_off_is_answered_with_retry_after() {
    let rt = FakeRuntime::at(NOW);
    rt.upstream.script(|_| Scripted::answer(503, "<html>busy</html>"));
    let app = app(&rt, &[]);
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let first = admin(&app, "GET", "/api/kf/accounts", &auth, "");
    assert_eq!(first.response.status, 502);
    assert_eq!(first.response.headers, vec![("retry-after", "5".to_string())]);
    assert_eq!(json(&first.response)["retry_after"], 5);
    rt.clock.advance(2_000);
    let second = admin(&app, "GET", "/api/kf/accounts", &auth, "");
    assert_eq!(second.response.headers, vec![("retry-after", "3".to_string())]);
    assert_eq!(rt.upstream.calls().len(), 1, "the second call was answered from the back-off");
}

#[test]
fn health_lists_features_and_faults_without_values() {
    let rt = FakeRuntime::at(NOW);
    let served = request(&app(&rt, &[("WECHAT_APPID", "")]), "GET", "/healthz", None, b"");
    let h = json(&served.response);
    assert_eq!(h["ok"], false);
    assert_eq!(h["missing"], serde_json::json!(["WECHAT_APPID"]));
    assert_eq!(h["features"]["callback"], false);
    assert!(!text(&served.response).contains(TOKEN));
}

#[test]
fn the_log_line_is_json_with_the_notes() {
    let line = log_line(Route::Push, "POST", 200, "transfer text", 3, &["online list over budget".into()]);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&line).unwrap(),
        serde_json::json!({"route":"/wechat","method":"POST","status":200,"outcome":"transfer text","ms":3,"notes":["online list over budget"]})
    );
}

fn online_app(rt: &FakeRuntime) -> Rc<App<FakeRuntime>> {
    app(rt, &[("WECHAT_KF_ACCOUNT", "a@gh_1,b@gh_1"), ("WECHAT_KF_ROUTING", "online")])
}

fn push_text(app: &Rc<App<FakeRuntime>>) -> (String, u64, Served) {
    let started = app.rt.clock.now_ms();
    let served = request(
        app,
        "POST",
        &format!("/wechat?{}", plain_query(app.rt.clock.now(), NONCE)),
        None,
        &fixture("messages/text.xml"),
    );
    let kf =
        text(&served.response).split("<KfAccount><![CDATA[").nth(1).map(|s| s.split(']').next().unwrap().to_string());
    (kf.unwrap_or_default(), app.rt.clock.now_ms() - started, served)
}

#[test]
fn online_routing_targets_a_free_agent_and_caches_the_list() {
    let rt = FakeRuntime::at(NOW);
    rt.upstream.script(|call| {
        if call.url.contains("stable_token") {
            return Scripted::json(r#"{"access_token":"T","expires_in":7200}"#);
        }
        Scripted::json(r#"{"kf_online_list":[{"kf_account":"a@gh_1","status":1,"auto_accept":2,"accepted_case":2},{"kf_account":"b@gh_1","status":1,"auto_accept":2,"accepted_case":1}]}"#)
    });
    let app = online_app(&rt);
    assert_eq!(push_text(&app).0, "b@gh_1");
    assert_eq!(push_text(&app).0, "b@gh_1");
    assert_eq!(rt.upstream.count("getonlinekflist"), 1, "cached 30 s");
    assert!(rt.store.peek("kf_online:wx5823bf96d3bd56c7").is_some(), "shared with other isolates");
}

#[test]
fn a_hanging_online_list_never_delays_a_transfer_past_the_budget() {
    let rt = FakeRuntime::at(NOW);
    rt.upstream.script(|call| {
        if call.url.contains("stable_token") {
            return Scripted::json(r#"{"access_token":"T","expires_in":7200}"#);
        }
        Scripted::json(r#"{"kf_online_list":[{"kf_account":"a@gh_1","status":1}]}"#).after(4_000)
    });
    let app = online_app(&rt);
    let (kf, ms, served) = push_text(&app);
    assert_eq!((kf.as_str(), ms), ("", 1_500), "untargeted at the budget");
    let background = served.background.expect("the lookup finishes in the background");
    // The next transfer skips the lookup: it failed a moment ago.
    let (kf, ms, _) = push_text(&app);
    assert_eq!((kf.as_str(), ms), ("", 0));
    // The background lookup completes and its list replaces the skip.
    run(&rt.clock, vec![background as Task<'_, ()>]);
    let (kf, ms, _) = push_text(&app);
    assert_eq!((kf.as_str(), ms), ("a@gh_1", 0));
    assert_eq!(rt.upstream.count("getonlinekflist"), 1);
}

/// Reads `Response::encode`'s layout the way src/glue/entry.mjs does.
#[allow(clippy::type_complexity)]
fn decode(out: &[u8]) -> (u16, &'static str, Vec<(String, String)>, u8, String, Vec<u8>) {
    let status = u16::from_le_bytes([out[0], out[1]]);
    let content_type = wechat_kf_worker::app::CONTENT_TYPES[usize::from(out[2])];
    let mut i = 4;
    let mut headers = Vec::new();
    for _ in 0..out[3] {
        let name_end = i + 1 + usize::from(out[i]);
        let name = String::from_utf8(out[i + 1..name_end].to_vec()).unwrap();
        let value_end = name_end + 2 + usize::from(u16::from_le_bytes([out[name_end], out[name_end + 1]]));
        headers.push((name, String::from_utf8(out[name_end + 2..value_end].to_vec()).unwrap()));
        i = value_end;
    }
    let level = out[i];
    let line_end = i + 5 + u32::from_le_bytes([out[i + 1], out[i + 2], out[i + 3], out[i + 4]]) as usize;
    let line = String::from_utf8(out[i + 5..line_end].to_vec()).unwrap();
    (status, content_type, headers, level, line, out[line_end..].to_vec())
}

#[test]
fn a_response_crosses_to_the_entry_as_one_byte_string() {
    let err = Error::retry_later(Error::WeChat { errcode: 40164, errmsg: "invalid ip".into() }, 300);
    let response = Response::error(&err);
    let (status, content_type, headers, level, line, body) = decode(&response.encode(Some("{\"a\":\"中\"}")));
    assert_eq!((status, content_type), (502, "application/json; charset=utf-8"));
    assert_eq!(headers, vec![("retry-after".to_string(), "300".to_string())]);
    assert_eq!((level, line.as_str()), (4, "{\"a\":\"中\"}"), "a 5xx is logged at error level, as UTF-8");
    assert_eq!(body, err.body().into_bytes());
    let ok = Response::new(200, "application/xml; charset=utf-8", b"<xml/>".to_vec());
    let (status, content_type, headers, level, line, body) = decode(&ok.encode(None));
    assert_eq!(
        (status, content_type, headers.len(), level, line.as_str(), body.as_slice()),
        (200, "application/xml; charset=utf-8", 0, 0, "", &b"<xml/>"[..])
    );
    let (.., level, _, _) = decode(&ok.encode(Some("x")));
    assert_eq!(level, 1);
    let (.., level, _, _) = decode(&Response::error(&Error::Internal("x")).encode(Some("x")));
    assert_eq!(level, 2);
}

#[test]
fn only_the_health_report_may_be_replayed_by_the_entry() {
    use wechat_kf_worker::testkit::request;
    let rt = FakeRuntime::at(NOW);
    let app = app(&rt, &[]);
    let health = request(&app, "GET", "/healthz?probe=1", None, b"");
    assert!(health.response.replayable, "the same URL gets the same report for the isolate's life");
    let (.., level, line, _) = decode(&health.response.encode(Some("{}")));
    assert_eq!((level, line.as_str()), (0x80 | 1, "{}"), "the replay bit rides on the log level");
    let query = plain_query(NOW, NONCE);
    let others = [
        request(&app, "GET", "/nope", None, b""),
        request(&app, "POST", "/healthz", None, b""),
        request(&app, "POST", &format!("/wechat?{query}"), None, &fixture("messages/text.xml")),
        request(&app, "GET", "/api/kf/accounts", None, b""),
    ];
    for served in others {
        assert!(!served.response.replayable, "{}", served.outcome);
        let (.., level, _, _) = decode(&served.response.encode(Some("{}")));
        assert_eq!(level & 0x80, 0);
    }
}

#[test]
fn the_entrys_read_protocol() {
    use wechat_kf_worker::app::{decode_read, encode_read};
    assert_eq!(encode_read("rules:wx1"), b"\0\0rules:wx1", "status 0, then the key");
    assert_eq!(decode_read("+{\"welcome\":\"hi\"}"), Ok(Some("{\"welcome\":\"hi\"}".to_string())));
    assert_eq!(decode_read("+"), Ok(Some(String::new())));
    assert_eq!(decode_read("-"), Ok(None));
    for failed in ["!", "", "x", "-junk"] {
        assert!(decode_read(failed).is_err(), "{failed:?}");
    }
}

#[test]
fn the_entrys_synchronous_call_reads_the_rules_once_then_answers() {
    use wechat_kf_worker::app::{encode_read, handle_now};
    use wechat_kf_worker::testkit::APPID;
    let rt = FakeRuntime::at(NOW);
    let app = app(&rt, &[]);
    let push = format!("POST https://w.example/wechat?{}", plain_query(NOW, NONCE));
    let body = fixture("messages/text.xml");
    // An isolate's first verified push: the rules are read first, by the entry.
    assert_eq!(handle_now(&app, &push, &body, None, 0), Some(encode_read(&format!("rules:{APPID}"))));
    // Called again with none stored: the transfer, its log line timed by the entry's wait.
    let (status, content_type, _, level, line, reply) = decode(&handle_now(&app, &push, &body, Some("-"), 7).unwrap());
    assert_eq!((status, content_type, level), (200, "application/xml; charset=utf-8", 1));
    assert!(line.contains("\"outcome\":\"transfer text\"") && line.contains("\"ms\":7"), "{line}");
    assert!(String::from_utf8(reply).unwrap().contains("transfer_customer_service"));
    // The rules are now in memory: the next push is answered at once.
    let (status, ..) = decode(&handle_now(&app, &push, &body, None, 0).unwrap());
    assert_eq!(status, 200);
    // A push that fails verification is refused without a read, on a fresh isolate too.
    let fresh = self::app(&rt, &[]);
    let forged = push.replace("signature=", "signature=0");
    let (status, ..) = decode(&handle_now(&fresh, &forged, &body, None, 0).unwrap());
    assert_eq!(status, 403);
    // What needs I/O is left to the async path.
    assert_eq!(handle_now(&fresh, "GET https://w.example/api/kf/accounts", b"", None, 0), None);
}

#[test]
fn an_answers_location_is_one_number_the_entry_splits_exactly() {
    use wechat_kf_worker::app::answer_location;
    // The entry's split (src/glue/entry.mjs): `at >>> 0`, then `(at - address) / 2 ** 32`.
    let split = |at: f64| {
        let address = (at % 4_294_967_296.0) as u32;
        (address, ((at - f64::from(address)) / 4_294_967_296.0) as u32)
    };
    for (address, len) in [(0, 0), (1, 0), (1_114_112, 73), (u32::MAX, 65_536), (4_096, u32::MAX >> 11)] {
        assert_eq!(split(answer_location(address, len)), (address, len));
    }
}

#[test]
fn the_glue_reuses_one_answer_buffer_and_it_never_carries_an_old_answer() {
    use wechat_kf_worker::app::{handle_now, handle_now_into};
    let rt = FakeRuntime::at(NOW);
    let app = app(&rt, &[]);
    let mut out = Vec::new();
    // A long answer first (the health report), then a shorter one in the same buffer.
    assert!(handle_now_into(&app, "GET https://w.example/healthz", b"", None, 0, &mut out));
    assert!(out.len() > 200, "{}", out.len());
    assert!(handle_now_into(&app, "GET https://w.example/nope", b"", None, 0, &mut out));
    assert_eq!(Some(out.clone()), handle_now(&app, "GET https://w.example/nope", b"", None, 0));
    let (status, .., body) = decode(&out);
    assert_eq!((status, body.as_slice()), (404, &br#"{"error":"not_found","message":"not found"}"#[..]));
    // A request for the async path leaves the buffer empty: the entry reads "no answer".
    assert!(!handle_now_into(&app, "GET https://w.example/api/kf/accounts", b"", None, 0, &mut out));
    assert!(out.is_empty());
}

#[test]
fn a_reused_answer_buffer_a_large_answer_grew_is_given_back_before_the_next_answer() {
    use wechat_kf_worker::app::{handle_now, handle_now_into, KEPT_ANSWER_BYTES};
    let rt = FakeRuntime::at(NOW);
    let app = app(&rt, &[]);
    let mut out = Vec::with_capacity(KEPT_ANSWER_BYTES);
    assert!(handle_now_into(&app, "GET https://w.example/nope", b"", None, 0, &mut out));
    assert_eq!(out.capacity(), KEPT_ANSWER_BYTES, "a buffer up to the limit is kept");
    let mut out = Vec::with_capacity(KEPT_ANSWER_BYTES + 1);
    assert!(handle_now_into(&app, "GET https://w.example/nope", b"", None, 0, &mut out));
    assert!(out.capacity() < KEPT_ANSWER_BYTES, "{}", out.capacity());
    assert_eq!(Some(out), handle_now(&app, "GET https://w.example/nope", b"", None, 0));
}

#[test]
fn the_entry_gets_one_header_set_per_content_type_in_their_order() {
    let sets: serde_json::Value = serde_json::from_str(&wechat_kf_worker::app::response_headers()).unwrap();
    let expected: Vec<serde_json::Value> = wechat_kf_worker::app::CONTENT_TYPES
        .iter()
        .map(|t| serde_json::json!({ "content-type": t, "cache-control": "no-store" }))
        .collect();
    assert_eq!(sets, serde_json::Value::Array(expected));
}

#[test]
fn the_cron_line_names_its_outcome_and_notes_only_when_there_are_some() {
    let bare: serde_json::Value = serde_json::from_str(&wechat_kf_worker::app::cron_line("fresh", &[])).unwrap();
    assert_eq!(bare, serde_json::json!({ "cron": "access_token", "outcome": "fresh" }));
    let noted: serde_json::Value =
        serde_json::from_str(&wechat_kf_worker::app::cron_line("refreshed", &["alert queue sent".to_string()]))
            .unwrap();
    assert_eq!(
        noted,
        serde_json::json!({ "cron": "access_token", "outcome": "refreshed", "notes": ["alert queue sent"] })
    );
}
