//! The front desk: rules before the transfer (greeting, keyword answers, the "转人工" gate, office
//! hours, no-agent replies).
//!
//! - [`rules`]: the rules document, its defaults and its validation (pure).
//! - [`hours`]: offsets, dates and ranges (pure).
//! - [`decide`]: the decision for one push (pure).
//! - [`effects`]: what happens after the reply (notices, alerts, session messages), once.
//! - here: the isolate's copy of the rules (from the store, at most 30 s old) and the users who
//!   asked for a human, over the runtime traits.

pub mod decide;
pub mod effects;
pub mod hours;
pub mod rules;

use std::cell::RefCell;
use std::rc::Rc;

use crate::app::App;
use crate::error::Error;
use crate::runtime::{Clock, Runtime, Store, STORE_MIN_TTL_SECS};
use rules::{Document, DEFAULTS_JSON};

/// How long an isolate uses its copy of the rules before reading the store again.
pub const RULES_TTL_SECS: u64 = 30;
/// Most users remembered in isolate memory as having asked for a human (the store remembers
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

/// The front desk's state in one isolate.
#[derive(Debug, Default)]
pub struct DeskState {
    rules: RefCell<Option<Rc<Loaded>>>,
    /// When this isolate last wrote the rules (`PUT`/`DELETE /api/rules`): for 30 s no read
    /// replaces what it wrote (a read that started before the write could hold the old ones).
    written_at: std::cell::Cell<Option<u64>>,
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

    /// `Some(true)` when this isolate remembers that the user asked for a human; `None` when it
    /// does not know (the store may).
    pub fn requested_now(&self, openid: &str, now: u64) -> Option<bool> {
        self.requested.borrow().iter().any(|(id, until)| id == openid && now < *until).then_some(true)
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

/// The defaults. Built directly, not by validating [`DEFAULTS_JSON`] (a test pins that both
/// agree): the isolate's first push need not run, nor compile, the validator.
fn defaults(now: u64) -> Loaded {
    let document = Document { rules: rules::Rules::default(), json: DEFAULTS_JSON.to_string() };
    Loaded { document, stored: false, loaded_at: now }
}

/// The account's part of the front desk's store keys (`default` without an AppID).
pub(crate) fn appid<R: Runtime>(app: &App<R>) -> &str {
    app.config.appid.as_deref().unwrap_or("default")
}

/// Store key of the account's rules. Pushed, not `format!`ted: an isolate's first push reads
/// it, and V8 would compile the formatting machinery for that alone.
pub fn rules_key<R: Runtime>(app: &App<R>) -> String {
    let appid = appid(app);
    let mut key = String::with_capacity(6 + appid.len());
    key.push_str("rules:");
    key.push_str(appid);
    key
}

fn requested_key<R: Runtime>(app: &App<R>, openid: &str) -> String {
    format!("requested:{}:{openid}", appid(app))
}

/// The rules: this isolate's copy while fresh, else the store's (see [`keep_read`]).
pub async fn current_rules<R: Runtime>(app: &App<R>) -> Rc<Loaded> {
    if let Some(loaded) = app.isolate.desk.rules_now(app.rt.clock().now()) {
        return loaded;
    }
    let read = app.rt.store().get(&rules_key(app)).await;
    keep_read(app, read)
}

/// Keeps what a read of [`rules_key`] gave as this isolate's rules for [`RULES_TTL_SECS`]: the
/// stored document, or the defaults when none is stored or it no longer validates. A failed read
/// keeps the copy this isolate has, else the defaults, for as long (the reply never waits on a
/// failing store, nor asks it on every push). Used by [`current_rules`], and by
/// [`crate::app::handle_now_into`] when the JS entry made the read.
pub fn keep_read<R: Runtime>(app: &App<R>, read: Result<Option<String>, Error>) -> Rc<Loaded> {
    let now = app.rt.clock().now();
    let desk = &app.isolate.desk;
    if let (Some(written), Some(current)) = (desk.written_at.get(), desk.peek_rules()) {
        if now.saturating_sub(written) < RULES_TTL_SECS {
            return current;
        }
    }
    match read {
        Ok(None) => desk.keep(defaults(now)),
        Ok(Some(raw)) => keep_stored(app, &raw, now),
        Err(_) => keep_after_failure(app, now),
    }
}

/// A stored document, or the defaults when it no longer validates. Out of line (as is
/// [`keep_after_failure`]): V8 compiles a function whole on its first call, and an isolate
/// whose store holds no rules need not compile the loader.
#[inline(never)]
fn keep_stored<R: Runtime>(app: &App<R>, raw: &str, now: u64) -> Rc<Loaded> {
    match rules::load(raw) {
        Ok(document) => app.isolate.desk.keep(Loaded { document, stored: true, loaded_at: now }),
        Err(_) => {
            app.note("stored rules are invalid: using the defaults".to_string());
            app.isolate.desk.keep(defaults(now))
        }
    }
}

/// The copy this isolate has, kept for another [`RULES_TTL_SECS`], else the defaults.
#[inline(never)]
fn keep_after_failure<R: Runtime>(app: &App<R>, now: u64) -> Rc<Loaded> {
    app.note("rules unavailable: the store failed".to_string());
    let desk = &app.isolate.desk;
    match desk.peek_rules() {
        Some(stale) => desk.keep(Loaded { loaded_at: now, ..(*stale).clone() }),
        None => desk.keep(defaults(now)),
    }
}

/// Validates and stores a document; this isolate uses it at once.
pub async fn put_rules<R: Runtime>(app: &App<R>, body: &[u8]) -> Result<Rc<Loaded>, Error> {
    let can = rules::Capabilities {
        api: app.config.api_credentials().is_ok(),
        webhook: app.config.outbound().alert_webhook.is_some(),
    };
    let document = rules::validate(body, can)?;
    app.rt.store().put(&rules_key(app), &document.json, None).await?;
    let now = app.rt.clock().now();
    app.isolate.desk.written_at.set(Some(now));
    Ok(app.isolate.desk.keep(Loaded { document, stored: true, loaded_at: now }))
}

/// Removes the stored document: back to the defaults.
pub async fn delete_rules<R: Runtime>(app: &App<R>) -> Result<Rc<Loaded>, Error> {
    app.rt.store().delete(&rules_key(app)).await?;
    let now = app.rt.clock().now();
    app.isolate.desk.written_at.set(Some(now));
    Ok(app.isolate.desk.keep(defaults(now)))
}

/// Whether the user asked for a human within the remembered time: isolate memory, else the
/// store (a store failure reads as "no").
pub async fn requested<R: Runtime>(app: &App<R>, openid: &str) -> bool {
    let now = app.rt.clock().now();
    if app.isolate.desk.requested_now(openid, now) == Some(true) {
        return true;
    }
    let until =
        app.rt.store().get(&requested_key(app, openid)).await.ok().flatten().and_then(|v| v.parse::<u64>().ok());
    match until {
        Some(until) if now < until => {
            app.isolate.desk.remember(openid, until, now);
            true
        }
        _ => false,
    }
}

/// Remembers that the user asked for a human, for `secs` (memory and store, so that every
/// isolate transfers the user's next messages while they wait).
pub async fn remember_request<R: Runtime>(app: &App<R>, openid: &str, secs: u64) {
    let now = app.rt.clock().now();
    let until = now.saturating_add(secs);
    app.isolate.desk.remember(openid, until, now);
    let ttl = secs.max(STORE_MIN_TTL_SECS);
    if app.rt.store().put(&requested_key(app, openid), &until.to_string(), Some(ttl)).await.is_err() {
        app.note("transfer request not stored: the store failed".to_string());
    }
}
