//! The callback's pure core per message: verify + (decrypt) + parse + render (+ encrypt).
//! `cargo bench --bench core` (or `make bench`) prints ns per message for each type and mode.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::string_slice)]

use divan::{black_box, Bencher};
use kf_core::testkit::{crypto, fixture_str, plain_query, plain_settings, safe_push, KF_ACCOUNT, NONCE, NOW, TOKEN};
use wechat_mp::callback::{default_passive, open_message, respond, CallbackSettings, Query};

const TYPES: &[&str] = &[
    "messages/text",
    "messages/image",
    "messages/voice_recognition",
    "messages/video",
    "messages/location",
    "messages/link",
    "messages/file",
    "messages/miniprogrampage",
    "events/subscribe",
    "events/click",
    "events/pic_photo_or_album",
    "events/kf_switch_session",
];

fn main() {
    divan::main();
}

fn fixture(name: &str) -> String {
    fixture_str(&format!("{name}.xml"))
}

#[divan::bench(args = TYPES, sample_count = 1000)]
fn plain(bencher: Bencher, name: &str) {
    let s = plain_settings();
    let body = fixture(name);
    let q = Query::parse(&plain_query(NOW, NONCE));
    bencher.bench(|| {
        let inbound = open_message(&s, black_box(&q), black_box(body.as_bytes()), NOW).unwrap();
        respond(&s, &inbound, default_passive(&inbound, Some(KF_ACCOUNT)), NOW, &[7; 16]).unwrap()
    });
}

#[divan::bench(args = TYPES, sample_count = 1000)]
fn safe(bencher: Bencher, name: &str) {
    let c = crypto();
    let s = CallbackSettings { token: TOKEN, crypto: Some(&c), max_clock_skew_secs: 300 };
    let (query, body) = safe_push(&c, &fixture(name), NOW, NONCE, false);
    let q = Query::parse(&query);
    bencher.bench(|| {
        let inbound = open_message(&s, black_box(&q), black_box(body.as_bytes()), NOW).unwrap();
        respond(&s, &inbound, default_passive(&inbound, Some(KF_ACCOUNT)), NOW, &[7; 16]).unwrap()
    });
}

/// The front desk's decision for a text message that no rule answers, under the fullest rules
/// document (200 keyword rules of 5 words, hours with closed and open dates, a no-agent rule):
/// every rule is checked before the transfer.
#[divan::bench(sample_count = 1000)]
fn decide_fullest_rules(bencher: Bencher) {
    use kf_core::desk::decide::{decide, Agents, Facts};
    use kf_core::desk::rules::{validate, Capabilities};
    use wechat_mp::parse_message;
    let rules = validate(&kf_core::testkit::fixture("rules/fullest.json"), Capabilities::ALL).unwrap().rules;
    let message = parse_message(&fixture("messages/text")).unwrap();
    let facts = Facts { requested: None, agents: Some(Agents::Unknown) };
    bencher.bench(|| decide(black_box(&message), NOW, &rules, &facts));
}

/// The same with the defaults: what every push pays when no document is stored.
#[divan::bench(sample_count = 1000)]
fn decide_default_rules(bencher: Bencher) {
    use kf_core::desk::decide::{decide, Facts};
    use kf_core::desk::rules::Rules;
    use wechat_mp::parse_message;
    let rules = Rules::default();
    let message = parse_message(&fixture("messages/text")).unwrap();
    bencher.bench(|| decide(black_box(&message), NOW, &rules, &Facts::default()));
}

/// A 64 KiB request body of ~9,000 keys, checked for a key given twice (one pass, a set of keys
/// per object).
#[divan::bench(sample_count = 100)]
fn duplicate_keys_9000(bencher: Bencher) {
    let body = format!("{{{}}}", (0..9_000).map(|i| format!("\"k{i}\":1")).collect::<Vec<_>>().join(","));
    bencher.bench(|| kf_core::document::check_keys(black_box(body.as_bytes())));
}

/// A whole request through the worker over the in-memory runtime (as the glue serves it, minus
/// the JS crossing): a plain push with the defaults, and a 404.
#[divan::bench(args = ["push", "404"], sample_count = 1000)]
fn serve(bencher: Bencher, what: &str) {
    use kf_core::testkit::TestApp;
    let rt = kf_core::testkit::fake::FakeRuntime::at(NOW);
    let app = TestApp::new(&rt, &[("WECHAT_KF_ACCOUNT", KF_ACCOUNT)]);
    let (target, body) = match what {
        "push" => (format!("/wechat?{}", plain_query(NOW, NONCE)), fixture("messages/text").into_bytes()),
        _ => ("/nope".to_string(), Vec::new()),
    };
    let method = if what == "push" { "POST" } else { "GET" };
    app.request(method, &target, None, &body);
    bencher.bench_local(|| app.request(method, black_box(&target), None, black_box(&body)).response.status);
}

/// A 2,000-character text that no keyword matches, decided with the defaults and with the most
/// "contains" words a 64 KiB document holds (tests/fixtures/rules/most-words.json: 5,411 words):
/// one pass over the text either way.
#[divan::bench(args = ["defaults", "most-words"], sample_count = 1000)]
fn decide_2000_characters(bencher: Bencher, rules: &str) {
    use kf_core::desk::decide::{decide, Agents, Facts};
    use kf_core::desk::rules::{validate, Capabilities, Rules};
    use wechat_mp::{parse_message, MessageKind};
    let rules = match rules {
        "defaults" => Rules::default(),
        name => validate(&kf_core::testkit::fixture(&format!("rules/{name}.json")), Capabilities::ALL).unwrap().rules,
    };
    let mut message = parse_message(&fixture("messages/text")).unwrap();
    let text: String = "我想咨询一下订单的物流情况，请问什么时候能到？".chars().cycle().take(2000).collect();
    message.kind = MessageKind::Text { content: text };
    let facts = Facts { requested: None, agents: Some(Agents::Unknown) };
    bencher.bench(|| decide(black_box(&message), NOW, &rules, &facts));
}

/// A 30-day report by day over the hourly rows perf/service-levels.mjs makes (10,000 pushes a
/// day: ~104 users and ~104 sessions an hour, 5 agents): the report's CPU without D1.
#[divan::bench(sample_count = 20)]
fn report_30_days_by_day(bencher: Bencher) {
    use kf_core::report::{query, report, Context, HourRow};
    use kf_core::stats::Hour;
    let (from, now) = (NOW - 30 * 86_400, NOW);
    let row = |hour: u64, kf: &str, n: u64| {
        let tags: Vec<u64> = (0..n).map(|i| (hour / 3600 * 7 + i) % 5_000).collect();
        let secs: Vec<u64> = (0..n).map(|i| 30 + (i * 7_919) % 570).collect();
        let figures = Hour {
            pushes: n * 4,
            episodes: n,
            sessions: n,
            users: tags.clone(),
            transferred: tags,
            waits: secs.iter().map(|s| (hour, *s)).collect(),
            first_responses: secs.clone(),
            session_secs: secs,
            ..Hour::default()
        };
        HourRow { hour, kf_account: kf.to_string(), figures }
    };
    let mut rows = Vec::new();
    for h in (from / 3600)..=(now / 3600) {
        rows.push(row(h * 3600, "", 104));
        for a in 0..5 {
            rows.push(row(h * 3600, &format!("kf200{a}@gh_1"), 21));
        }
    }
    let q = query(&format!("from={from}&to={now}&bucket=day"), now).unwrap();
    let ctx = Context {
        now,
        offset: kf_core::desk::hours::Offset::CHINA,
        unanswered_after_secs: 600,
        waiting: Vec::new(),
        up_to_date: true,
    };
    bencher.with_inputs(|| rows.clone()).bench_values(|rows| serde_json::to_vec(&report(&q, rows, &ctx)).unwrap());
}
