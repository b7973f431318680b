//! Every statement the core runs on its database (D1; SQLite in the native tests), typed. The
//! schema is `migrations/`. Each statement is one round trip and, where two requests could race
//! (a push delivered twice, a rate limit, a remembered request), one conditional write: never a
//! read, then a write.
//!
//! What each statement costs in D1 rows (an index entry counts as a row written):
//! - a push's row: 2 written (the row and `ledger_by_user`); a retry's insert: 0;
//! - an effect's row: 2 written;
//! - a rate limit taken, a request remembered, a shared list stored: 1 written (tables without
//!   a separate index); a limit still running: 0;
//! - a user's request read, a shared list read: 1 read; a timeline page: about 2 read per row
//!   shown (the index, then the row); a retention statement: up to ~700 read, 1 written per
//!   row deleted.

use serde::Deserialize;

use crate::accounts::{Settings, Stored};
use crate::error::Error;
use crate::operators::{Listed, Presented, LAST_USED_EVERY_SECS, MAX_PER_ACCOUNT};
use crate::runtime::{Database, Param, Row, Statement};
use crate::stats::{decode_tag, encode_tag, FoldRow, Hour, HourKey, Tag, UserState};

/// A push, as the ledger keeps it (never its text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushRow<'a> {
    pub openid: &'a str,
    /// The push's `CreateTime`: a retry has the same.
    pub at: u64,
    /// [`wechat_mp::Message::dedup_key`].
    pub key: &'a str,
    /// The message type or event (`text`, `event:subscribe`).
    pub what: &'a str,
    /// The decision: `transfer`, `keyword`, `welcome`, `gate_prompt`, `closed`, `no_agent`,
    /// `success`.
    pub decision: &'a str,
    /// The transfer's target, or a session event's agent.
    pub kf_account: Option<&'a str>,
    /// Why a transferred user waits (`closed`, `no_agent`), or a switch's former agent.
    pub detail: Option<&'a str>,
    /// A user message: whether it arrived outside the rules' office hours; `None` for an event.
    pub after_hours: Option<bool>,
}

/// What became of one effect of a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectRow {
    pub openid: String,
    pub at: u64,
    /// `notice_closed`, `notice_no_agent`, `alert_waiting`, `greeting`, `farewell`,
    /// `remember_request`.
    pub what: &'static str,
    /// `sent` (or `done`), `skipped`, `failed`.
    pub outcome: &'static str,
    /// A greeting's or farewell's agent.
    pub kf_account: Option<String>,
    /// Why skipped, or what failed (`errcode 45015`).
    pub detail: Option<String>,
}

/// A session's start, its greeting or its end, from the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEvent {
    pub openid: String,
    pub at: u64,
    pub kind: SessionEventKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SessionEventKind {
    /// `kf_create_session`.
    Created,
    /// The rules' greeting, sent as the agent after the session started.
    Greeted,
    /// `kf_close_session`.
    Closed,
}

/// A session's first response: the agent's first message after the session started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstResponse {
    pub openid: String,
    /// The session's start (`kf_create_session`).
    pub start: u64,
    /// The agent's message.
    pub at: u64,
    pub kf_account: String,
}

/// One row of a user's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct LedgerRow {
    pub id: i64,
    pub at: i64,
    /// `push` or `effect`.
    pub entry: String,
    pub what: String,
    pub outcome: String,
    pub kf_account: Option<String>,
    pub detail: Option<String>,
}

/// Where a timeline page starts: rows strictly older than (`at`, `id`), newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub at: u64,
    pub id: i64,
}

/// The largest integer D1 binds exactly (JS numbers): no time or row id reaches it.
pub const MAX_EXACT: u64 = (1 << 53) - 1;

impl Position {
    /// Every row at `at` or before.
    pub fn through(at: u64) -> Position {
        Position { at: at.min(MAX_EXACT), id: MAX_EXACT as i64 }
    }
}

/// Most rows of a timeline page.
pub const PAGE_ROWS: usize = 100;
/// Most ledger rows the cron deletes in one statement, and statements in one run.
pub const PURGE_BATCH: u64 = 500;
pub const PURGE_BATCHES: usize = 5;

const RECORD_PUSH: &str =
    "INSERT INTO ledger (appid, openid, at, entry, push_key, what, outcome, kf_account, detail, after_hours) \
     VALUES (?1, ?2, ?3, 'push', ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT DO NOTHING";
const RECORD_EFFECT: &str =
    "INSERT INTO ledger (appid, openid, at, entry, push_key, what, outcome, kf_account, detail) \
     VALUES (?1, ?2, ?3, 'effect', NULL, ?4, ?5, ?6, ?7)";
/// Takes the limit unless it runs past `?4` (now): the row is written only when it was absent or
/// had run out, so of two requests racing for it exactly one changes it.
const TAKE_LIMIT: &str = "INSERT INTO limits (appid, name, until) VALUES (?1, ?2, ?3) \
     ON CONFLICT (appid, name) DO UPDATE SET until = excluded.until WHERE limits.until <= ?4";
const LIMIT_UNTIL: &str = "SELECT until FROM limits WHERE appid = ?1 AND name = ?2";
const REMEMBER_REQUEST: &str = "INSERT INTO requests (appid, openid, until) VALUES (?1, ?2, ?3) \
     ON CONFLICT (appid, openid) DO UPDATE SET until = max(requests.until, excluded.until)";
const REQUESTED_UNTIL: &str = "SELECT until FROM requests WHERE appid = ?1 AND openid = ?2 AND until > ?3";
const CACHED: &str = "SELECT value, fetched_at FROM cache WHERE appid = ?1 AND name = ?2";
/// Keeps the newest copy when two isolates store theirs.
const CACHE: &str = "INSERT INTO cache (appid, name, value, fetched_at) VALUES (?1, ?2, ?3, ?4) \
     ON CONFLICT (appid, name) DO UPDATE SET value = excluded.value, fetched_at = excluded.fetched_at \
     WHERE excluded.fetched_at > cache.fetched_at";
/// (A session's first response is a row for the statistics, not something that happened then.)
const TIMELINE: &str = "SELECT id, at, entry, what, outcome, kf_account, detail FROM ledger \
     WHERE appid = ?1 AND openid = ?2 AND at >= ?3 AND at <= ?4 AND (at < ?4 OR id < ?5) \
     AND what <> 'first_response' ORDER BY at DESC, id DESC LIMIT ?6";
/// The ledger's oldest rows by insertion (`id`) that are older than the cutoff, whatever their
/// account (rows of an AppID the deployment no longer has must go too): a bounded read however
/// large the table, with no index on time (which would cost a row written per row). The newest
/// row stays whatever its age: row ids continue from it (`INTEGER PRIMARY KEY` reuses ids once
/// the table is empty), so the statistics' fold, which reads by id, never falls behind.
const PURGE_LEDGER: &str = "DELETE FROM ledger WHERE id IN (SELECT id FROM ledger ORDER BY id LIMIT ?2) AND at < ?1 \
     AND id < (SELECT max(id) FROM ledger)";
const PURGE_LIMITS: &str = "DELETE FROM limits WHERE appid = ?1 AND until <= ?2";
const PURGE_REQUESTS: &str = "DELETE FROM requests WHERE appid = ?1 AND until <= ?2";
/// A new account, unless its appid is taken (0 rows changed: the caller answers 409).
const ACCOUNT_INSERT: &str = "INSERT INTO accounts (appid, name, sealed, settings, created, updated) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?5) ON CONFLICT (appid) DO NOTHING";
const ACCOUNT_GET: &str = "SELECT appid, name, sealed, settings, created, updated FROM accounts WHERE appid = ?1";
/// The accounts in appid order: the table's own order (its key), read up to the limit.
const ACCOUNT_LIST: &str =
    "SELECT appid, name, sealed, settings, created, updated FROM accounts ORDER BY appid LIMIT ?1";
const ACCOUNT_UPDATE: &str = "UPDATE accounts SET name = ?2, sealed = ?3, settings = ?4, updated = ?5 WHERE appid = ?1";
const ACCOUNT_DELETE: &str = "DELETE FROM accounts WHERE appid = ?1";
/// The accounts after `?1` in appid order (the cron's round of database accounts).
const ACCOUNTS_AFTER: &str = "SELECT appid FROM accounts WHERE appid > ?1 ORDER BY appid LIMIT ?2";
const ACCOUNT_LIMITS_DELETE: &str = "DELETE FROM limits WHERE appid = ?1";
const ACCOUNT_REQUESTS_DELETE: &str = "DELETE FROM requests WHERE appid = ?1";
const ACCOUNT_CACHE_DELETE: &str = "DELETE FROM cache WHERE appid = ?1";
const TOKEN_INSERT: &str =
    "INSERT INTO operator_tokens (id, appid, name, hash, created) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (id) DO NOTHING";
const TOKEN_GET: &str = "SELECT appid, hash FROM operator_tokens WHERE id = ?1";
const TOKEN_LIST: &str = "SELECT id, name, created, last_used FROM operator_tokens WHERE appid = ?1 \
     ORDER BY created LIMIT ?2";
const TOKEN_DELETE: &str = "DELETE FROM operator_tokens WHERE appid = ?1 AND id = ?2";
/// `last_used`, written at most once per `?3` seconds.
const TOKEN_USED: &str = "UPDATE operator_tokens SET last_used = ?2 WHERE id = ?1 \
     AND (last_used IS NULL OR last_used <= ?2 - ?3)";
const TOKENS_OF_ACCOUNT_DELETE: &str = "DELETE FROM operator_tokens WHERE appid = ?1";

/// The session events of the users `?2` (a JSON array of OpenIDs) from `?3` through `?4`, and the
/// session greetings sent to them (sent as the agent: WeChat's records show them as the agent's).
const SESSION_EVENTS: &str = "SELECT l.openid, l.at, l.what FROM json_each(?2) AS j CROSS JOIN ledger AS l \
     ON l.appid = ?1 AND l.openid = j.value AND l.at >= ?3 AND l.at <= ?4 \
     WHERE l.what IN ('event:kf_create_session', 'event:kf_close_session') \
     OR (l.what = 'greeting' AND l.outcome = 'sent')";
/// Sessions' first responses (`?2`: `[openid, session start, response time, agent]`), one row per
/// session: its key is `first_response` at the session's start, so a second import conflicts.
const RECORD_FIRST_RESPONSES: &str =
    "INSERT INTO ledger (appid, openid, at, entry, push_key, what, outcome, kf_account, detail) \
     SELECT ?1, json_extract(value, '$[0]'), json_extract(value, '$[1]'), 'push', 'first_response', \
     'first_response', 'seen', json_extract(value, '$[3]'), CAST(json_extract(value, '$[2]') AS TEXT) \
     FROM json_each(?2) WHERE true ON CONFLICT DO NOTHING";

/// Where the fold stopped: the newest fold's last ledger row (none yet: 0).
const STATS_CURSOR: &str = "SELECT last_id FROM stats_folds ORDER BY first_id DESC LIMIT 1";
/// The ledger's rows after the fold's cursor, in insertion order (the table's key: a bounded
/// read however large the ledger).
const STATS_LEDGER_AFTER: &str = "SELECT id, appid, openid, at, entry, what, outcome, kf_account, detail, \
     after_hours FROM ledger WHERE id > ?1 ORDER BY id LIMIT ?2";
/// The fold's state of the users `?1` (a JSON array of `[appid, openid]`), one lookup by key each.
const STATS_USERS_GET: &str = "SELECT u.appid, u.openid, u.waiting_since, u.session_agent, u.session_start \
     FROM json_each(?1) AS j CROSS JOIN stats_users AS u \
     ON u.appid = json_extract(j.value, '$[0]') AND u.openid = json_extract(j.value, '$[1]')";
/// The hourly rows `?1` (a JSON array of `[appid, hour, kf_account]`), one lookup by key each.
const STATS_HOURS_GET: &str = "SELECT h.* FROM json_each(?1) AS j CROSS JOIN stats_hours AS h \
     ON h.appid = json_extract(j.value, '$[0]') AND h.hour = json_extract(j.value, '$[1]') \
     AND h.kf_account = json_extract(j.value, '$[2]')";
/// A fold's claim on the rows after `?1`: a plain insert, so that a second fold from the same
/// cursor fails and its whole batch rolls back.
const STATS_CLAIM: &str = "INSERT INTO stats_folds (first_id, last_id, at) VALUES (?1, ?2, ?3)";
/// Claims older than `?2` (an hour ago): a fold that read their cursor would have to have run for
/// an hour to commit after this.
const STATS_FOLDS_PRUNE: &str = "DELETE FROM stats_folds WHERE first_id < ?1 AND at < ?2";
/// The hourly rows `?1`, whole (a JSON array of arrays in the table's column order).
const STATS_HOURS_PUT: &str = "INSERT OR REPLACE INTO stats_hours \
     (appid, hour, kf_account, pushes, messages, after_hours, episodes, sessions, switches, \
     notices_sent, notices_skipped, notices_failed, alerts_sent, alerts_skipped, alerts_failed, \
     users, transferred, waits, first_responses, session_secs) \
     SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), \
     json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]'), \
     json_extract(value, '$[6]'), json_extract(value, '$[7]'), json_extract(value, '$[8]'), \
     json_extract(value, '$[9]'), json_extract(value, '$[10]'), json_extract(value, '$[11]'), \
     json_extract(value, '$[12]'), json_extract(value, '$[13]'), json_extract(value, '$[14]'), \
     json_extract(value, '$[15]'), json_extract(value, '$[16]'), json_extract(value, '$[17]'), \
     json_extract(value, '$[18]'), json_extract(value, '$[19]') FROM json_each(?1)";
/// The users `?1` to follow (`[appid, openid, waiting_since, session_agent, session_start]`).
const STATS_USERS_PUT: &str = "INSERT OR REPLACE INTO stats_users \
     (appid, openid, waiting_since, session_agent, session_start) \
     SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), \
     json_extract(value, '$[3]'), json_extract(value, '$[4]') FROM json_each(?1)";
/// The users `?1` (`[appid, openid]`) the fold no longer follows.
const STATS_USERS_DELETE: &str = "DELETE FROM stats_users WHERE (appid, openid) IN \
     (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?1))";
/// An account's hourly rows of a range (the key's order), all or the account's and one agent's.
const STATS_REPORT: &str = "SELECT * FROM stats_hours WHERE appid = ?1 AND hour >= ?2 AND hour <= ?3 \
     AND (?4 IS NULL OR kf_account = '' OR kf_account = ?4)";
/// When an account's users still waiting started, from `?2` on (the partial index).
const STATS_WAITING: &str = "SELECT waiting_since FROM stats_users WHERE waiting_since >= ?2 AND appid = ?1";
/// Users who waited since before `?1` and were never picked up (nor wrote again).
const STATS_WAITING_PURGE: &str = "DELETE FROM stats_users WHERE waiting_since < ?1 AND session_start IS NULL";
/// Sessions that started before `?1` and whose close never came.
const STATS_SESSIONS_PURGE: &str = "DELETE FROM stats_users WHERE session_start < ?1";
/// An account's hourly rows before `?2` (the ledger's retention), at most `?3` a statement.
const STATS_HOURS_PURGE: &str = "DELETE FROM stats_hours WHERE (appid, hour, kf_account) IN \
     (SELECT appid, hour, kf_account FROM stats_hours WHERE appid = ?1 AND hour < ?2 LIMIT ?3)";
/// An account's statistics, with the account.
const ACCOUNT_STATS_DELETE: &str = "DELETE FROM stats_hours WHERE appid = ?1";
const ACCOUNT_STATS_USERS_DELETE: &str = "DELETE FROM stats_users WHERE appid = ?1";
/// A cursor only the cron writes (the newest-wins rule of `CACHE` would keep two writes in the
/// same second from both landing).
const CURSOR_PUT: &str = "INSERT INTO cache (appid, name, value, fetched_at) VALUES (?1, ?2, ?3, ?4) \
     ON CONFLICT (appid, name) DO UPDATE SET value = excluded.value, fetched_at = excluded.fetched_at";

/// Every statement of the core, for the tests that check each one's query plan.
pub const STATEMENTS: &[&str] = &[
    RECORD_PUSH,
    RECORD_EFFECT,
    TAKE_LIMIT,
    LIMIT_UNTIL,
    REMEMBER_REQUEST,
    REQUESTED_UNTIL,
    CACHED,
    CACHE,
    TIMELINE,
    PURGE_LEDGER,
    PURGE_LIMITS,
    PURGE_REQUESTS,
    ACCOUNT_INSERT,
    ACCOUNT_GET,
    ACCOUNT_LIST,
    ACCOUNT_UPDATE,
    ACCOUNT_DELETE,
    TOKEN_INSERT,
    TOKEN_GET,
    TOKEN_LIST,
    TOKEN_DELETE,
    TOKEN_USED,
    TOKENS_OF_ACCOUNT_DELETE,
    ACCOUNTS_AFTER,
    ACCOUNT_LIMITS_DELETE,
    ACCOUNT_REQUESTS_DELETE,
    ACCOUNT_CACHE_DELETE,
    SESSION_EVENTS,
    RECORD_FIRST_RESPONSES,
    STATS_CURSOR,
    STATS_LEDGER_AFTER,
    STATS_USERS_GET,
    STATS_HOURS_GET,
    STATS_CLAIM,
    STATS_FOLDS_PRUNE,
    STATS_HOURS_PUT,
    STATS_USERS_PUT,
    STATS_USERS_DELETE,
    STATS_REPORT,
    STATS_WAITING,
    STATS_WAITING_PURGE,
    STATS_SESSIONS_PURGE,
    STATS_HOURS_PURGE,
    ACCOUNT_STATS_DELETE,
    ACCOUNT_STATS_USERS_DELETE,
    CURSOR_PUT,
];

/// One account's part of the database: the narrow handle the front desk, the effects, the
/// online list and the ledger API take.
pub struct AccountDb<'a, D> {
    pub db: &'a D,
    /// The account's AppID (or `default`).
    pub appid: &'a str,
}

fn unreadable(what: &'static str) -> Error {
    Error::Internal(what)
}

fn int(row: &Row, column: &str) -> Option<i64> {
    row.get(column).and_then(serde_json::Value::as_i64)
}

/// A column holding a time (Unix seconds) or another count.
fn time(row: &Row, column: &str) -> Option<u64> {
    int(row, column).and_then(|n| u64::try_from(n).ok())
}

fn text(row: &Row, column: &str) -> Option<String> {
    row.get(column).and_then(serde_json::Value::as_str).map(str::to_string)
}

/// The one column `until` of the first row, if any.
fn until(rows: &[Row], what: &'static str) -> Result<Option<u64>, Error> {
    rows.first().map(|row| time(row, "until").ok_or(unreadable(what))).transpose()
}

impl<D: Database> AccountDb<'_, D> {
    fn statement(&self, sql: &'static str, mut params: Vec<Param>) -> Statement {
        params.insert(0, self.appid.into());
        Statement::new(sql, params)
    }

    /// Records a push; `true` when this is its first delivery (the caller then runs its
    /// effects), `false` for a retry already recorded, by any isolate anywhere.
    pub async fn record_push(&self, push: &PushRow<'_>) -> Result<bool, Error> {
        let statement = self.statement(
            RECORD_PUSH,
            vec![
                push.openid.into(),
                push.at.into(),
                push.key.into(),
                push.what.into(),
                push.decision.into(),
                push.kf_account.into(),
                push.detail.into(),
                push.after_hours.map_or(Param::Null, |a| Param::Int(i64::from(a))),
            ],
        );
        Ok(self.db.execute(&statement).await? == 1)
    }

    /// Records what became of a push's effects, in one round trip.
    pub async fn record_effects(&self, rows: &[EffectRow]) -> Result<(), Error> {
        if rows.is_empty() {
            return Ok(());
        }
        let statements: Vec<Statement> = rows
            .iter()
            .map(|r| {
                self.statement(
                    RECORD_EFFECT,
                    vec![
                        r.openid.as_str().into(),
                        r.at.into(),
                        r.what.into(),
                        r.outcome.into(),
                        r.kf_account.as_deref().into(),
                        r.detail.as_deref().into(),
                    ],
                )
            })
            .collect();
        self.db.batch(&statements).await.map(drop)
    }

    /// Takes the rate limit `name` until `until` unless it still runs at `now`: `true` for the
    /// one request that took it.
    pub async fn take_limit(&self, name: &str, now: u64, until: u64) -> Result<bool, Error> {
        let statement = self.statement(TAKE_LIMIT, vec![name.into(), until.into(), now.into()]);
        Ok(self.db.execute(&statement).await? == 1)
    }

    /// Until when the rate limit `name` runs (`None`: never taken).
    pub async fn limit_until(&self, name: &str) -> Result<Option<u64>, Error> {
        let rows = self.db.query(&self.statement(LIMIT_UNTIL, vec![name.into()])).await?;
        until(&rows, "database: limits.until")
    }

    /// Remembers that the user asked for a human, until `until` (never shortening it).
    pub async fn remember_request(&self, openid: &str, until: u64) -> Result<(), Error> {
        let statement = self.statement(REMEMBER_REQUEST, vec![openid.into(), until.into()]);
        self.db.execute(&statement).await.map(drop)
    }

    /// Until when the user's request for a human holds, if it does at `now`.
    pub async fn requested_until(&self, openid: &str, now: u64) -> Result<Option<u64>, Error> {
        let statement = self.statement(REQUESTED_UNTIL, vec![openid.into(), now.into()]);
        let rows = self.db.query(&statement).await?;
        until(&rows, "database: requests.until")
    }

    /// The shared copy `name` and when it was fetched.
    pub async fn cached(&self, name: &str) -> Result<Option<(String, u64)>, Error> {
        let rows = self.db.query(&self.statement(CACHED, vec![name.into()])).await?;
        let Some(row) = rows.first() else { return Ok(None) };
        let value = text(row, "value").ok_or(unreadable("database: cache.value"))?;
        let fetched_at = time(row, "fetched_at").ok_or(unreadable("database: cache.fetched_at"))?;
        Ok(Some((value, fetched_at)))
    }

    /// Stores the shared copy `name`, unless a newer one is there.
    pub async fn cache(&self, name: &str, value: &str, fetched_at: u64) -> Result<(), Error> {
        let statement = self.statement(CACHE, vec![name.into(), value.into(), fetched_at.into()]);
        self.db.execute(&statement).await.map(drop)
    }

    /// Up to `limit` rows of the user's timeline from `from` (Unix seconds) on, older than
    /// `before`, newest first.
    pub async fn timeline(
        &self,
        openid: &str,
        from: u64,
        before: Position,
        limit: usize,
    ) -> Result<Vec<LedgerRow>, Error> {
        let statement = self.statement(
            TIMELINE,
            vec![openid.into(), from.into(), before.at.into(), Param::Int(before.id), (limit as u64).into()],
        );
        self.db
            .query(&statement)
            .await?
            .into_iter()
            .map(|row| {
                serde_json::from_value(serde_json::Value::Object(row)).map_err(|_| unreadable("database: a ledger row"))
            })
            .collect()
    }

    /// The session events of `users` from `from` through `to`.
    pub async fn session_events(
        &self,
        users: &std::collections::BTreeSet<&str>,
        from: u64,
        to: u64,
    ) -> Result<Vec<SessionEvent>, Error> {
        let users = serde_json::json!(users);
        let statement = self.statement(SESSION_EVENTS, vec![json_param(&users), from.into(), to.into()]);
        self.db
            .query(&statement)
            .await?
            .iter()
            .map(|row| {
                let bad = || unreadable("database: a ledger row");
                let kind = match text(row, "what").ok_or_else(bad)?.as_str() {
                    "event:kf_create_session" => SessionEventKind::Created,
                    "event:kf_close_session" => SessionEventKind::Closed,
                    _ => SessionEventKind::Greeted,
                };
                Ok(SessionEvent {
                    openid: text(row, "openid").ok_or_else(bad)?,
                    at: time(row, "at").ok_or_else(bad)?,
                    kind,
                })
            })
            .collect()
    }

    /// Records sessions' first responses, each once: how many were new.
    pub async fn record_first_responses(&self, found: &[FirstResponse]) -> Result<usize, Error> {
        if found.is_empty() {
            return Ok(0);
        }
        let rows = serde_json::json!(found
            .iter()
            .map(|f| serde_json::json!([f.openid, f.start, f.at, f.kf_account]))
            .collect::<Vec<_>>());
        let changed = self.db.execute(&self.statement(RECORD_FIRST_RESPONSES, vec![json_param(&rows)])).await?;
        Ok(usize::try_from(changed).unwrap_or(usize::MAX))
    }

    /// Deletes the ledger's rows older than `before` (a bounded number per call: the cron calls
    /// again next time) and the account's limits and requests that ran out at `now`. Answers the
    /// ledger rows deleted.
    pub async fn purge(&self, before: u64, now: u64) -> Result<u64, Error> {
        let mut deleted = 0;
        for _ in 0..PURGE_BATCHES {
            let statement = Statement::new(PURGE_LEDGER, vec![before.into(), PURGE_BATCH.into()]);
            let n = self.db.execute(&statement).await?;
            deleted += n;
            if n < PURGE_BATCH {
                break;
            }
        }
        self.purge_expired(now, before).await?;
        Ok(deleted)
    }

    /// Deletes the account's rate limits and requests for a human that ran out by `now`, and up
    /// to [`PURGE_BATCH`] of its hourly statistics from before `before` (the ledger's retention).
    pub async fn purge_expired(&self, now: u64, before: u64) -> Result<(), Error> {
        self.db
            .batch(&[
                self.statement(PURGE_LIMITS, vec![now.into()]),
                self.statement(PURGE_REQUESTS, vec![now.into()]),
                self.statement(STATS_HOURS_PURGE, vec![before.into(), PURGE_BATCH.into()]),
            ])
            .await
            .map(drop)
    }

    /// Stores the cursor `name` (a shared copy only the cron writes).
    pub async fn put_cursor(&self, name: &str, value: &str, now: u64) -> Result<(), Error> {
        self.db.execute(&self.statement(CURSOR_PUT, vec![name.into(), value.into(), now.into()])).await.map(drop)
    }
}

/// The deployment's accounts (`accounts`): the narrow handle of the owner's account routes and of
/// the lookup of a push's account.
pub struct AccountsDb<'a, D> {
    pub db: &'a D,
}

fn stored(row: &Row) -> Result<Stored, Error> {
    let bad = || unreadable("database: an accounts row");
    Ok(Stored {
        appid: text(row, "appid").ok_or_else(bad)?,
        name: text(row, "name").ok_or_else(bad)?,
        sealed: text(row, "sealed").ok_or_else(bad)?,
        settings: text(row, "settings").and_then(|s| serde_json::from_str(&s).ok()).ok_or_else(bad)?,
        created: time(row, "created").ok_or_else(bad)?,
        updated: time(row, "updated").ok_or_else(bad)?,
    })
}

fn settings_json(settings: &Settings) -> Result<String, Error> {
    serde_json::to_string(settings).map_err(|_| Error::Internal("accounts: the settings do not serialize"))
}

impl<D: Database> AccountsDb<'_, D> {
    /// Writes an account's row with `sql` (its insert or its update): whether a row changed.
    async fn write(&self, sql: &'static str, account: &Stored, at: u64) -> Result<bool, Error> {
        let params = vec![
            account.appid.as_str().into(),
            account.name.as_str().into(),
            account.sealed.as_str().into(),
            settings_json(&account.settings)?.into(),
            at.into(),
        ];
        Ok(self.db.execute(&Statement::new(sql, params)).await? == 1)
    }

    /// Stores a new account (created and updated at `account.created`); `false` when its appid is
    /// taken.
    pub async fn insert(&self, account: &Stored) -> Result<bool, Error> {
        self.write(ACCOUNT_INSERT, account, account.created).await
    }

    pub async fn get(&self, appid: &str) -> Result<Option<Stored>, Error> {
        let rows = self.db.query(&Statement::new(ACCOUNT_GET, vec![appid.into()])).await?;
        rows.first().map(stored).transpose()
    }

    /// At most `limit` accounts, in appid order.
    pub async fn list(&self, limit: u64) -> Result<Vec<Stored>, Error> {
        let rows = self.db.query(&Statement::new(ACCOUNT_LIST, vec![limit.into()])).await?;
        rows.iter().map(stored).collect()
    }

    /// Replaces an account's name, secrets and settings (updated at `account.updated`); `false`
    /// when it is gone.
    pub async fn update(&self, account: &Stored) -> Result<bool, Error> {
        self.write(ACCOUNT_UPDATE, account, account.updated).await
    }

    /// Removes an account with its operator tokens, rate limits, requests for a human and shared
    /// lists (its ledger rows stay until the retention deletes them); `false` when there was none.
    pub async fn delete(&self, appid: &str) -> Result<bool, Error> {
        let of = |sql| Statement::new(sql, vec![appid.into()]);
        let statements = [
            of(ACCOUNT_DELETE),
            of(TOKENS_OF_ACCOUNT_DELETE),
            of(ACCOUNT_LIMITS_DELETE),
            of(ACCOUNT_REQUESTS_DELETE),
            of(ACCOUNT_CACHE_DELETE),
            of(ACCOUNT_STATS_DELETE),
            of(ACCOUNT_STATS_USERS_DELETE),
        ];
        let changed = self.db.batch(&statements).await?;
        Ok(changed.first() == Some(&1))
    }

    /// At most `limit` appids after `after`, in order.
    pub async fn after(&self, after: &str, limit: u64) -> Result<Vec<String>, Error> {
        let rows = self.db.query(&Statement::new(ACCOUNTS_AFTER, vec![after.into(), limit.into()])).await?;
        rows.iter().map(|row| text(row, "appid").ok_or(unreadable("database: an accounts row"))).collect()
    }

    /// Stores an operator token of `appid` (its id and the hash of its secret); `false` when
    /// the id is taken (a collision of 64 random bits: the caller tries again).
    pub async fn insert_token(&self, appid: &str, name: &str, token: &Presented, now: u64) -> Result<bool, Error> {
        let params = vec![token.id.as_str().into(), appid.into(), name.into(), token.hash.as_str().into(), now.into()];
        Ok(self.db.execute(&Statement::new(TOKEN_INSERT, params)).await? == 1)
    }

    /// The account and the hash of the operator token `id`.
    pub async fn token(&self, id: &str) -> Result<Option<(String, String)>, Error> {
        let rows = self.db.query(&Statement::new(TOKEN_GET, vec![id.into()])).await?;
        let Some(row) = rows.first() else { return Ok(None) };
        match (text(row, "appid"), text(row, "hash")) {
            (Some(appid), Some(hash)) => Ok(Some((appid, hash))),
            _ => Err(unreadable("database: an operator_tokens row")),
        }
    }

    /// An account's operator tokens, oldest first.
    pub async fn tokens(&self, appid: &str) -> Result<Vec<Listed>, Error> {
        let rows = self.db.query(&Statement::new(TOKEN_LIST, vec![appid.into(), MAX_PER_ACCOUNT.into()])).await?;
        rows.iter()
            .map(|row| {
                let bad = || unreadable("database: an operator_tokens row");
                Ok(Listed {
                    id: text(row, "id").ok_or_else(bad)?,
                    name: text(row, "name").ok_or_else(bad)?,
                    created: time(row, "created").ok_or_else(bad)?,
                    last_used: time(row, "last_used"),
                })
            })
            .collect()
    }

    /// Revokes `appid`'s token `id`; `false` when it has none such.
    pub async fn revoke(&self, appid: &str, id: &str) -> Result<bool, Error> {
        Ok(self.db.execute(&Statement::new(TOKEN_DELETE, vec![appid.into(), id.into()])).await? == 1)
    }

    /// Notes that the token `id` was used at `now` (written at most once an hour).
    pub async fn token_used(&self, id: &str, now: u64) -> Result<(), Error> {
        let params = vec![id.into(), now.into(), LAST_USED_EVERY_SECS.into()];
        self.db.execute(&Statement::new(TOKEN_USED, params)).await.map(drop)
    }
}

/// The service-level statistics (`stats_*`): the narrow handle of the fold and the reports.
pub struct StatsDb<'a, D> {
    pub db: &'a D,
}

/// How long a fold's claim is kept (see `STATS_FOLDS_PRUNE`).
pub const CLAIMS_KEPT_SECS: u64 = 3600;

/// The ledger rows one fold reads at most.
pub const FOLD_ROWS: u64 = 2_000;

/// A space-separated list of numbers, or of `start:wait` pairs (`start` in seconds after the
/// row's hour: the row holds the episodes that started in it).
fn numbers(text: &str) -> Option<Vec<u64>> {
    text.split_ascii_whitespace().map(|n| n.parse().ok()).collect()
}

fn pairs(text: &str, hour: u64) -> Option<Vec<(u64, u64)>> {
    text.split_ascii_whitespace()
        .map(|p| {
            let (start, wait) = p.split_once(':')?;
            Some((hour.checked_add(start.parse().ok()?)?, wait.parse().ok()?))
        })
        .collect()
}

fn tags(text: &str) -> Option<Vec<Tag>> {
    text.split_ascii_whitespace().map(decode_tag).collect()
}

fn joined<T: ToString>(values: impl IntoIterator<Item = T>) -> String {
    values.into_iter().map(|v| v.to_string()).collect::<Vec<_>>().join(" ")
}

/// An hourly row's key and figures.
fn hour_row(row: &Row) -> Result<(HourKey, Hour), Error> {
    let bad = || unreadable("database: a stats_hours row");
    let count = |c: &str| time(row, c).ok_or_else(bad);
    let key = HourKey {
        appid: text(row, "appid").ok_or_else(bad)?,
        hour: count("hour")?,
        kf_account: text(row, "kf_account").ok_or_else(bad)?,
    };
    let list = |c: &str| text(row, c).ok_or_else(bad);
    let hour = Hour {
        pushes: count("pushes")?,
        messages: count("messages")?,
        after_hours: count("after_hours")?,
        episodes: count("episodes")?,
        sessions: count("sessions")?,
        switches: count("switches")?,
        notices: [count("notices_sent")?, count("notices_skipped")?, count("notices_failed")?],
        alerts: [count("alerts_sent")?, count("alerts_skipped")?, count("alerts_failed")?],
        users: tags(&list("users")?).ok_or_else(bad)?,
        transferred: tags(&list("transferred")?).ok_or_else(bad)?,
        waits: pairs(&list("waits")?, key.hour).ok_or_else(bad)?,
        first_responses: numbers(&list("first_responses")?).ok_or_else(bad)?,
        session_secs: numbers(&list("session_secs")?).ok_or_else(bad)?,
    };
    Ok((key, hour))
}

fn hour_json(key: &HourKey, h: &Hour) -> serde_json::Value {
    serde_json::json!([
        key.appid,
        key.hour,
        key.kf_account,
        h.pushes,
        h.messages,
        h.after_hours,
        h.episodes,
        h.sessions,
        h.switches,
        h.notices[0],
        h.notices[1],
        h.notices[2],
        h.alerts[0],
        h.alerts[1],
        h.alerts[2],
        joined(h.users.iter().map(|t| encode_tag(*t))),
        joined(h.transferred.iter().map(|t| encode_tag(*t))),
        joined(h.waits.iter().map(|(s, w)| format!("{}:{w}", s.saturating_sub(key.hour)))),
        joined(&h.first_responses),
        joined(&h.session_secs),
    ])
}

fn json_param(value: &serde_json::Value) -> Param {
    Param::Text(value.to_string())
}

/// What a fold did: the ledger rows it read, and the cursor after them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FoldOutcome {
    pub rows: u64,
    pub cursor: i64,
}

impl<D: Database> StatsDb<'_, D> {
    async fn cursor(&self) -> Result<i64, Error> {
        let rows = self.db.query(&Statement::new(STATS_CURSOR, vec![])).await?;
        match rows.first() {
            None => Ok(0),
            Some(row) => int(row, "last_id").ok_or(unreadable("database: stats_folds.last_id")),
        }
    }

    /// Folds at most [`FOLD_ROWS`] ledger rows after the cursor into the hourly rows, in one
    /// transaction with the fold's claim: `Ok(None)` when another fold took the same rows first
    /// (nothing written), else how many rows it read.
    pub async fn fold(&self, now: u64) -> Result<Option<FoldOutcome>, Error> {
        let cursor = self.cursor().await?;
        let statement = Statement::new(STATS_LEDGER_AFTER, vec![Param::Int(cursor), FOLD_ROWS.into()]);
        let rows: Vec<FoldRow> = self
            .db
            .query(&statement)
            .await?
            .into_iter()
            .map(|row| {
                serde_json::from_value(serde_json::Value::Object(row)).map_err(|_| unreadable("database: a ledger row"))
            })
            .collect::<Result<_, _>>()?;
        let Some(last) = rows.last().map(|r| r.id) else {
            return Ok(Some(FoldOutcome { rows: 0, cursor }));
        };
        let users: std::collections::BTreeSet<(&str, &str)> =
            rows.iter().map(|r| (r.appid.as_str(), r.openid.as_str())).collect();
        let keys = serde_json::json!(users.iter().map(|(a, o)| [a, o]).collect::<Vec<_>>());
        let state = self
            .db
            .query(&Statement::new(STATS_USERS_GET, vec![json_param(&keys)]))
            .await?
            .iter()
            .map(|row| {
                let bad = || unreadable("database: a stats_users row");
                let key = (text(row, "appid").ok_or_else(bad)?, text(row, "openid").ok_or_else(bad)?);
                let session = match (text(row, "session_agent"), time(row, "session_start")) {
                    (Some(agent), Some(start)) => Some((agent, start)),
                    _ => None,
                };
                Ok((key, UserState { waiting_since: time(row, "waiting_since"), session }))
            })
            .collect::<Result<_, Error>>()?;
        let mut folded = crate::stats::fold(&rows, state);
        // The rows these figures add to, read whole: the claim makes this fold the only writer.
        let keys = serde_json::json!(folded
            .hours
            .keys()
            .map(|k| serde_json::json!([k.appid, k.hour, k.kf_account]))
            .collect::<Vec<_>>());
        for row in self.db.query(&Statement::new(STATS_HOURS_GET, vec![json_param(&keys)])).await? {
            let (key, stored) = hour_row(&row)?;
            if let Some(added) = folded.hours.remove(&key) {
                let mut merged = stored;
                merged.merge(added);
                folded.hours.insert(key, merged);
            }
        }
        for hour in folded.hours.values_mut() {
            hour.dedup();
        }
        let hours = serde_json::Value::Array(folded.hours.iter().map(|(k, h)| hour_json(k, h)).collect());
        let (gone, kept): (Vec<_>, Vec<_>) = folded.users.iter().partition(|(_, s)| s.is_empty());
        let kept = serde_json::Value::Array(
            kept.iter()
                .map(|((appid, openid), s)| {
                    let (agent, start) = s.session.as_ref().map_or((None, None), |(a, t)| (Some(a), Some(t)));
                    serde_json::json!([appid, openid, s.waiting_since, agent, start])
                })
                .collect(),
        );
        let gone = serde_json::json!(gone.iter().map(|((a, o), _)| [a, o]).collect::<Vec<_>>());
        let statements = [
            Statement::new(STATS_CLAIM, vec![Param::Int(cursor), Param::Int(last), now.into()]),
            Statement::new(STATS_FOLDS_PRUNE, vec![Param::Int(cursor), now.saturating_sub(CLAIMS_KEPT_SECS).into()]),
            Statement::new(STATS_HOURS_PUT, vec![json_param(&hours)]),
            Statement::new(STATS_USERS_PUT, vec![json_param(&kept)]),
            Statement::new(STATS_USERS_DELETE, vec![json_param(&gone)]),
        ];
        match self.db.batch(&statements).await {
            Ok(_) => Ok(Some(FoldOutcome { rows: rows.len() as u64, cursor: last })),
            // Another fold claimed these rows first (or the batch failed): nothing was written.
            Err(_) if self.cursor().await? != cursor => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// An account's hourly rows from `from` through `to` (hours' starts), all agents or one.
    pub async fn hours(
        &self,
        appid: &str,
        from: u64,
        to: u64,
        kf_account: Option<&str>,
    ) -> Result<Vec<(HourKey, Hour)>, Error> {
        let statement = Statement::new(STATS_REPORT, vec![appid.into(), from.into(), to.into(), kf_account.into()]);
        self.db.query(&statement).await?.iter().map(hour_row).collect()
    }

    /// When the account's users still waiting started waiting, from `since` on.
    pub async fn waiting(&self, appid: &str, since: u64) -> Result<Vec<u64>, Error> {
        let rows = self.db.query(&Statement::new(STATS_WAITING, vec![appid.into(), since.into()])).await?;
        rows.iter().map(|row| time(row, "waiting_since").ok_or(unreadable("database: a stats_users row"))).collect()
    }

    /// Stops following users who waited since before `before` and never had a session, and
    /// sessions that started before it and never closed.
    pub async fn purge_followed(&self, before: u64) -> Result<(), Error> {
        self.db
            .batch(&[
                Statement::new(STATS_WAITING_PURGE, vec![before.into()]),
                Statement::new(STATS_SESSIONS_PURGE, vec![before.into()]),
            ])
            .await
            .map(drop)
    }
}
