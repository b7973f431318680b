//! Configuration, built from a variable lookup so it can be tested without a Worker (the glue
//! passes the environment's secrets and vars in).
//!
//! Loading never fails: every problem is recorded against the variable's name (never its value)
//! and surfaces when a feature that needs it is used (that route answers a generic 500 and its
//! log line names the variable), and in `GET /healthz`. A push needs only the callback's
//! variables: a bad `WECHAT_API_BASE` stops API calls, not transfers.

use std::rc::Rc;

use serde::{Deserialize, Serialize};
use wechat_mp::callback::CallbackSettings;
use wechat_mp::WeChatCrypto;

use crate::error::Error;
use crate::seal::Sealer;

// Every variable the worker reads, by the feature a problem with it stops. The README's
// configuration table must list each of them (checked by `scripts/check-config-docs.sh`).

/// The callback (`/wechat`).
pub const CALLBACK_VARIABLES: &[&str] = &[
    "WECHAT_TOKEN",
    "WECHAT_APPID",
    "WECHAT_ENCODING_AES_KEY",
    "WECHAT_KF_ACCOUNT",
    "WECHAT_KF_ROUTING",
    "WECHAT_MAX_CLOCK_SKEW_SECS",
];
/// WeChat API calls (admin API, online routing, cron).
pub const API_VARIABLES: &[&str] = &["WECHAT_APPID", "WECHAT_APPSECRET", "WECHAT_API_BASE", "WECHAT_TOKEN_ENDPOINT"];
/// The admin API.
pub const ADMIN_VARIABLES: &[&str] = &["ADMIN_TOKEN"];
/// The KV namespace and D1 database bindings (the glue reports each as "bound" when present).
pub const STORE_VARIABLES: &[&str] = &["WECHAT_KV", "WECHAT_DB"];
/// Alerts to the agents.
pub const ALERT_VARIABLES: &[&str] = &["ALERT_WEBHOOK_URL"];
/// Official Accounts kept in the database (their secrets sealed under it).
pub const ACCOUNT_VARIABLES: &[&str] = &["ACCOUNTS_KEY"];

/// Every variable the worker reads, in the order the glue looks them up.
pub fn variables() -> impl Iterator<Item = &'static str> {
    [CALLBACK_VARIABLES, API_VARIABLES, ADMIN_VARIABLES, STORE_VARIABLES, ALERT_VARIABLES, ACCOUNT_VARIABLES]
        .into_iter()
        .flatten()
        .copied()
}

pub const DEFAULT_API_BASE: &str = "https://api.weixin.qq.com";
pub const DEFAULT_MAX_CLOCK_SKEW_SECS: u64 = 300;

/// How the access_token is obtained (`stable` or `classic` in the environment and in an
/// account's settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenEndpoint {
    /// `POST /cgi-bin/stable_token`: the same token for every caller while valid (default).
    Stable,
    /// `GET /cgi-bin/token`: every call issues a new token (and retires the old one in 5 min).
    Classic,
}

impl TokenEndpoint {
    pub fn parse(word: &str) -> Option<TokenEndpoint> {
        match word {
            "stable" => Some(TokenEndpoint::Stable),
            "classic" => Some(TokenEndpoint::Classic),
            _ => None,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            TokenEndpoint::Stable => "stable",
            TokenEndpoint::Classic => "classic",
        }
    }
}

/// How the inline transfer picks its `KfAccount` (`static` or `online`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KfRouting {
    /// The first account of the list, as configured.
    Static,
    /// The first listed account that `getonlinekflist` shows online with free capacity.
    Online,
}

impl KfRouting {
    pub fn parse(word: &str) -> Option<KfRouting> {
        match word {
            "static" => Some(KfRouting::Static),
            "online" => Some(KfRouting::Online),
            _ => None,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            KfRouting::Static => "static",
            KfRouting::Online => "online",
        }
    }
}

/// Why a variable is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    Missing(&'static str),
    Invalid(&'static str),
}

impl Problem {
    pub fn variable(&self) -> &'static str {
        match self {
            Problem::Missing(v) | Problem::Invalid(v) => v,
        }
    }
}

/// One Official Account: what its callback and its WeChat API calls need.
#[derive(Debug, Clone)]
pub struct Account {
    /// The AppID; required for safe mode and for API calls.
    pub appid: Option<String>,
    /// The Token (令牌) of the server configuration.
    pub token: Option<String>,
    /// The EncodingAESKey's cipher: compatible and safe mode.
    pub crypto: Option<WeChatCrypto>,
    /// The AppSecret: required for API calls.
    pub secret: Option<String>,
    /// Customer-service accounts the transfer may target (`kf2001@gh_xxx`), in order.
    pub kf_accounts: Vec<String>,
    pub kf_routing: KfRouting,
    pub token_endpoint: TokenEndpoint,
    /// 0 turns the timestamp window off.
    pub max_clock_skew_secs: u64,
}

impl Account {
    /// The account's part of every store key (`default` without an AppID).
    pub fn key(&self) -> &str {
        self.appid.as_deref().unwrap_or("default")
    }

    /// The callback's settings; `None` without a Token.
    pub fn callback_settings(&self) -> Option<CallbackSettings<'_>> {
        Some(CallbackSettings {
            token: self.token.as_deref()?,
            crypto: self.crypto.as_ref(),
            max_clock_skew_secs: self.max_clock_skew_secs,
        })
    }

    /// The credentials for WeChat API calls through `api_base`; `Err` names what is missing:
    /// `appid` or `secret`.
    pub fn credentials(&self, api_base: &str) -> Result<Credentials, &'static str> {
        Ok(Credentials {
            appid: self.appid.clone().ok_or("appid")?,
            secret: self.secret.clone().ok_or("secret")?,
            api_base: api_base.to_string(),
            endpoint: self.token_endpoint,
        })
    }
}

/// What an account's WeChat API calls need. Never logged (the secret).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub appid: String,
    pub secret: String,
    pub api_base: String,
    pub endpoint: TokenEndpoint,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("appid", &self.appid).finish_non_exhaustive()
    }
}

/// The worker's configuration: the account of the environment and the deployment's settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub account: Account,
    pub api_base: String,
    pub admin_token: Option<String>,
    /// Where alerts are posted (a secret: a WeCom robot URL carries its key).
    pub alert_webhook: Option<String>,
    /// The KV namespace is bound.
    pub store_bound: bool,
    /// The D1 database is bound.
    pub database_bound: bool,
    /// `ACCOUNTS_KEY`, valid: accounts can be kept in the database (with it bound).
    pub sealer: Option<Rc<Sealer>>,
    /// Problems found, at most one per variable, in the order of [`variables`].
    problems: Vec<Problem>,
    /// The account's credentials, or the first variable that stops API calls.
    credentials: Result<Rc<Credentials>, Error>,
}

impl Config {
    /// Builds the configuration from `lookup(name)`; empty values count as unset.
    pub fn build(lookup: impl Fn(&str) -> Option<String>) -> Config {
        let get = |name: &str| lookup(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let mut problems = Vec::new();

        let token = get("WECHAT_TOKEN");
        let accounts_key = get("ACCOUNTS_KEY");
        // A deployment of database accounts only needs no account of its own.
        if token.is_none() && accounts_key.is_none() {
            problems.push(Problem::Missing("WECHAT_TOKEN"));
        }
        let appid = get("WECHAT_APPID");
        let crypto = match (get("WECHAT_ENCODING_AES_KEY"), &appid) {
            (None, _) => None,
            (Some(_), None) => {
                problems.push(Problem::Missing("WECHAT_APPID"));
                None
            }
            (Some(key), Some(appid)) => {
                let c = WeChatCrypto::new(&key, appid);
                if c.is_none() {
                    problems.push(Problem::Invalid("WECHAT_ENCODING_AES_KEY"));
                }
                c
            }
        };
        let kf_accounts = get("WECHAT_KF_ACCOUNT").map(|v| kf_account_list(&v)).unwrap_or_default();
        if kf_accounts.iter().any(|a| !is_kf_account(a)) {
            problems.push(Problem::Invalid("WECHAT_KF_ACCOUNT"));
        }
        let kf_routing = match get("WECHAT_KF_ROUTING") {
            None => KfRouting::Static,
            Some(word) => KfRouting::parse(&word).unwrap_or_else(|| {
                problems.push(Problem::Invalid("WECHAT_KF_ROUTING"));
                KfRouting::Static
            }),
        };
        let max_clock_skew_secs = match get("WECHAT_MAX_CLOCK_SKEW_SECS") {
            None => DEFAULT_MAX_CLOCK_SKEW_SECS,
            Some(v) => v.parse().unwrap_or_else(|_| {
                problems.push(Problem::Invalid("WECHAT_MAX_CLOCK_SKEW_SECS"));
                DEFAULT_MAX_CLOCK_SKEW_SECS
            }),
        };
        let api_base = match get("WECHAT_API_BASE") {
            None => DEFAULT_API_BASE.to_string(),
            Some(v) if is_http_base(&v) => v.trim_end_matches('/').to_string(),
            Some(_) => {
                problems.push(Problem::Invalid("WECHAT_API_BASE"));
                DEFAULT_API_BASE.to_string()
            }
        };
        let token_endpoint = match get("WECHAT_TOKEN_ENDPOINT") {
            None => TokenEndpoint::Stable,
            Some(word) => TokenEndpoint::parse(&word).unwrap_or_else(|| {
                problems.push(Problem::Invalid("WECHAT_TOKEN_ENDPOINT"));
                TokenEndpoint::Stable
            }),
        };
        let store_bound = get("WECHAT_KV").is_some();
        if !store_bound {
            problems.push(Problem::Missing("WECHAT_KV"));
        }
        let database_bound = get("WECHAT_DB").is_some();
        if !database_bound {
            problems.push(Problem::Missing("WECHAT_DB"));
        }
        let alert_webhook = match get("ALERT_WEBHOOK_URL") {
            None => None,
            Some(v) if is_http_base(v.split(['?', '#']).next().unwrap_or_default()) && !v.contains(' ') => Some(v),
            Some(_) => {
                problems.push(Problem::Invalid("ALERT_WEBHOOK_URL"));
                None
            }
        };
        let sealer = accounts_key.and_then(|key| {
            let sealer = Sealer::from_base64(&key);
            if sealer.is_none() {
                problems.push(Problem::Invalid("ACCOUNTS_KEY"));
            }
            sealer.map(Rc::new)
        });
        let mut config = Config {
            account: Account {
                appid,
                token,
                crypto,
                secret: get("WECHAT_APPSECRET"),
                kf_accounts,
                kf_routing,
                token_endpoint,
                max_clock_skew_secs,
            },
            api_base,
            admin_token: get("ADMIN_TOKEN"),
            alert_webhook,
            store_bound,
            database_bound,
            sealer,
            problems,
            credentials: Err(Error::Config("WECHAT_APPID")),
        };
        config.credentials = config.check_credentials().map(Rc::new);
        config
    }

    /// Every problem found, at most one per variable.
    pub fn problems(&self) -> impl Iterator<Item = Problem> + '_ {
        self.problems.iter().copied()
    }

    /// The first problem with any of `vars`, if one.
    fn problem_with(&self, vars: &[&'static str]) -> Option<Problem> {
        self.problems().find(|p| vars.contains(&p.variable()))
    }

    /// Whether the environment configures no account of its own: `/wechat` is then not served
    /// (404), and only the database's accounts are, at `/wechat/{appid}`.
    pub fn accounts_only(&self) -> bool {
        self.account.token.is_none() && self.sealer.is_some()
    }

    /// The callback's settings, or the first variable that stops it from working.
    pub fn callback(&self) -> Result<CallbackSettings<'_>, Error> {
        if self.accounts_only() {
            return Err(Error::NotFound);
        }
        if let Some(p) = self.problem_with(CALLBACK_VARIABLES) {
            return Err(Error::Config(p.variable()));
        }
        self.account.callback_settings().ok_or(Error::Config("WECHAT_TOKEN"))
    }

    /// The credentials for WeChat API calls, or the first variable that is missing or invalid.
    pub fn credentials(&self) -> Result<Rc<Credentials>, Error> {
        self.credentials.clone()
    }

    fn check_credentials(&self) -> Result<Credentials, Error> {
        if let Some(p) = self.problem_with(API_VARIABLES) {
            return Err(Error::Config(p.variable()));
        }
        self.account.credentials(&self.api_base).map_err(|missing| match missing {
            "appid" => Error::Config("WECHAT_APPID"),
            _ => Error::Config("WECHAT_APPSECRET"),
        })
    }

    /// The variables at fault, `(missing, invalid)`, including what a half-configured
    /// outbound feature lacks. Names only, never values.
    pub fn faults(&self) -> (Vec<&'static str>, Vec<&'static str>) {
        let mut missing = Vec::new();
        let mut invalid = Vec::new();
        for p in self.problems() {
            match p {
                Problem::Missing(v) => missing.push(v),
                Problem::Invalid(v) => invalid.push(v),
            }
        }
        let account = &self.account;
        if (account.secret.is_some() || self.admin_token.is_some()) && !self.accounts_only() {
            for (var, present) in
                [("WECHAT_APPID", account.appid.is_some()), ("WECHAT_APPSECRET", account.secret.is_some())]
            {
                if !present && !missing.contains(&var) {
                    missing.push(var);
                }
            }
        }
        (missing, invalid)
    }

    /// The JSON `GET /healthz` answers: features on/off and the variables at fault. No values.
    pub fn health(&self) -> String {
        let (missing, invalid) = self.faults();
        let account = &self.account;
        let health = Health {
            ok: missing.is_empty() && invalid.is_empty(),
            features: Features {
                callback: self.callback().is_ok(),
                safe_mode: account.crypto.is_some(),
                kf_targeting: !account.kf_accounts.is_empty(),
                kf_routing: account.kf_routing.as_str(),
                outbound_api: self.credentials().is_ok(),
                admin_api: self.admin_token.is_some(),
                alerts: self.alert_webhook.is_some(),
                token_endpoint: account.token_endpoint.as_str(),
                database: self.database_bound,
                accounts: self.sealer.is_some() && self.database_bound,
            },
            missing,
            invalid,
        };
        serde_json::to_string(&health).unwrap_or_default()
    }
}

/// `GET /healthz`'s answer.
#[derive(Serialize)]
struct Health {
    ok: bool,
    features: Features,
    missing: Vec<&'static str>,
    invalid: Vec<&'static str>,
}

#[derive(Serialize)]
struct Features {
    callback: bool,
    safe_mode: bool,
    kf_targeting: bool,
    kf_routing: &'static str,
    outbound_api: bool,
    admin_api: bool,
    alerts: bool,
    token_endpoint: &'static str,
    /// The ledger, effects once everywhere, the rules that need them.
    database: bool,
    /// Accounts in the database, served at `/wechat/{appid}` (`ACCOUNTS_KEY` valid and the
    /// database bound).
    accounts: bool,
}

/// `WECHAT_KF_ACCOUNT`'s accounts: split at commas, each trimmed (empty ones kept, and refused).
fn kf_account_list(v: &str) -> Vec<String> {
    v.split(',').map(|a| a.trim().to_string()).collect()
}

/// `prefix@account`, as WeChat spells customer-service accounts.
pub fn is_kf_account(s: &str) -> bool {
    match s.split_once('@') {
        Some((a, b)) => !a.is_empty() && !b.is_empty() && !s.chars().any(|c| c.is_whitespace() || c == ','),
        None => false,
    }
}

/// `https://host[:port][/path]`, or `http://` to a loopback host only (a local mock): over plain
/// HTTP the classic token endpoint would carry the AppSecret in clear.
fn is_http_base(v: &str) -> bool {
    let (rest, plain) = match (v.strip_prefix("https://"), v.strip_prefix("http://")) {
        (Some(rest), _) => (rest, false),
        (None, Some(rest)) => (rest, true),
        (None, None) => return false,
    };
    if rest.is_empty() || rest.contains(['?', '#', ' ', '@']) {
        return false;
    }
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    !host.is_empty() && (!plain || is_loopback(host))
}

/// `localhost`, `::1`, or a dotted quad in 127.0.0.0/8.
fn is_loopback(host: &str) -> bool {
    let quad = |s: &str| {
        let parts: Vec<&str> = s.split('.').collect();
        parts.len() == 4 && parts.iter().all(|p| !p.is_empty() && p.len() <= 3 && p.parse::<u8>().is_ok())
    };
    host.eq_ignore_ascii_case("localhost") || host == "::1" || (host.starts_with("127.") && quad(host))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn build(vars: &[(&str, &str)]) -> Config {
        let mut map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        map.entry("WECHAT_KV".into()).or_insert_with(|| "bound".into());
        map.entry("WECHAT_DB".into()).or_insert_with(|| "bound".into());
        Config::build(|k| map.get(k).cloned())
    }

    fn health(c: &Config) -> serde_json::Value {
        serde_json::from_str(&c.health()).unwrap()
    }

    #[test]
    fn build_config_defaults_with_only_the_token() {
        let c = build(&[("WECHAT_TOKEN", "t")]);
        assert_eq!(c.problems().count(), 0);
        assert!(c.callback().is_ok());
        assert_eq!(c.account.max_clock_skew_secs, 300);
        assert_eq!(c.api_base, "https://api.weixin.qq.com");
        assert_eq!(c.account.token_endpoint, TokenEndpoint::Stable);
        assert!(c.credentials().is_err());
        assert_eq!(c.account.key(), "default");
    }

    #[test]
    fn build_config_rejects_bad_values_by_variable_name() {
        let c = build(&[
            ("WECHAT_ENCODING_AES_KEY", "short"),
            ("WECHAT_APPID", "wx1"),
            ("WECHAT_MAX_CLOCK_SKEW_SECS", "five"),
            ("WECHAT_KF_ACCOUNT", "a@b, nope"),
            ("WECHAT_API_BASE", "ftp://x"),
            ("WECHAT_TOKEN_ENDPOINT", "fancy"),
            ("WECHAT_KF_ROUTING", "random"),
        ]);
        let vars: Vec<_> = c.problems().map(|p| p.variable()).collect();
        for v in [
            "WECHAT_TOKEN",
            "WECHAT_ENCODING_AES_KEY",
            "WECHAT_MAX_CLOCK_SKEW_SECS",
            "WECHAT_KF_ACCOUNT",
            "WECHAT_API_BASE",
            "WECHAT_TOKEN_ENDPOINT",
            "WECHAT_KF_ROUTING",
        ] {
            assert!(vars.contains(&v), "{v} not reported: {vars:?}");
        }
        assert_eq!(c.callback().unwrap_err(), Error::Config("WECHAT_TOKEN"));
    }

    #[test]
    fn a_push_needs_only_the_callbacks_variables() {
        let c = build(&[("WECHAT_TOKEN", "t"), ("WECHAT_API_BASE", "ftp://x"), ("WECHAT_TOKEN_ENDPOINT", "fancy")]);
        assert!(c.callback().is_ok());
        assert_eq!(c.credentials().unwrap_err(), Error::Config("WECHAT_API_BASE"));
        let h = health(&c);
        assert_eq!(h["invalid"], serde_json::json!(["WECHAT_API_BASE", "WECHAT_TOKEN_ENDPOINT"]));
        assert_eq!(h["features"]["callback"], true);
    }

    #[test]
    fn aes_key_without_appid_names_the_appid() {
        let c =
            build(&[("WECHAT_TOKEN", "t"), ("WECHAT_ENCODING_AES_KEY", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG")]);
        assert_eq!(c.callback().unwrap_err(), Error::Config("WECHAT_APPID"));
    }

    #[test]
    fn health_never_contains_a_secret_value() {
        let c = build(&[
            ("WECHAT_TOKEN", "tok-SECRET"),
            ("WECHAT_APPID", "wx1"),
            ("WECHAT_APPSECRET", "app-SECRET"),
            ("ADMIN_TOKEN", "adm-SECRET"),
            ("WECHAT_ENCODING_AES_KEY", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"),
        ]);
        let h = c.health();
        assert!(!h.contains("SECRET") && !h.contains("abcdefghij"), "{h}");
        assert_eq!(
            h,
            r#"{"ok":true,"features":{"callback":true,"safe_mode":true,"kf_targeting":false,"kf_routing":"static","outbound_api":true,"admin_api":true,"alerts":false,"token_endpoint":"stable","database":true,"accounts":false},"missing":[],"invalid":[]}"#
        );
    }

    #[test]
    fn health_is_not_ok_while_a_variable_is_missing() {
        // The AppSecret without the AppID: the outbound API cannot work.
        let h = health(&build(&[("WECHAT_TOKEN", "t"), ("WECHAT_APPSECRET", "s")]));
        assert_eq!(h["missing"], serde_json::json!(["WECHAT_APPID"]));
        assert_eq!(h["ok"], false);
        assert_eq!(health(&build(&[("WECHAT_TOKEN", "t")]))["ok"], true);
        let unbound = Config::build(|k| (k == "WECHAT_TOKEN").then(|| "t".to_string()));
        assert_eq!(health(&unbound)["missing"], serde_json::json!(["WECHAT_KV", "WECHAT_DB"]));
    }

    #[test]
    fn the_alert_webhook_is_https_or_loopback_and_never_shown() {
        let c = build(&[
            ("WECHAT_TOKEN", "t"),
            ("ALERT_WEBHOOK_URL", "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=SECRET-KEY"),
        ]);
        assert!(c.alert_webhook.is_some() && c.problems().count() == 0);
        assert!(!c.health().contains("SECRET-KEY"));
        assert!(build(&[("ALERT_WEBHOOK_URL", "http://127.0.0.1:9000/hook")]).alert_webhook.is_some());
        for bad in ["http://example.com/hook", "ftp://x/y", "https://a b/", "qyapi.weixin.qq.com"] {
            let c = build(&[("WECHAT_TOKEN", "t"), ("ALERT_WEBHOOK_URL", bad)]);
            assert_eq!(
                (c.alert_webhook.as_deref(), c.problems().collect::<Vec<_>>().as_slice()),
                (None, &[Problem::Invalid("ALERT_WEBHOOK_URL")][..]),
                "{bad}"
            );
        }
    }

    #[test]
    fn api_base_allows_plain_http_only_to_loopback() {
        for ok in [
            "https://api.weixin.qq.com",
            "https://proxy.example.com:8443/wechat/",
            "http://127.0.0.1:8788",
            "http://localhost:8788",
            "http://[::1]:8788",
            "http://127.1.2.3",
        ] {
            assert!(is_http_base(ok), "{ok}");
        }
        for bad in [
            "http://api.weixin.qq.com",
            "http://10.0.0.1:8788",
            "http://127.0.0.1.evil.com",
            "http://127.0.0.256",
            "http://127.0.0",
            "http://localhost@evil.com",
            "ftp://x",
            "https://",
            "https://a b",
            "api.weixin.qq.com",
        ] {
            assert!(!is_http_base(bad), "{bad}");
        }
    }

    #[test]
    fn kf_accounts_are_split_and_validated() {
        let c = build(&[("WECHAT_TOKEN", "t"), ("WECHAT_KF_ACCOUNT", "a@x, b@x")]);
        assert_eq!(c.account.kf_accounts, ["a@x", "b@x"]);
        assert!(is_kf_account("kf2001@gh_1"));
        assert!(!is_kf_account("@x") && !is_kf_account("a@") && !is_kf_account("ax"));
    }
}
