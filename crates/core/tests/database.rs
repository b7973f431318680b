//! The database over real SQLite running the project's migrations (the same statements D1
//! runs): a push recorded once however many isolates it reaches, limits taken by one request,
//! the ledger's timeline and retention, what each kind of push writes, every statement on an
//! index, and a database that fails or is missing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::string_slice)]

use std::rc::Rc;

use kf_core::app::{Isolate, Served};
use kf_core::database::STATEMENTS;
use kf_core::runtime::Clock;
use kf_core::testkit::fake::{FakeRuntime, Scripted};
use kf_core::testkit::{config, event_xml, plain_query, request, text_xml, TestApp, ADMIN_TOKEN, APPID, NONCE};

/// 2026-09-28, a Monday, 22:00 at +08:00: outside the hours below.
const MONDAY_22: u64 = 1_790_524_800 + 22 * 3600;
const HOOK: &str = "https://hooks.example.com/wecom?key=SECRET-KEY";
const SEND: &str = "/cgi-bin/message/custom/send";

const NIGHT: &str = r#"{"hours":{"weekly":{"mon":["09:00-18:00"]}},
  "closed":{"action":"transfer_and_notify","text":"您的消息已收到。","notify_every_secs":3600},
  "alerts":{"on":["waiting"],"every_secs":600},
  "sessions":{"greeting":"您好，我是{nickname}。"}}"#;

fn isolate() -> Rc<Isolate> {
    Rc::new(Isolate::new(config(&[("ALERT_WEBHOOK_URL", HOOK)])))
}

/// WeChat and the webhook answering everything well.
fn world(rt: &FakeRuntime) {
    rt.upstream.script_behind_token(|call| {
        if call.url.contains("getkflist") {
            return Scripted::json(r#"{"kf_list":[{"kf_account":"kf2001@gh_1","kf_nick":"小美"}]}"#);
        }
        Scripted::json(r#"{"errcode":0,"errmsg":"ok"}"#)
    });
}

fn auth() -> String {
    format!("Bearer {ADMIN_TOKEN}")
}

fn put_rules(app: &TestApp, doc: &str) {
    let mut served = app.request("PUT", "/api/rules", Some(&auth()), doc.as_bytes());
    assert_eq!(served.response.status, 200, "{}", String::from_utf8_lossy(&served.response.body));
    app.finish(&mut served);
}

fn push_request(app: &TestApp, xml: &str) -> kf_core::app::Request {
    let query = plain_query(app.rt.clock.now(), NONCE);
    request("POST", &format!("/wechat?{query}"), None, xml.as_bytes())
}

/// A push and the work after its reply; the notes.
fn push(app: &TestApp, xml: &str) -> Vec<String> {
    let query = plain_query(app.rt.clock.now(), NONCE);
    let mut served = app.request("POST", &format!("/wechat?{query}"), None, xml.as_bytes());
    assert_eq!(served.response.status, 200);
    app.finish(&mut served)
}

fn count(rt: &FakeRuntime, path: &str) -> usize {
    rt.upstream.calls().iter().filter(|c| c.url.contains(path)).count()
}

fn ledger(app: &TestApp, query: &str) -> Served {
    app.request("GET", &format!("/api/ledger?{query}"), Some(&auth()), b"")
}

fn json(served: &Served) -> serde_json::Value {
    serde_json::from_slice(&served.response.body).unwrap()
}

#[test]
fn one_push_delivered_to_two_isolates_at_once_runs_its_effects_once() {
    let rt = FakeRuntime::at(MONDAY_22);
    world(&rt);
    let (a, b) = (TestApp::on(&rt, isolate()), TestApp::on(&rt, isolate()));
    put_rules(&a, NIGHT);
    rt.clock.advance(31_000); // b reads the rules afresh
    let msg = text_xml("o1", "在吗", MONDAY_22, 1001);
    // 50 deliveries through each isolate, all at once: neither isolate's memory can be what
    // deduplicates, the database's row does.
    let served_a = a.concurrently((0..50).map(|_| push_request(&a, &msg)).collect());
    let served_b = b.concurrently((0..50).map(|_| push_request(&b, &msg)).collect());
    assert!(served_a.iter().chain(&served_b).all(|s| s.response.status == 200));
    assert_eq!(count(&rt, SEND), 1, "one notice");
    assert_eq!(rt.upstream.calls().iter().filter(|c| c.url == HOOK).count(), 1, "one alert");
    let rows = rt.db().rows("SELECT entry, what, outcome FROM ledger ORDER BY id");
    let rows: Vec<String> = rows.iter().map(|r| format!("{} {} {}", r["entry"], r["what"], r["outcome"])).collect();
    assert_eq!(
        rows,
        [r#""push" "text" "transfer""#, r#""effect" "notice_closed" "sent""#, r#""effect" "alert_waiting" "sent""#]
    );

    // A session event: one greeting however it is delivered.
    let open = event_xml("o2", "kf_create_session", "<KfAccount><![CDATA[kf2001@gh_1]]></KfAccount>", MONDAY_22 + 60);
    a.concurrently((0..10).map(|_| push_request(&a, &open)).collect());
    b.concurrently((0..10).map(|_| push_request(&b, &open)).collect());
    assert_eq!(count(&rt, SEND), 2, "one greeting");
}

#[test]
fn ten_messages_of_one_user_at_once_get_one_notice_and_one_alert() {
    let rt = FakeRuntime::at(MONDAY_22);
    world(&rt);
    let (a, b) = (TestApp::on(&rt, isolate()), TestApp::on(&rt, isolate()));
    put_rules(&a, NIGHT);
    rt.clock.advance(31_000);
    let messages = |app: &TestApp, first: u64| -> Vec<kf_core::app::Request> {
        (first..first + 5).map(|id| push_request(app, &text_xml("o1", "在吗", MONDAY_22 + 31, id))).collect()
    };
    a.concurrently(messages(&a, 1));
    b.concurrently(messages(&b, 6));
    assert_eq!(count(&rt, SEND), 1, "one notice");
    assert_eq!(rt.upstream.calls().iter().filter(|c| c.url == HOOK).count(), 1, "one alert");
    let skipped = rt.db().rows("SELECT count(*) AS n FROM ledger WHERE entry = 'effect' AND outcome = 'skipped'");
    assert_eq!(skipped[0]["n"], 18, "9 notices and 9 alerts skipped, each recorded");
}

#[test]
fn a_request_for_a_human_is_known_to_every_isolate() {
    let rt = FakeRuntime::at(MONDAY_22);
    world(&rt);
    let (a, b) = (TestApp::on(&rt, isolate()), TestApp::on(&rt, isolate()));
    put_rules(&a, r#"{"transfer":{"mode":"on_request","request_words":["人工"],"prompt":"回复人工"}}"#);
    rt.clock.advance(31_000);
    assert_eq!(push(&a, &text_xml("o1", "转人工", MONDAY_22 + 31, 1)), ["transfer request remembered"]);
    // Another isolate reads it from the database (one indexed query) and transfers.
    let query = plain_query(rt.clock.now(), NONCE);
    let mut served =
        b.request("POST", &format!("/wechat?{query}"), None, text_xml("o1", "在吗", MONDAY_22 + 40, 2).as_bytes());
    b.finish(&mut served);
    assert_eq!(served.outcome, "transfer text");
    let requests = rt.db().rows("SELECT openid, until FROM requests");
    assert_eq!(requests[0]["openid"], "o1");
    assert_eq!(requests[0]["until"], MONDAY_22 + 31 + 1800);
}

/// With the 转人工 gate and online routing both needing a fact, a cold isolate's reply queries
/// the database once (the user's request); the online list then comes from WeChat, not from the
/// copy another isolate shared in the database.
#[test]
fn a_reply_queries_the_database_at_most_once() {
    let rt = FakeRuntime::at(MONDAY_22);
    rt.upstream.script_behind_token(|_| {
        Scripted::json(
            r#"{"kf_online_list":[{"kf_account":"kf2001@gh_1","status":1,"auto_accept":5,"accepted_case":0}]}"#,
        )
    });
    let routed =
        || Rc::new(Isolate::new(config(&[("WECHAT_KF_ACCOUNT", "kf2001@gh_1"), ("WECHAT_KF_ROUTING", "online")])));
    let (a, b) = (TestApp::on(&rt, routed()), TestApp::on(&rt, routed()));
    put_rules(&a, r#"{"transfer":{"mode":"on_request","request_words":["人工"],"prompt":"回复人工"}}"#);
    rt.clock.advance(31_000);
    push(&a, &text_xml("o1", "转人工", MONDAY_22 + 31, 1));
    assert_eq!(rt.db().rows("SELECT name FROM cache").len(), 1, "a shared the online list");
    assert_eq!(count(&rt, "getonlinekflist"), 1);
    rt.db().clear_log();
    let query = plain_query(rt.clock.now(), NONCE);
    let mut served =
        b.request("POST", &format!("/wechat?{query}"), None, text_xml("o1", "在吗", MONDAY_22 + 40, 2).as_bytes());
    assert_eq!(served.outcome, "transfer text targeted");
    assert_eq!(
        rt.db().statements(),
        [("SELECT until FROM requests WHERE appid = ?1 AND openid = ?2 AND until > ?3", 0)],
        "one query on the reply path"
    );
    assert_eq!(count(&rt, "getonlinekflist"), 2, "the list from WeChat");
    b.finish(&mut served);
}

#[test]
fn a_slow_or_failing_database_never_holds_or_breaks_a_reply() {
    let rt = FakeRuntime::at(MONDAY_22);
    world(&rt);
    let a = TestApp::on(&rt, isolate());
    put_rules(&a, r#"{"transfer":{"mode":"on_request","request_words":["人工"],"prompt":"回复人工"}}"#);
    // Answers after 7 s: the gate's read gives up after 1 s and the prompt answers.
    rt.db().set_delay(7_000);
    let started = rt.clock.now_ms();
    let query = plain_query(rt.clock.now(), NONCE);
    let served = a.request("POST", &format!("/wechat?{query}"), None, text_xml("o1", "在吗", MONDAY_22, 1).as_bytes());
    assert_eq!(rt.clock.now_ms() - started, 1_000);
    assert_eq!(served.outcome, "reply text by prompt");
    assert_eq!(a.take_notes(), ["transfer request read over 1000 ms: taken as not asked"]);
    // Failing: the same answer at once; the ledger's write after the reply fails, noted.
    rt.db().set_delay(0);
    rt.db().set_failing(true);
    let mut served =
        a.request("POST", &format!("/wechat?{query}"), None, text_xml("o1", "在吗", MONDAY_22, 2).as_bytes());
    assert_eq!((served.response.status, served.outcome.as_str()), (200, "reply text by prompt"));
    assert_eq!(
        a.finish(&mut served),
        ["transfer request unknown: the database failed", "ledger: the database failed, the push is not recorded"]
    );
}

#[test]
fn without_a_database_the_transfer_works_and_rules_that_need_one_are_refused() {
    let rt = FakeRuntime::without_database(MONDAY_22);
    world(&rt);
    let app = TestApp::on(&rt, isolate());
    let refuse = |doc: &str| {
        let served = app.request("PUT", "/api/rules", Some(&auth()), doc.as_bytes());
        (served.response.status, json(&served)["field"].as_str().unwrap().to_string(), json(&served)["message"].clone())
    };
    let needs = serde_json::json!("needs the database (WECHAT_DB)");
    assert_eq!(refuse(NIGHT), (400, "closed.action".into(), needs.clone()));
    assert_eq!(refuse(r#"{"alerts":{"on":["waiting"]}}"#), (400, "alerts".into(), needs.clone()));
    assert_eq!(refuse(r#"{"sessions":{"farewell":"再见"}}"#), (400, "sessions".into(), needs.clone()));
    assert_eq!(
        refuse(r#"{"transfer":{"mode":"on_request","request_words":["人工"]}}"#),
        (400, "transfer.mode".into(), needs)
    );
    put_rules(&app, r#"{"hours":{"weekly":{}},"closed":{"action":"reply","text":"下班了"}}"#);
    let query = plain_query(rt.clock.now(), NONCE);
    let served =
        app.request("POST", &format!("/wechat?{query}"), None, text_xml("o1", "在吗", MONDAY_22, 1).as_bytes());
    assert_eq!((served.response.status, served.outcome.as_str()), (200, "reply text by closed"));
    assert!(served.background.is_none(), "nothing after the reply");
    let ledger = ledger(&app, "openid=o1");
    assert_eq!(ledger.response.status, 500);
    assert_eq!(ledger.outcome, "server_misconfigured: variable WECHAT_DB is missing or invalid");
    let health: serde_json::Value =
        serde_json::from_str(&kf_core::testkit::config(&[("WECHAT_DB", "")]).health()).unwrap();
    assert_eq!(
        (health["missing"].clone(), health["features"]["database"].clone()),
        (serde_json::json!(["WECHAT_DB"]), false.into())
    );
}

#[test]
fn a_users_timeline_is_newest_first_a_page_at_a_time() {
    let rt = FakeRuntime::at(MONDAY_22);
    world(&rt);
    let app = TestApp::on(&rt, isolate());
    put_rules(&app, NIGHT);
    // Each push arrives at its CreateTime; its effects' rows carry the time they ran.
    push(&app, &event_xml("o1", "subscribe", "", MONDAY_22));
    rt.clock.advance(10_000);
    push(&app, &text_xml("o1", "在吗", MONDAY_22 + 10, 1));
    rt.clock.advance(10_000);
    push(&app, &event_xml("o1", "kf_create_session", "<KfAccount><![CDATA[kf2001@gh_1]]></KfAccount>", MONDAY_22 + 20));
    push(&app, &text_xml("o2", "another user", MONDAY_22 + 20, 2));
    let page = json(&ledger(&app, "openid=o1"));
    let rows: Vec<String> = page["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let extra =
                [&r["kf_account"], &r["detail"]].iter().filter_map(|v| v.as_str()).collect::<Vec<_>>().join(" ");
            format!(
                "{} {} {} {} {extra}",
                r["at"].as_u64().unwrap() - MONDAY_22,
                r["entry"].as_str().unwrap(),
                r["what"].as_str().unwrap(),
                r["outcome"].as_str().unwrap()
            )
            .trim_end()
            .to_string()
        })
        .collect();
    assert_eq!(
        rows,
        [
            "20 effect greeting sent kf2001@gh_1",
            "20 push event:kf_create_session success kf2001@gh_1",
            "10 effect alert_waiting sent",
            "10 effect notice_closed sent",
            "10 push text transfer closed",
            "0 push event:subscribe success",
        ]
    );
    assert_eq!(page["next"], serde_json::Value::Null);
    assert!(!String::from_utf8_lossy(&ledger(&app, "openid=o1").response.body).contains("在吗"), "never text");

    // 150 more rows (the defaults: a push, no effects): a page of 100, then the rest, then nothing.
    let mut deleted = app.request("DELETE", "/api/rules", Some(&auth()), b"");
    app.finish(&mut deleted);
    for id in 0..150 {
        push(&app, &text_xml("o3", "x", MONDAY_22 + 100 + id, 100 + id));
    }
    let first = json(&ledger(&app, "openid=o3"));
    assert_eq!(first["rows"].as_array().unwrap().len(), 100);
    let cursor = first["next"].as_str().unwrap();
    let second = json(&ledger(&app, &format!("openid=o3&cursor={cursor}")));
    let ats: Vec<u64> = second["rows"].as_array().unwrap().iter().map(|r| r["at"].as_u64().unwrap()).collect();
    assert_eq!(ats.len(), 50);
    assert_eq!(ats.first(), Some(&(MONDAY_22 + 100 + 49)));
    assert_eq!(second["next"], serde_json::Value::Null);
    // The cursor belongs to its user.
    let other = ledger(&app, &format!("openid=o1&cursor={cursor}"));
    assert_eq!((other.response.status, json(&other)["field"].clone()), (400, "cursor".into()));
    // A span of time.
    let span = json(&ledger(&app, &format!("openid=o1&from={}&to={}", MONDAY_22 + 5, MONDAY_22 + 15)));
    assert_eq!(span["rows"].as_array().unwrap().len(), 3);
}

#[test]
fn the_cron_deletes_what_is_older_than_the_retention_in_bounded_batches() {
    let rt = FakeRuntime::at(MONDAY_22);
    world(&rt);
    let app = TestApp::on(&rt, isolate());
    put_rules(&app, r#"{"ledger":{"retention_days":1}}"#);
    for id in 0..3_000u64 {
        push(&app, &text_xml("o1", "x", MONDAY_22 + id, id));
    }
    rt.clock.advance((86_400 + 3_000) * 1000);
    // At most 5 statements of 500 rows a run: 2,500 now, the rest at the next run.
    let (_, notes) = app.scheduled();
    assert!(notes.contains(&"ledger: 2500 rows past 1 days deleted".to_string()), "{notes:?}");
    // The newest row stays, however old: row ids continue from it (the statistics' fold reads
    // the ledger by id).
    let (_, notes) = app.scheduled();
    assert!(notes.contains(&"ledger: 499 rows past 1 days deleted".to_string()), "{notes:?}");
    let left = rt.db().rows("SELECT at FROM ledger");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["at"], MONDAY_22 + 2_999);
}

#[test]
fn what_each_kind_of_push_writes_is_what_the_readme_says() {
    let rt = FakeRuntime::at(MONDAY_22);
    world(&rt);
    let app = TestApp::on(&rt, isolate());
    put_rules(&app, NIGHT);
    let written = |xml: String| {
        rt.db().clear_log();
        push(&app, &xml);
        let statements = rt.db().statements();
        statements
            .iter()
            .filter(|(sql, _)| !sql.starts_with("SELECT"))
            .map(|(sql, changed)| format!("{} {changed}", sql.split(['(', ' ']).take(3).collect::<Vec<_>>().join(" ")))
            .collect::<Vec<_>>()
    };
    // A push without effects: its ledger row.
    assert_eq!(written(event_xml("o1", "subscribe", "", MONDAY_22)), ["INSERT INTO ledger 1"]);
    // A user's first night message: the row, two limits, two outcomes (one batch).
    assert_eq!(
        written(text_xml("o1", "在吗", MONDAY_22, 1)),
        [
            "INSERT INTO ledger 1",
            "INSERT INTO limits 1",
            "INSERT INTO limits 1",
            "INSERT INTO ledger 1",
            "INSERT INTO ledger 1"
        ]
    );
    // The next one within the limits: the row and two outcomes (this isolate knows the limits it
    // took; another isolate would try to take them, changing nothing: 0 rows).
    assert_eq!(
        written(text_xml("o1", "在吗", MONDAY_22 + 5, 2)),
        ["INSERT INTO ledger 1", "INSERT INTO ledger 1", "INSERT INTO ledger 1"]
    );
    let other = TestApp::on(&rt, isolate());
    rt.db().clear_log();
    push(&other, &text_xml("o1", "在吗", MONDAY_22 + 6, 3));
    let statements: Vec<u64> =
        rt.db().statements().iter().filter(|(sql, _)| sql.contains("limits")).map(|(_, n)| *n).collect();
    assert_eq!(statements, [0, 0]);
    // A retry: its insert conflicts, nothing else.
    assert_eq!(written(text_xml("o1", "在吗", MONDAY_22 + 5, 2)), ["INSERT INTO ledger 0"]);
    // KV: nothing per push.
    let before = rt.store.stats();
    push(&app, &text_xml("o1", "在吗", MONDAY_22 + 9, 3));
    let after = rt.store.stats();
    assert_eq!((after.writes - before.writes, after.deletes - before.deletes), (0, 0));
}

#[test]
fn every_statement_reads_through_an_index() {
    let rt = FakeRuntime::at(MONDAY_22);
    let db = &rt.db().connection;
    for sql in STATEMENTS {
        // Parameters are numbered (`?4` may appear twice): as many as the highest number.
        let params = (1..=9).rev().find(|n| sql.contains(&format!("?{n}"))).unwrap_or(0);
        let mut plan = db.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let nulls: Vec<rusqlite::types::Value> = (0..params).map(|_| rusqlite::types::Value::Integer(1)).collect();
        let mut rows = plan.query(rusqlite::params_from_iter(nulls.iter())).unwrap();
        let mut details = Vec::new();
        while let Some(row) = rows.next().unwrap() {
            details.push(row.get::<_, String>(3).unwrap());
        }
        for detail in &details {
            // The retention's subquery reads the oldest rows in rowid order, LIMIT bounded.
            // The owner's list of accounts reads the table in its key's order, LIMIT bounded.
            // The fold's cursor is the newest claim, read in key order, LIMIT 1 (the table holds
            // one row). A JSON array parameter (`json_each`) is the statement's own list of keys.
            let bounded_scan = (sql.contains("ORDER BY id LIMIT") && detail == "SCAN ledger")
                || (sql.contains("FROM accounts ORDER BY appid LIMIT") && detail == "SCAN accounts")
                || (sql.contains("ORDER BY first_id DESC LIMIT 1") && detail == "SCAN stats_folds")
                || (sql.contains("FROM json_each(?") && detail.starts_with("SCAN j VIRTUAL TABLE"))
                || (sql.contains("FROM json_each(?") && detail == "SCAN json_each VIRTUAL TABLE INDEX 1:");
            assert!(!detail.starts_with("SCAN") || bounded_scan, "{sql}\nreads a whole table: {details:?}");
        }
        // A list of keys as a JSON array is the outer loop: each key one lookup, never the
        // account's whole table read for each key.
        if sql.contains("AS j CROSS JOIN") {
            assert!(details.first().is_some_and(|d| d.starts_with("SCAN j")), "{sql}: {details:?}");
            assert!(
                details.get(1).is_some_and(|d| d.starts_with("SEARCH") && d.contains(" AND ")),
                "{sql}: {details:?}"
            );
        }
        // (The list of accounts and the fold's cursor read their table itself in its key's order.)
        let whole_table_in_order =
            sql.contains("FROM accounts ORDER BY appid LIMIT") || sql.contains("ORDER BY first_id DESC LIMIT 1");
        if (sql.starts_with("SELECT") || sql.starts_with("DELETE")) && !whole_table_in_order {
            assert!(details.iter().any(|d| d.contains("USING")), "{sql}: {details:?}");
        }
    }
}

#[test]
fn the_native_tests_run_every_migration_wrangler_applies() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".sql"))
        .collect();
    files.sort();
    let listed: Vec<&str> = kf_core::testkit::fake::MIGRATIONS.iter().map(|(name, _)| *name).collect();
    assert_eq!(files, listed, "testkit::fake::MIGRATIONS lists migrations/ in order");
}

#[test]
fn the_retention_reaches_rows_of_an_appid_the_deployment_no_longer_has() {
    let rt = FakeRuntime::at(MONDAY_22);
    world(&rt);
    let app = TestApp::on(&rt, isolate());
    // 600 old rows under `default` (before WECHAT_APPID was set), then this account's.
    rt.db()
        .connection
        .execute_batch(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 599) \
             INSERT INTO ledger (appid, openid, at, entry, push_key, what, outcome) \
             SELECT 'default', 'oOld', 1000 + i, 'push', 'k' || i, 'text', 'transfer' FROM n",
        )
        .unwrap();
    push(&app, &text_xml("o1", "x", MONDAY_22, 1));
    let (_, notes) = app.scheduled();
    assert!(notes.contains(&"ledger: 600 rows past 90 days deleted".to_string()), "{notes:?}");
    let left = rt.db().rows("SELECT appid FROM ledger");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["appid"], APPID);
}
