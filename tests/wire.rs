//! The wire format between the core and the JS entry (src/wire.rs, src/glue/wire.mjs): what the
//! entry reads is what the core wrote. The golden answers in tests/fixtures/wire/ are checked
//! here byte for byte and decoded by tests/unit/wire.test.mjs; `UPDATE_WIRE_GOLDEN=1 cargo test
//! --test wire` writes them again after a deliberate change of the format.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use kf_core::app::{ContentType, Response};
use kf_core::Error;
use wechat_kf_worker::wire::{self, encode, encode_reused, location, KEPT_ANSWER_BYTES};

/// The answers the golden files hold, by name.
fn samples() -> Vec<(&'static str, Response, Option<&'static str>)> {
    let err = Error::retry_later(Error::WeChat { errcode: 40164, errmsg: "invalid ip".into() }, 300);
    vec![
        ("error-502-retry-after", Response::error(&err), Some("{\"a\":\"中\"}")),
        ("xml-without-line", Response::new(200, ContentType::Xml, b"<xml/>".to_vec()), None),
        (
            "health-replayable",
            Response { replayable: true, ..Response::new(200, ContentType::Json, b"{\"ok\":true}".to_vec()) },
            Some("{\"route\":\"/healthz\"}"),
        ),
        ("text-ok", Response::new(200, ContentType::Text, "success".into()), Some("{}")),
    ]
}

fn golden(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wire").join(format!("{name}.bin"))
}

#[test]
fn answers_encode_to_the_golden_bytes_the_entry_decodes() {
    for (name, response, line) in samples() {
        let bytes = encode(&response, line);
        if std::env::var_os("UPDATE_WIRE_GOLDEN").is_some() {
            std::fs::write(golden(name), &bytes).unwrap();
        }
        assert_eq!(
            bytes,
            std::fs::read(golden(name)).unwrap(),
            "{name}: run with UPDATE_WIRE_GOLDEN=1 after a deliberate change"
        );
    }
}

#[test]
fn the_layout_is_status_type_headers_level_line_body() {
    let err = Error::retry_later(Error::WeChat { errcode: 40164, errmsg: "invalid ip".into() }, 300);
    let bytes = encode(&Response::error(&err), Some("ab"));
    assert_eq!(&bytes[..2], &502u16.to_le_bytes());
    assert_eq!(bytes[2], 0, "JSON is the first content type");
    assert_eq!(bytes[3], 1, "one header");
    assert_eq!(&bytes[4..16], b"\x0bretry-after");
    assert_eq!(&bytes[16..18], &3u16.to_le_bytes());
    assert_eq!(&bytes[18..21], b"300");
    assert_eq!(bytes[21], 2, "a 5xx is logged at error level");
    assert_eq!(&bytes[22..26], &2u32.to_le_bytes());
    assert_eq!(&bytes[26..28], b"ab");
    assert_eq!(&bytes[28..], err.body().as_bytes());
    let replay = Response { replayable: true, ..Response::new(200, ContentType::Json, Vec::new()) };
    assert_eq!(encode(&replay, Some("x"))[4], 0x80 | 1, "the replay bit rides on the log level");
    assert_eq!(encode(&replay, None)[4], 0x80);
}

#[test]
fn an_answers_location_is_one_number_the_entry_splits_exactly() {
    // The entry's split (src/glue/wire.mjs): `at >>> 0`, then `(at - address) / 2 ** 32`.
    let split = |at: f64| {
        let address = (at % 4_294_967_296.0) as u32;
        (address, ((at - f64::from(address)) / 4_294_967_296.0) as u32)
    };
    for (address, len) in [(8, 0), (1_114_112, 73), (u32::MAX, 65_536), (4_096, u32::MAX >> 11)] {
        assert_eq!(split(location(address, len)), (address, len));
    }
    assert_ne!(location(8, 0), wire::PENDING);
    assert_ne!(location(8, 0), wire::NEEDS_REQUEST);
}

#[test]
fn the_reused_buffer_never_carries_an_old_answer_and_a_grown_one_is_given_back() {
    let long = Response::new(200, ContentType::Json, vec![b'x'; 300]);
    let short = Response::new(404, ContentType::Json, b"{}".to_vec());
    let mut out = Vec::new();
    encode_reused(&long, Some("line"), &mut out);
    encode_reused(&short, None, &mut out);
    assert_eq!(out, encode(&short, None));
    let mut out = Vec::with_capacity(KEPT_ANSWER_BYTES);
    encode_reused(&short, None, &mut out);
    assert_eq!(out.capacity(), KEPT_ANSWER_BYTES, "a buffer up to the limit is kept");
    let mut out = Vec::with_capacity(KEPT_ANSWER_BYTES + 1);
    encode_reused(&short, None, &mut out);
    assert!(out.capacity() < KEPT_ANSWER_BYTES, "{}", out.capacity());
}

#[test]
fn the_entry_gets_one_header_set_per_content_type_in_their_order() {
    let sets: serde_json::Value = serde_json::from_str(&wire::response_headers()).unwrap();
    let expected: Vec<serde_json::Value> = ContentType::ALL
        .iter()
        .map(|t| serde_json::json!({ "content-type": t.as_str(), "cache-control": "no-store" }))
        .collect();
    assert_eq!(sets, serde_json::Value::Array(expected));
}

#[test]
fn a_read_instruction_is_status_zero_then_the_id_the_limit_and_the_key() {
    let mut out = Vec::new();
    wechat_kf_worker::wire::encode_read(7, 1000, "rules:wx1", &mut out);
    if std::env::var_os("UPDATE_WIRE_GOLDEN").is_some() {
        std::fs::write(golden("read-instruction"), &out).unwrap();
    }
    assert_eq!(out, std::fs::read(golden("read-instruction")).unwrap());
    assert_eq!(&out[..2], &[0, 0], "never an answer's status");
    assert_eq!(&out[2..6], &7u32.to_le_bytes());
    assert_eq!(&out[6..10], &1000u32.to_le_bytes());
    assert_eq!(&out[10..], b"rules:wx1");
}
