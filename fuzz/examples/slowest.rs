//! Replays every corpus input of every target and reports the slowest one per target, so the
//! "no input slower than 10 ms" budget is measured in microseconds, not libFuzzer's seconds.
//!   cargo run --release --example slowest [-- LIMIT_MS]
use std::time::Instant;

fn main() {
    let limit_ms: f64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10.0);
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/corpus");
    let mut over = false;
    println!("| target | inputs | slowest | largest input |");
    println!("|---|---|---|---|");
    for target in ["parse_message", "decrypt", "pipeline", "reply_roundtrip"] {
        let Ok(entries) = std::fs::read_dir(format!("{dir}/{target}")) else { continue };
        let (mut n, mut worst, mut largest) = (0usize, 0f64, 0usize);
        for e in entries.flatten() {
            let Ok(data) = std::fs::read(e.path()) else { continue };
            let t0 = Instant::now();
            match target {
                "parse_message" => wechat_kf_worker_fuzz::parse(&data),
                "decrypt" => wechat_kf_worker_fuzz::decrypt(&data),
                "pipeline" => wechat_kf_worker_fuzz::pipeline(&data),
                _ => {
                    let mut u = arbitrary::Unstructured::new(&data);
                    if let Ok(input) = <wechat_kf_worker_fuzz::ReplyInput as arbitrary::Arbitrary>::arbitrary(&mut u) {
                        wechat_kf_worker_fuzz::reply_roundtrip(input);
                    }
                }
            }
            let ms = t0.elapsed().as_secs_f64() * 1e3;
            n += 1;
            largest = largest.max(data.len());
            worst = worst.max(ms);
        }
        over |= worst > limit_ms;
        println!("| {target} | {n} | {worst:.3} ms | {largest} B |");
    }
    if over {
        eprintln!("an input is slower than {limit_ms} ms");
        std::process::exit(1);
    }
}
