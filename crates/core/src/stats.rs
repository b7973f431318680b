//! The fold, pure: ledger rows in insertion order, and the state of the users they concern, to
//! the hourly figures they add and the users' new state.
//!
//! The model, per account:
//! - a **push** counts in its hour (`CreateTime`); a user message also counts as a message, its
//!   user (`users`), and a transfer its user (`transferred`). A message that arrived outside the
//!   rules' office hours (the ledger's `after_hours`, whatever the desk answered; for rows written
//!   before that column: answered `closed`, or transferred to wait because closed) counts
//!   **after hours**.
//! - an **episode** opens with a transfer when the user is neither waiting nor in a session. It
//!   ends with `kf_create_session`: its **queue wait** is from the transfer to the session,
//!   counted in the hour of the transfer. Transfers while waiting belong to the same episode;
//!   one older than [`EPISODE_MAX_SECS`] is abandoned (never picked up) and the next transfer
//!   opens another.
//! - a **session** counts in the hour of `kf_create_session`, for the account and its agent; its
//!   **length** is from there to `kf_close_session`, counted in the hour it started, for the
//!   agent who closed it. `kf_switch_session` counts a **switch** for the agent who receives it.
//! - a **first response** (a row the cron imports, see `first_responses`): from the session's
//!   start to the agent's first message, counted in the hour the session started, for the
//!   account and the agent who answered.
//! - an **effect**: a notice (`notice_closed`, `notice_no_agent`) or a waiting alert
//!   (`alert_waiting`), sent, skipped or failed, in the hour of its outcome.

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// A waiting episode older than this is abandoned: a session after it is not its pickup.
pub const EPISODE_MAX_SECS: u64 = 86_400;
/// A session without its close for this long is forgotten (its close was never seen).
pub const SESSION_MAX_SECS: u64 = 2 * 86_400;

/// A ledger row as the fold reads it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FoldRow {
    pub id: i64,
    pub appid: String,
    pub openid: String,
    pub at: u64,
    /// `push` or `effect`.
    pub entry: String,
    pub what: String,
    pub outcome: String,
    pub kf_account: Option<String>,
    pub detail: Option<String>,
    /// A user message outside office hours: 1, else 0; `None` for events and older rows.
    pub after_hours: Option<i64>,
}

/// What the fold remembers of a user between folds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserState {
    /// The transfer that opened the user's episode, while nobody picked it up.
    pub waiting_since: Option<u64>,
    /// The session's agent and start, while it lasts.
    pub session: Option<(String, u64)>,
}

impl UserState {
    /// Nothing to remember: the user's row is deleted.
    pub fn is_empty(&self) -> bool {
        self.waiting_since.is_none() && self.session.is_none()
    }
}

/// An hourly row's key: the account, the hour's start (UTC, Unix seconds), the agent (`""`: the
/// whole account).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HourKey {
    pub appid: String,
    pub hour: u64,
    pub kf_account: String,
}

/// Sent, skipped, failed.
pub type Outcomes = [u64; 3];

/// The figures of one hour (of an account or one agent) as stored: counts and the lists a report
/// needs whole (see `migrations/0004_stats.sql`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hour {
    pub pushes: u64,
    /// User messages (pushes that are not events).
    pub messages: u64,
    /// User messages that arrived outside office hours.
    pub after_hours: u64,
    pub episodes: u64,
    pub sessions: u64,
    pub switches: u64,
    pub notices: Outcomes,
    pub alerts: Outcomes,
    /// The users who wrote, and who were transferred ([`user_tag`]s; repeats allowed until
    /// [`Hour::dedup`]).
    pub users: Vec<Tag>,
    pub transferred: Vec<Tag>,
    /// (the episode's start, its wait in seconds).
    pub waits: Vec<(u64, u64)>,
    pub first_responses: Vec<u64>,
    pub session_secs: Vec<u64>,
}

impl Hour {
    /// Adds `other`'s figures to these.
    pub fn merge(&mut self, other: Hour) {
        self.pushes += other.pushes;
        self.messages += other.messages;
        self.after_hours += other.after_hours;
        self.episodes += other.episodes;
        self.sessions += other.sessions;
        self.switches += other.switches;
        for i in 0..3 {
            if let (Some(a), Some(b)) = (self.notices.get_mut(i), other.notices.get(i)) {
                *a += b;
            }
            if let (Some(a), Some(b)) = (self.alerts.get_mut(i), other.alerts.get(i)) {
                *a += b;
            }
        }
        self.users.extend(other.users);
        self.transferred.extend(other.transferred);
        self.waits.extend(other.waits);
        self.first_responses.extend(other.first_responses);
        self.session_secs.extend(other.session_secs);
    }
}

impl Hour {
    /// Sorts the user lists and drops repeats: each user once.
    pub fn dedup(&mut self) {
        for list in [&mut self.users, &mut self.transferred] {
            list.sort_unstable();
            list.dedup();
        }
    }
}

/// What a user is called in the hourly rows: 48 bits of SHA-256(appid, OpenID), enough to tell
/// a deployment's users apart (a collision in 2^48) and never the OpenID itself.
pub type Tag = u64;

pub fn user_tag(appid: &str, openid: &str) -> Tag {
    let digest = Sha256::new().chain_update(appid).chain_update(b"\n").chain_update(openid).finalize();
    digest.iter().take(6).fold(0, |tag, b| tag << 8 | u64::from(*b))
}

/// A tag as stored: 8 characters of base64url.
pub fn encode_tag(tag: Tag) -> String {
    URL_SAFE_NO_PAD.encode(tag.to_be_bytes().get(2..).unwrap_or_default())
}

/// A stored tag, if it is one.
pub fn decode_tag(text: &str) -> Option<Tag> {
    let mut bytes = [0u8; 8];
    let n = URL_SAFE_NO_PAD.decode_slice(text, bytes.get_mut(2..)?).ok()?;
    (n == 6).then(|| u64::from_be_bytes(bytes))
}

/// The start of the UTC hour of `at`.
pub fn hour_of(at: u64) -> u64 {
    at - at % 3600
}

/// The fold's answer: the figures to add per hour, and the users' state after the rows.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Folded {
    pub hours: BTreeMap<HourKey, Hour>,
    pub users: BTreeMap<(String, String), UserState>,
}

impl Folded {
    fn hour(&mut self, appid: &str, at: u64, kf_account: &str) -> &mut Hour {
        let key = HourKey { appid: appid.to_string(), hour: hour_of(at), kf_account: kf_account.to_string() };
        self.hours.entry(key).or_default()
    }

    /// The account's row and, with an agent, the agent's: `f` applied to each.
    fn both(&mut self, appid: &str, at: u64, agent: Option<&str>, f: impl Fn(&mut Hour)) {
        f(self.hour(appid, at, ""));
        if let Some(agent) = agent.filter(|a| !a.is_empty()) {
            f(self.hour(appid, at, agent));
        }
    }
}

fn outcome_index(outcome: &str) -> Option<usize> {
    match outcome {
        "sent" | "done" => Some(0),
        "skipped" => Some(1),
        "failed" => Some(2),
        _ => None,
    }
}

/// Folds `rows` (in insertion order) over the users' `state` (those absent have none): the
/// figures they add, and the new state of every user they concern.
pub fn fold(rows: &[FoldRow], mut state: BTreeMap<(String, String), UserState>) -> Folded {
    let mut out = Folded::default();
    for row in rows {
        let key = (row.appid.clone(), row.openid.clone());
        let user = state.entry(key).or_default();
        let (appid, at) = (row.appid.as_str(), row.at);
        if row.entry == "effect" {
            let Some(i) = outcome_index(&row.outcome) else { continue };
            let counter = match row.what.as_str() {
                "notice_closed" | "notice_no_agent" => |h: &mut Hour, i: usize| h.notices.get_mut(i).map(|n| *n += 1),
                "alert_waiting" => |h: &mut Hour, i: usize| h.alerts.get_mut(i).map(|n| *n += 1),
                _ => continue,
            };
            counter(out.hour(appid, at, ""), i);
            continue;
        }
        // A session's first response, imported from WeChat's records (not a push): at the
        // session's start, its time in `detail`.
        if row.what == "first_response" {
            if let Some(response) = row.detail.as_deref().and_then(|d| d.parse::<u64>().ok()) {
                let agent = row.kf_account.as_deref();
                out.both(appid, at, agent, |h| h.first_responses.push(response.saturating_sub(at)));
            }
            continue;
        }
        out.hour(appid, at, "").pushes += 1;
        // A session's close was never seen: forget it rather than block the user's episodes.
        if user.session.as_ref().is_some_and(|(_, start)| at.saturating_sub(*start) > SESSION_MAX_SECS) {
            user.session = None;
        }
        let agent = row.kf_account.as_deref();
        match row.what.as_str() {
            "event:kf_create_session" => {
                let agent = agent.unwrap_or_default();
                let tag = user_tag(appid, &row.openid);
                out.both(appid, at, Some(agent), |h| h.sessions += 1);
                out.hour(appid, at, agent).users.push(tag);
                if let Some(since) = user.waiting_since.take() {
                    if at >= since && at - since <= EPISODE_MAX_SECS {
                        out.both(appid, since, Some(agent), |h| h.waits.push((since, at - since)));
                    }
                }
                user.session = Some((agent.to_string(), at));
            }
            "event:kf_switch_session" => {
                out.both(appid, at, agent, |h| h.switches += 1);
                if let (Some((current, _)), Some(to)) = (user.session.as_mut(), agent) {
                    *current = to.to_string();
                }
            }
            "event:kf_close_session" => {
                if let Some((_, start)) = user.session.take() {
                    if at >= start {
                        out.both(appid, start, agent, |h| h.session_secs.push(at - start));
                    }
                }
            }
            what if what.starts_with("event:") => {}
            _ => {
                let tag = user_tag(appid, &row.openid);
                let hour = out.hour(appid, at, "");
                let transfer = row.outcome == "transfer";
                let after_hours = match row.after_hours {
                    Some(flag) => flag == 1,
                    None => row.outcome == "closed" || (transfer && row.detail.as_deref() == Some("closed")),
                };
                hour.messages += 1;
                hour.after_hours += u64::from(after_hours);
                if transfer {
                    hour.transferred.push(tag);
                }
                hour.users.push(tag);
                let waiting = user.waiting_since.is_some_and(|since| at.saturating_sub(since) <= EPISODE_MAX_SECS);
                if transfer && user.session.is_none() && !waiting {
                    user.waiting_since = Some(at);
                    out.hour(appid, at, "").episodes += 1;
                }
            }
        }
    }
    out.users = state;
    out
}
