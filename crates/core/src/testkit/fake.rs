//! The runtime in memory: a manual clock, a map with expiring entries, a scripted upstream, an
//! in-memory SQLite database with the project's migrations applied, and a driver that runs
//! futures to completion, moving the clock to the next timer whenever every future is waiting
//! (so a simulated minute takes microseconds and results are repeatable).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use crate::error::Error;
use crate::http::{Answer, HttpCall};
use crate::runtime::{Clock, Database, Late, Param, Row, Runtime, Statement, Store, Upstream, STORE_MIN_TTL_SECS};

/// A clock that moves only when told to (or when [`run`] finds every future waiting).
#[derive(Clone, Default)]
pub struct ManualClock(Rc<RefCell<ClockState>>);

#[derive(Default)]
struct ClockState {
    now_ms: u64,
    /// `(due, timer id, waker)` of the timers being awaited.
    sleepers: Vec<(u64, u64, Waker)>,
    next_id: u64,
}

impl ManualClock {
    pub fn at(now_ms: u64) -> Self {
        let clock = ManualClock::default();
        clock.0.borrow_mut().now_ms = now_ms;
        clock
    }

    /// Moves the clock forward by `ms`, waking the timers that are due.
    pub fn advance(&self, ms: u64) {
        let to = self.0.borrow().now_ms + ms;
        self.set(to);
    }

    fn set(&self, now_ms: u64) {
        let due: Vec<Waker> = {
            let mut s = self.0.borrow_mut();
            s.now_ms = s.now_ms.max(now_ms);
            let now = s.now_ms;
            let (due, waiting): (Vec<_>, Vec<_>) = s.sleepers.drain(..).partition(|(at, _, _)| *at <= now);
            s.sleepers = waiting;
            due.into_iter().map(|(_, _, w)| w).collect()
        };
        due.into_iter().for_each(Waker::wake);
    }

    fn next_timer(&self) -> Option<u64> {
        self.0.borrow().sleepers.iter().map(|(at, _, _)| *at).min()
    }
}

/// A timer; dropping it (a lost race in a timeout) cancels it.
struct Sleep {
    clock: ManualClock,
    until: u64,
    id: u64,
}

impl Future for Sleep {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut s = self.clock.0.borrow_mut();
        if s.now_ms >= self.until {
            return Poll::Ready(());
        }
        let id = self.id;
        s.sleepers.retain(|(_, other, _)| *other != id);
        s.sleepers.push((self.until, id, cx.waker().clone()));
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        let id = self.id;
        self.clock.0.borrow_mut().sleepers.retain(|(_, other, _)| *other != id);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.borrow().now_ms
    }
    async fn sleep(&self, ms: u64) {
        let id = {
            let mut s = self.0.borrow_mut();
            s.next_id += 1;
            s.next_id
        };
        Sleep { clock: self.clone(), until: self.now_ms().saturating_add(ms), id }.await
    }
}

/// Counts of store operations.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StoreStats {
    pub reads: u64,
    pub writes: u64,
    pub deletes: u64,
}

/// An in-memory store with KV's rules: entries expire, a TTL under 60 s is refused.
#[derive(Clone)]
pub struct MemoryStore {
    clock: ManualClock,
    map: Rc<RefCell<HashMap<String, (String, u64)>>>,
    stats: Rc<Cell<StoreStats>>,
    failing: Rc<Cell<bool>>,
    /// How long every read takes, on the manual clock (a stalled store).
    read_delay_ms: Rc<Cell<u64>>,
}

impl MemoryStore {
    pub fn new(clock: ManualClock) -> Self {
        MemoryStore {
            clock,
            map: Rc::default(),
            stats: Rc::default(),
            failing: Rc::default(),
            read_delay_ms: Rc::default(),
        }
    }

    /// Makes every read take `ms` (0: answered at once), as a stalled KV does.
    pub fn set_read_delay(&self, ms: u64) {
        self.read_delay_ms.set(ms);
    }

    /// Makes every operation fail (KV unavailable) or work again.
    pub fn set_failing(&self, failing: bool) {
        self.failing.set(failing);
    }

    pub fn stats(&self) -> StoreStats {
        self.stats.get()
    }

    /// The live value at `key`, bypassing the counters.
    pub fn peek(&self, key: &str) -> Option<String> {
        let now = self.clock.now_ms();
        self.map.borrow().get(key).filter(|(_, exp)| *exp > now).map(|(v, _)| v.clone())
    }

    /// Sets `key` directly (test setup), for `ttl_secs`.
    pub fn seed(&self, key: &str, value: &str, ttl_secs: u64) {
        let exp = self.clock.now_ms() + ttl_secs * 1000;
        self.map.borrow_mut().insert(key.to_string(), (value.to_string(), exp));
    }

    /// The expiry (ms) of `key`, if present.
    pub fn expiry(&self, key: &str) -> Option<u64> {
        self.map.borrow().get(key).map(|(_, exp)| *exp)
    }

    fn count(&self, f: impl FnOnce(&mut StoreStats)) -> Result<(), Error> {
        let mut stats = self.stats.get();
        f(&mut stats);
        self.stats.set(stats);
        if self.failing.get() {
            return Err(Error::Internal("store unavailable"));
        }
        Ok(())
    }
}

impl Store for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<String>, Error> {
        let delay = self.read_delay_ms.get();
        if delay > 0 {
            self.clock.sleep(delay).await;
        }
        self.count(|s| s.reads += 1)?;
        Ok(self.peek(key))
    }
    async fn get_within(&self, key: &str, within_ms: u64) -> Result<Result<Option<String>, Error>, Late> {
        if self.read_delay_ms.get() > within_ms {
            self.clock.sleep(within_ms).await;
            return Err(Late);
        }
        Ok(self.get(key).await)
    }
    async fn put(&self, key: &str, value: &str, ttl_secs: Option<u64>) -> Result<(), Error> {
        self.count(|s| s.writes += 1)?;
        match ttl_secs {
            Some(ttl) if ttl < STORE_MIN_TTL_SECS => return Err(Error::Internal("expiration_ttl under 60 s")),
            Some(ttl) => self.seed(key, value, ttl),
            None => {
                self.map.borrow_mut().insert(key.to_string(), (value.to_string(), u64::MAX));
            }
        }
        Ok(())
    }
    async fn delete(&self, key: &str) -> Result<(), Error> {
        self.count(|s| s.deletes += 1)?;
        self.map.borrow_mut().remove(key);
        Ok(())
    }
}

/// One scripted answer: after `delay_ms` on the manual clock, `result`.
pub struct Scripted {
    pub delay_ms: u64,
    pub result: Result<Answer, Error>,
}

impl Scripted {
    pub fn answer(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Scripted { delay_ms: 0, result: Ok(Answer { status, body: body.into() }) }
    }
    pub fn json(body: &str) -> Self {
        Scripted::answer(200, body.as_bytes().to_vec())
    }
    pub fn error(error: Error) -> Self {
        Scripted { delay_ms: 0, result: Err(error) }
    }
    /// Never answers (until the caller's timeout).
    pub fn hang() -> Self {
        Scripted { delay_ms: u64::MAX / 4, result: Err(Error::Upstream("hung")) }
    }
    pub fn after(mut self, delay_ms: u64) -> Self {
        self.delay_ms = delay_ms;
        self
    }
}

type Handler = Box<dyn FnMut(&HttpCall) -> Scripted>;

/// An upstream that answers from a script and records every call.
#[derive(Clone)]
pub struct ScriptedUpstream {
    clock: ManualClock,
    handler: Rc<RefCell<Handler>>,
    calls: Rc<RefCell<Vec<HttpCall>>>,
}

impl ScriptedUpstream {
    pub fn new(clock: ManualClock, handler: impl FnMut(&HttpCall) -> Scripted + 'static) -> Self {
        ScriptedUpstream { clock, handler: Rc::new(RefCell::new(Box::new(handler))), calls: Rc::default() }
    }

    /// Replaces the script.
    pub fn script(&self, handler: impl FnMut(&HttpCall) -> Scripted + 'static) {
        *self.handler.borrow_mut() = Box::new(handler);
    }

    /// Replaces the script: the stable token endpoint issues `T` for 7200 s, `handler` answers
    /// everything else.
    pub fn script_behind_token(&self, mut handler: impl FnMut(&HttpCall) -> Scripted + 'static) {
        self.script(move |call| {
            if call.url.contains("stable_token") {
                return Scripted::json(r#"{"access_token":"T","expires_in":7200}"#);
            }
            handler(call)
        });
    }

    pub fn calls(&self) -> Vec<HttpCall> {
        self.calls.borrow().clone()
    }

    /// Calls whose URL contains `part`.
    pub fn count(&self, part: &str) -> usize {
        self.calls.borrow().iter().filter(|c| c.url.contains(part)).count()
    }

    pub fn clear(&self) {
        self.calls.borrow_mut().clear();
    }
}

impl Upstream for ScriptedUpstream {
    async fn send(&self, call: &HttpCall) -> Result<Answer, Error> {
        self.calls.borrow_mut().push(call.clone());
        let scripted = (self.handler.borrow_mut())(call);
        if scripted.delay_ms > 0 {
            self.clock.sleep(scripted.delay_ms).await;
        }
        scripted.result
    }
}

/// The project's migrations (`migrations/`), in order: what wrangler applies to D1.
pub const MIGRATIONS: &[(&str, &str)] = &[
    ("0001_ledger.sql", include_str!("../../../../migrations/0001_ledger.sql")),
    ("0002_accounts.sql", include_str!("../../../../migrations/0002_accounts.sql")),
    ("0003_operator_tokens.sql", include_str!("../../../../migrations/0003_operator_tokens.sql")),
    ("0004_stats.sql", include_str!("../../../../migrations/0004_stats.sql")),
];

/// SQLite in memory with [`MIGRATIONS`] applied: the same statements as D1 runs. It can be
/// made to fail or to answer late, and it keeps every statement it ran (for the cost tests).
#[derive(Clone)]
pub struct SqliteDatabase {
    pub connection: Rc<rusqlite::Connection>,
    clock: ManualClock,
    failing: Rc<Cell<bool>>,
    delay_ms: Rc<Cell<u64>>,
    /// Every statement run, with the rows it changed (queries: 0).
    pub log: Rc<RefCell<Vec<(&'static str, u64)>>>,
}

impl SqliteDatabase {
    pub fn new(clock: ManualClock) -> Self {
        let connection = rusqlite::Connection::open_in_memory().expect("SQLite in memory");
        for (name, sql) in MIGRATIONS {
            // One transaction a file, as wrangler applies them.
            connection
                .execute_batch(&format!("BEGIN;\n{sql}\nCOMMIT;"))
                .unwrap_or_else(|e| panic!("migration {name}: {e}"));
        }
        SqliteDatabase {
            connection: Rc::new(connection),
            clock,
            failing: Rc::default(),
            delay_ms: Rc::default(),
            log: Rc::default(),
        }
    }

    /// From now on every statement fails (`true`) or runs (`false`).
    pub fn set_failing(&self, failing: bool) {
        self.failing.set(failing);
    }

    /// Every statement answers `ms` later (on the manual clock).
    pub fn set_delay(&self, ms: u64) {
        self.delay_ms.set(ms);
    }

    /// The statements run so far (their first words and tables), each with the rows it changed.
    pub fn statements(&self) -> Vec<(&'static str, u64)> {
        self.log.borrow().clone()
    }

    pub fn clear_log(&self) {
        self.log.borrow_mut().clear();
    }

    /// The rows of `sql` (a test's own query), as the core reads rows.
    pub fn rows(&self, sql: &str) -> Vec<Row> {
        let mut statement = self.connection.prepare(sql).expect("a valid query");
        read_rows(&mut statement, &[]).expect("rows")
    }

    async fn ready(&self) -> Result<(), Error> {
        if self.delay_ms.get() > 0 {
            self.clock.sleep(self.delay_ms.get()).await;
        }
        if self.failing.get() {
            return Err(Error::Internal("database: failing (fake)"));
        }
        Ok(())
    }

    fn run(&self, statement: &Statement) -> Result<u64, Error> {
        let params = to_sql(&statement.params);
        // A statement SQLite refuses is the core's bug: the test stops there.
        let changed = self
            .connection
            .execute(statement.sql, rusqlite::params_from_iter(params.iter()))
            .unwrap_or_else(|e| panic!("{}: {e}", statement.sql)) as u64;
        self.log.borrow_mut().push((statement.sql, changed));
        Ok(changed)
    }
}

fn to_sql(params: &[Param]) -> Vec<rusqlite::types::Value> {
    use rusqlite::types::Value;
    params
        .iter()
        .map(|p| match p {
            Param::Int(n) => Value::Integer(*n),
            Param::Text(s) => Value::Text(s.clone()),
            Param::Null => Value::Null,
        })
        .collect()
}

fn read_rows(statement: &mut rusqlite::Statement<'_>, params: &[rusqlite::types::Value]) -> rusqlite::Result<Vec<Row>> {
    use rusqlite::types::ValueRef;
    let names: Vec<String> = statement.column_names().into_iter().map(str::to_string).collect();
    let mut rows = statement.query(rusqlite::params_from_iter(params.iter()))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let mut map = Row::new();
        for (i, name) in names.iter().enumerate() {
            let value = match row.get_ref(i)? {
                ValueRef::Null => serde_json::Value::Null,
                ValueRef::Integer(n) => n.into(),
                ValueRef::Real(f) => f.into(),
                ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned().into(),
                ValueRef::Blob(_) => panic!("no blobs in this schema"),
            };
            map.insert(name.clone(), value);
        }
        out.push(map);
    }
    Ok(out)
}

impl Database for SqliteDatabase {
    async fn execute(&self, statement: &Statement) -> Result<u64, Error> {
        self.ready().await?;
        self.run(statement)
    }

    async fn query(&self, statement: &Statement) -> Result<Vec<Row>, Error> {
        self.ready().await?;
        let mut prepared = self.connection.prepare(statement.sql).unwrap_or_else(|e| panic!("{}: {e}", statement.sql));
        let rows =
            read_rows(&mut prepared, &to_sql(&statement.params)).unwrap_or_else(|e| panic!("{}: {e}", statement.sql));
        self.log.borrow_mut().push((statement.sql, 0));
        Ok(rows)
    }

    async fn batch(&self, statements: &[Statement]) -> Result<Vec<u64>, Error> {
        self.ready().await?;
        self.connection.execute_batch("BEGIN").expect("begin");
        let changed = statements.iter().map(|s| self.run(s)).collect::<Result<Vec<u64>, Error>>();
        self.connection.execute_batch(if changed.is_ok() { "COMMIT" } else { "ROLLBACK" }).expect("end");
        changed
    }
}

/// The fakes as a [`Runtime`]. Cloning shares them.
#[derive(Clone)]
pub struct FakeRuntime {
    pub store: MemoryStore,
    pub clock: ManualClock,
    pub upstream: ScriptedUpstream,
    /// `None`: a deployment without `WECHAT_DB`.
    pub database: Option<SqliteDatabase>,
    /// How many random blocks were drawn: each is different (a nonce, a token), and the same in
    /// every run.
    draws: Rc<Cell<u64>>,
}

impl FakeRuntime {
    /// At `now` seconds, with an upstream that answers every call 404 until scripted, and a
    /// database.
    pub fn at(now: u64) -> Self {
        let clock = ManualClock::at(now * 1000);
        FakeRuntime {
            store: MemoryStore::new(clock.clone()),
            upstream: ScriptedUpstream::new(clock.clone(), |_| Scripted::answer(404, "unscripted")),
            database: Some(SqliteDatabase::new(clock.clone())),
            clock,
            draws: Rc::default(),
        }
    }

    /// The same without a database.
    pub fn without_database(now: u64) -> Self {
        FakeRuntime { database: None, ..FakeRuntime::at(now) }
    }

    /// The database (the runtime was made with one).
    pub fn db(&self) -> &SqliteDatabase {
        self.database.as_ref().expect("a runtime with a database")
    }
}

impl Runtime for FakeRuntime {
    type Store = MemoryStore;
    type Clock = ManualClock;
    type Upstream = ScriptedUpstream;
    type Database = SqliteDatabase;
    fn store(&self) -> &MemoryStore {
        &self.store
    }
    fn clock(&self) -> &ManualClock {
        &self.clock
    }
    fn upstream(&self) -> &ScriptedUpstream {
        &self.upstream
    }
    fn database(&self) -> Option<&SqliteDatabase> {
        self.database.as_ref()
    }
    fn random16(&self) -> [u8; 16] {
        let n = self.draws.get();
        self.draws.set(n + 1);
        let mut block = *b"fake-random-16by";
        for (b, x) in block.iter_mut().zip(n.to_le_bytes()) {
            *b ^= x;
        }
        block
    }
}

struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A future the driver can hold.
pub type Task<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// Runs `tasks` to completion, concurrently, in order of readiness. Whenever every unfinished
/// task waits and nothing woke, the clock jumps to the next timer. Panics when no task can
/// make progress and no timer is set (a deadlock), or after a simulated day.
pub fn run<'a, T>(clock: &ManualClock, tasks: Vec<Task<'a, T>>) -> Vec<T> {
    let flag = Arc::new(Flag(AtomicBool::new(false)));
    let waker = Waker::from(flag.clone());
    let mut cx = Context::from_waker(&waker);
    let mut pending: Vec<Option<Task<'a, T>>> = tasks.into_iter().map(Some).collect();
    let mut results: Vec<Option<T>> = pending.iter().map(|_| None).collect();
    let limit = clock.now_ms() + 86_400_000;
    loop {
        flag.0.store(false, Ordering::SeqCst);
        for (slot, result) in pending.iter_mut().zip(results.iter_mut()) {
            if let Some(task) = slot {
                if let Poll::Ready(value) = task.as_mut().poll(&mut cx) {
                    *result = Some(value);
                    *slot = None;
                }
            }
        }
        if pending.iter().all(Option::is_none) {
            return results.into_iter().map(|r| r.expect("every task finished")).collect();
        }
        if flag.0.load(Ordering::SeqCst) {
            continue;
        }
        let next = clock.next_timer().expect("deadlock: every task waits and no timer is set");
        assert!(next <= limit, "still waiting after a simulated day");
        clock.set(next);
    }
}

/// Runs one future to completion (see [`run`]).
pub fn block_on<'a, T>(clock: &ManualClock, task: impl Future<Output = T> + 'a) -> T {
    run(clock, vec![Box::pin(task)]).pop().expect("one result")
}
