//! The front desk end to end over the in-memory runtime: the rules API, the rules' cache, and
//! each behaviour on real pushes (plain and safe mode).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::rc::Rc;

use kf_core::app::Isolate;
use kf_core::desk::rules::{Capabilities, DEFAULTS_JSON};
use kf_core::desk::{Desk, Loaded};
use kf_core::notes::Notes;
use kf_core::runtime::Clock as _;
use kf_core::testkit::fake::{block_on, run, FakeRuntime, Scripted, Task};
use kf_core::testkit::{config, crypto, fixture_str, plain_query, safe_push, TestApp, ADMIN_TOKEN, APPID, NONCE};
use wechat_mp::reply::TextReply;
use wechat_mp::xml::parse_fields;

/// 2026-09-28, a Monday, 10:00 at +08:00.
const MONDAY_10: u64 = 1_790_524_800 + 10 * 3600;

/// A request context on `isolate`, or on a new isolate configured with `vars` when `isolate`
/// is none.
fn app_on(rt: &FakeRuntime, isolate: Option<Rc<Isolate>>, vars: &[(&str, &str)]) -> TestApp {
    TestApp::on(rt, isolate.unwrap_or_else(|| Rc::new(Isolate::new(config(vars)))))
}

fn rules(app: &TestApp, method: &str, body: &str) -> (u16, serde_json::Value) {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let served = app.request(method, "/api/rules", Some(&auth), body.as_bytes());
    (served.response.status, serde_json::from_slice(&served.response.body).unwrap())
}

/// A text push from `openid` saying `content`, at the clock's time; the reply's MsgType and
/// Content (decrypted in safe mode), and the log outcome.
fn next_msg_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

fn say(app: &TestApp, openid: &str, content: &str, safe: bool) -> (String, Option<String>, String) {
    let now = app.rt.clock.now_secs();
    let xml = fixture_str("messages/text.xml")
        .replace("oyORnuP8q7ou2gfYjqLzSIWZf0rs", openid)
        .replace("<![CDATA[你好，我想咨询一下订单 #1024 的物流]]>", &format!("<![CDATA[{content}]]>"))
        .replace("<CreateTime>1700000000</CreateTime>", &format!("<CreateTime>{now}</CreateTime>"))
        // Each message its own MsgId, as WeChat numbers them (a push's key includes it).
        .replace("<MsgId>23456789012345678</MsgId>", &format!("<MsgId>{}</MsgId>", next_msg_id()));
    assert!(xml.contains(content), "the fixture's text was replaced");
    let (query, body) =
        if safe { safe_push(&crypto(), &xml, now, NONCE, false) } else { (plain_query(now, NONCE), xml) };
    let served = app.request("POST", &format!("/wechat?{query}"), None, body.as_bytes());
    assert_eq!(served.response.status, 200, "{}", String::from_utf8_lossy(&served.response.body));
    if let Some(work) = served.background {
        run(&app.rt.clock, vec![work as Task<'_, ()>]);
    }
    let mut reply = String::from_utf8(served.response.body).unwrap();
    if safe && reply != "success" {
        let envelope = parse_fields(&reply).unwrap();
        reply = crypto().decrypt(envelope.get("Encrypt").unwrap()).unwrap();
    }
    if reply == "success" {
        return ("success".into(), None, served.outcome);
    }
    let f = parse_fields(&reply).unwrap();
    (f.get("MsgType").unwrap().to_string(), f.get("Content").map(str::to_string), served.outcome)
}

trait NowSecs {
    fn now_secs(&self) -> u64;
}

impl NowSecs for kf_core::testkit::fake::ManualClock {
    fn now_secs(&self) -> u64 {
        kf_core::runtime::Clock::now(self)
    }
}

fn wechat_with_online(rt: &FakeRuntime, online: &'static str) {
    rt.upstream.script(move |call| {
        if call.url.contains("stable_token") {
            Scripted::json(r#"{"access_token":"T","expires_in":7200}"#)
        } else {
            Scripted::json(online)
        }
    });
}

#[test]
fn the_rules_api_stores_serves_and_deletes_the_document() {
    let rt = FakeRuntime::at(MONDAY_10);
    let app = app_on(&rt, None, &[]);
    let (status, body) = rules(&app, "GET", "");
    assert_eq!(status, 200);
    assert_eq!(body["stored"], false);
    assert_eq!(body["rules"], serde_json::from_str::<serde_json::Value>(DEFAULTS_JSON).unwrap());

    let doc = r#"{ "welcome": "欢迎",  "keywords": [{"match":"exact","words":["Hi"],"reply":"hello"}] }"#;
    let (status, body) = rules(&app, "PUT", doc);
    assert_eq!((status, body["stored"].clone()), (200, true.into()));
    assert_eq!(
        body["rules"],
        serde_json::json!({"welcome":"欢迎","keywords":[{"match":"exact","words":["Hi"],"reply":"hello"}]})
    );
    assert_eq!(
        rt.store.peek("rules:wx5823bf96d3bd56c7").as_deref(),
        Some(r#"{"welcome":"欢迎","keywords":[{"match":"exact","words":["Hi"],"reply":"hello"}]}"#),
        "stored compact, in the order given"
    );
    assert_eq!(rules(&app, "GET", "").1["stored"], true);

    // A bad document changes nothing and names its field.
    let (status, body) = rules(&app, "PUT", r#"{"hours":{"weekly":{"mon":["09:00-12:00","11:00-13:00"]}}}"#);
    assert_eq!(status, 400);
    assert_eq!(
        body,
        serde_json::json!({"error":"invalid_request","field":"hours.weekly.mon[1]","message":"overlaps another range of the same day"})
    );
    assert_eq!(rules(&app, "GET", "").1["rules"]["welcome"], "欢迎");

    let (status, body) = rules(&app, "DELETE", "");
    assert_eq!((status, body["stored"].clone()), (200, false.into()));
    assert_eq!(rt.store.peek("rules:wx5823bf96d3bd56c7"), None);
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let patch = app.request("PATCH", "/api/rules", Some(&auth), b"{}");
    assert_eq!(
        (patch.response.status, patch.response.headers.clone()),
        (405, vec![("allow", "GET, PUT, DELETE".to_string())])
    );
}

#[test]
fn a_no_agent_rule_is_refused_without_the_wechat_api() {
    let rt = FakeRuntime::at(MONDAY_10);
    let app = app_on(&rt, None, &[("WECHAT_APPSECRET", "")]);
    let (status, body) = rules(&app, "PUT", r#"{"no_agent":{"action":"reply","text":"nobody"}}"#);
    assert_eq!((status, body["field"].clone()), (400, "no_agent".into()));
    assert_eq!(rt.store.stats().writes, 0);
}

#[test]
fn isolates_read_the_rules_at_most_every_30_seconds_and_the_writer_uses_them_at_once() {
    let rt = FakeRuntime::at(MONDAY_10);
    let writer = app_on(&rt, None, &[]);
    let reader_isolate = Rc::new(Isolate::new(config(&[])));
    let reader = || app_on(&rt, Some(reader_isolate.clone()), &[]);
    // The reader has read the defaults once.
    assert_eq!(say(&reader(), "o1", "hours", false).0, "transfer_customer_service");
    let reads = rt.store.stats().reads;
    rules(&writer, "PUT", r#"{"keywords":[{"words":["hours"],"reply":"9-18"}]}"#);
    assert_eq!(say(&writer, "o1", "hours", false).1.as_deref(), Some("9-18"), "the isolate that took the PUT");
    assert_eq!(say(&reader(), "o1", "hours", false).0, "transfer_customer_service", "another isolate, within 30 s");
    assert_eq!(rt.store.stats().reads, reads, "no store read per message");
    rt.clock.advance(30_000);
    assert_eq!(say(&reader(), "o1", "hours", false).1.as_deref(), Some("9-18"), "after 30 s");
    assert_eq!(rt.store.stats().reads, reads + 1);
}

#[test]
fn welcome_keywords_and_the_default_transfer() {
    for safe in [false, true] {
        let rt = FakeRuntime::at(MONDAY_10);
        let app = app_on(&rt, None, &[]);
        rules(
            &app,
            "PUT",
            r#"{"welcome":"感谢关注！","keywords":[{"match":"exact","words":["营业时间","Hours"],"reply":"周一至周五 9:00-18:00"},{"match":"contains","words":["发票"],"reply":"开票 <a href=\"x\">]]>"}]}"#,
        );
        assert_eq!(
            say(&app, "o1", " HOURS ", safe),
            (
                "text".into(),
                Some("周一至周五 9:00-18:00".into()),
                format!("reply text{} by keyword", if safe { " encrypted" } else { "" })
            )
        );
        assert_eq!(say(&app, "o1", "我要发票", safe).1.as_deref(), Some("开票 <a href=\"x\">]]>"));
        assert_eq!(say(&app, "o1", "营业时间是？", safe).0, "transfer_customer_service");
        // The welcome, on a follow (with or without a QR scene).
        for event in ["subscribe", "subscribe_qrscene"] {
            let now = rt.clock.now_secs();
            let xml = fixture_str(&format!("events/{event}.xml"));
            let (query, body) =
                if safe { safe_push(&crypto(), &xml, now, NONCE, false) } else { (plain_query(now, NONCE), xml) };
            let served = app.request("POST", &format!("/wechat?{query}"), None, body.as_bytes());
            let mut reply = String::from_utf8(served.response.body).unwrap();
            if safe {
                reply = crypto().decrypt(parse_fields(&reply).unwrap().get("Encrypt").unwrap()).unwrap();
            }
            let r = TextReply::parse(&reply).unwrap();
            assert_eq!(
                (r.content.as_str(), r.to_user_name.as_str()),
                ("感谢关注！", "oyORnuP8q7ou2gfYjqLzSIWZf0rs"),
                "{event}"
            );
        }
    }
}

#[test]
fn the_transfer_gate_remembers_a_request_across_isolates() {
    let rt = FakeRuntime::at(MONDAY_10);
    let a = app_on(&rt, None, &[]);
    rules(
        &a,
        "PUT",
        r#"{"transfer":{"mode":"on_request","request_words":["人工"],"remember_secs":1800,"prompt":"回复“人工”联系客服。"}}"#,
    );
    assert_eq!(
        say(&a, "o1", "你好", false),
        ("text".into(), Some("回复“人工”联系客服。".into()), "reply text by prompt".into())
    );
    assert_eq!(say(&a, "o1", "转人工", false).0, "transfer_customer_service");
    let remembered = rt.db().rows("SELECT openid, until FROM requests");
    assert_eq!(
        (remembered[0]["openid"].as_str(), remembered[0]["until"].as_u64()),
        (Some("o1"), Some(MONDAY_10 + 1800))
    );
    // Another isolate (its own memory) transfers the user's next messages: the database says so.
    let b = app_on(&rt, None, &[]);
    assert_eq!(say(&b, "o1", "我的订单", false).0, "transfer_customer_service");
    assert_eq!(say(&b, "o2", "我的订单", false).0, "text", "another user did not ask");
    rt.clock.advance(1801 * 1000);
    assert_eq!(say(&b, "o1", "还在吗", false).0, "text", "forgotten after remember_secs");
}

#[test]
fn office_hours_and_the_closed_reply() {
    let rt = FakeRuntime::at(MONDAY_10);
    let app = app_on(&rt, None, &[]);
    rules(
        &app,
        "PUT",
        r#"{"hours":{"weekly":{"mon":["09:00-12:00"]},"closed_dates":["2026-10-05"]},"closed":{"action":"reply","text":"下班了"}}"#,
    );
    assert_eq!(say(&app, "o1", "hi", false).0, "transfer_customer_service");
    rt.clock.advance(2 * 3600 * 1000);
    assert_eq!(say(&app, "o1", "hi", false), ("text".into(), Some("下班了".into()), "reply text by closed".into()));
    // The next Monday is a closed date.
    rt.clock.advance((7 * 24 - 2) * 3600 * 1000);
    assert_eq!(say(&app, "o1", "hi", false).1.as_deref(), Some("下班了"));
}

#[test]
fn a_retried_push_gets_the_same_reply_across_a_closing_time() {
    // 11:59:55 on a Monday that closes at 12:00.
    let t = MONDAY_10 + 2 * 3600 - 5;
    let rt = FakeRuntime::at(t);
    let app = app_on(&rt, None, &[]);
    rules(&app, "PUT", r#"{"hours":{"weekly":{"mon":["09:00-12:00"]}},"closed":{"action":"reply","text":"下班了"}}"#);
    let xml = kf_core::testkit::text_xml("o1", "在吗", t, 42);
    let deliver = || {
        let served =
            app.request("POST", &format!("/wechat?{}", plain_query(rt.clock.now_secs(), NONCE)), None, xml.as_bytes());
        String::from_utf8(served.response.body).unwrap()
    };
    let first = deliver();
    assert!(first.contains("transfer_customer_service"), "{first}");
    // WeChat's retry 10 s later, after closing time: decided for the message's CreateTime.
    rt.clock.advance(10_000);
    assert!(deliver().contains("transfer_customer_service"));
    // A new message after closing time is closed.
    let later = kf_core::testkit::text_xml("o1", "在吗", t + 10, 43);
    let served =
        app.request("POST", &format!("/wechat?{}", plain_query(rt.clock.now_secs(), NONCE)), None, later.as_bytes());
    assert!(String::from_utf8(served.response.body).unwrap().contains("下班了"));
}

#[test]
fn the_no_agent_reply_uses_the_online_list_and_assumes_agents_when_it_fails() {
    let doc = r#"{"no_agent":{"action":"reply","text":"客服暂时都不在线"}}"#;
    let rt = FakeRuntime::at(MONDAY_10);
    wechat_with_online(&rt, r#"{"kf_online_list":[]}"#);
    let app = app_on(&rt, None, &[]);
    rules(&app, "PUT", doc);
    assert_eq!(
        say(&app, "o1", "hi", false),
        ("text".into(), Some("客服暂时都不在线".into()), "reply text by no_agent".into())
    );
    rt.clock.advance(31_000);
    wechat_with_online(&rt, r#"{"kf_online_list":[{"kf_account":"a@gh","status":1,"accepted_case":0}]}"#);
    assert_eq!(say(&app, "o1", "hi", false).0, "transfer_customer_service");

    // The list failing or hanging: transfer, within the lookup's budget.
    for failure in [Scripted::answer(500, "oops"), Scripted::hang()] {
        let rt = FakeRuntime::at(MONDAY_10);
        let app = app_on(&rt, None, &[]);
        rules(&app, "PUT", doc);
        let failing = Rc::new(failure);
        let f = failing.clone();
        rt.upstream.script(move |call| {
            if call.url.contains("stable_token") {
                Scripted::json(r#"{"access_token":"T","expires_in":7200}"#)
            } else {
                Scripted { delay_ms: f.delay_ms, result: f.result.clone() }
            }
        });
        let started = rt.clock.now_secs();
        assert_eq!(say(&app, "o1", "hi", false).0, "transfer_customer_service");
        assert!(rt.clock.now_secs() - started <= 12, "bounded by the budget and the exchange timeout");
    }
}

#[test]
fn a_store_failure_never_fails_a_reply() {
    let rt = FakeRuntime::at(MONDAY_10);
    let app = app_on(&rt, None, &[]);
    rules(&app, "PUT", r#"{"keywords":[{"words":["hours"],"reply":"9-18"}]}"#);
    rt.store.set_failing(true);
    rt.clock.advance(31_000);
    let (kind, text, _) = say(&app, "o1", "hours", false);
    assert_eq!((kind.as_str(), text.as_deref()), ("text", Some("9-18")), "the isolate's last copy");
    let fresh = app_on(&rt, None, &[]);
    assert_eq!(say(&fresh, "o1", "hours", false).0, "transfer_customer_service", "no copy: the defaults");
    // A failing store is asked again after 30 s, not on every push.
    let reads = rt.store.stats().reads;
    for _ in 0..3 {
        say(&app, "o1", "hours", false);
        say(&fresh, "o1", "hours", false);
    }
    assert_eq!(rt.store.stats().reads, reads);
    rt.clock.advance(30_000);
    say(&app, "o1", "hours", false);
    assert_eq!(rt.store.stats().reads, reads + 1);
}

#[test]
fn a_read_that_lands_after_this_isolates_write_does_not_undo_it() {
    let rt = FakeRuntime::at(MONDAY_10);
    let app = app_on(&rt, None, &[]);
    let desk = Desk { rt: &rt, state: &app.isolate.account.desk, notes: &Notes::default(), account: APPID };
    // A read that starts before the PUT (it sees no document) completes after it.
    rt.store.set_read_delay(500);
    let read = Box::pin(desk.current_rules());
    let write = Box::pin(async {
        rt.clock.sleep(100).await;
        desk.put_rules(br#"{"keywords":[{"words":["hours"],"reply":"9-18"}]}"#, Capabilities::ALL).await.unwrap()
    });
    let (read, write) = (read as Task<'_, Rc<Loaded>>, write as Task<'_, Rc<Loaded>>);
    let done = run(&rt.clock, vec![read, write]);
    let (kept, written) = (&done[0], &done[1]);
    assert!(written.stored && kept.stored, "the isolate keeps what it wrote");
    rt.store.set_read_delay(0);
    assert_eq!(say(&app, "o1", "hours", false).1.as_deref(), Some("9-18"));
    // 30 s on, reads count again.
    rt.clock.advance(30_000);
    rt.store.seed("rules:wx5823bf96d3bd56c7", r#"{"welcome":"hi"}"#, 3600);
    assert!(block_on(&rt.clock, desk.current_rules()).document.rules.keywords.is_empty());
}

/// A store and a database whose reads take 7 s (a stalled KV, a stalled D1): every read on the
/// reply path gives up after 1 s, the documented fallback answers, and the log line says so.
#[test]
fn a_stalled_store_never_holds_a_reply_past_one_second() {
    let rt = FakeRuntime::at(MONDAY_10);
    let app = app_on(&rt, None, &[]);
    rt.store.set_read_delay(7_000);
    // An isolate's first push: the rules' read gives up, the defaults answer.
    let started = rt.clock.now_ms();
    let (kind, _, _) = say(&app, "o1", "你好", false);
    assert_eq!((kind.as_str(), rt.clock.now_ms() - started), ("transfer_customer_service", 1_000));
    assert_eq!(app.take_notes(), ["rules read over 1000 ms: using the defaults"]);

    // With the 转人工 gate, a user this isolate does not remember: the database's read gives
    // up, the user is taken as not having asked, and gets the prompt.
    rt.store.set_read_delay(0);
    rules(&app, "PUT", r#"{"transfer":{"mode":"on_request","request_words":["人工"],"prompt":"回复人工"}}"#);
    rt.db().set_delay(7_000);
    let started = rt.clock.now_ms();
    let query = plain_query(rt.clock.now_secs(), NONCE);
    let served = app.request("POST", &format!("/wechat?{query}"), None, fixture_str("messages/text.xml").as_bytes());
    assert_eq!((served.outcome.as_str(), rt.clock.now_ms() - started), ("reply text by prompt", 1_000));
    assert_eq!(app.take_notes(), ["transfer request read over 1000 ms: taken as not asked"]);
}
