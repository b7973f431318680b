//! `GET /api/stats` over a hand-made ledger in real SQLite (the migrations D1 runs): every figure
//! worked out here by hand, an episode that crosses midnight, a switch, a user never picked up,
//! one still waiting; the buckets in the rules' timezone; the CSV; folds that race; bad input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::string_slice)]

use kf_core::app::Served;
use kf_core::testkit::fake::{FakeRuntime, Scripted};
use kf_core::testkit::{request, TestApp, ADMIN_TOKEN, APPID};
use serde_json::{json, Value};

/// 2026-09-28, a Monday, 00:00 at +08:00.
const MON: u64 = 1_790_524_800;
const TUE: u64 = MON + 86_400;
const H: u64 = 3600;
const M: u64 = 60;
const KF1: &str = "kf2001@gh_1";
const KF2: &str = "kf2002@gh_1";

struct Ledger<'a> {
    rt: &'a FakeRuntime,
    n: u64,
}

impl Ledger<'_> {
    /// A push row as the desk writes it.
    fn push(&mut self, openid: &str, at: u64, what: &str, outcome: &str, kf: Option<&str>, detail: Option<&str>) {
        self.n += 1;
        let key = format!("{openid}|{at}|{}", self.n);
        self.insert(openid, at, "push", Some(&key), what, outcome, kf, detail);
    }

    fn effect(&mut self, openid: &str, at: u64, what: &str, outcome: &str) {
        self.insert(openid, at, "effect", None, what, outcome, None, None);
    }

    #[allow(clippy::too_many_arguments)]
    fn insert(
        &self,
        openid: &str,
        at: u64,
        entry: &str,
        key: Option<&str>,
        what: &str,
        outcome: &str,
        kf: Option<&str>,
        detail: Option<&str>,
    ) {
        self.rt
            .db()
            .connection
            .execute(
                "INSERT INTO ledger (appid, openid, at, entry, push_key, what, outcome, kf_account, detail) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                rusqlite::params![APPID, openid, at, entry, key, what, outcome, kf, detail],
            )
            .unwrap();
    }
}

/// The day worked out in the tests below (all times +08:00):
/// - u1: transferred 09:00 and 09:01 (one episode), picked by kf1 at 09:02 (wait 120 s),
///   switched to kf2 at 09:30, closed by kf2 at 09:40 (session 2,280 s);
/// - u2: transferred 09:10, picked by kf1 at 09:25 (wait 900 s: late), closed 10:05 (2,400 s);
/// - u3: transferred at 23:55 while closed (after hours), a notice sent and an alert sent;
///   picked by kf2 on Tuesday 00:04 (wait 540 s: in time, but not that day), closed 00:20 (960 s);
/// - u4: transferred 14:00, never picked up (an alert skipped), then a keyword answer at 14:05;
/// - u5: subscribed 08:00, answered "closed" at 20:00 (after hours), a notice that failed;
/// - u6: transferred Tuesday 00:55, still waiting at 01:00 (now): not decided yet.
fn day(rt: &FakeRuntime) {
    let mut l = Ledger { rt, n: 0 };
    l.push("u1", MON + 9 * H, "text", "transfer", None, None);
    l.push("u1", MON + 9 * H + M, "text", "transfer", None, None);
    l.push("u1", MON + 9 * H + 2 * M, "event:kf_create_session", "success", Some(KF1), None);
    l.push("u2", MON + 9 * H + 10 * M, "text", "transfer", None, None);
    l.push("u2", MON + 9 * H + 25 * M, "event:kf_create_session", "success", Some(KF1), None);
    l.push("u1", MON + 9 * H + 30 * M, "event:kf_switch_session", "success", Some(KF2), Some(KF1));
    l.push("u1", MON + 9 * H + 40 * M, "event:kf_close_session", "success", Some(KF2), None);
    l.push("u2", MON + 10 * H + 5 * M, "event:kf_close_session", "success", Some(KF1), None);
    l.push("u5", MON + 8 * H, "event:subscribe", "welcome", None, None);
    l.push("u4", MON + 14 * H, "text", "transfer", None, Some("no_agent"));
    l.effect("u4", MON + 14 * H, "alert_waiting", "skipped");
    l.push("u4", MON + 14 * H + 5 * M, "text", "keyword", None, None);
    l.push("u5", MON + 20 * H, "text", "closed", None, None);
    l.effect("u5", MON + 20 * H, "notice_no_agent", "failed");
    l.push("u3", MON + 23 * H + 55 * M, "text", "transfer", None, Some("closed"));
    l.effect("u3", MON + 23 * H + 55 * M, "notice_closed", "sent");
    l.effect("u3", MON + 23 * H + 55 * M, "alert_waiting", "sent");
    l.push("u3", TUE + 4 * M, "event:kf_create_session", "success", Some(KF2), None);
    l.push("u3", TUE + 20 * M, "event:kf_close_session", "success", Some(KF2), None);
    l.push("u6", TUE + 55 * M, "text", "transfer", None, None);
}

fn auth() -> String {
    format!("Bearer {ADMIN_TOKEN}")
}

fn stats(app: &TestApp, query: &str) -> Served {
    app.request("GET", &format!("/api/stats?{query}"), Some(&auth()), b"")
}

fn json_of(served: &Served) -> Value {
    assert_eq!(served.response.status, 200, "{}", String::from_utf8_lossy(&served.response.body));
    serde_json::from_slice(&served.response.body).unwrap()
}

fn spread(count: u64, median: u64, p90: u64, max: u64) -> Value {
    json!({"count": count, "median": median, "p90": p90, "max": max})
}

fn none() -> Value {
    json!({"count": 0, "median": null, "p90": null, "max": null})
}

/// At Tuesday 01:00, with the day above.
fn app_with_day() -> TestApp {
    let rt = FakeRuntime::at(TUE + H);
    day(&rt);
    TestApp::new(&rt, &[])
}

#[test]
fn every_figure_of_a_day_is_the_one_worked_out_by_hand() {
    let app = app_with_day();
    let report = json_of(&stats(&app, &format!("from={MON}&to={}&bucket=day", TUE + H)));
    assert_eq!(report["timezone"], "+08:00");
    assert_eq!(report["buckets"].as_array().unwrap().len(), 2);
    let monday = &report["buckets"][0];
    assert_eq!(monday["start"], MON);
    // Pushes: u1 5, u2 3, u3 1, u4 2, u5 2. Users who wrote: u1 to u5; transferred: u1 to u4.
    assert_eq!((monday["pushes"].clone(), monday["users"].clone()), (json!(13), json!(5)));
    assert_eq!(monday["users_transferred"], 4);
    // Messages (not events): u1 2, u2 1, u3 1, u4 2, u5 1.
    assert_eq!(monday["messages"], 7);
    // u3 transferred while closed, u5 answered "closed".
    assert_eq!(monday["after_hours"], 2);
    // Episodes start on Monday: u1, u2, u3 (picked up on Tuesday), u4 (never).
    assert_eq!(monday["episodes"], 4);
    // Waits by the episode's start: 120, 540 (u3, across midnight), 900.
    assert_eq!(monday["queue_wait_secs"], spread(3, 540, 900, 900));
    // Late or never: u2 (900 s) and u4; not picked up that day: u3 and u4.
    assert_eq!((monday["unanswered"].clone(), monday["never_answered"].clone()), (json!(2), json!(2)));
    assert_eq!((monday["sessions"].clone(), monday["switches"].clone()), (json!(2), json!(1)));
    assert_eq!(monday["session_secs"], spread(2, 2280, 2400, 2400));
    assert_eq!(monday["first_response_secs"], none());
    assert_eq!(monday["notices"], json!({"sent": 1, "skipped": 0, "failed": 1}));
    assert_eq!(monday["alerts"], json!({"sent": 1, "skipped": 1, "failed": 0}));
    // kf1 picked up u1 and u2 and closed u2's session; kf2 received the switch and closed u1's.
    let kf1 = &monday["agents"][KF1];
    assert_eq!(
        (kf1["sessions"].clone(), kf1["users"].clone(), kf1["switches"].clone()),
        (json!(2), json!(2), json!(0))
    );
    assert_eq!(kf1["queue_wait_secs"], spread(2, 120, 900, 900));
    assert_eq!(kf1["session_secs"], spread(1, 2400, 2400, 2400));
    assert_eq!(
        (kf1["pushes"].clone(), kf1["unanswered"].clone(), kf1["notices"].clone()),
        (json!(null), json!(null), json!(null))
    );
    let kf2 = &monday["agents"][KF2];
    assert_eq!((kf2["sessions"].clone(), kf2["switches"].clone()), (json!(0), json!(1)));
    assert_eq!(kf2["session_secs"], spread(1, 2280, 2280, 2280));

    let tuesday = &report["buckets"][1];
    assert_eq!(tuesday["start"], TUE);
    // u3's session events and u6's transfer; u6 waits 5 minutes: neither late nor missed yet.
    assert_eq!(
        (tuesday["pushes"].clone(), tuesday["users"].clone(), tuesday["episodes"].clone()),
        (json!(3), json!(1), json!(1))
    );
    assert_eq!((tuesday["unanswered"].clone(), tuesday["never_answered"].clone()), (json!(0), json!(0)));
    assert_eq!(tuesday["queue_wait_secs"], none());
    assert_eq!(tuesday["session_secs"], spread(1, 960, 960, 960));
    assert_eq!(tuesday["agents"][KF2]["sessions"], 1);

    let totals = &report["totals"];
    assert_eq!(
        (totals["pushes"].clone(), totals["users"].clone(), totals["users_transferred"].clone()),
        (json!(16), json!(6), json!(5))
    );
    assert_eq!(
        (totals["episodes"].clone(), totals["unanswered"].clone(), totals["never_answered"].clone()),
        (json!(5), json!(2), json!(2))
    );
    assert_eq!(totals["session_secs"], spread(3, 2280, 2400, 2400));
    assert_eq!(totals["queue_wait_secs"], spread(3, 540, 900, 900));
    // kf2: u3 on Tuesday.
    assert_eq!(totals["agents"][KF2]["sessions"], 1);
    assert_eq!(totals["agents"][KF1]["sessions"], 2);
}

#[test]
fn hours_are_buckets_of_their_own_and_a_user_counts_once_per_bucket() {
    let app = app_with_day();
    let report = json_of(&stats(&app, &format!("from={}&to={}&bucket=hour", MON + 9 * H, MON + 10 * H + 59 * M)));
    let b = report["buckets"].as_array().unwrap();
    assert_eq!(b.len(), 2);
    // 09:00: u1's five pushes and u2's two; u1 wrote twice but is one user.
    assert_eq!(
        (b[0]["start"].clone(), b[0]["pushes"].clone(), b[0]["users"].clone()),
        (json!(MON + 9 * H), json!(7), json!(2))
    );
    // 10:00: u2's close only; its session counts in the hour it started.
    assert_eq!((b[1]["pushes"].clone(), b[1]["session_secs"].clone()), (json!(1), none()));
    assert_eq!(b[0]["session_secs"], spread(2, 2280, 2400, 2400));
    // With one agent: the account's figures and that agent's only.
    let report = json_of(&stats(&app, &format!("from={MON}&to={}&kf_account={KF2}", TUE + H)));
    let agents = report["totals"]["agents"].as_object().unwrap();
    assert_eq!(agents.keys().collect::<Vec<_>>(), vec![KF2]);
    assert_eq!(report["totals"]["pushes"], 16);
}

#[test]
fn days_are_the_rules_timezone_days() {
    let app = app_with_day();
    // At UTC, u3's 23:55 transfer (15:55Z) and its pickup (16:04Z) fall on the same day.
    let mut served = app.request("PUT", "/api/rules", Some(&auth()), br#"{"timezone":"+00:00"}"#);
    assert_eq!(served.response.status, 200);
    app.finish(&mut served);
    let utc_monday = MON + 8 * H;
    let report = json_of(&stats(&app, &format!("from={utc_monday}&to={}&bucket=day", utc_monday + 86_399)));
    let monday = &report["buckets"][0];
    assert_eq!(report["buckets"].as_array().unwrap().len(), 1);
    assert_eq!(monday["start"], utc_monday);
    // The day is 2026-09-28 00:00Z to 24:00Z: u6's transfer (16:55Z) is in it too, still pending.
    assert_eq!(monday["episodes"], 5);
    // Now (17:00Z) that day is not over: u4 may yet be picked up on it, so nobody is "never"
    // yet; u2 (900 s) and u4 (waiting 11 hours) are late.
    assert_eq!((monday["unanswered"].clone(), monday["never_answered"].clone()), (json!(2), json!(0)));
}

#[test]
fn the_csv_has_a_bom_chinese_headers_and_local_times() {
    let app = app_with_day();
    let served = stats(&app, &format!("from={MON}&to={}&format=csv", TUE + H));
    assert_eq!(served.response.status, 200);
    assert_eq!(served.response.content_type.as_str(), "text/csv; charset=utf-8");
    assert_eq!(
        served.response.headers,
        vec![("content-disposition", format!("attachment; filename=\"stats-{MON}-{}.csv\"", TUE + H))]
    );
    let text = String::from_utf8(served.response.body.clone()).unwrap();
    let text = text.strip_prefix('\u{feff}').expect("a byte-order mark");
    let lines: Vec<&str> = text.split("\r\n").collect();
    assert!(
        lines[0]
            .starts_with("时段开始,客服账号,推送数,用户消息数,用户数,转人工用户数,非工作时间消息数,排队等待中位数(秒)"),
        "{}",
        lines[0]
    );
    assert_eq!(lines[1], "2026-09-28 00:00,全部,13,7,5,4,2,540,900,900,,,,2280,2400,2400,2,1,4,2,2,1,0,1,1,1,0");
    assert_eq!(lines[2], format!("2026-09-28 00:00,{KF1},,,2,,,120,900,900,,,,2400,2400,2400,2,0,,,,,,,,,"));
    assert!(lines.iter().any(|l| l.starts_with("合计,全部,16,8,6,5,2,")), "{text}");
}

#[test]
fn two_reports_at_once_fold_each_ledger_row_once() {
    let rt = FakeRuntime::at(TUE + H);
    day(&rt);
    let app = TestApp::new(&rt, &[]);
    let target = format!("/api/stats?from={MON}&to={}", TUE + H);
    let served = app
        .concurrently(vec![request("GET", &target, Some(&auth()), b""), request("GET", &target, Some(&auth()), b"")]);
    let again = json_of(&stats(&app, &format!("from={MON}&to={}", TUE + H)));
    for s in &served {
        assert_eq!(s.response.status, 200);
    }
    assert_eq!(again["totals"]["pushes"], 16);
    assert_eq!(again["buckets"][0]["users"], 5);
    let folds = rt.db().rows("SELECT count(*) AS n FROM stats_folds");
    assert_eq!(folds[0]["n"], 1);
    // New rows are folded by the next report, from where the last fold stopped.
    Ledger { rt: &rt, n: 100 }.push("u7", TUE + 58 * M, "text", "transfer", None, None);
    let after = json_of(&stats(&app, &format!("from={MON}&to={}", TUE + H)));
    assert_eq!(after["totals"]["pushes"], 17);
    assert_eq!(after["totals"]["users"], 7);
}

#[test]
fn folds_are_bounded_and_a_report_says_when_it_is_behind() {
    let rt = FakeRuntime::at(TUE + H);
    let mut l = Ledger { rt: &rt, n: 0 };
    for i in 0..16_500u64 {
        l.push(&format!("user{}", i % 40), MON + i * 5, "text", "success", None, None);
    }
    let app = TestApp::new(&rt, &[]);
    let range = format!("from={MON}&to={}", TUE + H);
    // A report folds at most 3 × 2,000 rows, and says the figures are behind.
    let first = json_of(&stats(&app, &range));
    assert_eq!((first["totals"]["pushes"].clone(), first["up_to_date"].clone()), (json!(6000), json!(false)));
    // The cron folds at most 2 × 2,000 (a fold is 5 D1 calls), twice.
    for _ in 0..2 {
        let (_, notes) = app.scheduled();
        assert!(notes.iter().any(|n| n == "stats: 4000 ledger rows folded"), "{notes:?}");
    }
    let report = json_of(&stats(&app, &range));
    assert_eq!(report["up_to_date"], true);
    assert_eq!((report["totals"]["pushes"].clone(), report["totals"]["users"].clone()), (json!(16500), json!(40)));
    let folds = rt.db().rows("SELECT max(last_id) AS last FROM stats_folds");
    assert_eq!(folds[0]["last"], 16500);
}

#[test]
fn a_report_with_nothing_in_it_says_so_rather_than_zero() {
    let app = TestApp::new(&FakeRuntime::at(TUE), &[]);
    let report = json_of(&stats(&app, &format!("from={MON}&to={}&bucket=hour", MON + 2 * H)));
    assert_eq!(report["buckets"].as_array().unwrap().len(), 3);
    assert_eq!(report["totals"]["queue_wait_secs"], none());
    assert_eq!(report["totals"]["pushes"], 0);
    assert_eq!(report["totals"]["agents"], json!({}));
}

#[test]
fn bad_queries_name_the_field() {
    let app = TestApp::new(&FakeRuntime::at(TUE), &[]);
    let cases: Vec<(String, &str, &str)> = vec![
        ("from=yesterday".into(), "from", "must be a time in Unix seconds"),
        ("to=-1".into(), "to", "must be a time in Unix seconds"),
        (format!("from={TUE}&to={MON}"), "to", "must not be before from"),
        ("bucket=week".into(), "bucket", "must be hour or day"),
        (
            format!("from={MON}&to={}&bucket=hour", MON + 93 * 86_400),
            "to",
            "must be at most 92 days after from by hour",
        ),
        (format!("from={MON}&to={}", MON + 401 * 86_400), "to", "must be at most 400 days after from"),
        ("kf_account=a%20b".into(), "kf_account", "must be an agent's account like kf2001@gh_0123456789ab"),
        ("format=xlsx".into(), "format", "must be json or csv"),
    ];
    for (query, field, reason) in cases {
        let served = stats(&app, &query);
        assert_eq!(served.response.status, 400, "{query}");
        let body: Value = serde_json::from_slice(&served.response.body).unwrap();
        assert_eq!((body["field"].as_str(), body["message"].as_str()), (Some(field), Some(reason)), "{query}: {body}");
    }
    // 92 days by hour and 400 by day are allowed.
    assert_eq!(stats(&app, &format!("from={MON}&to={}&bucket=hour", MON + 92 * 86_400)).response.status, 200);
    assert_eq!(stats(&app, &format!("from={MON}&to={}", MON + 400 * 86_400)).response.status, 200);
    assert_eq!(app.request("POST", "/api/stats", Some(&auth()), b"").response.status, 405);
}

#[test]
fn without_a_database_there_is_no_report() {
    let app = TestApp::new(&FakeRuntime::without_database(TUE), &[("WECHAT_DB", "")]);
    let served = stats(&app, "");
    assert_eq!(served.response.status, 500);
    let body: Value = serde_json::from_slice(&served.response.body).unwrap();
    assert_eq!(body["error"], "server_misconfigured");
}

/// WeChat's message records of the day above (opercode 2002: an agent sent a message), paged by
/// `msgid` like `getmsglist`.
fn records_world(rt: &FakeRuntime, records: Vec<(&'static str, u64, &'static str)>) {
    rt.upstream.script_behind_token(move |call| {
        if !call.url.contains("getmsglist") {
            return Scripted::json(r#"{"errcode":0,"errmsg":"ok"}"#);
        }
        let kf_core::http::Body::Json(body) = &call.body else { panic!("a JSON body") };
        let q: Value = serde_json::from_slice(body).unwrap();
        let (start, end) = (q["starttime"].as_u64().unwrap(), q["endtime"].as_u64().unwrap());
        assert!(end - start < 86_400, "one day at most");
        let (msgid, number) = (q["msgid"].as_u64().unwrap() as usize, q["number"].as_u64().unwrap() as usize);
        let in_range: Vec<Value> = records
            .iter()
            .filter(|(_, t, _)| (start..=end).contains(t))
            .map(|(openid, time, worker)| json!({"openid": openid, "opercode": 2002, "text": "您好", "time": time, "worker": worker}))
            .collect();
        let page: Vec<Value> = in_range.iter().skip(msgid - 1).take(number).cloned().collect();
        Scripted::json(&json!({"recordlist": page, "number": page.len(), "msgid": msgid + page.len()}).to_string())
    });
}

#[test]
fn first_responses_come_from_the_message_records_once_per_session() {
    let rt = FakeRuntime::at(TUE + H);
    day(&rt);
    records_world(
        &rt,
        vec![
            ("u1", MON + 9 * H + 2 * M + 30, KF1), // 30 s after kf1 picked u1 up
            ("u1", MON + 9 * H + 5 * M, KF1),      // a second message: not a first response
            ("u2", MON + 9 * H + 26 * M, KF1),     // 60 s
            ("u2", MON + 11 * H, KF1),             // after u2's session closed: none
            ("u3", TUE + 5 * M, KF2),              // 60 s, on Tuesday
        ],
    );
    let app = TestApp::new(&rt, &[]);
    let mut served = app.request("PUT", "/api/rules", Some(&auth()), br#"{"stats":{"first_response":true}}"#);
    assert_eq!(served.response.status, 200, "{}", String::from_utf8_lossy(&served.response.body));
    app.finish(&mut served);
    // The first run reads back an hour: set the cursor to Monday's start as a long-running
    // deployment's would be.
    rt.db()
        .connection
        .execute(
            "INSERT INTO cache (appid, name, value, fetched_at) VALUES (?1, 'first_responses_cursor', ?2, 0)",
            rusqlite::params![APPID, format!(r#"{{"start":{MON},"end":0,"msgid":1}}"#)],
        )
        .unwrap();
    let (_, notes) = app.scheduled();
    assert!(notes.iter().any(|n| n == "stats: 5 records read in 2 pages, 3 first responses"), "{notes:?}");
    let report = json_of(&stats(&app, &format!("from={MON}&to={}", TUE + H)));
    assert_eq!(report["buckets"][0]["first_response_secs"], spread(2, 30, 60, 60));
    assert_eq!(report["buckets"][0]["agents"][KF1]["first_response_secs"], spread(2, 30, 60, 60));
    assert_eq!(report["buckets"][1]["first_response_secs"], spread(1, 60, 60, 60));
    // Not pushes: the day's figures are as before.
    assert_eq!(report["totals"]["pushes"], 16);
    // The next run reads from where this one stopped and finds nothing new.
    rt.clock.advance(300_000);
    let (_, notes) = app.scheduled();
    assert!(notes.iter().any(|n| n == "stats: 0 records read in 1 pages, 0 first responses"), "{notes:?}");
    let again = json_of(&stats(&app, &format!("from={MON}&to={}", TUE + H)));
    assert_eq!(again["totals"]["first_response_secs"]["count"], 3);
    // A user's timeline shows what happened, not the statistics' rows.
    let timeline = json_of(&app.request("GET", "/api/ledger?openid=u1", Some(&auth()), b""));
    let whats: Vec<&str> = timeline["rows"].as_array().unwrap().iter().map(|r| r["what"].as_str().unwrap()).collect();
    assert_eq!(whats.len(), 5);
    assert!(!whats.contains(&"first_response"), "{whats:?}");
}

/// Sets the import's cursor to Monday's start, as a long-running deployment's would be (a first
/// run reads back a week).
fn cursor_at_monday(rt: &FakeRuntime) {
    let cursor = format!(r#"{{"start":{MON},"end":0,"msgid":1}}"#);
    rt.db()
        .connection
        .execute(
            "INSERT INTO cache (appid, name, value, fetched_at) VALUES (?1, 'first_responses_cursor', ?2, 0)",
            rusqlite::params![APPID, cursor],
        )
        .unwrap();
}

fn first_response_rules(app: &TestApp) {
    let mut served = app.request("PUT", "/api/rules", Some(&auth()), br#"{"stats":{"first_response":true}}"#);
    assert_eq!(served.response.status, 200);
    app.finish(&mut served);
}

#[test]
fn a_full_page_of_records_continues_at_the_next_msgid() {
    let rt = FakeRuntime::at(TUE + H);
    day(&rt);
    // 600 messages of kf1 to u1 in its session (a page is 500), then u2's first.
    let mut records: Vec<(&'static str, u64, &'static str)> =
        (0..600).map(|i| ("u1", MON + 9 * H + 2 * M + 30 + i % 60, KF1)).collect();
    records.push(("u2", MON + 9 * H + 26 * M, KF1));
    records_world(&rt, records);
    let app = TestApp::new(&rt, &[]);
    first_response_rules(&app);
    cursor_at_monday(&rt);
    let (_, notes) = app.scheduled();
    // Monday's window in two pages (500, then 101): a run's two calls; Tuesday's next run.
    assert!(notes.iter().any(|n| n == "stats: 601 records read in 2 pages, 2 first responses"), "{notes:?}");
    rt.clock.advance(300_000);
    let (_, notes) = app.scheduled();
    assert!(notes.iter().any(|n| n == "stats: 0 records read in 1 pages, 0 first responses"), "{notes:?}");
    let asked: Vec<u64> = rt
        .upstream
        .calls()
        .iter()
        .filter(|c| c.url.contains("getmsglist"))
        .map(|c| {
            let kf_core::http::Body::Json(body) = &c.body else { panic!("a JSON body") };
            serde_json::from_slice::<Value>(body).unwrap()["msgid"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(asked, vec![1, 501, 1]);
    let report = json_of(&stats(&app, &format!("from={MON}&to={}", TUE + H)));
    assert_eq!(report["buckets"][0]["first_response_secs"], spread(2, 30, 60, 60));
}

#[test]
fn a_failed_page_is_read_again_and_the_pages_before_it_are_not() {
    let rt = FakeRuntime::at(TUE + H);
    day(&rt);
    let app = TestApp::new(&rt, &[]);
    first_response_rules(&app);
    cursor_at_monday(&rt);
    // Monday's page answers; Tuesday's fails.
    let calls = std::rc::Rc::new(std::cell::Cell::new(0));
    let seen = calls.clone();
    rt.upstream.script_behind_token(move |call| {
        if !call.url.contains("getmsglist") {
            return Scripted::json(r#"{"errcode":0,"errmsg":"ok"}"#);
        }
        seen.set(seen.get() + 1);
        if seen.get() == 1 {
            Scripted::json(r#"{"recordlist":[],"number":0,"msgid":1}"#)
        } else {
            Scripted::json(r#"{"errcode":45009,"errmsg":"reach max api daily quota limit"}"#)
        }
    });
    let (_, notes) = app.scheduled();
    assert!(notes.iter().any(|n| n.starts_with("stats: first responses: ")), "{notes:?}");
    let stored = rt.db().rows("SELECT value FROM cache WHERE name = 'first_responses_cursor'");
    let cursor: Value = serde_json::from_str(stored[0]["value"].as_str().unwrap()).unwrap();
    assert_eq!((cursor["start"].clone(), cursor["msgid"].clone()), (json!(TUE), json!(1)), "Monday is done");
    assert_eq!(calls.get(), 2);
}

#[test]
fn a_message_outside_office_hours_counts_whatever_the_desk_answered() {
    // Monday 22:00 +08:00, hours 09:00-18:00: a keyword answer and a transfer, both after hours;
    // the ledger says so in its own column.
    let rt = FakeRuntime::at(MON + 22 * H);
    let app = TestApp::new(&rt, &[]);
    let rules = br#"{"hours":{"weekly":{"mon":["09:00-18:00"]}},"keywords":[{"words":["hours"],"reply":"9-18"}]}"#;
    let mut served = app.request("PUT", "/api/rules", Some(&auth()), rules);
    assert_eq!(served.response.status, 200, "{}", String::from_utf8_lossy(&served.response.body));
    app.finish(&mut served);
    for (i, text) in ["hours", "hello"].iter().enumerate() {
        let xml = kf_core::testkit::text_xml("oNight", text, MON + 22 * H + i as u64, 7000 + i as u64);
        let query = kf_core::testkit::plain_query(MON + 22 * H, kf_core::testkit::NONCE);
        let mut served = app.request("POST", &format!("/wechat?{query}"), None, xml.as_bytes());
        assert_eq!(served.response.status, 200);
        app.finish(&mut served);
    }
    let flags = rt.db().rows("SELECT outcome, after_hours FROM ledger WHERE openid = 'oNight' ORDER BY id");
    let flags: Vec<(Value, Value)> = flags.iter().map(|r| (r["outcome"].clone(), r["after_hours"].clone())).collect();
    assert_eq!(flags, vec![(json!("keyword"), json!(1)), (json!("transfer"), json!(1))]);
    let report = json_of(&stats(&app, &format!("from={MON}&to={}", MON + 23 * H)));
    assert_eq!((report["totals"]["messages"].clone(), report["totals"]["after_hours"].clone()), (json!(2), json!(2)));
}

#[test]
fn a_claim_outlives_any_fold_that_read_its_cursor() {
    let rt = FakeRuntime::at(TUE + H);
    day(&rt);
    let app = TestApp::new(&rt, &[]);
    let range = format!("from={MON}&to={}", TUE + H);
    json_of(&stats(&app, &range));
    Ledger { rt: &rt, n: 100 }.push("u8", TUE + 30 * M, "text", "success", None, None);
    json_of(&stats(&app, &range));
    // A slow fold that read the first cursor (0) before both of those committed cannot commit:
    // its claim's key is still taken.
    let late = rt.db().connection.execute("INSERT INTO stats_folds (first_id, last_id, at) VALUES (0, 21, 0)", []);
    assert!(late.is_err(), "a second claim on the same rows");
    // An hour on, old claims go.
    rt.clock.advance(3_601_000);
    Ledger { rt: &rt, n: 200 }.push("u9", TUE + 2 * H, "text", "success", None, None);
    let report = json_of(&stats(&app, &format!("from={MON}&to={}", TUE + 3 * H)));
    assert_eq!(report["totals"]["pushes"], 18);
    assert_eq!(rt.db().rows("SELECT first_id FROM stats_folds").len(), 1);
}

#[test]
fn without_the_rule_no_record_is_read() {
    let rt = FakeRuntime::at(TUE + H);
    day(&rt);
    records_world(&rt, vec![("u1", MON + 9 * H + 3 * M, KF1)]);
    let app = TestApp::new(&rt, &[]);
    app.scheduled();
    assert_eq!(rt.upstream.count("getmsglist"), 0);
}

#[test]
fn the_hourly_rows_go_with_the_ledgers_retention() {
    let rt = FakeRuntime::at(TUE + H);
    day(&rt);
    let app = TestApp::new(&rt, &[]);
    json_of(&stats(&app, &format!("from={MON}&to={}", TUE + H)));
    let hours = || rt.db().rows("SELECT count(*) AS n FROM stats_hours")[0]["n"].as_u64().unwrap();
    assert!(hours() > 0);
    // 90 days (the default retention) after Monday's end, Monday's rows are gone.
    rt.clock.advance((90 * 86_400 - H - 60) * 1000);
    app.scheduled();
    let left = rt.db().rows("SELECT DISTINCT hour FROM stats_hours ORDER BY hour");
    assert!(left.iter().all(|r| r["hour"].as_u64().unwrap() >= TUE), "{left:?}");
    assert!(hours() > 0, "Tuesday's are still there");
}
