//! The access_token cache, over the runtime traits: isolate memory, then the store, then the
//! token endpoint, with [`crate::api::token`]'s policy.
//!
//! - **Single flight.** Within an isolate one token request runs at a time ([`SingleFlight`]).
//! - **Back-off.** A failed token request is remembered: until the next attempt every caller is
//!   answered at once with the failure and when the next attempt will be made.
//! - **Rejections.** A rejected token is refreshed at most once per call, and a token that was
//!   itself fetched after a rejection is not refreshed again for
//!   [`REJECTION_MIN_AGE_SECS`](crate::api::token::REJECTION_MIN_AGE_SECS) (the mark travels
//!   with it through the store); a forced refresh at most every 30 s across isolates.
//! - **The store failing** degrades to the endpoint: never a 5xx of its own.

use std::cell::{Cell, RefCell};

use crate::api::token::{
    self, after_rejection, backoff_secs, parse_token_answer, refresh_due, token_request, AfterRejection, CachedToken,
};
use crate::config::Credentials;
use crate::error::Error;
use crate::flight::SingleFlight;
use crate::runtime::{exchange, Clock, Runtime, Store, STORE_MIN_TTL_SECS};

/// A token request older than this is presumed lost: its followers give up (504) and the next
/// caller leads.
pub const FLIGHT_LIMIT_MS: u64 = 25_000;
/// Back-off before the one retry of a token request answered -1 (busy).
pub const BUSY_RETRY_MS: u64 = 300;
/// During a back-off, how often the store is asked whether another isolate (the cron) has a
/// good token since.
pub const BACKOFF_STORE_CHECK_MS: u64 = 5_000;
/// `POST /api/token/refresh` answers 429 when it was called less than this long before.
pub const MANUAL_REFRESH_SPACING_MS: u64 = 10_000;

/// A remembered token request failure.
#[derive(Debug, Clone)]
struct Backoff {
    /// When (ms) it happened: a token fetched since (by the cron, elsewhere) ends it.
    since_ms: u64,
    /// Until when (ms) callers are answered with it.
    until_ms: u64,
    error: Error,
}

/// The token state of one account in one isolate.
#[derive(Debug)]
pub struct TokenState {
    memory: RefCell<Option<CachedToken>>,
    flights: SingleFlight<Result<CachedToken, Error>>,
    consecutive_failures: Cell<u32>,
    /// The failure callers are answered with until it ends.
    backoff: RefCell<Option<Backoff>>,
    /// When (ms) the store was last asked for a token during the back-off.
    backoff_checked: Cell<u64>,
    /// When (ms) a refresh was last asked for by hand.
    manual_refresh: Cell<Option<u64>>,
    last_forced: Cell<Option<u64>>,
    /// A token request failed in a way no retry fixes (40164, 40013, 40125), not yet alerted.
    credential_failure: Cell<Option<i64>>,
}

impl Default for TokenState {
    fn default() -> Self {
        TokenState {
            memory: RefCell::default(),
            flights: SingleFlight::new(FLIGHT_LIMIT_MS),
            consecutive_failures: Cell::default(),
            backoff: RefCell::default(),
            backoff_checked: Cell::default(),
            manual_refresh: Cell::default(),
            last_forced: Cell::default(),
            credential_failure: Cell::default(),
        }
    }
}

impl TokenState {
    /// The credential failure to alert, if one happened since the last call.
    pub fn take_credential_failure(&self) -> Option<i64> {
        self.credential_failure.take()
    }

    /// Whether a credential failure waits to be alerted.
    pub fn has_credential_failure(&self) -> bool {
        self.credential_failure.get().is_some()
    }

    fn usable(&self, now: u64) -> Option<CachedToken> {
        self.memory.borrow().as_ref().filter(|t| t.is_usable(now)).cloned()
    }

    /// The current back-off as an error to answer with, if one is running at `now_ms`.
    fn backing_off(&self, now_ms: u64) -> Option<Error> {
        let backoff = self.backoff.borrow();
        let b = backoff.as_ref().filter(|b| now_ms < b.until_ms)?;
        Some(Error::retry_later(b.error.clone(), b.until_ms.saturating_sub(now_ms).div_ceil(1000)))
    }

    /// Ends a running back-off with `token`, fetched after the failure (by another isolate):
    /// whether it did.
    fn end_backoff_with(&self, token: &CachedToken) -> bool {
        let failed_at = self.backoff.borrow().as_ref().map(|b| b.since_ms / 1000);
        match failed_at {
            Some(failed_at) if token.fetched_at >= failed_at => {
                *self.memory.borrow_mut() = Some(token.clone());
                self.consecutive_failures.set(0);
                *self.backoff.borrow_mut() = None;
                true
            }
            _ => false,
        }
    }

    /// Records a token request's result: memory on success, the back-off on failure.
    fn record(&self, result: Result<CachedToken, Error>, now_ms: u64) -> Result<CachedToken, Error> {
        match result {
            Ok(t) => {
                *self.memory.borrow_mut() = Some(t.clone());
                self.consecutive_failures.set(0);
                *self.backoff.borrow_mut() = None;
                Ok(t)
            }
            Err(e) => {
                let failures = self.consecutive_failures.get().saturating_add(1);
                self.consecutive_failures.set(failures);
                let secs = backoff_secs(e.cause(), failures);
                let until_ms = now_ms.saturating_add(secs * 1000);
                *self.backoff.borrow_mut() = Some(Backoff { since_ms: now_ms, until_ms, error: e.cause().clone() });
                Err(Error::retry_later(e, secs))
            }
        }
    }
}

/// The token as the status report shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenStatus {
    /// Seconds until the usable token expires; `None`: no usable token is cached.
    pub expires_in: Option<u64>,
    /// When that token was fetched (Unix seconds).
    pub fetched_at: Option<u64>,
    /// Seconds until the next token request may be made, while a failure is remembered.
    pub retry_after: Option<u64>,
    /// That failure (its code and detail: never a secret).
    pub last_error: Option<String>,
}

/// The cache for one account.
pub struct TokenCache<'a, R: Runtime> {
    pub rt: &'a R,
    pub state: &'a TokenState,
    pub creds: &'a Credentials,
}

impl<'a, R: Runtime> TokenCache<'a, R> {
    fn key(&self) -> String {
        token::kv_key(&self.creds.appid)
    }

    /// A usable token: memory, else the store, else the endpoint (one request per isolate
    /// however many callers wait for it); during a back-off, the remembered failure at once.
    pub async fn access_token(&self) -> Result<CachedToken, Error> {
        let clock = self.rt.clock();
        if let Some(t) = self.state.usable(clock.now()) {
            return Ok(t);
        }
        let now_ms = clock.now_ms();
        if self.state.backing_off(now_ms).is_some()
            && now_ms.saturating_sub(self.state.backoff_checked.get()) >= BACKOFF_STORE_CHECK_MS
        {
            // A failure is remembered here; the cron (or another isolate) may have a good token
            // since, which ends it.
            self.state.backoff_checked.set(now_ms);
            if let Some(t) = self.stored().await.filter(|t| t.is_usable(clock.now())) {
                if self.state.end_backoff_with(&t) {
                    return Ok(t);
                }
            }
        }
        self.single_flight(None).await
    }

    /// `POST /api/token/refresh`: one token request now, whatever the back-off (an operator who
    /// fixed the IP whitelist or the secret tries again); at most one every
    /// [`MANUAL_REFRESH_SPACING_MS`] per isolate (the route also holds it across isolates with a
    /// database). Its outcome is recorded as any other's.
    pub async fn refresh_now(&self) -> Result<CachedToken, Error> {
        let now_ms = self.rt.clock().now_ms();
        if let Some(last) = self.state.manual_refresh.get() {
            let wait_ms = (last + MANUAL_REFRESH_SPACING_MS).saturating_sub(now_ms);
            if wait_ms > 0 {
                return Err(Error::TooSoon { retry_after_secs: wait_ms.div_ceil(1000) });
            }
        }
        self.state.manual_refresh.set(Some(now_ms));
        let state = self.state;
        let clock = self.rt.clock();
        state
            .flights
            .run(
                clock,
                || None,
                || async move {
                    let result = self.fetch_token(false).await;
                    if let Ok(t) = &result {
                        self.store(t).await;
                    }
                    state.record(result, clock.now_ms())
                },
                || Err(Error::UpstreamTimeout),
            )
            .await
    }

    async fn single_flight(&self, avoid: Option<&str>) -> Result<CachedToken, Error> {
        let clock = self.rt.clock();
        let state = self.state;
        state
            .flights
            .run(
                clock,
                || state.backing_off(clock.now_ms()).map(Err),
                || async move {
                    let result = self.load_or_fetch(avoid).await;
                    state.record(result, clock.now_ms())
                },
                || Err(Error::UpstreamTimeout),
            )
            .await
    }

    async fn load_or_fetch(&self, avoid: Option<&str>) -> Result<CachedToken, Error> {
        let now = self.rt.clock().now();
        if let Some(t) = self.stored().await {
            if t.is_usable(now) && Some(t.access_token.as_str()) != avoid {
                return Ok(t);
            }
        }
        let mut t = self.fetch_token(false).await?;
        t.after_rejection = avoid.is_some();
        self.store(&t).await;
        Ok(t)
    }

    /// The token in the store; a store failure or an unreadable entry reads as none.
    async fn stored(&self) -> Option<CachedToken> {
        let raw = self.rt.store().get(&self.key()).await.ok().flatten()?;
        CachedToken::from_json(&raw)
    }

    async fn store(&self, t: &CachedToken) {
        // A failed write only costs other isolates a token request.
        let _ = self.rt.store().put(&self.key(), &t.to_json(), Some(t.kv_ttl(self.rt.clock().now()))).await;
    }

    /// Asks the token endpoint; a busy answer (-1) is retried once after [`BUSY_RETRY_MS`].
    async fn fetch_token(&self, force_refresh: bool) -> Result<CachedToken, Error> {
        let call = token_request(self.creds, force_refresh);
        let mut busy_retried = false;
        loop {
            let answer = exchange(self.rt, &call).await?;
            match parse_token_answer(&answer) {
                Ok((t, expires_in)) => return Ok(CachedToken::new(t, expires_in, self.rt.clock().now())),
                Err(Error::WeChat { errcode: -1, .. }) if !busy_retried => {
                    busy_retried = true;
                    self.rt.clock().sleep(BUSY_RETRY_MS).await;
                }
                Err(e) => {
                    if let Error::WeChat { errcode, .. } = &e {
                        if token::is_credential_error(*errcode) {
                            self.state.credential_failure.set(Some(*errcode));
                        }
                    }
                    return Err(e);
                }
            }
        }
    }

    /// After WeChat rejected `rejected`: a different token to retry with, or `None` (no retry:
    /// the token is too young to be refreshed again, or the stable endpoint keeps handing back
    /// the rejected token and a forced refresh was made less than 30 s ago).
    pub async fn refresh_after_rejection(&self, rejected: &CachedToken) -> Result<Option<CachedToken>, Error> {
        let clock = self.rt.clock();
        let now = clock.now();
        if !rejected.may_refresh_after_rejection(now) {
            return Ok(None);
        }
        {
            let mut memory = self.state.memory.borrow_mut();
            if memory.as_ref().is_some_and(|t| t.access_token == rejected.access_token) {
                *memory = None;
            }
        }
        if let Some(t) = self.state.usable(now) {
            // Another caller of this isolate already replaced it.
            return Ok(Some(t));
        }
        if self.stored().await.is_some_and(|t| t.access_token == rejected.access_token) {
            let _ = self.rt.store().delete(&self.key()).await;
        }
        let fresh = self.single_flight(Some(&rejected.access_token)).await?;
        // The last forced refresh matters only when the endpoint handed back the rejected token.
        let last_forced = if fresh.access_token == rejected.access_token {
            self.state.last_forced.get().max(self.stored_forced_at().await)
        } else {
            None
        };
        match after_rejection(&rejected.access_token, &fresh.access_token, last_forced, clock.now()) {
            AfterRejection::UseFresh => Ok(Some(fresh)),
            AfterRejection::GiveUp => Ok(None),
            AfterRejection::ForceRefresh => {
                let now = clock.now();
                self.state.last_forced.set(Some(now));
                let key = token::force_key(&self.creds.appid);
                let _ = self.rt.store().put(&key, &now.to_string(), Some(STORE_MIN_TTL_SECS)).await;
                let mut forced = self.fetch_token(true).await?;
                forced.after_rejection = true;
                *self.state.memory.borrow_mut() = Some(forced.clone());
                self.store(&forced).await;
                Ok(Some(forced))
            }
        }
    }

    async fn stored_forced_at(&self) -> Option<u64> {
        let raw = self.rt.store().get(&token::force_key(&self.creds.appid)).await.ok().flatten()?;
        raw.parse().ok()
    }

    /// What the status report says about the token (never the token itself): the usable token
    /// of this isolate, else of the store (one read), and the back-off if one is running.
    pub async fn status(&self) -> TokenStatus {
        let now_ms = self.rt.clock().now_ms();
        let now = now_ms / 1000;
        let cached = match self.state.usable(now) {
            Some(t) => Some(t),
            None => self.stored().await.filter(|t| t.is_usable(now)),
        };
        if let Some(t) = &cached {
            // The cron (or another isolate) has a good token since the failure: it is over.
            self.state.end_backoff_with(t);
        }
        let backoff = self.state.backing_off(now_ms);
        TokenStatus {
            expires_in: cached.as_ref().map(|t| t.expires_at.saturating_sub(now)),
            fetched_at: cached.as_ref().map(|t| t.fetched_at),
            retry_after: backoff.as_ref().and_then(|e| match e {
                Error::RetryLater { retry_after_secs, .. } => Some(*retry_after_secs),
                _ => None,
            }),
            last_error: backoff.map(|e| e.cause().to_string()),
        }
    }

    /// Cron: refreshes the stored token when it is missing or close to its end.
    pub async fn refresh_if_due(&self) -> Result<&'static str, Error> {
        let cached = self.stored().await;
        if !refresh_due(cached.as_ref(), self.rt.clock().now()) {
            if let Some(t) = cached {
                *self.state.memory.borrow_mut() = Some(t);
            }
            return Ok("fresh");
        }
        let t = self.fetch_token(false).await?;
        *self.state.memory.borrow_mut() = Some(t.clone());
        self.store(&t).await;
        Ok("refreshed")
    }
}
