//! The WeChat API client: access_token from memory, then KV, then the token endpoint (one
//! request at a time per isolate), and API calls with one refresh-and-retry on a rejected token.
//! Every decision is `crate::token`'s; this file only does the I/O.
//!
//! Single flight without cross-request wake-ups: in workerd, a request whose future is woken by
//! I/O that belongs to another request is resolved in the wrong context and cancelled as hung.
//! So only the leader awaits the token request; followers wait on their own short timers and
//! read the leader's outcome from isolate memory.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use futures_util::future::{select, Either};
use worker::{web_sys, Delay, Env, Fetch, KvStore, Request};

use crate::admin::{interpret_response, ApiCall};
use crate::config::{Config, TokenEndpoint};
use crate::error::Error;
use crate::kf::{self, CachedOnlineList, OnlineKf};
use crate::token::{self, AfterRejection, CachedToken, HttpCall, HttpMethod};

/// Longest wait for one HTTP exchange with WeChat.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Back-off before the one retry of a token request that answered -1 (busy).
const BUSY_BACKOFF: Duration = Duration::from_millis(300);
/// How often a follower looks for the leader's outcome.
const FOLLOW_POLL: Duration = Duration::from_millis(5);
/// A flight older than this is presumed dead (its request went away): the next caller leads.
const FLIGHT_LIMIT_MS: u64 = 25_000;

thread_local! {
    /// The isolate's token, with the AppID it belongs to.
    static MEMORY: RefCell<Option<(String, CachedToken)>> = const { RefCell::new(None) };
    /// The token request under way: its generation and start (ms).
    static FLIGHT: Cell<Option<(u64, u64)>> = const { Cell::new(None) };
    /// The last generation handed out.
    static GENERATION: Cell<u64> = const { Cell::new(0) };
    /// The outcome of the last finished flight, by generation.
    static OUTCOME: RefCell<Option<(u64, Result<CachedToken, Error>)>> = const { RefCell::new(None) };
    /// When this isolate last forced a refresh.
    static LAST_FORCED: Cell<Option<u64>> = const { Cell::new(None) };
    /// The online list (or, with `None`, a recent failure to get it) and until when to trust it.
    static ONLINE: RefCell<Option<(u64, Option<Vec<OnlineKf>>)>> = const { RefCell::new(None) };
}

/// Owned credentials, so that token requests can outlive the request that started them.
#[derive(Clone)]
pub(crate) struct Client {
    appid: String,
    secret: String,
    api_base: String,
    endpoint: TokenEndpoint,
    kv: KvStore,
}

impl Client {
    pub(crate) fn new(config: &Config, env: &Env) -> Result<Client, Error> {
        let creds = config.api_credentials()?;
        let kv = env.kv("WECHAT_KV").map_err(|_| Error::Config("WECHAT_KV"))?;
        Ok(Client {
            appid: creds.appid.to_string(),
            secret: creds.secret.to_string(),
            api_base: creds.api_base.to_string(),
            endpoint: creds.endpoint,
            kv,
        })
    }

    fn creds(&self) -> crate::config::ApiCredentials<'_> {
        crate::config::ApiCredentials {
            appid: &self.appid,
            secret: &self.secret,
            api_base: &self.api_base,
            endpoint: self.endpoint,
        }
    }

    /// A usable token: memory, else KV, else the endpoint — one endpoint request per isolate
    /// however many requests wait for it.
    pub(crate) async fn access_token(&self, now: u64) -> Result<CachedToken, Error> {
        if let Some(t) = self.memory_token(now) {
            return Ok(t);
        }
        self.single_flight(now, None).await
    }

    fn memory_token(&self, now: u64) -> Option<CachedToken> {
        MEMORY.with_borrow(|m| match m {
            Some((appid, t)) if *appid == self.appid && t.is_usable(now) => Some(t.clone()),
            _ => None,
        })
    }

    async fn single_flight(&self, now: u64, avoid: Option<String>) -> Result<CachedToken, Error> {
        let now_ms = worker::Date::now().as_millis();
        if let Some((generation, started)) = FLIGHT.get() {
            if now_ms.saturating_sub(started) < FLIGHT_LIMIT_MS {
                return follow(generation, started).await;
            }
        }
        let generation = GENERATION.get() + 1;
        GENERATION.set(generation);
        FLIGHT.set(Some((generation, now_ms)));
        let result = self.load_or_fetch(now, avoid.as_deref()).await;
        OUTCOME.with_borrow_mut(|o| *o = Some((generation, result.clone())));
        if FLIGHT.get().is_some_and(|(g, _)| g == generation) {
            FLIGHT.set(None);
        }
        result
    }

    async fn load_or_fetch(&self, now: u64, avoid: Option<&str>) -> Result<CachedToken, Error> {
        if let Some(t) = self.kv_token().await {
            if t.is_usable(now) && Some(t.access_token.as_str()) != avoid {
                self.remember(&t);
                return Ok(t);
            }
        }
        let t = self.fetch_token(false, now).await?;
        self.store(&t, now).await;
        Ok(t)
    }

    fn remember(&self, t: &CachedToken) {
        MEMORY.with_borrow_mut(|m| *m = Some((self.appid.clone(), t.clone())));
    }

    async fn kv_token(&self) -> Option<CachedToken> {
        let raw = self.kv.get(&token::kv_key(&self.appid)).text().await.ok().flatten()?;
        serde_json::from_str(&raw).ok()
    }

    async fn store(&self, t: &CachedToken, now: u64) {
        self.remember(t);
        let Ok(value) = serde_json::to_string(t) else { return };
        let put = self.kv.put_bytes(&token::kv_key(&self.appid), value.as_bytes());
        if let Ok(put) = put {
            if put.expiration_ttl(t.kv_ttl(now)).execute().await.is_err() {
                worker::console_warn!("{{\"kv\":\"access_token write failed\"}}");
            }
        }
    }

    /// Asks the token endpoint; a busy answer (-1) is retried once after a short back-off.
    async fn fetch_token(&self, force_refresh: bool, now: u64) -> Result<CachedToken, Error> {
        let call = token::token_request(&self.creds(), force_refresh);
        let mut busy_retried = false;
        loop {
            let (status, body) = send(&call).await?;
            match token::parse_token_response(status, &body) {
                Ok((t, expires_in)) => return Ok(CachedToken::new(t, expires_in, now)),
                Err(Error::WeChat { errcode: -1, .. }) if !busy_retried => {
                    busy_retried = true;
                    Delay::from(BUSY_BACKOFF).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Calls a WeChat API; on 40001/40014/42001 refreshes the token once and retries once.
    pub(crate) async fn call(&self, api: &ApiCall, now: u64) -> Result<Vec<u8>, Error> {
        let token = self.access_token(now).await?;
        let (status, body) = send(&self.http(api, &token.access_token)).await?;
        match interpret_response(status, &body) {
            Ok(()) => Ok(body),
            Err(Error::WeChat { errcode, errmsg }) if token::is_token_rejection(errcode) => {
                let fresh = self.refresh_after_rejection(&token.access_token, now).await?;
                let Some(fresh) = fresh else {
                    return Err(Error::WeChat { errcode, errmsg });
                };
                let (status, body) = send(&self.http(api, &fresh.access_token)).await?;
                interpret_response(status, &body).map(|()| body)
            }
            Err(e) => Err(e),
        }
    }

    /// Drops `rejected` from the caches (only if they still hold it) and gets a different
    /// token, forcing a refresh when the stable endpoint hands back the same one. `None` when a
    /// forced refresh was made less than 30 s ago (WeChat's spacing): no retry, no loop.
    async fn refresh_after_rejection(&self, rejected: &str, now: u64) -> Result<Option<CachedToken>, Error> {
        MEMORY.with_borrow_mut(|m| {
            if m.as_ref().is_some_and(|(_, t)| t.access_token == rejected) {
                *m = None;
            }
        });
        if let Some(memory) = self.memory_token(now) {
            // Another request of this isolate already replaced it.
            return Ok(Some(memory));
        }
        if self.kv_token().await.is_some_and(|t| t.access_token == rejected) {
            let _ = self.kv.delete(&token::kv_key(&self.appid)).await;
        }
        let fresh = self.single_flight(now, Some(rejected.to_string())).await?;
        // The latest forced refresh by this isolate or any other (recorded in KV).
        let in_kv: Option<u64> =
            self.kv.get(&token::force_key(&self.appid)).text().await.ok().flatten().and_then(|v| v.parse().ok());
        let last_forced = LAST_FORCED.get().max(in_kv);
        match token::after_rejection(rejected, &fresh.access_token, last_forced, now) {
            AfterRejection::UseFresh => Ok(Some(fresh)),
            AfterRejection::GiveUp => Ok(None),
            AfterRejection::ForceRefresh => {
                LAST_FORCED.set(Some(now));
                if let Ok(put) = self.kv.put_bytes(&token::force_key(&self.appid), now.to_string().as_bytes()) {
                    let _ = put.expiration_ttl(token::KV_MIN_TTL_SECS).execute().await;
                }
                let forced = self.fetch_token(true, now).await?;
                self.store(&forced, now).await;
                Ok(Some(forced))
            }
        }
    }

    fn http(&self, api: &ApiCall, access_token: &str) -> HttpCall {
        HttpCall { method: api.method, url: api.url(&self.api_base, access_token), body: api.body.clone() }
    }

    /// Cron: refreshes the KV token when it is missing or close to its end. Returns what it did.
    pub(crate) async fn refresh_if_due(&self, now: u64) -> Result<&'static str, Error> {
        let cached = self.kv_token().await;
        if !token::refresh_due(cached.as_ref(), now) {
            if let Some(t) = cached {
                self.remember(&t);
            }
            return Ok("fresh");
        }
        let t = self.fetch_token(false, now).await?;
        self.store(&t, now).await;
        Ok("refreshed")
    }

    /// The online list: memory, else KV, else `getonlinekflist` (then cached in both).
    /// `None` while a recent lookup failed (so transfers do not wait on a failing API).
    pub(crate) async fn online_list(&self, now: u64) -> Result<Vec<OnlineKf>, Error> {
        let key = format!("kf_online:{}", self.appid);
        if let Some(raw) = self.kv.get(&key).text().await.ok().flatten() {
            if let Ok(cached) = serde_json::from_str::<CachedOnlineList>(&raw) {
                if cached.is_fresh(now) {
                    return Ok(cached.list);
                }
            }
        }
        let call = crate::admin::plan("GET", "/kf/online", "", b"")?;
        let list = kf::parse_online_list(&self.call(&call, now).await?)?;
        let cached = CachedOnlineList { fetched_at: now, list };
        if let Ok(put) = self.kv.put_bytes(&key, serde_json::to_string(&cached).unwrap_or_default().as_bytes()) {
            let _ = put.expiration_ttl(token::KV_MIN_TTL_SECS).execute().await;
        }
        Ok(cached.list)
    }
}

/// Waits, on this request's own timers, for the outcome of flight `generation`.
async fn follow(generation: u64, started: u64) -> Result<CachedToken, Error> {
    loop {
        Delay::from(FOLLOW_POLL).await;
        let outcome = OUTCOME.with_borrow(|o| o.as_ref().filter(|(g, _)| *g == generation).map(|(_, r)| r.clone()));
        if let Some(result) = outcome {
            return result;
        }
        if worker::Date::now().as_millis().saturating_sub(started) >= FLIGHT_LIMIT_MS {
            return Err(Error::UpstreamTimeout);
        }
    }
}

/// The in-memory view of the online list, if still trusted: `Some(None)` = recently failed.
pub(crate) fn online_from_memory(now: u64) -> Option<Option<Vec<OnlineKf>>> {
    ONLINE.with_borrow(|o| o.as_ref().filter(|(until, _)| now < *until).map(|(_, l)| l.clone()))
}

/// Remembers the online list (or a failure) in memory.
pub(crate) fn remember_online(now: u64, list: Option<Vec<OnlineKf>>) {
    let ttl = if list.is_some() { kf::ONLINE_LIST_TTL_SECS } else { kf::NEGATIVE_TTL_SECS };
    ONLINE.with_borrow_mut(|o| *o = Some((now + ttl, list)));
}

/// `Ok(output)`, or `Err(fut)` — still pending, to finish elsewhere — when `limit` passed first.
pub(crate) async fn with_timeout<F: std::future::Future + Unpin>(fut: F, limit: Duration) -> Result<F::Output, F> {
    match select(fut, Box::pin(Delay::from(limit))).await {
        Either::Left((out, _)) => Ok(out),
        Either::Right((_, pending)) => Err(pending),
    }
}

/// One HTTP exchange with WeChat: `(status, body)`. Transport failures and timeouts are errors.
async fn send(call: &HttpCall) -> Result<(u16, Vec<u8>), Error> {
    // web_sys directly: worker's RequestInit conversion carries `cf` options we never set, ~30 KB.
    let init = web_sys::RequestInit::new();
    match call.method {
        HttpMethod::Get => init.set_method("GET"),
        HttpMethod::Post => {
            init.set_method("POST");
            let headers = web_sys::Headers::new().map_err(|_| Error::Internal("headers"))?;
            let _ = headers.set("content-type", "application/json; charset=utf-8");
            init.set_headers(&headers);
            let body = call.body.as_deref().unwrap_or_default();
            init.set_body(&worker::js_sys::Uint8Array::from(body));
        }
    }
    let request = web_sys::Request::new_with_str_and_init(&call.url, &init)
        .map(Request::from)
        .map_err(|_| Error::Upstream("invalid WeChat API URL"))?;
    let exchange = async move {
        let mut response =
            Fetch::Request(request).send().await.map_err(|_| Error::Upstream("WeChat API unreachable"))?;
        let status = response.status_code();
        let body = response.bytes().await.map_err(|_| Error::Upstream("WeChat API body unreadable"))?;
        Ok::<_, Error>((status, body))
    };
    with_timeout(Box::pin(exchange), HTTP_TIMEOUT).await.unwrap_or(Err(Error::UpstreamTimeout))
}
