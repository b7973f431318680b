//! Agents' first responses, imported by the cron from `customservice/msgrecord/getmsglist` when
//! the rules ask for them (`stats.first_response`: every page is an API call of the account's
//! quota).
//!
//! WeChat's records say when an agent sent a message (opercode 2002) but not in which session.
//! The ledger knows the sessions: the first agent message after a user's `kf_create_session`,
//! with no `kf_close_session` between, is that session's first response. It is written to the
//! ledger as a row of its own (`what` = `first_response`, at the session's start, `detail` the
//! response's time, `kf_account` the agent who sent it) under the key `first_response`: one per
//! session whatever reads the records again, and the fold counts it like any row, exactly once.
//!
//! The import reads the records window by window (at most a day each, WeChat's limit), a page of
//! [`PAGE`] records at a time (well under 1 MiB an answer), at most [`PAGES_PER_RUN`] pages a
//! run, and keeps where it stopped in the database: a failed run reads the same page again.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::api::answer::read_body;
use crate::api::client::WeChatApi;
use crate::database::{AccountDb, FirstResponse, SessionEvent};
use crate::error::Error;
use crate::http::ApiCall;
use crate::runtime::Runtime;
use crate::stats::SESSION_MAX_SECS;

/// Records per `getmsglist` call.
pub const PAGE: u64 = 500;
/// Calls per cron run.
pub const PAGES_PER_RUN: usize = 8;
/// Records younger than this are left to the next run (WeChat may still be writing them).
pub const LAG_SECS: u64 = 60;
/// The first run reads back this far.
pub const FIRST_LOOK_BACK_SECS: u64 = 3600;
/// WeChat's widest window: `endtime` within a day of `starttime`.
const MAX_WINDOW_SECS: u64 = 86_399;
/// An agent sent a message.
const AGENT_SENT: i64 = 2002;
/// The cursor's name in the database's shared copies.
pub const CURSOR: &str = "first_responses_cursor";

/// Where the import stands: the window being read and the next `msgid` in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub start: u64,
    pub end: u64,
    pub msgid: u64,
}

#[derive(Debug, Deserialize)]
struct Record {
    openid: String,
    opercode: i64,
    time: u64,
    #[serde(default)]
    worker: String,
}

#[derive(Debug, Deserialize)]
struct Page {
    #[serde(default)]
    recordlist: Vec<Record>,
    #[serde(default)]
    msgid: Option<u64>,
}

/// What one run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Imported {
    pub pages: usize,
    pub records: usize,
    pub first_responses: usize,
}

/// The sessions' first responses among `records` (agents' messages, in time order), given the
/// session events of their users (`(openid, at, created)`, any order): `(openid, session start,
/// response time, agent)`, one per session.
fn first_responses(records: &[(String, u64, String)], events: &[SessionEvent]) -> Vec<FirstResponse> {
    let mut by_user: BTreeMap<&str, Vec<(u64, bool)>> = BTreeMap::new();
    for e in events {
        by_user.entry(e.openid.as_str()).or_default().push((e.at, e.created));
    }
    for list in by_user.values_mut() {
        list.sort_unstable();
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (openid, time, worker) in records {
        let Some(list) = by_user.get(openid.as_str()) else { continue };
        // The user's last session event at or before the message: a create opens the session it
        // answers; a close means the message is outside any session.
        let Some(&(start, true)) = list.iter().rev().find(|(at, _)| at <= time) else { continue };
        if seen.insert((openid.clone(), start)) {
            out.push(FirstResponse { openid: openid.clone(), start, at: *time, kf_account: worker.clone() });
        }
    }
    out
}

/// Reads the records after the stored cursor and writes the first responses they hold.
pub async fn import<R: Runtime>(
    api: &WeChatApi<R>,
    db: &AccountDb<'_, R::Database>,
    now: u64,
) -> Result<Imported, Error> {
    let stored = db.cached(CURSOR).await?;
    let mut cursor = match stored {
        Some((json, _)) => serde_json::from_str(&json).map_err(|_| Error::Internal("first responses: the cursor"))?,
        None => Cursor { start: now.saturating_sub(FIRST_LOOK_BACK_SECS), end: 0, msgid: 1 },
    };
    let mut done = Imported::default();
    let before = cursor;
    while done.pages < PAGES_PER_RUN {
        if cursor.end == 0 {
            let end = (cursor.start + MAX_WINDOW_SECS).min(now.saturating_sub(LAG_SECS));
            if end <= cursor.start {
                break;
            }
            cursor.end = end;
        }
        let body = serde_json::json!({"starttime": cursor.start, "endtime": cursor.end, "msgid": cursor.msgid, "number": PAGE});
        let answer =
            api.call(&ApiCall::post("/customservice/msgrecord/getmsglist", body.to_string().into_bytes())).await?;
        let page: Page = serde_json::from_value(serde_json::Value::Object(read_body(&answer, "getmsglist")?))
            .map_err(|_| Error::Upstream("getmsglist: an unexpected answer"))?;
        done.pages += 1;
        done.records += page.recordlist.len();
        let mut records: Vec<(String, u64, String)> = page
            .recordlist
            .iter()
            .filter(|r| r.opercode == AGENT_SENT)
            .map(|r| (r.openid.clone(), r.time, r.worker.clone()))
            .collect();
        records.sort_by_key(|r| r.1);
        if let (Some(first), Some(last)) = (records.first(), records.last()) {
            let users: BTreeSet<&str> = records.iter().map(|r| r.0.as_str()).collect();
            let events = db.session_events(&users, first.1.saturating_sub(SESSION_MAX_SECS), last.1).await?;
            let found = first_responses(&records, &events);
            done.first_responses += db.record_first_responses(&found).await?;
        }
        let full = page.recordlist.len() as u64 >= PAGE;
        if full {
            cursor.msgid = page.msgid.filter(|m| *m > cursor.msgid).unwrap_or(cursor.msgid + PAGE);
        } else {
            cursor = Cursor { start: cursor.end + 1, end: 0, msgid: 1 };
        }
    }
    if cursor != before {
        let json = serde_json::to_string(&cursor).map_err(|_| Error::Internal("first responses: the cursor"))?;
        db.cache(CURSOR, &json, now).await?;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(openid: &str, at: u64, created: bool) -> SessionEvent {
        SessionEvent { openid: openid.into(), at, created }
    }

    #[test]
    fn the_first_agent_message_of_each_session_and_none_outside_a_session() {
        let events = [event("u1", 100, true), event("u1", 500, false), event("u1", 900, true), event("u2", 50, true)];
        let records: Vec<(String, u64, String)> = [
            ("u1", 90, "kf1"),  // before any session
            ("u1", 130, "kf1"), // u1's first session: 30 s
            ("u1", 140, "kf1"), // a second message of it
            ("u1", 600, "kf1"), // after the close
            ("u1", 960, "kf2"), // the second session: 60 s
            ("u2", 55, "kf2"),  // u2: 5 s
            ("u3", 10, "kf1"),  // a user without sessions in the ledger
        ]
        .iter()
        .map(|(o, t, w)| (o.to_string(), *t, w.to_string()))
        .collect();
        let mut found = first_responses(&records, &events);
        found.sort_by_key(|f| (f.openid.clone(), f.start));
        let got: Vec<(&str, u64, u64, &str)> =
            found.iter().map(|f| (f.openid.as_str(), f.start, f.at, f.kf_account.as_str())).collect();
        assert_eq!(got, vec![("u1", 100, 130, "kf1"), ("u1", 900, 960, "kf2"), ("u2", 50, 55, "kf2")]);
    }
}
