//! `GET /api/ledger?openid=&from=&to=&cursor=`: a user's timeline, newest first, a page at a
//! time. The query is checked field by field; the cursor that continues a page is opaque and
//! signed (HMAC-SHA-256 under the admin token), so a cursor this worker did not issue, or one
//! altered or used for another user, is refused rather than read.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

use crate::database::{LedgerRow, Position, MAX_EXACT, PAGE_ROWS};
use crate::error::Error;
use crate::http::query_param;

/// The widest span a query may ask for (and the default span, back from `to`).
pub const MAX_SPAN_SECS: u64 = 92 * 86_400;

/// A checked timeline query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub openid: String,
    /// Rows at or after this time (Unix seconds).
    pub from: u64,
    /// Rows strictly older than this position.
    pub before: Position,
}

fn invalid(field: &str, reason: &'static str) -> Error {
    Error::InvalidRequest { field: field.to_string(), reason }
}

/// An OpenID as WeChat writes them: 1 to 64 letters, digits, `-` or `_`.
pub fn is_openid(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Unix seconds: 1 to 12 digits.
fn seconds(value: &str, field: &str) -> Result<u64, Error> {
    if value.is_empty() || value.len() > 12 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(field, "must be a time in Unix seconds"));
    }
    value.parse().map_err(|_| invalid(field, "must be a time in Unix seconds"))
}

/// The query parameter `field` as Unix seconds, if it is there.
pub fn query_seconds(raw: &str, field: &str) -> Result<Option<u64>, Error> {
    query_param(raw, field).map(|value| seconds(&value, field)).transpose()
}

type HmacSha256 = Hmac<Sha256>;

/// The signed text of a cursor: the user, where the next page starts and where the query ends.
fn signed(key: &str, openid: &str, payload: &str) -> Result<HmacSha256, Error> {
    let mut mac = HmacSha256::new_from_slice(key.as_bytes()).map_err(|_| Error::Internal("cursor key"))?;
    mac.update(b"wechat-kf-worker ledger cursor\n");
    mac.update(openid.as_bytes());
    mac.update(b"\n");
    mac.update(payload.as_bytes());
    Ok(mac)
}

/// The cursor of the page after `last` for `openid` from `from`: `<payload>.<mac>`, both
/// base64url.
pub fn cursor(key: &str, openid: &str, from: u64, last: Position) -> Result<String, Error> {
    let payload = format!("{}.{}.{from}", last.at, last.id);
    let mac = signed(key, openid, &payload)?.finalize().into_bytes();
    Ok(format!("{}.{}", URL_SAFE_NO_PAD.encode(payload), URL_SAFE_NO_PAD.encode(mac)))
}

/// The position and `from` a cursor carries, if this worker issued it for `openid`.
fn read_cursor(key: &str, openid: &str, cursor: &str) -> Result<(Position, u64), Error> {
    let refused = || invalid("cursor", "was not issued by this worker for this openid, or was altered");
    let (payload, mac) = cursor.split_once('.').ok_or_else(refused)?;
    let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| refused())?;
    let mac = URL_SAFE_NO_PAD.decode(mac).map_err(|_| refused())?;
    let payload = String::from_utf8(payload).map_err(|_| refused())?;
    // Constant time, as every secret comparison.
    signed(key, openid, &payload)?.verify_slice(&mac).map_err(|_| refused())?;
    let mut parts = payload.split('.');
    let mut next = || parts.next().and_then(|p| p.parse::<u64>().ok());
    let (Some(at), Some(id), Some(from)) = (next(), next(), next()) else { return Err(refused()) };
    let id = i64::try_from(id).map_err(|_| refused())?;
    Ok((Position { at, id }, from))
}

/// Reads the query string: `openid` required; `from` and `to` optional (Unix seconds, `from` <=
/// `to`, at most [`MAX_SPAN_SECS`] apart; by default the newest rows of the last 92 days);
/// `cursor` continues a page (its query's `from` and position; `from` and `to` are then not
/// read).
pub fn query(raw: &str, now: u64, key: &str) -> Result<Query, Error> {
    let openid = query_param(raw, "openid").ok_or_else(|| invalid("openid", "is required"))?;
    if !is_openid(&openid) {
        return Err(invalid("openid", "must be an OpenID: 1 to 64 letters, digits, - or _"));
    }
    if let Some(cursor) = query_param(raw, "cursor") {
        let (before, from) = read_cursor(key, &openid, &cursor)?;
        return Ok(Query { openid, from, before });
    }
    let to = query_seconds(raw, "to")?;
    let from = query_seconds(raw, "from")?;
    let (from, to) = match (from, to) {
        (Some(from), Some(to)) => (from, to),
        (Some(from), None) => (from, from.saturating_add(MAX_SPAN_SECS)),
        (None, Some(to)) => (to.saturating_sub(MAX_SPAN_SECS), to),
        // A push's time is WeChat's CreateTime, which may run ahead of this clock by the
        // timestamp window: the newest rows are all of them.
        (None, None) => (now.saturating_sub(MAX_SPAN_SECS), MAX_EXACT),
    };
    if from > to {
        return Err(invalid("to", "must not be before from"));
    }
    if to != MAX_EXACT && to - from > MAX_SPAN_SECS {
        return Err(invalid("to", "must be at most 92 days after from"));
    }
    Ok(Query { openid, from, before: Position::through(to) })
}

/// One row as the API answers it.
#[derive(Debug, Serialize)]
struct Entry<'a> {
    at: i64,
    entry: &'a str,
    what: &'a str,
    outcome: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    kf_account: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
}

#[derive(Debug, Serialize)]
struct Page<'a> {
    openid: &'a str,
    rows: Vec<Entry<'a>>,
    /// The next page's cursor; `null` on the last page.
    next: Option<String>,
}

/// The answer: at most [`PAGE_ROWS`] of `rows` (the query asked for one more, to know whether
/// a next page exists) and the cursor of the next page.
pub fn page(query: &Query, rows: &[LedgerRow], key: &str) -> Result<Vec<u8>, Error> {
    let shown = rows.get(..PAGE_ROWS).unwrap_or(rows);
    let next = match (rows.len() > PAGE_ROWS, shown.last()) {
        (true, Some(last)) => {
            let at = u64::try_from(last.at).map_err(|_| Error::Internal("database: a ledger row"))?;
            Some(cursor(key, &query.openid, query.from, Position { at, id: last.id })?)
        }
        _ => None,
    };
    let rows = shown
        .iter()
        .map(|r| Entry {
            at: r.at,
            entry: &r.entry,
            what: &r.what,
            outcome: &r.outcome,
            kf_account: r.kf_account.as_deref(),
            detail: r.detail.as_deref(),
        })
        .collect();
    serde_json::to_vec(&Page { openid: &query.openid, rows, next }).map_err(|_| Error::Internal("ledger page"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "admin-token";
    const NOW: u64 = 1_790_000_000;
    const DAY: u64 = 86_400;

    fn err(raw: &str) -> (String, &'static str) {
        match query(raw, NOW, KEY) {
            Err(Error::InvalidRequest { field, reason }) => (field, reason),
            other => panic!("{raw}: {other:?}"),
        }
    }

    #[test]
    fn a_query_defaults_to_the_last_92_days_and_names_the_field_at_fault() {
        let q = query("openid=oUser_1-x", NOW, KEY).unwrap();
        assert_eq!(q, Query { openid: "oUser_1-x".into(), from: NOW - 92 * DAY, before: Position::through(MAX_EXACT) });
        let q = query(&format!("openid=o1&from={}&to={}", NOW - DAY, NOW - 10), NOW, KEY).unwrap();
        assert_eq!((q.from, q.before.at), (NOW - DAY, NOW - 10));
        let cases: Vec<(String, (&str, &str))> = vec![
            ("".into(), ("openid", "is required")),
            ("openid=".into(), ("openid", "must be an OpenID: 1 to 64 letters, digits, - or _")),
            ("openid=o%20x".into(), ("openid", "must be an OpenID: 1 to 64 letters, digits, - or _")),
            (format!("openid={}", "o".repeat(65)), ("openid", "must be an OpenID: 1 to 64 letters, digits, - or _")),
            ("openid=o1&from=yesterday".into(), ("from", "must be a time in Unix seconds")),
            ("openid=o1&to=-5".into(), ("to", "must be a time in Unix seconds")),
            ("openid=o1&to=1234567890123".into(), ("to", "must be a time in Unix seconds")),
            (format!("openid=o1&from={NOW}&to={}", NOW - 1), ("to", "must not be before from")),
            (format!("openid=o1&from={}&to={NOW}", NOW - 93 * DAY), ("to", "must be at most 92 days after from")),
            (
                "openid=o1&cursor=abc".into(),
                ("cursor", "was not issued by this worker for this openid, or was altered"),
            ),
        ];
        for (raw, (field, reason)) in cases {
            assert_eq!(err(&raw), (field.to_string(), reason), "{raw}");
        }
    }

    #[test]
    fn a_cursor_continues_its_own_query_and_nothing_else() {
        let issued = cursor(KEY, "oUser", NOW - DAY, Position { at: NOW - 50, id: 42 }).unwrap();
        let q = query(&format!("openid=oUser&cursor={issued}"), NOW, KEY).unwrap();
        assert_eq!(q, Query { openid: "oUser".into(), from: NOW - DAY, before: Position { at: NOW - 50, id: 42 } });
        let refused = ("cursor".to_string(), "was not issued by this worker for this openid, or was altered");
        // Another user, another key, or any byte changed.
        assert_eq!(err(&format!("openid=oOther&cursor={issued}")), refused);
        assert!(query(&format!("openid=oUser&cursor={issued}"), NOW, "another-token").is_err());
        let (payload, mac) = issued.split_once('.').unwrap();
        let forged_payload = URL_SAFE_NO_PAD.encode(format!("{}.{}.{}", NOW, 1, 0));
        assert_eq!(err(&format!("openid=oUser&cursor={forged_payload}.{mac}")), refused);
        let mut flipped = mac.to_string();
        flipped.replace_range(0..1, if mac.starts_with('A') { "B" } else { "A" });
        assert_eq!(err(&format!("openid=oUser&cursor={payload}.{flipped}")), refused);
    }

    #[test]
    fn a_page_holds_at_most_100_rows_and_the_cursor_of_the_next() {
        let row = |id: i64| LedgerRow {
            id,
            at: 1_000 - id,
            entry: "push".into(),
            what: "text".into(),
            outcome: "transfer".into(),
            kf_account: None,
            detail: None,
        };
        let q = Query { openid: "oUser".into(), from: 0, before: Position::through(2_000) };
        let rows: Vec<LedgerRow> = (1..=101).map(row).collect();
        let page: serde_json::Value = serde_json::from_slice(&page(&q, &rows, KEY).unwrap()).unwrap();
        assert_eq!(page["rows"].as_array().unwrap().len(), 100);
        assert_eq!(
            page["rows"][0],
            serde_json::json!({"at": 999, "entry": "push", "what": "text", "outcome": "transfer"})
        );
        let next = query(&format!("openid=oUser&cursor={}", page["next"].as_str().unwrap()), NOW, KEY).unwrap();
        assert_eq!(next.before, Position { at: 900, id: 100 });
        let last: serde_json::Value = serde_json::from_slice(&super::page(&q, &rows[..100], KEY).unwrap()).unwrap();
        assert_eq!(last["next"], serde_json::Value::Null);
    }
}
