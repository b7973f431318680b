//! The access_token cache over the in-memory runtime: single flight, back-off, refresh after a
//! rejection, forced-refresh spacing, the store failing. Simulated time: a minute of load runs
//! in microseconds and every figure is exact.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::cell::RefCell;
use std::rc::Rc;

use kf_core::api::token::{self, CachedToken};
use kf_core::app::Isolate;
use kf_core::http::{ApiCall, Body, HttpCall};
use kf_core::runtime::Clock;
use kf_core::testkit::fake::{block_on, run, FakeRuntime, Scripted, Task};
use kf_core::testkit::{config, TestApp, APPID, NOW};
use kf_core::Error;

const TOKEN_KEY: &str = "access_token:wx5823bf96d3bd56c7";
const SEND: &str = "/cgi-bin/message/custom/send";

/// A new isolate configured with `vars`, as a shared handle.
fn app_with(rt: &FakeRuntime, vars: &[(&str, &str)]) -> Rc<TestApp> {
    Rc::new(TestApp::on(rt, Rc::new(Isolate::new(config(vars)))))
}

fn app(rt: &FakeRuntime) -> Rc<TestApp> {
    app_with(rt, &[])
}

fn token_json(token: &str) -> Scripted {
    Scripted::json(&format!(r#"{{"access_token":"{token}","expires_in":7200}}"#))
}

fn is_token_call(call: &HttpCall) -> bool {
    call.url.contains("/cgi-bin/stable_token") || call.url.contains("/cgi-bin/token?")
}

fn force_flag(call: &HttpCall) -> bool {
    match &call.body {
        Body::Json(json) => serde_json::from_slice::<serde_json::Value>(json).unwrap()["force_refresh"] == true,
        _ => false,
    }
}

fn send_call() -> ApiCall {
    ApiCall::post(SEND, br#"{"touser":"o","msgtype":"text","text":{"content":"hi"}}"#.to_vec())
}

/// A stored token fetched `age` seconds before `NOW`.
fn seed_token(rt: &FakeRuntime, access_token: &str, age: u64) {
    let t = CachedToken::new(access_token.into(), 7200, NOW - age);
    rt.store.seed(TOKEN_KEY, &t.to_json(), 3600);
}

#[test]
fn fifty_concurrent_callers_and_an_empty_cache_make_one_token_request() {
    let rt = FakeRuntime::at(NOW);
    rt.upstream.script(|_| token_json("T1").after(50));
    let app = app(&rt);
    let tasks: Vec<Task<'_, _>> = (0..50)
        .map(|_| -> Task<'_, _> { Box::pin(async { app.api().unwrap().tokens().access_token().await }) })
        .collect();
    let results = run(&rt.clock, tasks);
    assert!(results.iter().all(|r| r.as_ref().unwrap().access_token == "T1"), "{results:?}");
    assert_eq!(rt.upstream.count("/cgi-bin/stable_token"), 1);
    // Stored for the other isolates, until a margin before its expiry.
    let stored = CachedToken::from_json(&rt.store.peek(TOKEN_KEY).unwrap()).unwrap();
    assert_eq!(stored.access_token, "T1");
    assert_eq!(rt.store.expiry(TOKEN_KEY), Some((NOW + 7200 - 300) * 1000 + 50));
}

#[test]
fn fast_failing_token_requests_answer_every_follower_at_once_never_504() {
    // Each failure arrives 1 ms after the request: followers polling every 5 ms must find their own
    // flight's outcome, not wait out the 25 s flight limit (504) because a newer one replaced it.
    let rt = FakeRuntime::at(NOW);
    rt.upstream.script(|_| Scripted::answer(500, "<html>oops</html>").after(1));
    let app = app(&rt);
    let tasks: Vec<Task<'_, _>> = (0..20)
        .map(|i| -> Task<'_, _> {
            let app = app.clone();
            Box::pin(async move {
                // Staggered like real traffic, each starting while others wait.
                app.rt.clock.sleep(i % 7).await;
                let started = app.rt.clock.now_ms();
                let r = app.api().unwrap().tokens().access_token().await;
                (r.unwrap_err(), app.rt.clock.now_ms() - started)
            })
        })
        .collect();
    for (err, ms) in run(&rt.clock, tasks) {
        assert_eq!(err.status(), 502, "{err:?}");
        assert_eq!(err.cause(), &Error::Upstream("WeChat answered a non-2xx status"));
        assert!(ms <= 10, "answered after {ms} ms");
    }
    assert_eq!(rt.upstream.count("stable_token"), 1, "one flight, then the back-off");
}

#[test]
fn a_follower_gets_its_own_flights_outcome_when_a_newer_flight_ends_first() {
    // Flight 1 brings T1 after 1 ms. At 2 ms another caller has T1 rejected and starts flight 2,
    // which fails at 3 ms. The follower of flight 1 polls at 5 ms: it must get flight 1's T1,
    // neither flight 2's failure nor a wait until the 25 s flight limit.
    let rt = FakeRuntime::at(NOW);
    let mut calls = 0;
    rt.upstream.script(move |_| {
        calls += 1;
        if calls == 1 {
            token_json("T1").after(1)
        } else {
            Scripted::answer(500, "down").after(1)
        }
    });
    let app = app(&rt);
    let leader: Task<'_, _> = {
        let app = app.clone();
        Box::pin(async move { app.api().unwrap().tokens().access_token().await.map(|t| t.access_token) })
    };
    let follower: Task<'_, _> = {
        let app = app.clone();
        Box::pin(async move {
            let t = app.api().unwrap().tokens().access_token().await.map(|t| t.access_token);
            assert!(app.rt.clock.now_ms() - NOW * 1000 <= 10, "answered at its first polls");
            t
        })
    };
    let rejecter: Task<'_, _> = {
        let app = app.clone();
        Box::pin(async move {
            app.rt.clock.sleep(2).await;
            let api = app.api().unwrap();
            let tokens = api.tokens();
            let t1 = tokens.access_token().await.unwrap();
            tokens.refresh_after_rejection(&t1).await.map(|t| t.map(|t| t.access_token).unwrap_or_default())
        })
    };
    let results = run(&rt.clock, vec![leader, follower, rejecter]);
    assert_eq!(results[0].as_deref(), Ok("T1"));
    assert_eq!(results[1].as_deref(), Ok("T1"), "the follower's own flight");
    assert_eq!(results[2].as_ref().map_err(Error::status), Err(502), "flight 2 failed");
    assert_eq!(rt.upstream.count("stable_token"), 2);
}

/// `callers` concurrent callers, each calling `f` in a loop (100 ms apart) for `secs` simulated
/// seconds; returns every result with its latency in ms.
fn load<T>(
    rt: &FakeRuntime,
    callers: usize,
    secs: u64,
    f: impl Fn() -> Task<'static, T> + Clone + 'static,
) -> Vec<(T, u64)> {
    let end = rt.clock.now_ms() + secs * 1000;
    let out = Rc::new(RefCell::new(Vec::new()));
    let tasks: Vec<Task<'_, ()>> = (0..callers)
        .map(|_| -> Task<'_, ()> {
            let (rt, f, out) = (rt.clone(), f.clone(), out.clone());
            Box::pin(async move {
                while rt.clock.now_ms() < end {
                    let started = rt.clock.now_ms();
                    let r = f().await;
                    out.borrow_mut().push((r, rt.clock.now_ms() - started));
                    rt.clock.sleep(100).await;
                }
            })
        })
        .collect();
    run(&rt.clock, tasks);
    Rc::try_unwrap(out).ok().unwrap().into_inner()
}

#[test]
fn a_failing_endpoint_is_asked_a_handful_of_times_a_minute_and_callers_hear_when_the_next_attempt_is() {
    for (name, failure) in [
        ("500 HTML", Scripted::answer(500, "<html>502 Bad Gateway</html>")),
        ("truncated JSON", Scripted::json(r#"{"access_tok"#)),
        ("connection reset", Scripted::error(Error::Upstream("unreachable or connection reset"))),
    ] {
        let rt = FakeRuntime::at(NOW);
        let failure = Rc::new(failure);
        let f2 = failure.clone();
        rt.upstream.script(move |_| Scripted { delay_ms: 20, result: f2.result.clone() });
        let app = app(&rt);
        let a = app.clone();
        let results = load(&rt, 50, 60, move || {
            let a = a.clone();
            Box::pin(async move { a.api().unwrap().tokens().access_token().await })
        });
        let requests = rt.upstream.count("stable_token");
        // Back-off 5, 10, 20, 40 s: attempts at 0, 5, 15 and 35 s.
        assert_eq!(requests, 4, "{name}: token requests in a simulated minute");
        assert!(results.len() > 20_000, "{name}: {} calls", results.len());
        for (r, ms) in &results {
            let err = r.as_ref().unwrap_err();
            assert_eq!(err.status(), 502, "{name}: {err:?}");
            let Error::RetryLater { retry_after_secs, .. } = err else { panic!("{name}: {err:?}") };
            assert!((1..=40).contains(retry_after_secs), "{name}: retry_after {retry_after_secs}");
            assert!(*ms <= 25, "{name}: a caller waited {ms} ms");
        }
        let _ = failure;
    }
}

#[test]
fn credential_errors_back_off_for_five_minutes_with_the_hint() {
    let rt = FakeRuntime::at(NOW);
    rt.upstream.script(|_| Scripted::json(r#"{"errcode":40164,"errmsg":"invalid ip 1.2.3.4"}"#));
    let app = app(&rt);
    let a = app.clone();
    let results = load(&rt, 5, 299, move || {
        let a = a.clone();
        Box::pin(async move { a.api().unwrap().tokens().access_token().await })
    });
    assert_eq!(rt.upstream.count("stable_token"), 1);
    let (last, _) = results.last().unwrap();
    let err = last.as_ref().unwrap_err();
    assert_eq!(err.cause(), &Error::WeChat { errcode: 40164, errmsg: "invalid ip 1.2.3.4".into() });
    let body: serde_json::Value = serde_json::from_str(&err.body()).unwrap();
    assert_eq!(body["errcode"], 40164);
    assert!(body["hint"].as_str().unwrap().contains("whitelist"));
    assert!(body["retry_after"].as_u64().unwrap() <= 2);
    assert_eq!(err.headers(), vec![("retry-after", body["retry_after"].to_string())]);
    // Five minutes later the next attempt is made, and a success ends the back-off.
    rt.clock.advance(2_000);
    rt.upstream.script(|_| token_json("T1"));
    let t = block_on(&rt.clock, async { app.api().unwrap().tokens().access_token().await });
    assert_eq!(t.unwrap().access_token, "T1");
}

/// WeChat for the rejection tests: the token endpoint hands out `tokens` in turn (force or
/// not), custom/send accepts only the tokens in `valid`.
fn wechat(rt: &FakeRuntime, tokens: &'static [&'static str], valid: &'static [&'static str]) {
    let issued = Rc::new(RefCell::new(0usize));
    rt.upstream.script(move |call| {
        if is_token_call(call) {
            let mut n = issued.borrow_mut();
            let t = tokens[(*n).min(tokens.len() - 1)];
            *n += 1;
            return token_json(t);
        }
        if valid.iter().any(|t| {
            call.url.contains(&format!("access_token={t}&")) || call.url.ends_with(&format!("access_token={t}"))
        }) {
            Scripted::json(r#"{"errcode":0,"errmsg":"ok"}"#)
        } else {
            Scripted::json(r#"{"errcode":40001,"errmsg":"invalid credential"}"#)
        }
    });
}

#[test]
fn a_rejected_token_is_refreshed_once_and_the_call_retried_once() {
    // Replaced elsewhere (another system refreshed it) long after we fetched it, or a moment after.
    for age in [600, 0] {
        let rt = FakeRuntime::at(NOW);
        seed_token(&rt, "OLD", age);
        wechat(&rt, &["NEW"], &["NEW"]);
        let app = app(&rt);
        let r = block_on(&rt.clock, async { app.api().unwrap().call(&send_call()).await });
        assert_eq!(r.unwrap(), br#"{"errcode":0,"errmsg":"ok"}"#, "age {age}");
        let calls = rt.upstream.calls();
        let kinds: Vec<&str> = calls.iter().map(|c| if is_token_call(c) { "token" } else { "send" }).collect();
        assert_eq!(kinds, ["send", "token", "send"], "age {age}");
        assert!(!force_flag(&calls[1]));
        assert!(rt.store.peek(TOKEN_KEY).unwrap().contains("NEW"));
    }
}

#[test]
fn a_storm_of_rejections_does_not_multiply_token_requests() {
    for endpoint in ["stable", "classic"] {
        let rt = FakeRuntime::at(NOW);
        seed_token(&rt, "OLD", 600);
        // Every token is rejected, and the endpoint issues a new one on every request.
        wechat(&rt, &["T1", "T2", "T3", "T4", "T5", "T6", "T7", "T8"], &[]);
        let app = app_with(&rt, &[("WECHAT_TOKEN_ENDPOINT", endpoint)]);
        let a = app.clone();
        let results = load(&rt, 20, 28, move || {
            let a = a.clone();
            Box::pin(async move { a.api().unwrap().call(&send_call()).await })
        });
        let tokens = rt.upstream.calls().iter().filter(|c| is_token_call(c)).count();
        let sends = rt.upstream.count(SEND);
        // One refresh for the old token; the new one is younger than a minute: not refreshed.
        assert_eq!(tokens, 1, "{endpoint}: token requests for {} calls", results.len());
        assert_eq!(sends, results.len() + 1, "{endpoint}: one retry in all");
        for (r, _) in &results {
            assert_eq!(
                r.as_ref().unwrap_err().cause(),
                &Error::WeChat { errcode: 40001, errmsg: "invalid credential".into() }
            );
        }
    }
}

#[test]
fn the_stable_endpoint_handing_back_a_rejected_token_is_forced_at_most_every_30_seconds_across_isolates() {
    let rt = FakeRuntime::at(NOW);
    seed_token(&rt, "SAME", 600);
    // The stable endpoint keeps handing out the rejected token unless forced.
    let forced = Rc::new(RefCell::new(0u32));
    let f = forced.clone();
    rt.upstream.script(move |call| {
        if is_token_call(call) {
            if force_flag(call) {
                *f.borrow_mut() += 1;
                return token_json(&format!("FORCED{}", f.borrow()));
            }
            return token_json("SAME");
        }
        Scripted::json(r#"{"errcode":40001,"errmsg":"invalid credential"}"#)
    });
    let a = app(&rt);
    let r = block_on(&rt.clock, async { a.api().unwrap().call(&send_call()).await });
    assert_eq!(r.unwrap_err().cause(), &Error::WeChat { errcode: 40001, errmsg: "invalid credential".into() });
    assert_eq!(*forced.borrow(), 1);
    let forced_at = rt.store.peek(&token::force_key(APPID)).unwrap();
    assert_eq!(forced_at, NOW.to_string());

    // Another isolate, 10 s later, with the old token from its own memory: it sees the forced
    // refresh recorded in the store and does not force again.
    rt.clock.advance(10_000);
    let b = app_with(&rt, &[]);
    seed_token(&rt, "SAME", 600);
    let r = block_on(&rt.clock, async { b.api().unwrap().call(&send_call()).await });
    assert!(r.is_err());
    assert_eq!(*forced.borrow(), 1, "no second forced refresh within 30 s");

    // 31 s after the first one, a rejected old token may be forced again.
    rt.clock.advance(21_000);
    let c = app_with(&rt, &[]);
    seed_token(&rt, "SAME", 600);
    let _ = block_on(&rt.clock, async { c.api().unwrap().call(&send_call()).await });
    assert_eq!(*forced.borrow(), 2);
}

#[test]
fn the_store_failing_degrades_to_the_endpoint_never_to_a_5xx() {
    let rt = FakeRuntime::at(NOW);
    rt.store.set_failing(true);
    wechat(&rt, &["T1"], &["T1"]);
    let app = app(&rt);
    let a = app.clone();
    let results = load(&rt, 10, 5, move || {
        let a = a.clone();
        Box::pin(async move { a.api().unwrap().call(&send_call()).await })
    });
    assert!(results.iter().all(|(r, _)| r.is_ok()), "{:?}", results.iter().find(|(r, _)| r.is_err()));
    assert_eq!(rt.upstream.calls().iter().filter(|c| is_token_call(c)).count(), 1, "isolate memory still holds it");
}

#[test]
fn a_token_in_the_store_is_used_without_a_request_and_the_cron_refreshes_it_ahead_of_time() {
    let rt = FakeRuntime::at(NOW);
    seed_token(&rt, "KV", 60);
    wechat(&rt, &["T1"], &["KV", "T1"]);
    let app = app(&rt);
    let t = block_on(&rt.clock, async { app.api().unwrap().tokens().access_token().await });
    assert_eq!(t.unwrap().access_token, "KV");
    assert_eq!(app.scheduled().0, "fresh");
    assert_eq!(rt.upstream.calls().len(), 0);
    // 15 minutes before the end of its usable life the cron replaces it.
    rt.clock.advance((7200 - 300 - 60 - 899) * 1000);
    assert_eq!(app.scheduled().0, "refreshed");
    assert!(rt.store.peek(TOKEN_KEY).unwrap().contains("T1"));
}

#[test]
fn a_busy_endpoint_is_retried_once_after_300_ms() {
    let rt = FakeRuntime::at(NOW);
    let mut calls = 0;
    rt.upstream.script(move |_| {
        calls += 1;
        if calls == 1 {
            Scripted::json(r#"{"errcode":-1,"errmsg":"system busy"}"#)
        } else {
            token_json("T1")
        }
    });
    let app = app(&rt);
    let started = rt.clock.now_ms();
    let t = block_on(&rt.clock, async { app.api().unwrap().tokens().access_token().await });
    assert_eq!(t.unwrap().access_token, "T1");
    assert_eq!((rt.upstream.count("stable_token"), rt.clock.now_ms() - started), (2, 300));
}

#[test]
fn a_hanging_endpoint_times_out_after_10_seconds() {
    let rt = FakeRuntime::at(NOW);
    rt.upstream.script(|_| Scripted::hang());
    let app = app(&rt);
    let started = rt.clock.now_ms();
    let r = block_on(&rt.clock, async { app.api().unwrap().tokens().access_token().await });
    assert_eq!(r.unwrap_err().cause(), &Error::UpstreamTimeout);
    assert_eq!(rt.clock.now_ms() - started, 10_000);
}

/// After a credential error the endpoint is not asked for 300 s; an operator who fixed the IP
/// whitelist asks once at once (at most every 10 s), and the back-off ends with its success.
#[test]
fn a_refresh_by_hand_ignores_the_back_off_once_every_10_seconds() {
    let rt = FakeRuntime::at(NOW);
    let fixed = Rc::new(std::cell::Cell::new(false));
    let whitelisted = fixed.clone();
    rt.upstream.script(move |_| {
        if whitelisted.get() {
            token_json("T1")
        } else {
            Scripted::json(r#"{"errcode":40164,"errmsg":"invalid ip 1.2.3.4"}"#)
        }
    });
    let app = app(&rt);
    let auth = format!("Bearer {}", kf_core::testkit::ADMIN_TOKEN);
    let call = |method: &str, path: &str| {
        let served = app.request(method, path, Some(&auth), b"");
        (
            served.response.status,
            serde_json::from_slice::<serde_json::Value>(&served.response.body).unwrap(),
            served.response.headers,
        )
    };
    assert_eq!(call("GET", "/api/kf/accounts").0, 502);
    let (status, body, _) = call("GET", "/api/status");
    assert_eq!((status, body["token"]["retry_after"].clone()), (200, serde_json::json!(300)));
    // Still failing: the attempt is made at once and answers what the endpoint said.
    let (status, body, _) = call("POST", "/api/token/refresh");
    assert_eq!(
        (status, body["errcode"].clone(), body["hint"].as_str().unwrap().contains("whitelist")),
        (502, 40164.into(), true)
    );
    assert_eq!(rt.upstream.count("stable_token"), 2);
    // Within 10 s: 429 with Retry-After, the endpoint not asked.
    rt.clock.advance(4_000);
    let (status, body, headers) = call("POST", "/api/token/refresh");
    assert_eq!(
        (status, body["error"].clone(), headers),
        (429, "too_many_requests".into(), vec![("retry-after", "6".to_string())])
    );
    assert_eq!(rt.upstream.count("stable_token"), 2);
    // Fixed: the next attempt succeeds, never showing the token, and the back-off is over.
    fixed.set(true);
    rt.clock.advance(6_000);
    let (status, body, _) = call("POST", "/api/token/refresh");
    assert_eq!(body, serde_json::json!({"ok": true, "expires_in": 7200, "fetched_at": NOW + 10}));
    assert_eq!(status, 200);
    let (_, body, _) = call("GET", "/api/status");
    assert_eq!(
        (body["token"]["cached"].clone(), body["token"]["retry_after"].clone()),
        (true.into(), serde_json::Value::Null)
    );
    assert_eq!(call("GET", "/api/kf/accounts").0, 200, "the API is called again");
    assert_eq!(call("GET", "/api/token/refresh").0, 405);
}

/// The refresh's spacing holds across isolates through the database; without one, or with it
/// failing, each isolate spaces its own.
#[test]
fn a_refresh_by_hand_is_spaced_across_isolates() {
    let rt = FakeRuntime::at(NOW);
    rt.upstream.script(|_| token_json("T1"));
    let auth = format!("Bearer {}", kf_core::testkit::ADMIN_TOKEN);
    let refresh = |app: &TestApp| {
        let served = app.request("POST", "/api/token/refresh", Some(&auth), b"");
        (served.response.status, served.response.headers, app.take_notes())
    };
    let (a, b) = (app(&rt), app(&rt));
    assert_eq!(refresh(&a).0, 200);
    rt.clock.advance(3_000);
    assert_eq!(refresh(&b), (429, vec![("retry-after", "7".to_string())], vec![]), "another isolate, 3 s later");
    assert_eq!(rt.upstream.count("stable_token"), 1);
    rt.clock.advance(7_000);
    assert_eq!(refresh(&b).0, 200, "10 s later");
    // The database failing: the isolate's own spacing, and the log line says so.
    rt.db().set_failing(true);
    rt.clock.advance(10_000);
    let noted = vec!["token refresh spacing: the database failed, this isolate's only".to_string()];
    assert_eq!(refresh(&a), (200, vec![], noted.clone()));
    assert_eq!(refresh(&a), (429, vec![("retry-after", "10".to_string())], noted));
    assert_eq!(rt.upstream.count("stable_token"), 3);
}

/// A back-off in this isolate ends when the cron (in another isolate) stores a good token:
/// the status stops showing it, and calls use the token.
#[test]
fn a_good_token_the_cron_stored_ends_another_isolates_back_off() {
    let rt = FakeRuntime::at(NOW);
    rt.upstream.script(|_| Scripted::json(r#"{"errcode":40164,"errmsg":"invalid ip"}"#));
    let app = app(&rt);
    let auth = format!("Bearer {}", kf_core::testkit::ADMIN_TOKEN);
    assert_eq!(app.request("GET", "/api/kf/accounts", Some(&auth), b"").response.status, 502);
    // Five seconds later the cron, elsewhere, gets a token (the whitelist was fixed).
    rt.clock.advance(5_000);
    seed_token(&rt, "CRON", 0);
    let status: serde_json::Value =
        serde_json::from_slice(&app.request("GET", "/api/status", Some(&auth), b"").response.body).unwrap();
    assert_eq!(status["token"]["retry_after"], serde_json::Value::Null, "{status}");
    assert_eq!(status["token"]["last_error"], serde_json::Value::Null);
    rt.upstream.script(|call| {
        assert!(call.url.contains("access_token=CRON"), "{}", call.url);
        Scripted::json(r#"{"kf_list":[]}"#)
    });
    assert_eq!(app.request("GET", "/api/kf/accounts", Some(&auth), b"").response.status, 200);
}
