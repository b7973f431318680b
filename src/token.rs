//! access_token policy, pure: what to request, how long a token may be used, when to refresh,
//! what to do when WeChat rejects one. The clock is always passed in (`now`, seconds).

use serde::{Deserialize, Serialize};

use crate::config::{ApiCredentials, TokenEndpoint};
use crate::error::Error;

/// A cron run refreshes the token when it has less than this left (the cron runs every 5 min).
pub const REFRESH_AHEAD_SECS: u64 = 900;
/// WeChat allows a forced refresh of the stable token at most every 30 s.
pub const FORCE_REFRESH_SPACING_SECS: u64 = 30;
/// Workers KV refuses an `expiration_ttl` under 60 s.
pub const KV_MIN_TTL_SECS: u64 = 60;
/// WeChat's documented maximum token length.
pub const MAX_TOKEN_LEN: usize = 512;

/// A token as cached in memory and in KV (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedToken {
    pub access_token: String,
    /// When WeChat said it expires (seconds since the epoch).
    pub expires_at: u64,
    /// When we received it.
    pub fetched_at: u64,
}

impl CachedToken {
    /// A token received at `now` with WeChat's `expires_in`.
    pub fn new(access_token: String, expires_in: u64, now: u64) -> Self {
        CachedToken { access_token, expires_at: now.saturating_add(expires_in), fetched_at: now }
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

    /// KV `expiration_ttl` for it: until it stops being usable, never below KV's minimum.
    pub fn kv_ttl(&self, now: u64) -> u64 {
        self.usable_until().saturating_sub(now).max(KV_MIN_TTL_SECS)
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

/// An HTTP request to make to WeChat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCall {
    pub method: HttpMethod,
    /// Absolute URL.
    pub url: String,
    /// JSON body for POST.
    pub body: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    Get,
    Post,
}

/// The token request for `creds`. `force_refresh` only applies to the stable endpoint.
pub fn token_request(creds: &ApiCredentials<'_>, force_refresh: bool) -> HttpCall {
    match creds.endpoint {
        TokenEndpoint::Stable => HttpCall {
            method: HttpMethod::Post,
            url: format!("{}/cgi-bin/stable_token", creds.api_base),
            body: Some(
                serde_json::json!({
                    "grant_type": "client_credential",
                    "appid": creds.appid,
                    "secret": creds.secret,
                    "force_refresh": force_refresh,
                })
                .to_string()
                .into_bytes(),
            ),
        },
        TokenEndpoint::Classic => HttpCall {
            method: HttpMethod::Get,
            url: format!(
                "{}/cgi-bin/token?grant_type=client_credential&appid={}&secret={}",
                creds.api_base,
                url_encode(creds.appid),
                url_encode(creds.secret)
            ),
            body: None,
        },
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<String>,
    expires_in: Option<u64>,
    errcode: Option<i64>,
    errmsg: Option<String>,
}

/// Reads a token endpoint's answer: `(access_token, expires_in)` or WeChat's error.
pub fn parse_token_response(status: u16, body: &[u8]) -> Result<(String, u64), Error> {
    if !(200..300).contains(&status) {
        return Err(Error::Upstream("token endpoint answered a non-2xx status"));
    }
    let r: TokenResponse = serde_json::from_slice(body)
        .map_err(|_| Error::Upstream("token endpoint answered something that is not JSON"))?;
    if let Some(errcode) = r.errcode.filter(|&c| c != 0) {
        return Err(Error::WeChat { errcode, errmsg: r.errmsg.unwrap_or_default() });
    }
    match (r.access_token, r.expires_in) {
        (Some(t), Some(e)) if !t.is_empty() && t.len() <= MAX_TOKEN_LEN && e > 0 => Ok((t, e)),
        _ => Err(Error::Upstream("token endpoint answered without a usable access_token")),
    }
}

/// Percent-encodes a query value (RFC 3986 unreserved characters stay as they are).
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(endpoint: TokenEndpoint) -> ApiCredentials<'static> {
        ApiCredentials { appid: "wx1", secret: "s&cret", api_base: "https://api.weixin.qq.com", endpoint }
    }

    #[test]
    fn token_is_usable_until_a_margin_before_expiry() {
        let t = CachedToken::new("T".into(), 7200, 1000);
        assert_eq!(t.usable_until(), 1000 + 7200 - 300);
        assert!(t.is_usable(1000 + 6899));
        assert!(!t.is_usable(1000 + 6900));
        assert_eq!(t.kv_ttl(1000), 6900);
        assert_eq!(t.kv_ttl(1000 + 6890), KV_MIN_TTL_SECS);
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
        let body: serde_json::Value = serde_json::from_slice(stable.body.as_deref().unwrap()).unwrap();
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
    fn parse_token_response_rejects_errors_and_junk() {
        assert_eq!(
            parse_token_response(200, br#"{"access_token":"T","expires_in":7200}"#).unwrap(),
            ("T".into(), 7200)
        );
        assert_eq!(
            parse_token_response(200, br#"{"errcode":40164,"errmsg":"invalid ip"}"#).unwrap_err(),
            Error::WeChat { errcode: 40164, errmsg: "invalid ip".into() }
        );
        for (status, body) in [
            (500, &b"oops"[..]),
            (200, b"<html>"),
            (200, br#"{"access_token":"","expires_in":7200}"#),
            (200, br#"{"access_token":"T"}"#),
            (200, br#"{"access_token":"T","expires_in":0}"#),
        ] {
            assert!(matches!(parse_token_response(status, body), Err(Error::Upstream(_))), "{status}");
        }
        let long = format!(r#"{{"access_token":"{}","expires_in":7200}}"#, "x".repeat(513));
        assert!(parse_token_response(200, long.as_bytes()).is_err());
    }
}
