//! What the core asks of the runtime, as small traits: a key-value store, a clock, an upstream
//! HTTP client and a SQL database. The glue implements them over Workers KV, `Date`/`setTimeout`,
//! `fetch` and D1; `testkit::fake` implements them in memory (the database: SQLite running the
//! same migrations) for native tests.
//!
//! The implementations decide nothing: every limit, timeout, TTL and retry is the caller's.
//!
//! workerd cancels a request that is woken by I/O belonging to another request, so state shared
//! between requests lives in isolate memory and is polled on the waiting request's own
//! [`Clock::sleep`], never awaited across requests.

#![allow(async_fn_in_trait)] // Single-threaded by design (wasm32); the futures need not be Send.

use crate::error::Error;
use crate::http::{Answer, HttpCall};

/// Work that runs after the response is sent (`waitUntil`).
pub type Background = std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>;

/// Both pieces of background work, one after the other.
pub fn join(a: Option<Background>, b: Option<Background>) -> Option<Background> {
    match (a, b) {
        (Some(a), Some(b)) => Some(Box::pin(async move {
            a.await;
            b.await;
        })),
        (a, b) => a.or(b),
    }
}

/// The longest a read on the reply path may take (the rules, a remembered request, the shared
/// online list); past it the reader's documented fallback applies. WeChat waits 5 s in all.
pub const READ_LIMIT_MS: u64 = 1_000;

/// Workers KV refuses an `expiration_ttl` under 60 s; the fake store refuses it too.
pub const STORE_MIN_TTL_SECS: u64 = 60;

/// Largest upstream answer body read. WeChat's JSON answers are a few KiB; past this the
/// upstream stops reading and the call fails with [`Error::Upstream`].
pub const MAX_ANSWER_BYTES: usize = 1 << 20;

/// A read that took longer than its limit (see [`Store::get_within`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Late;

/// A key-value store with expiring entries (Workers KV: eventually consistent across locations).
pub trait Store {
    /// The value at `key`, `None` when absent or expired.
    async fn get(&self, key: &str) -> Result<Option<String>, Error>;
    /// [`Store::get`] within `within_ms` (a read on the reply path): [`Late`] past it.
    async fn get_within(&self, key: &str, within_ms: u64) -> Result<Result<Option<String>, Error>, Late>;
    /// Stores `value` at `key`, for `ttl_secs` (at least [`STORE_MIN_TTL_SECS`]) or for good.
    async fn put(&self, key: &str, value: &str, ttl_secs: Option<u64>) -> Result<(), Error>;
    /// Removes `key` (absent keys are not an error).
    async fn delete(&self, key: &str) -> Result<(), Error>;
}

/// Wall-clock time and timers.
pub trait Clock {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
    /// Seconds since the Unix epoch.
    fn now(&self) -> u64 {
        self.now_ms() / 1000
    }
    /// Resolves after `ms` milliseconds, on the calling request's own timer.
    async fn sleep(&self, ms: u64);
}

/// Sends HTTP calls to WeChat (and to alert webhooks).
pub trait Upstream {
    /// The answer's status and body (at most [`MAX_ANSWER_BYTES`]), or a transport error
    /// ([`Error::Upstream`]: unreachable, reset, body too large). No timeout: callers bound it.
    async fn send(&self, call: &HttpCall) -> Result<Answer, Error>;
}

/// A value bound to a statement's parameter (`?1`, `?2`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    Int(i64),
    Text(String),
    Null,
}

impl From<&str> for Param {
    fn from(s: &str) -> Self {
        Param::Text(s.to_string())
    }
}

impl From<String> for Param {
    fn from(s: String) -> Self {
        Param::Text(s)
    }
}

impl From<u64> for Param {
    /// Unix times and counts; past `i64::MAX` (never a real one) saturates.
    fn from(n: u64) -> Self {
        Param::Int(i64::try_from(n).unwrap_or(i64::MAX))
    }
}

impl From<Option<&str>> for Param {
    fn from(s: Option<&str>) -> Self {
        s.map_or(Param::Null, Param::from)
    }
}

/// One SQL statement and its parameters. The text is the core's own (never built from input):
/// the same statement runs on D1 and on SQLite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub sql: &'static str,
    pub params: Vec<Param>,
}

impl Statement {
    pub fn new(sql: &'static str, params: Vec<Param>) -> Statement {
        Statement { sql, params }
    }
}

/// A row of a query's answer: column name to value (integers, text, null).
pub type Row = serde_json::Map<String, serde_json::Value>;

/// A SQL database (D1: SQLite behind one writer, strongly consistent). The schema is
/// `migrations/`, applied by wrangler (and by the tests).
pub trait Database {
    /// Runs a statement that writes: how many rows it changed (0 when a conflict left the row
    /// as it was).
    async fn execute(&self, statement: &Statement) -> Result<u64, Error>;
    /// Runs a query: its rows.
    async fn query(&self, statement: &Statement) -> Result<Vec<Row>, Error>;
    /// Runs statements that write, in order, in one transaction: each one's changed rows.
    async fn batch(&self, statements: &[Statement]) -> Result<Vec<u64>, Error>;
}

/// The runtime as one value: what the core's services are generic over.
pub trait Runtime {
    type Store: Store;
    type Clock: Clock;
    type Upstream: Upstream;
    type Database: Database;
    fn store(&self) -> &Self::Store;
    fn clock(&self) -> &Self::Clock;
    fn upstream(&self) -> &Self::Upstream;
    /// The database, when the deployment has one (`WECHAT_DB`).
    fn database(&self) -> Option<&Self::Database>;
    /// 16 bytes from a CSPRNG (the random prefix of an encrypted reply).
    fn random16(&self) -> [u8; 16];
}

/// `fut`'s output, or `Err(fut)`, still pending, when `ms` passed first (on `clock`'s timer).
pub async fn with_timeout<C: Clock, F: std::future::Future + Unpin>(
    clock: &C,
    ms: u64,
    fut: F,
) -> Result<F::Output, F> {
    use futures_util::future::{select, Either};
    let timer = std::pin::pin!(clock.sleep(ms));
    match select(fut, timer).await {
        Either::Left((out, _)) => Ok(out),
        Either::Right(((), pending)) => Err(pending),
    }
}

/// Longest wait for one HTTP exchange with WeChat or a webhook.
pub const HTTP_TIMEOUT_MS: u64 = 10_000;

/// One HTTP exchange, at most [`HTTP_TIMEOUT_MS`] ([`Error::UpstreamTimeout`] past it).
pub async fn exchange<R: Runtime>(rt: &R, call: &HttpCall) -> Result<Answer, Error> {
    with_timeout(rt.clock(), HTTP_TIMEOUT_MS, Box::pin(rt.upstream().send(call)))
        .await
        .unwrap_or(Err(Error::UpstreamTimeout))
}
