//! The worker as a function from request to response, natively, over the in-memory runtime:
//! routes, the callback, the admin API's authentication and validation, error mapping, the
//! capacity-aware transfer's budget.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use kf_core::app::{authorize, log_line, split_url, ContentType, Response, Route, Served};
use kf_core::runtime::Clock;
use kf_core::testkit::fake::{run, FakeRuntime, Scripted, Task};
use kf_core::testkit::{crypto, fixture, plain_query, safe_push, TestApp, ADMIN_TOKEN, NONCE, NOW, TOKEN};
use kf_core::Error;
use wechat_mp::signature::sign;

fn app(rt: &FakeRuntime, vars: &[(&str, &str)]) -> TestApp {
    TestApp::new(rt, vars)
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
        // A database account's callback (`/wechat/` alone names none: a 404 when served).
        ("GET", "/wechat/", Route::AccountUrlCheck, None),
        ("GET", "/wechat/wx0123456789abcdef", Route::AccountUrlCheck, None),
        ("POST", "/wechat/wx0123456789abcdef", Route::AccountPush, Some(64 * 1024)),
        ("PUT", "/wechat/wx0123456789abcdef", Route::MethodNotAllowed("GET, POST"), None),
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
        app.request(
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
        app.request("POST", &format!("/wechat?{}", plain_query(NOW, NONCE)), None, &fixture("messages/text.xml"));
    assert_eq!(served.response.status, 200);
    assert_eq!(served.response.content_type, ContentType::Xml);
    assert_eq!(text(&served.response), String::from_utf8(fixture("replies/transfer_kf.xml")).unwrap().trim_end());
    assert_eq!(served.outcome, "transfer text targeted");
    // An event whose MsgType WeChat never capitalises, but someone did: still an event.
    let event = String::from_utf8(fixture("events/subscribe.xml")).unwrap().replace("[event]", "[ EVENT ]");
    let served = app.request("POST", &format!("/wechat?{}", plain_query(NOW, NONCE)), None, event.as_bytes());
    assert_eq!((served.response.status, text(&served.response)), (200, "success".to_string()));
    assert_eq!(served.outcome, "ack event:subscribe");
}

#[test]
fn an_unsigned_safe_mode_push_is_403_even_without_an_aes_key() {
    let rt = FakeRuntime::at(NOW);
    let app = app(&rt, &[("WECHAT_ENCODING_AES_KEY", "")]);
    let (_, body) = safe_push(&crypto(), "<xml/>", NOW, "1", false);
    let served = app.request(
        "POST",
        &format!("/wechat?encrypt_type=aes&msg_signature=junk&timestamp={NOW}&nonce=1"),
        None,
        body.as_bytes(),
    );
    assert_eq!(served.response.status, 403);
    assert_eq!(json(&served.response)["error"], "invalid_signature");
}

fn admin(app: &TestApp, method: &str, path: &str, auth: &str, body: &str) -> Served {
    app.request(method, path, Some(auth), body.as_bytes())
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
    assert_eq!(sent.body, kf_core::http::Body::Json(body.as_bytes().to_vec()), "forwarded byte for byte");

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

    let closed = TestApp::new(&rt, &[("ADMIN_TOKEN", "")]);
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
    let served = app(&rt, &[("WECHAT_APPID", "")]).request("GET", "/healthz", None, b"");
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

fn online_app(rt: &FakeRuntime) -> TestApp {
    app(rt, &[("WECHAT_KF_ACCOUNT", "a@gh_1,b@gh_1"), ("WECHAT_KF_ROUTING", "online")])
}

fn push_text(app: &TestApp) -> (String, u64, Served) {
    let started = app.rt.clock.now_ms();
    let served = app.request(
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
    rt.upstream.script_behind_token(|_| {
        Scripted::json(r#"{"kf_online_list":[{"kf_account":"a@gh_1","status":1,"auto_accept":2,"accepted_case":2},{"kf_account":"b@gh_1","status":1,"auto_accept":2,"accepted_case":1}]}"#)
    });
    let app = online_app(&rt);
    let (kf, _, mut first) = push_text(&app);
    assert_eq!(kf, "b@gh_1");
    // Shared with other isolates after the reply, never while the transfer waits.
    assert!(rt.db().rows("SELECT name FROM cache").is_empty());
    app.finish(&mut first);
    assert_eq!(push_text(&app).0, "b@gh_1");
    assert_eq!(rt.upstream.count("getonlinekflist"), 1, "cached 30 s");
    let shared = rt.db().rows("SELECT name, fetched_at FROM cache");
    assert_eq!(
        (shared[0]["name"].as_str(), shared[0]["fetched_at"].as_u64()),
        (Some("kf_online"), Some(NOW)),
        "shared with other isolates"
    );
}

#[test]
fn a_hanging_online_list_never_delays_a_transfer_past_the_budget() {
    let rt = FakeRuntime::at(NOW);
    rt.upstream.script_behind_token(|_| {
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

#[test]
fn the_cron_line_names_its_outcome_and_notes_only_when_there_are_some() {
    let bare: serde_json::Value = serde_json::from_str(&kf_core::app::cron_line("fresh", &[])).unwrap();
    assert_eq!(bare, serde_json::json!({ "cron": "access_token", "outcome": "fresh" }));
    let noted: serde_json::Value =
        serde_json::from_str(&kf_core::app::cron_line("refreshed", &["alert queue sent".to_string()])).unwrap();
    assert_eq!(
        noted,
        serde_json::json!({ "cron": "access_token", "outcome": "refreshed", "notes": ["alert queue sent"] })
    );
}

/// Twenty pushes at once in one isolate with online routing and nothing cached: one lookup of
/// the online list for all of them.
#[test]
fn pushes_at_once_look_the_online_list_up_once() {
    let rt = FakeRuntime::at(NOW);
    rt.upstream.script_behind_token(|_| {
        Scripted::json(r#"{"kf_online_list":[{"kf_account":"b@gh_1","status":1,"auto_accept":9,"accepted_case":1}]}"#)
            .after(100)
    });
    let app = online_app(&rt);
    let query = plain_query(NOW, NONCE);
    let requests = (0..20)
        .map(|_| kf_core::testkit::request("POST", &format!("/wechat?{query}"), None, &fixture("messages/text.xml")))
        .collect();
    let served = app.concurrently(requests);
    assert!(served.iter().all(|s| text(&s.response).contains("<KfAccount><![CDATA[b@gh_1]]>")));
    assert_eq!(rt.upstream.count("getonlinekflist"), 1);
}
