//! access_token policy, pure: what to request, how long a token may be used, when to refresh,
//! what to do when WeChat rejects one or the endpoint fails. The clock is always passed in
//! (`now`, seconds). [`crate::api::token_cache`] applies it over the runtime traits.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::api::answer::read_answer;
use crate::config::{Credentials, TokenEndpoint};
use crate::error::Error;
use crate::http::{encode, Answer, HttpCall};
use crate::runtime::STORE_MIN_TTL_SECS;

/// A cron run refreshes the token when it has less than this left (the cron runs every 5 min).
pub const REFRESH_AHEAD_SECS: u64 = 900;
/// WeChat allows a forced refresh of the stable token at most every 30 s.
pub const FORCE_REFRESH_SPACING_SECS: u64 = 30;
/// A token fetched less than this long ago is not refreshed because WeChat rejected it: a
/// rejection storm costs one refresh a minute, not one per call.
pub const REJECTION_MIN_AGE_SECS: u64 = 60;
/// WeChat says to reserve at least 512 characters for a token; longer ones are accepted up to
/// this sanity bound.
pub const MAX_TOKEN_LEN: usize = 4096;
/// First back-off after a failed token request (transport, 5xx, junk, busy twice).
pub const BACKOFF_FIRST_SECS: u64 = 5;
/// Longest back-off after repeated transient failures.
pub const BACKOFF_MAX_SECS: u64 = 60;
/// Back-off after a credential error or the daily quota: no retry fixes those soon.
pub const CREDENTIAL_BACKOFF_SECS: u64 = 300;

/// A token as cached in memory and in KV (JSON, see [`CachedToken::to_json`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedToken {
    pub access_token: String,
    /// When WeChat said it expires (seconds since the epoch).
    pub expires_at: u64,
    /// When we received it.
    pub fetched_at: u64,
    /// It was fetched because WeChat rejected the token before it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub after_rejection: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl CachedToken {
    /// A token received at `now` with WeChat's `expires_in`.
    pub fn new(access_token: String, expires_in: u64, now: u64) -> Self {
        CachedToken {
            access_token,
            expires_at: now.saturating_add(expires_in),
            fetched_at: now,
            after_rejection: false,
        }
    }

    /// `{"access_token":..,"expires_at":..,"fetched_at":..[,"after_rejection":true]}`.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads [`to_json`](Self::to_json)'s output; `None` for anything else.
    pub fn from_json(raw: &str) -> Option<Self> {
        serde_json::from_str(raw).ok()
    }

    /// Safety margin before the real expiry: a quarter of the lifetime, at most 5 minutes, so a
    /// short-lived token (stable_token near its end) is still usable for most of its life.
    fn margin(&self) -> u64 {
        (self.expires_at.saturating_sub(self.fetched_at) / 4).min(300)
    }

    /// Until when it may be used.
    pub fn usable_until(&self) -> u64 {
        self.expires_at.saturating_sub(self.margin())
    }

    /// Whether it may be used at `now`.
    pub fn is_usable(&self, now: u64) -> bool {
        now < self.usable_until()
    }

    /// Store TTL for it: until it stops being usable, never below the store's minimum.
    pub fn kv_ttl(&self, now: u64) -> u64 {
        self.usable_until().saturating_sub(now).max(STORE_MIN_TTL_SECS)
    }

    /// Whether a rejection of this token may lead to a refresh: not when it was itself fetched
    /// after a rejection less than [`REJECTION_MIN_AGE_SECS`] ago (a fresh token WeChat keeps
    /// rejecting is WeChat's problem, and refreshing again would only spend the token quota).
    pub fn may_refresh_after_rejection(&self, now: u64) -> bool {
        !self.after_rejection || now.saturating_sub(self.fetched_at) >= REJECTION_MIN_AGE_SECS
    }
}

/// Whether the scheduled refresh should fetch a token now.
pub fn refresh_due(cached: Option<&CachedToken>, now: u64) -> bool {
    cached.is_none_or(|t| t.usable_until().saturating_sub(now) < REFRESH_AHEAD_SECS)
}

/// KV key of an account's token.
pub fn kv_key(appid: &str) -> String {
    format!("access_token:{appid}")
}

/// KV key of the time of the account's last forced refresh.
pub fn force_key(appid: &str) -> String {
    format!("access_token_forced_at:{appid}")
}

/// errcodes that mean "this access_token is not (or no longer) valid".
pub fn is_token_rejection(errcode: i64) -> bool {
    matches!(errcode, 40001 | 40014 | 42001)
}

/// What to do after WeChat rejected `rejected` and the endpoint (not forced) handed out `fresh`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterRejection {
    /// A different token: retry the call with it.
    UseFresh,
    /// The stable endpoint handed back the rejected token: force a refresh, then retry.
    ForceRefresh,
    /// The same token again and a forced refresh was made less than 30 s ago: give up (no loop).
    GiveUp,
}

/// Decides the step after a rejection; `last_forced` is the time of the last forced refresh.
pub fn after_rejection(rejected: &str, fresh: &str, last_forced: Option<u64>, now: u64) -> AfterRejection {
    if fresh != rejected {
        AfterRejection::UseFresh
    } else if last_forced.is_none_or(|t| now.saturating_sub(t) >= FORCE_REFRESH_SPACING_SECS) {
        AfterRejection::ForceRefresh
    } else {
        AfterRejection::GiveUp
    }
}

/// The token request for `creds`. `force_refresh` only applies to the stable endpoint.
pub fn token_request(creds: &Credentials, force_refresh: bool) -> HttpCall {
    match creds.endpoint {
        TokenEndpoint::Stable => {
            let body = serde_json::json!({
                "grant_type": "client_credential",
                "appid": creds.appid,
                "secret": creds.secret,
                "force_refresh": force_refresh,
            });
            HttpCall::post_json(format!("{}/cgi-bin/stable_token", creds.api_base), body.to_string().into_bytes())
        }
        TokenEndpoint::Classic => HttpCall::get(format!(
            "{}/cgi-bin/token?grant_type=client_credential&appid={}&secret={}",
            creds.api_base,
            encode(&creds.appid),
            encode(&creds.secret)
        )),
    }
}

/// Reads a token endpoint's answer: `(access_token, expires_in)` or the error it stands for.
pub fn parse_token_answer(answer: &Answer) -> Result<(String, u64), Error> {
    let o = read_answer(answer)?;
    let token = o.get("access_token").and_then(Value::as_str).filter(|t| !t.is_empty() && t.len() <= MAX_TOKEN_LEN);
    let expires_in = o.get("expires_in").and_then(Value::as_u64).filter(|&e| e > 0);
    match (token, expires_in) {
        (Some(t), Some(e)) => Ok((t.to_string(), e)),
        _ => Err(Error::Upstream("token endpoint answered without a usable access_token")),
    }
}

/// The errcodes of a token request that no retry fixes: the operator must act (IP whitelist,
/// AppID, AppSecret).
pub fn is_credential_error(errcode: i64) -> bool {
    matches!(errcode, 40164 | 40013 | 40125)
}

/// How long callers are answered from a failed token request before the next attempt:
/// [`CREDENTIAL_BACKOFF_SECS`] for credential errors and the daily quota (45009), else
/// exponential from [`BACKOFF_FIRST_SECS`] (doubling per consecutive failure) to [`BACKOFF_MAX_SECS`].
pub fn backoff_secs(error: &Error, consecutive_failures: u32) -> u64 {
    match error {
        Error::WeChat { errcode, .. } if is_credential_error(*errcode) || *errcode == 45009 => CREDENTIAL_BACKOFF_SECS,
        _ => {
            let doublings = consecutive_failures.saturating_sub(1).min(8);
            BACKOFF_FIRST_SECS.saturating_mul(1 << doublings).min(BACKOFF_MAX_SECS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{Body, HttpMethod};

    fn creds(endpoint: TokenEndpoint) -> Credentials {
        Credentials {
            appid: "wx1".into(),
            secret: "s&cret".into(),
            api_base: "https://api.weixin.qq.com".into(),
            endpoint,
        }
    }

    #[test]
    fn token_is_usable_until_a_margin_before_expiry() {
        let t = CachedToken::new("T".into(), 7200, 1000);
        assert_eq!(t.usable_until(), 1000 + 7200 - 300);
        assert!(t.is_usable(1000 + 6899));
        assert!(!t.is_usable(1000 + 6900));
        assert_eq!(t.kv_ttl(1000), 6900);
        assert_eq!(t.kv_ttl(1000 + 6890), STORE_MIN_TTL_SECS);
        // A stable token near its end (expires_in 300) is still usable for 225 s, not 0.
        let short = CachedToken::new("T".into(), 300, 0);
        assert_eq!(short.usable_until(), 225);
    }

    #[test]
    fn refresh_is_due_when_missing_or_close_to_expiry() {
        assert!(refresh_due(None, 0));
        let t = CachedToken::new("T".into(), 7200, 0);
        assert!(!refresh_due(Some(&t), 0));
        assert!(!refresh_due(Some(&t), 6900 - 901));
        assert!(refresh_due(Some(&t), 6900 - 899));
    }

    #[test]
    fn after_rejection_forces_once_per_30_seconds_and_never_loops() {
        assert_eq!(after_rejection("A", "B", None, 100), AfterRejection::UseFresh);
        assert_eq!(after_rejection("A", "A", None, 100), AfterRejection::ForceRefresh);
        assert_eq!(after_rejection("A", "A", Some(80), 100), AfterRejection::GiveUp);
        assert_eq!(after_rejection("A", "A", Some(70), 100), AfterRejection::ForceRefresh);
        assert!(is_token_rejection(40001) && is_token_rejection(40014) && is_token_rejection(42001));
        assert!(!is_token_rejection(45015));
    }

    #[test]
    fn token_request_matches_spec_example() {
        let stable = token_request(&creds(TokenEndpoint::Stable), false);
        assert_eq!(stable.method, HttpMethod::Post);
        assert_eq!(stable.url, "https://api.weixin.qq.com/cgi-bin/stable_token");
        let Body::Json(json) = &stable.body else { panic!("{:?}", stable.body) };
        let body: serde_json::Value = serde_json::from_slice(json).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"grant_type":"client_credential","appid":"wx1","secret":"s&cret","force_refresh":false})
        );
        let classic = token_request(&creds(TokenEndpoint::Classic), true);
        assert_eq!(classic.method, HttpMethod::Get);
        assert_eq!(
            classic.url,
            "https://api.weixin.qq.com/cgi-bin/token?grant_type=client_credential&appid=wx1&secret=s%26cret"
        );
    }

    #[test]
    fn parse_token_answer_pins_each_failure() {
        let answer = |status: u16, body: &str| Answer { status, body: body.as_bytes().to_vec() };
        assert_eq!(
            parse_token_answer(&answer(200, r#"{"access_token":"T","expires_in":7200}"#)).unwrap(),
            ("T".into(), 7200)
        );
        assert_eq!(
            parse_token_answer(&answer(200, r#"{"errcode":40164,"errmsg":"invalid ip"}"#)).unwrap_err(),
            Error::WeChat { errcode: 40164, errmsg: "invalid ip".into() }
        );
        let unusable = Error::Upstream("token endpoint answered without a usable access_token");
        let cases = [
            (500, "oops", Error::Upstream("WeChat answered a non-2xx status")),
            (200, "<html>", Error::Upstream("WeChat answered something that is not JSON")),
            (200, r#"{"access_token":"","expires_in":7200}"#, unusable.clone()),
            (200, r#"{"access_token":"T"}"#, unusable.clone()),
            (200, r#"{"access_token":"T","expires_in":0}"#, unusable.clone()),
        ];
        for (status, body, error) in cases {
            assert_eq!(parse_token_answer(&answer(status, body)).unwrap_err(), error, "{body}");
        }
        // WeChat may lengthen tokens past 512 characters: they are kept, up to a sanity bound.
        let long = format!(r#"{{"access_token":"{}","expires_in":7200}}"#, "x".repeat(1024));
        assert_eq!(parse_token_answer(&answer(200, &long)).unwrap().0.len(), 1024);
        let absurd = format!(r#"{{"access_token":"{}","expires_in":7200}}"#, "x".repeat(MAX_TOKEN_LEN + 1));
        assert_eq!(parse_token_answer(&answer(200, &absurd)).unwrap_err(), unusable);
    }

    #[test]
    fn a_token_fetched_after_a_rejection_is_not_refreshed_again_for_a_minute() {
        let plain = CachedToken::new("T".into(), 7200, 1000);
        assert!(plain.may_refresh_after_rejection(1000), "replaced elsewhere right after we fetched it");
        let refreshed = CachedToken { after_rejection: true, ..plain.clone() };
        assert!(!refreshed.may_refresh_after_rejection(1000));
        assert!(!refreshed.may_refresh_after_rejection(1000 + REJECTION_MIN_AGE_SECS - 1));
        assert!(refreshed.may_refresh_after_rejection(1000 + REJECTION_MIN_AGE_SECS));
        // Stored without the mark when unset, read back either way.
        assert_eq!(plain.to_json(), r#"{"access_token":"T","expires_at":8200,"fetched_at":1000}"#);
        assert_eq!(CachedToken::from_json(&plain.to_json()), Some(plain.clone()));
        assert_eq!(CachedToken::from_json(&refreshed.to_json()), Some(refreshed));
        for junk in ["", "{}", r#"{"access_token":"T","expires_at":-1,"fetched_at":1}"#, "[1]"] {
            assert_eq!(CachedToken::from_json(junk), None, "{junk}");
        }
    }

    #[test]
    fn backoff_doubles_for_transient_failures_and_is_long_for_credentials() {
        let transient = Error::Upstream("WeChat answered a non-2xx status");
        let secs: Vec<u64> = (1..=6).map(|n| backoff_secs(&transient, n)).collect();
        assert_eq!(secs, [5, 10, 20, 40, 60, 60]);
        assert_eq!(backoff_secs(&transient, u32::MAX), 60);
        for errcode in [40164, 40013, 40125, 45009] {
            assert_eq!(backoff_secs(&Error::WeChat { errcode, errmsg: String::new() }, 1), 300, "{errcode}");
        }
        assert_eq!(backoff_secs(&Error::WeChat { errcode: -1, errmsg: String::new() }, 1), 5);
    }
}
