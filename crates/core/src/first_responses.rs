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
use crate::database::{AccountDb, FirstResponse, SessionEvent, SessionEventKind};
use crate::error::Error;
use crate::http::ApiCall;
use crate::runtime::Runtime;
use crate::stats::SESSION_MAX_SECS;

/// Records per `getmsglist` call.
pub const PAGE: u64 = 500;
/// Calls per cron run (each page costs 2 D1 queries and a cursor write besides the call).
pub const PAGES_PER_RUN: usize = 2;
/// Records younger than this are left to the next run (WeChat may still be writing them).
pub const LAG_SECS: u64 = 60;
/// The first run reads back this far (the week `make dev` seeds, the sessions of a week).
pub const FIRST_LOOK_BACK_SECS: u64 = 7 * 86_400;
/// The rules' greeting is sent as the agent, so WeChat records it as the agent's message: a record
/// within this many seconds of the greeting's ledger row is the greeting, not a response.
const GREETING_MATCH_SECS: u64 = 10;
/// A greeting belongs to the session it follows by at most this much.
const GREETING_AFTER_START_SECS: u64 = 300;
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
/// session events of their users (any order): one per session, the first agent message after
/// its `kf_create_session` with no `kf_close_session` between, the greeting (if one was sent)
/// left out.
fn first_responses(records: &[(String, u64, String)], events: &[SessionEvent]) -> Vec<FirstResponse> {
    let mut by_user: BTreeMap<&str, Vec<(u64, SessionEventKind)>> = BTreeMap::new();
    for e in events {
        by_user.entry(e.openid.as_str()).or_default().push((e.at, e.kind));
    }
    for list in by_user.values_mut() {
        list.sort_unstable();
    }
    let mut answered = BTreeSet::new();
    let mut greetings_skipped = BTreeSet::new();
    let mut out = Vec::new();
    for (openid, time, worker) in records {
        let Some(list) = by_user.get(openid.as_str()) else { continue };
        // The user's last session event at or before the message: a create opens the session it
        // answers; a close means the message is outside any session.
        let last = list.iter().rev().find(|(at, kind)| at <= time && *kind != SessionEventKind::Greeted);
        let Some(&(start, SessionEventKind::Created)) = last else { continue };
        let session = (openid.clone(), start);
        let greeting = list.iter().find(|(at, kind)| {
            *kind == SessionEventKind::Greeted && *at >= start && at - start <= GREETING_AFTER_START_SECS
        });
        if let Some((at, _)) = greeting {
            if time.abs_diff(*at) <= GREETING_MATCH_SECS && greetings_skipped.insert(session.clone()) {
                continue;
            }
        }
        if answered.insert(session) {
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
    while done.pages < PAGES_PER_RUN {
        if cursor.end == 0 {
            let end = cursor.start.saturating_add(MAX_WINDOW_SECS).min(now.saturating_sub(LAG_SECS));
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
            cursor.msgid = page.msgid.filter(|m| *m > cursor.msgid).unwrap_or(cursor.msgid.saturating_add(PAGE));
        } else {
            cursor = Cursor { start: cursor.end.saturating_add(1), end: 0, msgid: 1 };
        }
        // After each page: a later page's failure does not make the next run read this one again.
        let json = serde_json::to_string(&cursor).map_err(|_| Error::Internal("first responses: the cursor"))?;
        db.put_cursor(CURSOR, &json, now).await?;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(openid: &str, at: u64, kind: SessionEventKind) -> SessionEvent {
        SessionEvent { openid: openid.into(), at, kind }
    }

    fn found(records: &[(&str, u64, &str)], events: &[SessionEvent]) -> Vec<(String, u64, u64, String)> {
        let records: Vec<(String, u64, String)> =
            records.iter().map(|(o, t, w)| (o.to_string(), *t, w.to_string())).collect();
        let mut found = first_responses(&records, events);
        found.sort_by_key(|f| (f.openid.clone(), f.start));
        found.into_iter().map(|f| (f.openid, f.start, f.at, f.kf_account)).collect()
    }

    #[test]
    fn the_first_agent_message_of_each_session_and_none_outside_a_session() {
        use SessionEventKind::{Closed, Created};
        let events =
            [event("u1", 100, Created), event("u1", 500, Closed), event("u1", 900, Created), event("u2", 50, Created)];
        let records = [
            ("u1", 90, "kf1"),  // before any session
            ("u1", 130, "kf1"), // u1's first session: 30 s
            ("u1", 140, "kf1"), // a second message of it
            ("u1", 600, "kf1"), // after the close
            ("u1", 960, "kf2"), // the second session: 60 s
            ("u2", 55, "kf2"),  // u2: 5 s
            ("u3", 10, "kf1"),  // a user without sessions in the ledger
        ];
        let s = |o: &str, a, b, w: &str| (o.to_string(), a, b, w.to_string());
        assert_eq!(
            found(&records, &events),
            vec![s("u1", 100, 130, "kf1"), s("u1", 900, 960, "kf2"), s("u2", 50, 55, "kf2")]
        );
    }

    #[test]
    fn the_greeting_sent_as_the_agent_is_not_its_first_response() {
        use SessionEventKind::{Created, Greeted};
        // The greeting's ledger row is written when WeChat accepted it (a second after the record).
        let events = [event("u1", 100, Created), event("u1", 102, Greeted), event("u2", 100, Created)];
        let records = [("u1", 101, "kf1"), ("u1", 160, "kf1"), ("u2", 101, "kf1")];
        let s = |o: &str, a, b, w: &str| (o.to_string(), a, b, w.to_string());
        // u2 had no greeting: its message 1 s after the start is a response.
        assert_eq!(found(&records, &events), vec![s("u1", 100, 160, "kf1"), s("u2", 100, 101, "kf1")]);
    }
}
