//! The front desk: rules before the transfer (greeting, keyword answers, the "转人工" gate, office
//! hours, no-agent replies).
//!
//! - [`rules`]: the rules document, its defaults and its validation (pure).
//! - [`hours`]: offsets, dates and ranges (pure).
//! - [`keywords`]: keywords and request words matched in one pass over a text (pure).
//! - [`decide`]: the decision for one push (pure).
//! - [`effects`]: what happens after the reply (notices, alerts, session messages), once.
//! - here: an account's copy of the rules in this isolate (from the store, at most 30 s old)
//!   and the users who asked for a human (in the database, remembered by the isolate too), over
//!   the runtime traits.

pub mod decide;
pub mod effects;
pub mod hours;
pub mod keywords;
pub mod rules;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use crate::database::AccountDb;
use crate::error::Error;
use crate::notes::Notes;
use crate::runtime::{with_timeout, Clock, Runtime, Store, READ_LIMIT_MS};
use rules::{Capabilities, Document, DEFAULTS_JSON};

/// How long an isolate uses its copy of the rules before reading the store again.
pub const RULES_TTL_SECS: u64 = 30;
/// Most users remembered in isolate memory as having asked for a human (the database remembers
/// them all; memory only spares a read).
pub const MAX_REMEMBERED: usize = 1_000;

/// The rules in use, and where they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub document: Document,
    /// Stored by `PUT /api/rules` (else the defaults).
    pub stored: bool,
    /// When this isolate last read (or, the store failing, tried to read) them (Unix seconds).
    pub loaded_at: u64,
}

/// The front desk's state of one account in one isolate.
#[derive(Debug, Default)]
pub struct DeskState {
    rules: RefCell<Option<Rc<Loaded>>>,
    /// When this isolate last wrote the rules (`PUT`/`DELETE /api/rules`): for 30 s no read
    /// replaces what it wrote (a read that started before the write could hold the old ones).
    written_at: Cell<Option<u64>>,
    /// (OpenID, until when in Unix seconds) the user's request for a human holds, oldest first.
    requested: RefCell<Vec<(String, u64)>>,
}

impl DeskState {
    /// The rules, if this isolate read them less than [`RULES_TTL_SECS`] ago.
    pub fn rules_now(&self, now: u64) -> Option<Rc<Loaded>> {
        self.rules.borrow().as_ref().filter(|l| now.saturating_sub(l.loaded_at) < RULES_TTL_SECS).cloned()
    }

    /// The rules this isolate has, however old.
    fn peek_rules(&self) -> Option<Rc<Loaded>> {
        self.rules.borrow().clone()
    }

    fn keep(&self, loaded: Loaded) -> Rc<Loaded> {
        let loaded = Rc::new(loaded);
        *self.rules.borrow_mut() = Some(loaded.clone());
        loaded
    }

    /// Whether this isolate remembers that the user asked for a human at `now`.
    pub fn requested_now(&self, openid: &str, now: u64) -> bool {
        self.requested.borrow().iter().any(|(id, until)| id == openid && now < *until)
    }

    fn remember(&self, openid: &str, until: u64, now: u64) {
        let mut list = self.requested.borrow_mut();
        list.retain(|(id, u)| now < *u && id != openid);
        if list.len() >= MAX_REMEMBERED {
            list.remove(0);
        }
        list.push((openid.to_string(), until));
    }
}

/// The defaults (what `GET /api/rules` shows when nothing is stored).
fn defaults(now: u64) -> Loaded {
    let document = Document { rules: rules::Rules::default(), json: DEFAULTS_JSON.to_string() };
    Loaded { document, stored: false, loaded_at: now }
}

/// One account's front desk in one request: the runtime, the account's state, its part of the
/// store keys and the request's notes.
pub struct Desk<'a, R> {
    pub rt: &'a R,
    pub state: &'a DeskState,
    pub notes: &'a Notes,
    /// The account's part of the store keys (its AppID, or `default`).
    pub account: &'a str,
}

impl<R: Runtime> Desk<'_, R> {
    fn rules_key(&self) -> String {
        format!("rules:{}", self.account)
    }

    fn db(&self) -> Option<AccountDb<'_, R::Database>> {
        self.rt.database().map(|db| AccountDb { db, appid: self.account })
    }

    /// The rules: this isolate's copy while fresh, else the store's. The read gets at most
    /// [`READ_LIMIT_MS`]: slower or failing, the copy this isolate has (else the defaults) is kept
    /// for another [`RULES_TTL_SECS`] and the log line says so (the reply never waits on a
    /// stalled store, nor asks it on every push).
    pub async fn current_rules(&self) -> Rc<Loaded> {
        let clock = self.rt.clock();
        let now = clock.now();
        if let Some(loaded) = self.state.rules_now(now) {
            return loaded;
        }
        let key = self.rules_key();
        let read = self.rt.store().get_within(&key, READ_LIMIT_MS).await;
        let now = clock.now();
        if let (Some(written), Some(current)) = (self.state.written_at.get(), self.state.peek_rules()) {
            if now.saturating_sub(written) < RULES_TTL_SECS {
                return current;
            }
        }
        match read {
            Ok(Ok(None)) => self.state.keep(defaults(now)),
            Ok(Ok(Some(raw))) => self.keep_stored(&raw, now),
            Ok(Err(_)) => self.keep_after_failure(now, "rules unavailable: the store failed"),
            Err(_) => self.keep_after_failure(now, &format!("rules read over {READ_LIMIT_MS} ms")),
        }
    }

    /// A stored document (kept as it is while unchanged), or the defaults when it no longer
    /// validates.
    fn keep_stored(&self, raw: &str, now: u64) -> Rc<Loaded> {
        if let Some(current) = self.state.peek_rules().filter(|l| l.stored && l.document.json == raw) {
            return self.state.keep(Loaded { loaded_at: now, ..(*current).clone() });
        }
        match rules::load(raw) {
            Ok(document) => self.state.keep(Loaded { document, stored: true, loaded_at: now }),
            Err(_) => {
                self.notes.add("stored rules are invalid: using the defaults");
                self.state.keep(defaults(now))
            }
        }
    }

    /// The copy this isolate has, kept for another [`RULES_TTL_SECS`], else the defaults.
    fn keep_after_failure(&self, now: u64, why: &str) -> Rc<Loaded> {
        match self.state.peek_rules() {
            Some(stale) => {
                self.notes.add(format!("{why}: using this isolate's copy"));
                self.state.keep(Loaded { loaded_at: now, ..(*stale).clone() })
            }
            None => {
                self.notes.add(format!("{why}: using the defaults"));
                self.state.keep(defaults(now))
            }
        }
    }

    /// Validates and stores a document; this isolate uses it at once.
    pub async fn put_rules(&self, body: &[u8], can: Capabilities) -> Result<Rc<Loaded>, Error> {
        let document = rules::validate(body, can)?;
        self.rt.store().put(&self.rules_key(), &document.json, None).await?;
        let now = self.rt.clock().now();
        self.state.written_at.set(Some(now));
        Ok(self.state.keep(Loaded { document, stored: true, loaded_at: now }))
    }

    /// Removes the stored document: back to the defaults.
    pub async fn delete_rules(&self) -> Result<Rc<Loaded>, Error> {
        self.rt.store().delete(&self.rules_key()).await?;
        let now = self.rt.clock().now();
        self.state.written_at.set(Some(now));
        Ok(self.state.keep(defaults(now)))
    }

    /// Whether the user asked for a human within the remembered time: isolate memory, else the
    /// database, within [`READ_LIMIT_MS`] (a failing or slower database, or none, reads as "no",
    /// and the log line says so). The second value: whether the database was queried (the reply
    /// path's one query).
    pub async fn requested(&self, openid: &str) -> (bool, bool) {
        let clock = self.rt.clock();
        let now = clock.now();
        if self.state.requested_now(openid, now) {
            return (true, false);
        }
        let Some(db) = self.db() else {
            self.notes.add("transfer request unknown: no database");
            return (false, false);
        };
        let until = match with_timeout(clock, READ_LIMIT_MS, Box::pin(db.requested_until(openid, now))).await {
            Ok(Ok(until)) => until,
            Ok(Err(_)) => {
                self.notes.add("transfer request unknown: the database failed");
                None
            }
            Err(_) => {
                self.notes.add(format!("transfer request read over {READ_LIMIT_MS} ms: taken as not asked"));
                None
            }
        };
        let asked = match until {
            Some(until) if now < until => {
                self.state.remember(openid, until, now);
                true
            }
            _ => false,
        };
        (asked, true)
    }

    /// Remembers that the user asked for a human, for `secs` (memory and database, so that every
    /// isolate transfers the user's next messages while they wait). `false` when only this
    /// isolate remembers it.
    pub async fn remember_request(&self, openid: &str, secs: u64) -> bool {
        let now = self.rt.clock().now();
        let until = now.saturating_add(secs);
        self.state.remember(openid, until, now);
        match self.db() {
            Some(db) => db.remember_request(openid, until).await.is_ok(),
            None => false,
        }
    }
}
