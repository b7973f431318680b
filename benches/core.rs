//! The callback's pure core per message: verify + (decrypt) + parse + render (+ encrypt).
//! `cargo bench --bench core` (or `make bench`) prints ns per message for each type and mode.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::string_slice)]

use divan::{black_box, Bencher};
use wechat_kf_worker::callback::{open_message, respond, CallbackSettings, Query};
use wechat_kf_worker::crypto::WeChatCrypto;
use wechat_kf_worker::signature::sign;

const TOKEN: &str = "QDG6eK";
const NOW: u64 = 1_700_000_000;
const NONCE: &str = "1320562132";

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
    std::fs::read_to_string(format!("{}/tests/fixtures/{name}.xml", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn crypto() -> WeChatCrypto {
    WeChatCrypto::new("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "wx5823bf96d3bd56c7").unwrap()
}

#[divan::bench(args = TYPES, sample_count = 1000)]
fn plain(bencher: Bencher, name: &str) {
    let s = CallbackSettings { token: TOKEN, crypto: None, max_clock_skew_secs: 300 };
    let body = fixture(name);
    let q =
        Query::parse(&format!("signature={}&timestamp={NOW}&nonce={NONCE}", sign(&[TOKEN, &NOW.to_string(), NONCE])));
    bencher.bench(|| {
        let inbound = open_message(&s, black_box(&q), black_box(body.as_bytes()), NOW).unwrap();
        respond(&s, &inbound, Some("kf2001@gh_10f6c3c3ac5a"), NOW, &[7; 16]).unwrap()
    });
}

#[divan::bench(args = TYPES, sample_count = 1000)]
fn safe(bencher: Bencher, name: &str) {
    let c = crypto();
    let s = CallbackSettings { token: TOKEN, crypto: Some(&c), max_clock_skew_secs: 300 };
    let encrypt = c.encrypt(&fixture(name), &[1; 16]);
    let body = format!(
        "<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
    );
    let q = Query::parse(&format!(
        "timestamp={NOW}&nonce={NONCE}&encrypt_type=aes&msg_signature={}",
        sign(&[TOKEN, &NOW.to_string(), NONCE, &encrypt])
    ));
    bencher.bench(|| {
        let inbound = open_message(&s, black_box(&q), black_box(body.as_bytes()), NOW).unwrap();
        respond(&s, &inbound, Some("kf2001@gh_10f6c3c3ac5a"), NOW, &[7; 16]).unwrap()
    });
}
