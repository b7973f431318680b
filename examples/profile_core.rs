//! Runs the plain-mode pipeline many times on one fixture, for `valgrind --tool=callgrind`
//! (instruction counts are repeatable where wall-clock timings are not):
//!   cargo build --release --example profile_core
//!   valgrind --tool=callgrind target/release/examples/profile_core messages/file 10000
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::string_slice)]

use wechat_kf_worker::callback::{open_message, respond, CallbackSettings, Query};
use wechat_kf_worker::signature::sign;

fn main() {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "messages/text".into());
    let n: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let body = std::fs::read(format!("{}/tests/fixtures/{name}.xml", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let s = CallbackSettings { token: "QDG6eK", crypto: None, max_clock_skew_secs: 300 };
    let q = Query::parse(&format!("signature={}&timestamp=1700000000&nonce=1", sign(&["QDG6eK", "1700000000", "1"])));
    let mut total = 0usize;
    for _ in 0..n {
        let inbound = open_message(&s, &q, std::hint::black_box(&body), 1_700_000_000).unwrap();
        total += respond(&s, &inbound, Some("kf@gh"), 1_700_000_000, &[0; 16]).unwrap().1.len();
    }
    println!("{total}");
}
