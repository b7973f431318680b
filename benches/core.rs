//! The callback's pure core per message: verify + (decrypt) + parse + render (+ encrypt).
//! `cargo bench --bench core` (or `make bench`) prints ns per message for each type and mode.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::string_slice)]

use divan::{black_box, Bencher};
use wechat_kf_worker::testkit::{
    crypto, fixture_str, plain_query, plain_settings, safe_push, KF_ACCOUNT, NONCE, NOW, TOKEN,
};
use wechat_kf_worker::wechat::callback::{default_passive, open_message, respond, CallbackSettings, Query};

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
