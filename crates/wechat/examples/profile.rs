//! Runs the plain-mode pipeline many times on one fixture, for `valgrind --tool=callgrind`
//! (instruction counts are repeatable where wall-clock timings are not):
//!   cargo build --release -p wechat-mp --features testkit --example profile
//!   valgrind --tool=callgrind target/release/examples/profile messages/file 10000
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::string_slice)]

use wechat_mp::callback::{default_passive, open_message, respond, Query};
use wechat_mp::testkit::{fixture, plain_query, plain_settings, NONCE, NOW};

fn main() {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "messages/text".into());
    let n: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let body = fixture(&format!("{name}.xml"));
    let s = plain_settings();
    let q = Query::parse(&plain_query(NOW, NONCE));
    let mut total = 0usize;
    for _ in 0..n {
        let inbound = open_message(&s, &q, std::hint::black_box(&body), NOW).unwrap();
        total += respond(&s, &inbound, default_passive(&inbound, Some("kf@gh")), NOW, &[0; 16]).unwrap().len();
    }
    println!("{total}");
}
