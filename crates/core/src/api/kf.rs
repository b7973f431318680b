//! Capacity-aware choice of the customer-service account for the inline transfer, pure.
//!
//! WeChat hands a user to the `KfAccount` named in the transfer even when that agent cannot take
//! them (offline, auto-accept off, or full), and tells no one else: so with
//! `WECHAT_KF_ROUTING=online` only an account that `getonlinekflist` shows online with free
//! capacity is named; otherwise the transfer is untargeted and WeChat assigns any free agent.

use std::cell::RefCell;
use std::rc::Rc;

use serde::{Deserialize, Serialize};

use crate::api::answer::read_body;
use crate::api::client::WeChatApi;
use crate::config::{Account, KfRouting};
use crate::database::AccountDb;
use crate::error::Error;
use crate::flight::SingleFlight;
use crate::http::ApiCall;
use crate::notes::Notes;
use crate::runtime::{with_timeout, Background, Clock, Runtime, READ_LIMIT_MS};

/// How long a fetched online list is trusted (memory and the database's shared copy).
pub const ONLINE_LIST_TTL_SECS: u64 = 30;
/// How long a failed or slow lookup makes callers skip the lookup (memory only).
pub const NEGATIVE_TTL_SECS: u64 = 30;
/// The most a transfer waits for the lookup, well inside WeChat's 5 s.
pub const LOOKUP_BUDGET_MS: u64 = 1_500;

/// One entry of `getonlinekflist`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnlineKf {
    pub kf_account: String,
    /// 0 offline; 1 web client online (other non-zero values: other clients). Absent: 0.
    #[serde(default)]
    pub status: i64,
    /// Maximum sessions auto-accepted; 0 means auto-accept is off. Absent: not reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_accept: Option<i64>,
    /// Sessions being served now. Absent: 0.
    #[serde(default)]
    pub accepted_case: i64,
}

impl OnlineKf {
    /// Online, and either below its auto-accept limit or with no limit reported.
    pub fn has_capacity(&self) -> bool {
        self.status != 0 && self.auto_accept.is_none_or(|max| max > 0 && self.accepted_case < max)
    }
}

/// An online list with the time it was fetched, as cached: `{"fetched_at":..,"list":[..]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedOnlineList {
    pub fetched_at: u64,
    pub list: Vec<OnlineKf>,
}

impl CachedOnlineList {
    pub fn is_fresh(&self, now: u64) -> bool {
        now.saturating_sub(self.fetched_at) < ONLINE_LIST_TTL_SECS
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(raw: &str) -> Option<Self> {
        serde_json::from_str(raw).ok()
    }
}

/// Reads `getonlinekflist`'s answer (already checked for `errcode`): a JSON object whose
/// `kf_online_list` (absent: empty) holds the entries.
pub fn parse_online_list(body: &[u8]) -> Result<Vec<OnlineKf>, Error> {
    const UNEXPECTED: &str = "getonlinekflist answered an unexpected shape";
    let mut answer = read_body(body, UNEXPECTED)?;
    match answer.remove("kf_online_list") {
        None => Ok(Vec::new()),
        Some(list) => serde_json::from_value(list).map_err(|_| Error::Upstream(UNEXPECTED)),
    }
}

/// The first configured account that is online with free capacity.
pub fn choose<'a>(configured: &'a [String], online: &[OnlineKf]) -> Option<&'a str> {
    configured.iter().find(|acct| online.iter().any(|o| &o.kf_account == *acct && o.has_capacity())).map(String::as_str)
}

/// What the transfer needs to decide its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// No account configured: untargeted transfer.
    Untargeted,
    /// Static routing: this account.
    Fixed(&'a str),
    /// Online routing: look the list up (within the budget) and [`choose`].
    LookUp(&'a [String]),
}

/// The routing decision that needs no I/O.
pub fn target(account: &Account) -> Target<'_> {
    match (account.kf_accounts.first(), account.kf_routing) {
        (None, _) => Target::Untargeted,
        (Some(first), KfRouting::Static) => Target::Fixed(first),
        (Some(_), KfRouting::Online) => Target::LookUp(&account.kf_accounts),
    }
}

/// The shared copy of the online list in the database.
pub const ONLINE_CACHE: &str = "kf_online";

/// A lookup older than this is presumed lost (see [`SingleFlight`]).
pub const FLIGHT_LIMIT_MS: u64 = 25_000;

/// The online list as this isolate knows it: `(trusted until, list)`, the list `None` after a
/// failed or slow lookup; and its lookups, one at a time.
#[derive(Debug)]
pub struct OnlineState {
    memory: RefCell<Option<(u64, Option<Vec<OnlineKf>>)>>,
    flights: SingleFlight<Result<Vec<OnlineKf>, Error>>,
    /// A list just fetched from WeChat that the database has not been given yet: shared after
    /// the reply, never while a transfer waits.
    unshared: RefCell<Option<CachedOnlineList>>,
}

impl Default for OnlineState {
    fn default() -> Self {
        OnlineState {
            memory: RefCell::default(),
            flights: SingleFlight::new(FLIGHT_LIMIT_MS),
            unshared: RefCell::default(),
        }
    }
}

impl OnlineState {
    /// What this isolate knows at `now`: `Some(list)`, `Some(None)` after a recent failed or
    /// slow lookup, `None` when a lookup is due.
    pub fn known(&self, now: u64) -> Option<Option<Vec<OnlineKf>>> {
        self.memory.borrow().as_ref().filter(|(until, _)| now < *until).map(|(_, list)| list.clone())
    }

    fn remember(&self, now: u64, list: Option<Vec<OnlineKf>>) {
        let ttl = if list.is_some() { ONLINE_LIST_TTL_SECS } else { NEGATIVE_TTL_SECS };
        *self.memory.borrow_mut() = Some((now.saturating_add(ttl), list));
    }

    /// When the list in memory was fetched and whether it is a list (for the status report).
    pub fn age(&self, now: u64) -> Option<(u64, bool)> {
        let memory = self.memory.borrow();
        let (until, list) = memory.as_ref()?;
        let ttl = if list.is_some() { ONLINE_LIST_TTL_SECS } else { NEGATIVE_TTL_SECS };
        Some((now.saturating_sub(until.saturating_sub(ttl)), list.is_some()))
    }
}

/// Who is online, within [`LOOKUP_BUDGET_MS`]: isolate memory, else the database's shared copy
/// (at most [`READ_LIMIT_MS`] of it; only when `shared`: a reply path that has queried the
/// database already does not again), else `getonlinekflist`, one lookup at a time in the isolate
/// however many pushes need it. `None` when unknown (the lookup failed, or failed recently, or ran over
/// budget); a lookup over budget is handed back to finish in the background and warm the cache.
pub async fn online_agents<R: Runtime + 'static>(
    api: &WeChatApi<R>,
    state: &Rc<OnlineState>,
    notes: &Rc<Notes>,
    shared: bool,
) -> (Option<Vec<OnlineKf>>, Option<Background>) {
    let rt = api.runtime();
    let now = rt.clock().now();
    if let Some(known) = state.known(now) {
        return (known, None);
    }
    let (flying, flown, notes2) = (api.clone(), state.clone(), notes.clone());
    let lookup = Box::pin(async move {
        let rt = flying.runtime().clone();
        let clock = rt.clock();
        flown
            .flights
            .run(
                clock,
                // A lookup that ended just now serves this one.
                || flown.known(clock.now()).map(|known| known.ok_or(Error::Upstream("online list unavailable"))),
                || fetch_online(flying.clone(), flown.clone(), notes2, shared),
                || Err(Error::UpstreamTimeout),
            )
            .await
    });
    match with_timeout(rt.clock(), LOOKUP_BUDGET_MS, lookup).await {
        Ok(Ok(list)) => {
            state.remember(now, Some(list.clone()));
            (Some(list), share(api, state))
        }
        Ok(Err(e)) => {
            notes.add(format!("online list unavailable: {}", e.code()));
            state.remember(now, None);
            (None, None)
        }
        Err(pending) => {
            notes.add("online list over budget");
            state.remember(now, None);
            let (state, api) = (state.clone(), api.clone());
            let finish = async move {
                if let Ok(list) = pending.await {
                    state.remember(api.runtime().clock().now(), Some(list));
                }
                if let Some(work) = share(&api, &state) {
                    work.await;
                }
            };
            (None, Some(Box::pin(finish)))
        }
    }
}

/// After the reply: the list just fetched, stored for the other isolates.
fn share<R: Runtime + 'static>(api: &WeChatApi<R>, state: &Rc<OnlineState>) -> Option<Background> {
    let cached = state.unshared.borrow_mut().take()?;
    let api = api.clone();
    Some(Box::pin(async move {
        let rt = api.runtime();
        if let Some(db) = rt.database() {
            let _ =
                AccountDb { db, appid: api.appid() }.cache(ONLINE_CACHE, &cached.to_json(), cached.fetched_at).await;
        }
    }))
}

/// The database's shared list if fresh (when `shared`), else `getonlinekflist` (shared after
/// the reply: see [`share`]).
async fn fetch_online<R: Runtime>(
    api: WeChatApi<R>,
    state: Rc<OnlineState>,
    notes: Rc<Notes>,
    shared: bool,
) -> Result<Vec<OnlineKf>, Error> {
    let rt = api.runtime();
    let now = rt.clock().now();
    let db = rt.database().map(|db| AccountDb { db, appid: api.appid() });
    if let Some(db) = db.as_ref().filter(|_| shared) {
        match with_timeout(rt.clock(), READ_LIMIT_MS, Box::pin(db.cached(ONLINE_CACHE))).await {
            Ok(Ok(Some((raw, _)))) => {
                if let Some(cached) = CachedOnlineList::from_json(&raw).filter(|c| c.is_fresh(now)) {
                    return Ok(cached.list);
                }
            }
            Ok(_) => {}
            Err(_) => notes.add(format!("online list read over {READ_LIMIT_MS} ms: asking WeChat")),
        }
    }
    let list = parse_online_list(&api.call(&ApiCall::get(ONLINE_PATH)).await?)?;
    if db.is_some() {
        *state.unshared.borrow_mut() = Some(CachedOnlineList { fetched_at: now, list: list.clone() });
    }
    Ok(list)
}

/// `getonlinekflist`'s path.
pub const ONLINE_PATH: &str = "/cgi-bin/customservice/getonlinekflist";

#[cfg(test)]
mod tests {
    use super::*;

    fn kf(acct: &str, status: i64, auto: Option<i64>, accepted: i64) -> OnlineKf {
        OnlineKf { kf_account: acct.into(), status, auto_accept: auto, accepted_case: accepted }
    }

    #[test]
    fn choose_skips_offline_full_and_auto_accept_off() {
        let configured: Vec<String> = ["a@x", "b@x", "c@x", "d@x"].map(String::from).to_vec();
        let online = vec![
            kf("a@x", 0, Some(5), 0), // offline
            kf("b@x", 1, Some(2), 2), // full
            kf("c@x", 1, Some(0), 0), // auto-accept off
            kf("d@x", 1, Some(3), 1), // free
        ];
        assert_eq!(choose(&configured, &online), Some("d@x"));
        assert_eq!(choose(&configured[..3], &online), None);
        assert_eq!(choose(&configured, &[kf("zz@x", 1, None, 0)]), None, "unlisted accounts are never chosen");
        assert_eq!(choose(&configured, &[kf("b@x", 1, None, 9)]), Some("b@x"), "no limit reported");
    }

    #[test]
    fn parse_online_list_matches_spec_example() {
        let body = br#"{"kf_online_list":[{"kf_account":"test1@test","status":1,"kf_id":"1001","auto_accept":0,"accepted_case":1},{"kf_account":"test2@test","status":1,"kf_id":"1002","auto_accept":2,"accepted_case":1}]}"#;
        let list = parse_online_list(body).unwrap();
        assert_eq!(list.len(), 2);
        assert!(!list[0].has_capacity());
        assert!(list[1].has_capacity());
        assert!(parse_online_list(b"{}").unwrap().is_empty());
        for junk in [
            &b"["[..],
            b"[]",
            br#"{"kf_online_list":{}}"#,
            br#"{"kf_online_list":[{"status":1}]}"#,
            br#"{"kf_online_list":[{"kf_account":"a@b","status":"1"}]}"#,
        ] {
            assert_eq!(parse_online_list(junk), Err(Error::Upstream("getonlinekflist answered an unexpected shape")));
        }
        let cached = CachedOnlineList { fetched_at: 7, list };
        assert_eq!(CachedOnlineList::from_json(&cached.to_json()), Some(cached));
    }
}
