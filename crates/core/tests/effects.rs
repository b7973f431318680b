//! After the reply, over the in-memory runtime: notices, alerts, session messages, each once per
//! push and within its rate limit; failures logged and never felt by the reply.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::string_slice)]

use std::cell::RefCell;
use std::rc::Rc;

use kf_core::app::{Isolate, Served};
use kf_core::http::{Body, HttpCall};
use kf_core::runtime::Clock;
use kf_core::testkit::fake::{FakeRuntime, Scripted};
use kf_core::testkit::{config, event_xml, plain_query, text_xml, TestApp, ADMIN_TOKEN, NONCE};
use wechat_mp::xml::parse_fields;

/// 2026-09-28, a Monday, 22:00 at +08:00: outside the hours below.
const MONDAY_22: u64 = 1_790_524_800 + 22 * 3600;
const HOOK: &str = "https://hooks.example.com/wecom?key=SECRET-KEY";
const SEND: &str = "/cgi-bin/message/custom/send";

/// A new isolate of a deployment with an alert webhook.
fn isolate() -> Rc<Isolate> {
    Rc::new(Isolate::new(config(&[("ALERT_WEBHOOK_URL", HOOK)])))
}

fn app_on(rt: &FakeRuntime, isolate: Rc<Isolate>) -> TestApp {
    TestApp::on(rt, isolate)
}

/// WeChat and the webhook, as the tests script them; custom/send answers `send`, the webhook
/// `hook`, getkflist knows one agent.
fn world(rt: &FakeRuntime, send: &'static str, hook: Scripted) {
    let hook = Rc::new(RefCell::new(Some(hook)));
    rt.upstream.script(move |call: &HttpCall| {
        if call.url.contains("stable_token") {
            return Scripted::json(r#"{"access_token":"T","expires_in":7200}"#);
        }
        if call.url.starts_with("https://hooks.example.com/") {
            return hook.borrow_mut().take().unwrap_or_else(|| Scripted::json(r#"{"errcode":0,"errmsg":"ok"}"#));
        }
        if call.url.contains("getkflist") {
            return Scripted::json(r#"{"kf_list":[{"kf_account":"kf2001@gh_1","kf_nick":"小美","kf_id":"2001"}]}"#);
        }
        if call.url.contains("getonlinekflist") {
            return Scripted::json(r#"{"kf_online_list":[]}"#);
        }
        if call.url.contains("getwaitcase") {
            return Scripted::json(r#"{"count":4,"waitcaselist":[{"latest_time":1790603000,"openid":"o9"}]}"#);
        }
        Scripted::json(send)
    });
}

fn put_rules(app: &TestApp, doc: &str) {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let mut served = app.request("PUT", "/api/rules", Some(&auth), doc.as_bytes());
    assert_eq!(served.response.status, 200, "{}", String::from_utf8_lossy(&served.response.body));
    app.finish(&mut served);
}

/// Pushes `xml` as WeChat would; the reply's MsgType (or "success") and the notes of the work
/// after it.
fn push(app: &TestApp, xml: &str) -> (String, Vec<String>, Served) {
    let query = plain_query(app.rt.clock.now(), NONCE);
    let mut served = app.request("POST", &format!("/wechat?{query}"), None, xml.as_bytes());
    assert_eq!(served.response.status, 200);
    let notes = app.finish(&mut served);
    let body = String::from_utf8(served.response.body.clone()).unwrap();
    let kind = if body == "success" { body } else { parse_fields(&body).unwrap().get("MsgType").unwrap().to_string() };
    (kind, notes, served)
}

/// The reply without its `CreateTime` (the time of the answer, which moves on a retry).
fn without_time(served: &Served) -> String {
    let body = String::from_utf8(served.response.body.clone()).unwrap();
    match (body.find("<CreateTime>"), body.find("</CreateTime>")) {
        (Some(a), Some(b)) => format!("{}{}", &body[..a], &body[b..]),
        _ => body,
    }
}

fn sends(rt: &FakeRuntime) -> Vec<serde_json::Value> {
    rt.upstream
        .calls()
        .iter()
        .filter(|c| c.url.contains(SEND))
        .map(|c| match &c.body {
            Body::Json(j) => serde_json::from_slice(j).unwrap(),
            other => panic!("{other:?}"),
        })
        .collect()
}

fn hooks(rt: &FakeRuntime) -> Vec<serde_json::Value> {
    rt.upstream
        .calls()
        .iter()
        .filter(|c| c.url == HOOK)
        .map(|c| match &c.body {
            Body::Json(j) => serde_json::from_slice(j).unwrap(),
            other => panic!("{other:?}"),
        })
        .collect()
}

const NIGHT: &str = r#"{"hours":{"weekly":{"mon":["09:00-18:00"]}},
  "closed":{"action":"transfer_and_notify","text":"您的消息已收到，上班后客服会第一时间回复。","notify_every_secs":3600}}"#;

#[test]
fn a_night_transfer_notifies_the_user_once_however_often_wechat_retries() {
    let rt = FakeRuntime::at(MONDAY_22);
    world(&rt, r#"{"errcode":0,"errmsg":"ok"}"#, Scripted::json("{}"));
    let a = app_on(&rt, isolate());
    put_rules(&a, NIGHT);
    let msg = text_xml("o1", "在吗", MONDAY_22, 1001);
    let (kind, notes, first) = push(&a, &msg);
    assert_eq!(kind, "transfer_customer_service", "the message waits in the queue");
    assert_eq!(notes, ["notice closed sent"]);
    assert_eq!(first.outcome, "transfer text by closed");
    assert_eq!(
        sends(&rt),
        [
            serde_json::json!({"touser":"o1","msgtype":"text","text":{"content":"您的消息已收到，上班后客服会第一时间回复。"}})
        ]
    );

    // WeChat retries the same push twice (no answer in 5 s): the same reply, no second notice.
    for _ in 0..2 {
        rt.clock.advance(5_000);
        let (_, notes, retry) = push(&a, &msg);
        assert_eq!(without_time(&retry), without_time(&first), "the same passive reply");
        assert_eq!(notes, ["effects skipped: already run for this push (a retry)"]);
    }
    // A retry reaching another isolate: the database's row of the push stops it.
    let b = app_on(&rt, isolate());
    let (kind, notes, _) = push(&b, &msg);
    assert_eq!(
        (kind.as_str(), notes.as_slice()),
        ("transfer_customer_service", &["effects skipped: already run for this push (a retry)".to_string()][..])
    );
    assert_eq!(sends(&rt).len(), 1);

    // The user's next message within notify_every_secs: transferred, no notice.
    let (_, notes, _) = push(&a, &text_xml("o1", "有人吗", MONDAY_22 + 60, 1002));
    assert_eq!(notes, ["notice closed skipped: sent to this user within 3600 s"]);
    // Another user gets theirs; the first user again after an hour.
    push(&a, &text_xml("o2", "hello", MONDAY_22 + 60, 1003));
    rt.clock.advance(3601 * 1000);
    let (_, notes, _) = push(&a, &text_xml("o1", "还在吗", MONDAY_22 + 3700, 1004));
    assert_eq!(notes, ["notice closed sent"]);
    assert_eq!(sends(&rt).len(), 3);
}

#[test]
fn a_waiting_alert_goes_to_the_webhook_in_wecom_format_once_per_user_per_every_secs() {
    let rt = FakeRuntime::at(MONDAY_22);
    world(&rt, r#"{"errcode":0,"errmsg":"ok"}"#, Scripted::json(r#"{"errcode":0,"errmsg":"ok"}"#));
    let app = app_on(&rt, isolate());
    put_rules(
        &app,
        r#"{"hours":{"weekly":{"mon":["09:00-18:00"]}},"alerts":{"on":["waiting"],"every_secs":600,"include_text":true}}"#,
    );
    let (kind, notes, _) =
        push(&app, &text_xml("oAlice", "我要退款 **急** <a href=x>[点我](http://evil)</a>\n第二行", MONDAY_22, 1));
    assert_eq!(
        (kind.as_str(), notes.as_slice()),
        ("transfer_customer_service", &["alert waiting sent".to_string()][..])
    );
    let body = &hooks(&rt)[0];
    assert_eq!(body["msgtype"], "markdown");
    let content = body["markdown"]["content"].as_str().unwrap();
    assert!(
        content.starts_with(
            "**有用户在等待客服**\n> 情况：<font color=\"warning\">非工作时间</font>\n> 用户：`oAlice`\n> 消息："
        ),
        "{content}"
    );
    assert!(
        content.contains("我要退款 ＊＊急＊＊ ＜a href=x＞［点我］（http://evil）＜/a＞ 第二行"),
        "user text cannot act as markdown: {content}"
    );
    assert!(content.ends_with("> 时间：2026-09-28 22:00"), "{content}");
    assert!(content.len() <= 4096);
    // Within every_secs, the same user: no second alert; another user: one.
    push(&app, &text_xml("oAlice", "还在吗", MONDAY_22 + 10, 2));
    push(&app, &text_xml("oBob", "hi", MONDAY_22 + 10, 3));
    assert_eq!(hooks(&rt).len(), 2);
}

#[test]
fn a_json_alert_names_the_event_and_quotes_text_only_when_asked() {
    let rt = FakeRuntime::at(MONDAY_22);
    world(&rt, r#"{"errcode":0,"errmsg":"ok"}"#, Scripted::json("{}"));
    let app = app_on(&rt, isolate());
    put_rules(&app, r#"{"no_agent":{"action":"transfer"},"alerts":{"on":["waiting"],"format":"json"}}"#);
    let (kind, notes, served) = push(&app, &text_xml("oCarol", "SECRET ORDER 42", MONDAY_22, 1));
    assert_eq!(kind, "transfer_customer_service");
    assert_eq!(served.outcome, "transfer text by no_agent", "nobody online (the mock's list is empty)");
    assert_eq!(notes, ["alert waiting sent"]);
    assert_eq!(
        hooks(&rt)[0],
        serde_json::json!({"event":"waiting","appid":"wx5823bf96d3bd56c7","at":MONDAY_22,"situation":"no_agent","openid":"oCarol"})
    );
    assert!(!notes.concat().contains("SECRET"), "no message text in the log");
}

#[test]
fn a_failing_webhook_is_retried_once_then_dropped_and_the_reply_never_waits_on_it() {
    let rt = FakeRuntime::at(MONDAY_22);
    world(&rt, r#"{"errcode":0,"errmsg":"ok"}"#, Scripted::json("{}"));
    let app = app_on(&rt, isolate());
    put_rules(&app, r#"{"hours":{"weekly":{}},"alerts":{"on":["waiting"]}}"#);
    // A 500, then a WeCom answer refusing the message.
    let hook_calls = Rc::new(RefCell::new(0));
    let h = hook_calls.clone();
    rt.upstream.script(move |call: &HttpCall| {
        if call.url == HOOK {
            *h.borrow_mut() += 1;
            return if *h.borrow() == 1 {
                Scripted::answer(500, "down")
            } else {
                Scripted::json(r#"{"errcode":93000,"errmsg":"invalid webhook url"}"#)
            };
        }
        Scripted::json(r#"{"access_token":"T","expires_in":7200}"#)
    });
    let query = plain_query(MONDAY_22, NONCE);
    let mut served =
        app.request("POST", &format!("/wechat?{query}"), None, text_xml("o1", "hi", MONDAY_22, 1).as_bytes());
    assert_eq!(served.response.status, 200);
    assert!(served.background.is_some(), "the alert runs after the reply");
    assert_eq!(*hook_calls.borrow(), 0, "nothing was posted before the reply");
    let notes = app.finish(&mut served);
    assert_eq!(notes, ["alert waiting dropped after a retry: webhook answered errcode 93000"]);
    assert_eq!(*hook_calls.borrow(), 2);
}

#[test]
fn a_notice_answered_45015_or_45047_is_logged_and_not_retried() {
    for (errcode, what) in [(45015, "response out of time limit"), (45047, "out of response count limit")] {
        let rt = FakeRuntime::at(MONDAY_22);
        let answer: &'static str = Box::leak(format!(r#"{{"errcode":{errcode},"errmsg":"{what}"}}"#).into_boxed_str());
        world(&rt, answer, Scripted::json("{}"));
        let app = app_on(&rt, isolate());
        put_rules(&app, NIGHT);
        let (kind, notes, _) = push(&app, &text_xml("o1", "hi", MONDAY_22, 1));
        assert_eq!(kind, "transfer_customer_service");
        assert_eq!(notes, [format!("notice closed failed: wechat_error: errcode {errcode}")]);
        assert_eq!(sends(&rt).len(), 1, "not retried");
    }
}

#[test]
fn an_agent_greets_with_their_nickname_and_says_goodbye() {
    let rt = FakeRuntime::at(MONDAY_22);
    world(&rt, r#"{"errcode":0,"errmsg":"ok"}"#, Scripted::json("{}"));
    let app = app_on(&rt, isolate());
    put_rules(
        &app,
        r#"{"sessions":{"greeting":"您好，我是客服{nickname}，很高兴为您服务。","farewell":"感谢您的咨询，{nickname}祝您生活愉快！"}}"#,
    );
    let (kind, notes, _) = push(
        &app,
        &event_xml("oDan", "kf_create_session", "<KfAccount><![CDATA[kf2001@gh_1]]></KfAccount>", MONDAY_22),
    );
    assert_eq!((kind.as_str(), notes.as_slice()), ("success", &["greeting sent".to_string()][..]));
    let (_, notes, _) = push(
        &app,
        &event_xml("oDan", "kf_close_session", "<KfAccount><![CDATA[kf2001@gh_1]]></KfAccount>", MONDAY_22 + 1),
    );
    assert_eq!(notes, ["farewell sent"]);
    // An agent getkflist does not know: the account's prefix.
    push(&app, &event_xml("oEve", "kf_create_session", "<KfAccount><![CDATA[kf9@gh_1]]></KfAccount>", MONDAY_22 + 2));
    assert_eq!(
        sends(&rt),
        [
            serde_json::json!({"touser":"oDan","msgtype":"text","text":{"content":"您好，我是客服小美，很高兴为您服务。"},"customservice":{"kf_account":"kf2001@gh_1"}}),
            serde_json::json!({"touser":"oDan","msgtype":"text","text":{"content":"感谢您的咨询，小美祝您生活愉快！"},"customservice":{"kf_account":"kf2001@gh_1"}}),
            serde_json::json!({"touser":"oEve","msgtype":"text","text":{"content":"您好，我是客服kf9，很高兴为您服务。"},"customservice":{"kf_account":"kf9@gh_1"}}),
        ]
    );
    assert_eq!(rt.upstream.count("getkflist"), 1, "nicknames kept 10 minutes");
    assert_eq!(rt.db().rows("SELECT name FROM cache")[0]["name"], "kf_list", "shared with other isolates");
}

#[test]
fn the_cron_alerts_a_long_queue_once_per_every_secs() {
    let rt = FakeRuntime::at(MONDAY_22);
    world(&rt, r#"{"errcode":0,"errmsg":"ok"}"#, Scripted::json(r#"{"errcode":0,"errmsg":"ok"}"#));
    let app = app_on(&rt, isolate());
    put_rules(&app, r#"{"alerts":{"on":["queue"],"queue_threshold":3,"wait_secs":600,"every_secs":900}}"#);
    assert_eq!(app.scheduled().1, ["alert queue sent"]);
    let content = hooks(&rt)[0]["markdown"]["content"].as_str().unwrap().to_string();
    assert!(
        content.starts_with("**客服排队提醒**\n> 等待接入：<font color=\"warning\">4</font> 人\n> 最久已等待："),
        "{content}"
    );
    rt.clock.advance(300_000);
    assert_eq!(app.scheduled().1, ["alert queue skipped: sent within 900 s"]);
    rt.clock.advance(601_000);
    assert_eq!(app.scheduled().1, ["alert queue sent"]);
}

#[test]
fn a_credential_failure_is_alerted_at_most_once_an_hour() {
    let rt = FakeRuntime::at(MONDAY_22);
    let app = app_on(&rt, isolate());
    world(&rt, r#"{"errcode":0,"errmsg":"ok"}"#, Scripted::json("{}"));
    put_rules(&app, r#"{"alerts":{"on":["credentials"],"format":"json"}}"#);
    rt.upstream.script(|call: &HttpCall| {
        if call.url == HOOK {
            return Scripted::json("{}");
        }
        Scripted::json(r#"{"errcode":40164,"errmsg":"invalid ip 1.2.3.4, not in whitelist"}"#)
    });
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let mut served = app.request("GET", "/api/kf/accounts", Some(&auth), b"");
    assert_eq!(served.response.status, 502);
    assert_eq!(app.finish(&mut served), ["alert credentials sent"]);
    let alert = &hooks(&rt)[0];
    assert_eq!((alert["event"].as_str(), alert["errcode"].as_i64()), (Some("credentials"), Some(40164)));
    assert!(alert["hint"].as_str().unwrap().contains("whitelist"));
    // The back-off (300 s) over, the next failure within the hour is not alerted again.
    rt.clock.advance(301_000);
    let mut served = app.request("GET", "/api/kf/accounts", Some(&auth), b"");
    app.finish(&mut served);
    assert_eq!(hooks(&rt).len(), 1);
}

#[test]
fn effects_and_rate_limits_hold_in_the_isolate_when_the_database_fails() {
    let rt = FakeRuntime::at(MONDAY_22);
    world(&rt, r#"{"errcode":0,"errmsg":"ok"}"#, Scripted::json("{}"));
    let app = app_on(&rt, isolate());
    put_rules(&app, NIGHT);
    push(&app, &text_xml("o0", "warm the token", MONDAY_22, 1));
    // D1 refuses everything from here on.
    rt.db().set_failing(true);
    let msg = text_xml("o1", "在吗", MONDAY_22, 2);
    let (_, notes, _) = push(&app, &msg);
    assert_eq!(
        notes,
        [
            "ledger: the database failed, the push is not recorded",
            "rate limit: the database failed, held by this isolate only",
            "notice closed sent"
        ]
    );
    // A retry in the same isolate: its memory of the push holds.
    let (_, notes, _) = push(&app, &msg);
    assert_eq!(
        notes,
        [
            "ledger: the database failed, the push is not recorded",
            "effects skipped: already run for this push (a retry)"
        ]
    );
    let (_, notes, _) = push(&app, &text_xml("o1", "有人吗", MONDAY_22 + 60, 3));
    assert_eq!(
        notes,
        [
            "ledger: the database failed, the push is not recorded",
            "notice closed skipped: sent to this user within 3600 s"
        ]
    );
    assert_eq!(sends(&rt).len(), 2, "o0's notice and o1's: one each");
}

/// Ten agents take sessions at once in one isolate: one `getkflist` for all their greetings.
#[test]
fn sessions_starting_at_once_look_the_agents_up_once() {
    let rt = FakeRuntime::at(MONDAY_22);
    rt.upstream.script(|call: &HttpCall| {
        if call.url.contains("stable_token") {
            return Scripted::json(r#"{"access_token":"T","expires_in":7200}"#);
        }
        if call.url.contains("getkflist") {
            // Slow enough that every session's greeting needs the list while it is asked for.
            return Scripted::json(r#"{"kf_list":[{"kf_account":"kf2001@gh_1","kf_nick":"小美"}]}"#).after(200);
        }
        Scripted::json(r#"{"errcode":0,"errmsg":"ok"}"#)
    });
    let app = app_on(&rt, isolate());
    put_rules(&app, r#"{"sessions":{"greeting":"您好，我是{nickname}"}}"#);
    let query = plain_query(MONDAY_22, NONCE);
    let requests = (0..10)
        .map(|i| {
            let xml = event_xml(
                &format!("o{i}"),
                "kf_create_session",
                "<KfAccount><![CDATA[kf2001@gh_1]]></KfAccount>",
                MONDAY_22,
            );
            kf_core::testkit::request("POST", &format!("/wechat?{query}"), None, xml.as_bytes())
        })
        .collect();
    let served = app.concurrently(requests);
    assert!(served.iter().all(|s| s.response.status == 200));
    assert_eq!(rt.upstream.count("getkflist"), 1);
    let greetings = rt.upstream.calls().iter().filter(|c| c.url.contains("custom/send")).count();
    assert_eq!(greetings, 10);
    assert!(rt.upstream.calls().iter().filter(|c| c.url.contains("custom/send")).all(|c| match &c.body {
        Body::Json(b) => String::from_utf8_lossy(b).contains("我是小美"),
        _ => false,
    }));
}
