//! The answer as it crosses from the wasm core to the JS entry (`src/glue/wire.mjs` reads it):
//! one byte string, so that a request costs one crossing and the entry builds one `Response`.
//!
//! Little-endian:
//!
//! ```text
//! u16 status
//! u8  content type: its index in ContentType::ALL
//! u8  n, then n headers: u8 name length, name, u16 value length, value (the route's own)
//! u8  log level: 0 none, 1 console.log, 2 console.error (a 5xx); + 0x80 when replayable
//! u32 log line length, the log line (UTF-8)
//! the body, to the end
//! ```
//!
//! A status of 0 is not an answer but an instruction to read a key first ([`encode_read`]).
//!
//! The JS side is held to this by `tests/fixtures/wire/`: golden answers this module's tests
//! encode and `tests/unit/wire.test.mjs` decodes.

use kf_core::app::{ContentType, Response, COMMON_HEADERS};

/// A reused answer buffer grown past this (by a large answer) is given back before the next
/// answer rather than kept for the isolate's lifetime.
pub const KEPT_ANSWER_BYTES: usize = 64 * 1024;

/// `response` and its log line (none when the line is printed after the background work),
/// appended to `out`.
pub fn encode_into(response: &Response, log_line: Option<&str>, out: &mut Vec<u8>) {
    out.reserve(response.body.len() + 160);
    out.extend_from_slice(&response.status.to_le_bytes());
    let kind = ContentType::ALL.iter().position(|t| *t == response.content_type).unwrap_or_default();
    out.push(u8::try_from(kind).unwrap_or_default());
    let headers = response.headers.get(..usize::from(u8::MAX)).unwrap_or(&response.headers);
    out.push(u8::try_from(headers.len()).unwrap_or(u8::MAX));
    for (name, value) in headers {
        let name = truncated(name.as_bytes(), usize::from(u8::MAX));
        out.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(name);
        let value = truncated(value.as_bytes(), usize::from(u16::MAX));
        out.extend_from_slice(&u16::try_from(value.len()).unwrap_or(u16::MAX).to_le_bytes());
        out.extend_from_slice(value);
    }
    let (level, line) = match log_line {
        None => (0, ""),
        Some(line) => (if kf_core::app::logged_as_error(response.status) { 2 } else { 1 }, line),
    };
    out.push(level | if response.replayable { 0x80 } else { 0 });
    out.extend_from_slice(&u32::try_from(line.len()).unwrap_or(0).to_le_bytes());
    out.extend_from_slice(line.as_bytes());
    out.extend_from_slice(&response.body);
}

/// [`encode_into`] a new buffer.
pub fn encode(response: &Response, log_line: Option<&str>) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(response, log_line, &mut out);
    out
}

/// [`encode_into`] the reused answer buffer `out`: cleared first, and given back if a large
/// answer grew it past [`KEPT_ANSWER_BYTES`].
pub fn encode_reused(response: &Response, log_line: Option<&str>, out: &mut Vec<u8>) {
    if out.capacity() > KEPT_ANSWER_BYTES {
        *out = Vec::new();
    }
    out.clear();
    encode_into(response, log_line, out);
}

/// The instruction to read `key` from the store within `within_ms` and call `resume(id, ...)`
/// with the result, appended to `out` (cleared first, as [`encode_reused`]): status 0 (never an
/// answer's), then `u32 id | u32 within_ms | key`.
pub fn encode_read(id: u32, within_ms: u64, key: &str, out: &mut Vec<u8>) {
    if out.capacity() > KEPT_ANSWER_BYTES {
        *out = Vec::new();
    }
    out.clear();
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&u32::try_from(within_ms).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(key.as_bytes());
}

/// At most `max` bytes of `bytes`.
fn truncated(bytes: &[u8], max: usize) -> &[u8] {
    bytes.get(..max).unwrap_or(bytes)
}

/// Where an answer is in the core's memory, as the JS entry reads it: one number (an export
/// returns it without allocating) that is `address + len × 2³²`. Both are 32-bit on wasm32, so
/// the sum is an exact f64; the entry takes `at >>> 0` as the address and the rest as the length.
/// The numbers 0 and 1 are never a location (address 0 is not the core's heap): they say that
/// the answer will come later (0) or that the core needs the whole request (1).
pub fn location(address: u32, len: u32) -> f64 {
    f64::from(address) + f64::from(len) * 4_294_967_296.0
}

/// The answer comes later, through `take_pending`.
pub const PENDING: f64 = 0.0;
/// The core needs the whole request (its headers, a body the entry did not read).
pub const NEEDS_REQUEST: f64 = 1.0;

/// The headers of every response by content type, as JSON (`[{"content-type": ..., ...}, ...]`
/// in the order of [`ContentType::ALL`]): the JS entry builds them once per isolate.
pub fn response_headers() -> String {
    let sets: Vec<serde_json::Map<String, serde_json::Value>> = ContentType::ALL
        .iter()
        .map(|t| {
            std::iter::once(("content-type", t.as_str()))
                .chain(COMMON_HEADERS)
                .map(|(k, v)| (k.to_string(), serde_json::Value::from(v)))
                .collect()
        })
        .collect();
    serde_json::to_string(&sets).unwrap_or_default()
}
