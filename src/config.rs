//! Configuration, built from a variable lookup so it can be tested without a Worker
//! (`glue::load_config(env)` passes `env`'s secrets and vars in).
//!
//! Loading never fails: every problem is recorded against the variable's name (never its value)
//! and surfaces when a feature that needs it is used, and in `GET /healthz`.
//!
//! The callback's variables are checked when the configuration loads (an isolate's first
//! request). The others are read then too, but checked on first use ([`Config::outbound`]): a
//! push that makes no API call and raises no alert needs none of them, and V8 compiles the
//! checks' code only for a request that does.

use crate::json::ObjectWriter;
use crate::text::split_at_byte;
use crate::wechat::crypto::WeChatCrypto;

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
/// The KV namespace binding (the glue reports it as "bound" when present).
pub const STORE_VARIABLES: &[&str] = &["WECHAT_KV"];
/// Alerts to the agents.
pub const ALERT_VARIABLES: &[&str] = &["ALERT_WEBHOOK_URL"];

/// Whether the worker reads `name`.
pub fn is_known_variable(name: &str) -> bool {
    [CALLBACK_VARIABLES, API_VARIABLES, ADMIN_VARIABLES, STORE_VARIABLES, ALERT_VARIABLES]
        .iter()
        .any(|vars| vars.contains(&name))
}

pub const DEFAULT_API_BASE: &str = "https://api.weixin.qq.com";
pub const DEFAULT_MAX_CLOCK_SKEW_SECS: u64 = 300;

/// How the access_token is obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenEndpoint {
    /// `POST /cgi-bin/stable_token`: the same token for every caller while valid (default).
    Stable,
    /// `GET /cgi-bin/token`: every call issues a new token (and retires the old one in 5 min).
    Classic,
}

/// How the inline transfer picks its `KfAccount`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KfRouting {
    /// The first account of `WECHAT_KF_ACCOUNT`, as configured.
    Static,
    /// The first listed account that `getonlinekflist` shows online with free capacity.
    Online,
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

/// The worker's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub token: Option<String>,
    pub appid: Option<String>,
    pub crypto: Option<WeChatCrypto>,
    pub kf_accounts: Vec<String>,
    pub kf_routing: KfRouting,
    pub max_clock_skew_secs: u64,
    /// Problems with the callback's variables, at most one per variable.
    callback_problems: Vec<Problem>,
    /// The other variables as read, checked into `outbound` on first use.
    unchecked: Unchecked,
    outbound: std::cell::OnceCell<Outbound>,
    health: std::cell::OnceCell<String>,
}

/// The variables a push does not need, as read (trimmed; empty counts as unset).
#[derive(Debug, Clone)]
struct Unchecked {
    api_base: Option<String>,
    app_secret: Option<String>,
    token_endpoint: Option<String>,
    admin_token: Option<String>,
    alert_webhook: Option<String>,
    store_bound: bool,
}

/// The configuration of everything but the callback: WeChat API calls, the admin API, alerts
/// and the store binding.
#[derive(Debug, Clone)]
pub struct Outbound {
    pub api_base: String,
    pub app_secret: Option<String>,
    pub token_endpoint: TokenEndpoint,
    pub admin_token: Option<String>,
    /// Where alerts are posted (a secret: a WeCom robot URL carries its key).
    pub alert_webhook: Option<String>,
    /// Problems with these variables, at most one per variable.
    problems: Vec<Problem>,
}

impl Config {
    /// Builds the configuration from `lookup(name)`; empty values count as unset.
    pub fn build(lookup: impl Fn(&str) -> Option<String>) -> Config {
        let get = |name: &str| lookup(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        // Filled through `note`, which is out of line: a configuration without problems (every
        // isolate's, once deployed) never compiles it.
        let mut problems = Vec::new();

        let token = get("WECHAT_TOKEN");
        if token.is_none() {
            note(&mut problems, Problem::Missing("WECHAT_TOKEN"));
        }
        let appid = get("WECHAT_APPID");
        let crypto = match get("WECHAT_ENCODING_AES_KEY") {
            None => None,
            Some(key) => match &appid {
                None => {
                    note(&mut problems, Problem::Missing("WECHAT_APPID"));
                    None
                }
                Some(appid) => {
                    let c = WeChatCrypto::new(&key, appid);
                    if c.is_none() {
                        note(&mut problems, Problem::Invalid("WECHAT_ENCODING_AES_KEY"));
                    }
                    c
                }
            },
        };
        let kf_accounts = get("WECHAT_KF_ACCOUNT").map(|v| kf_account_list(&v)).unwrap_or_default();
        if kf_accounts.iter().any(|a| !is_kf_account(a)) {
            note(&mut problems, Problem::Invalid("WECHAT_KF_ACCOUNT"));
        }
        let kf_routing = match get("WECHAT_KF_ROUTING").as_deref() {
            None | Some("static") => KfRouting::Static,
            Some("online") => KfRouting::Online,
            Some(_) => {
                note(&mut problems, Problem::Invalid("WECHAT_KF_ROUTING"));
                KfRouting::Static
            }
        };
        let max_clock_skew_secs = match get("WECHAT_MAX_CLOCK_SKEW_SECS") {
            None => DEFAULT_MAX_CLOCK_SKEW_SECS,
            Some(v) => v.parse().unwrap_or_else(|_| {
                note(&mut problems, Problem::Invalid("WECHAT_MAX_CLOCK_SKEW_SECS"));
                DEFAULT_MAX_CLOCK_SKEW_SECS
            }),
        };
        Config {
            token,
            appid,
            crypto,
            kf_accounts,
            kf_routing,
            max_clock_skew_secs,
            callback_problems: problems,
            unchecked: Unchecked {
                api_base: get("WECHAT_API_BASE"),
                app_secret: get("WECHAT_APPSECRET"),
                token_endpoint: get("WECHAT_TOKEN_ENDPOINT"),
                admin_token: get("ADMIN_TOKEN"),
                alert_webhook: get("ALERT_WEBHOOK_URL"),
                store_bound: get("WECHAT_KV").is_some(),
            },
            outbound: std::cell::OnceCell::new(),
            health: std::cell::OnceCell::new(),
        }
    }

    /// Everything but the callback, its variables checked on the first call.
    pub fn outbound(&self) -> &Outbound {
        self.outbound.get_or_init(|| Outbound::check(&self.unchecked))
    }

    /// Every problem found, at most one per variable: the callback's, then the others'.
    pub fn problems(&self) -> impl Iterator<Item = Problem> + '_ {
        self.callback_problems.iter().chain(&self.outbound().problems).copied()
    }

    /// The first problem with any of `vars`, if one.
    fn problem_with(&self, vars: &[&'static str]) -> Option<Problem> {
        self.problems().find(|p| vars.contains(&p.variable()))
    }

    /// The callback's settings, or the first variable that stops it from working.
    pub fn callback(&self) -> Result<crate::wechat::callback::CallbackSettings<'_>, crate::error::Error> {
        // Only the callback's own problems: the other variables stay unchecked.
        if let Some(p) = self.callback_problems.iter().find(|p| CALLBACK_VARIABLES.contains(&p.variable())) {
            return Err(crate::error::Error::Config(p.variable()));
        }
        let token = self.token.as_deref().ok_or(crate::error::Error::Config("WECHAT_TOKEN"))?;
        Ok(crate::wechat::callback::CallbackSettings {
            token,
            crypto: self.crypto.as_ref(),
            max_clock_skew_secs: self.max_clock_skew_secs,
        })
    }

    /// The credentials for WeChat API calls, or the first variable that is missing or invalid.
    pub fn api_credentials(&self) -> Result<ApiCredentials<'_>, crate::error::Error> {
        if let Some(p) = self.problem_with(API_VARIABLES) {
            return Err(crate::error::Error::Config(p.variable()));
        }
        let appid = self.appid.as_deref().ok_or(crate::error::Error::Config("WECHAT_APPID"))?;
        let outbound = self.outbound();
        let secret = outbound.app_secret.as_deref().ok_or(crate::error::Error::Config("WECHAT_APPSECRET"))?;
        Ok(ApiCredentials { appid, secret, api_base: &outbound.api_base, endpoint: outbound.token_endpoint })
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
        let outbound = self.outbound();
        if outbound.app_secret.is_some() || outbound.admin_token.is_some() {
            for (var, present) in
                [("WECHAT_APPID", self.appid.is_some()), ("WECHAT_APPSECRET", outbound.app_secret.is_some())]
            {
                if !present && !missing.contains(&var) {
                    missing.push(var);
                }
            }
        }
        (missing, invalid)
    }

    /// The JSON `GET /healthz` answers: features on/off and the variables at fault. No values.
    /// Built once: the configuration never changes.
    pub fn health(&self) -> &str {
        self.health.get_or_init(|| self.build_health())
    }

    fn build_health(&self) -> String {
        let (missing, invalid) = self.faults();
        let outbound = self.outbound();
        let mut features = ObjectWriter::new();
        features
            .bool("callback", self.callback().is_ok())
            .bool("safe_mode", self.crypto.is_some())
            .bool("kf_targeting", !self.kf_accounts.is_empty())
            .str(
                "kf_routing",
                match self.kf_routing {
                    KfRouting::Static => "static",
                    KfRouting::Online => "online",
                },
            )
            .bool("outbound_api", self.api_credentials().is_ok())
            .bool("admin_api", outbound.admin_token.is_some())
            .bool("alerts", outbound.alert_webhook.is_some())
            .str(
                "token_endpoint",
                match outbound.token_endpoint {
                    TokenEndpoint::Stable => "stable",
                    TokenEndpoint::Classic => "classic",
                },
            );
        let mut h = ObjectWriter::new();
        h.bool("ok", missing.is_empty() && invalid.is_empty())
            .raw("features", &features.finish())
            .strs("missing", missing)
            .strs("invalid", invalid);
        h.finish()
    }
}

impl Outbound {
    /// Checks the variables a push does not need (as [`Config::build`] checks the callback's).
    fn check(raw: &Unchecked) -> Outbound {
        let mut problems = Vec::new();
        let api_base = match raw.api_base.as_deref() {
            None => DEFAULT_API_BASE.to_string(),
            Some(v) if is_http_base(v) => v.trim_end_matches('/').to_string(),
            Some(_) => {
                problems.push(Problem::Invalid("WECHAT_API_BASE"));
                DEFAULT_API_BASE.to_string()
            }
        };
        let alert_webhook = match raw.alert_webhook.as_deref() {
            None => None,
            Some(v) if is_http_base(v.split(['?', '#']).next().unwrap_or_default()) && !v.contains(' ') => {
                Some(v.to_string())
            }
            Some(_) => {
                problems.push(Problem::Invalid("ALERT_WEBHOOK_URL"));
                None
            }
        };
        if !raw.store_bound {
            problems.push(Problem::Missing("WECHAT_KV"));
        }
        let token_endpoint = match raw.token_endpoint.as_deref() {
            None | Some("stable") => TokenEndpoint::Stable,
            Some("classic") => TokenEndpoint::Classic,
            Some(_) => {
                problems.push(Problem::Invalid("WECHAT_TOKEN_ENDPOINT"));
                TokenEndpoint::Stable
            }
        };
        Outbound {
            api_base,
            app_secret: raw.app_secret.clone(),
            token_endpoint,
            admin_token: raw.admin_token.clone(),
            alert_webhook,
            problems,
        }
    }
}

/// What an outbound call needs.
#[derive(Debug, Clone, Copy)]
pub struct ApiCredentials<'a> {
    pub appid: &'a str,
    pub secret: &'a str,
    pub api_base: &'a str,
    pub endpoint: TokenEndpoint,
}

/// Records `problem` (see [`Config::build`]).
#[inline(never)]
fn note(problems: &mut Vec<Problem>, problem: Problem) {
    problems.push(problem);
}

/// `WECHAT_KF_ACCOUNT`'s accounts: split at commas, each trimmed (empty ones kept, and refused).
fn kf_account_list(v: &str) -> Vec<String> {
    let mut accounts = Vec::new();
    let mut rest = v;
    while let Some((account, after)) = split_at_byte(rest, b',') {
        accounts.push(account.trim().to_string());
        rest = after;
    }
    accounts.push(rest.trim().to_string());
    accounts
}

/// `prefix@account`, as WeChat spells customer-service accounts.
pub fn is_kf_account(s: &str) -> bool {
    match split_at_byte(s, b'@') {
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
        Config::build(|k| map.get(k).cloned())
    }

    #[test]
    fn build_config_defaults_with_only_the_token() {
        let c = build(&[("WECHAT_TOKEN", "t")]);
        assert_eq!(c.problems().count(), 0);
        assert!(c.callback().is_ok());
        assert_eq!(c.max_clock_skew_secs, 300);
        assert_eq!(c.outbound().api_base, "https://api.weixin.qq.com");
        assert_eq!(c.outbound().token_endpoint, TokenEndpoint::Stable);
        assert!(c.api_credentials().is_err());
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
        assert_eq!(c.callback().unwrap_err(), crate::error::Error::Config("WECHAT_TOKEN"));
    }

    #[test]
    fn a_push_needs_only_the_callbacks_variables_and_the_others_are_checked_when_used() {
        let c = build(&[("WECHAT_TOKEN", "t"), ("WECHAT_API_BASE", "ftp://x"), ("WECHAT_TOKEN_ENDPOINT", "fancy")]);
        assert!(c.callback().is_ok());
        assert!(c.outbound.get().is_none(), "the callback checked the other variables");
        assert_eq!(c.api_credentials().unwrap_err(), crate::error::Error::Config("WECHAT_API_BASE"));
        let h: serde_json::Value = serde_json::from_str(c.health()).unwrap();
        assert_eq!(h["invalid"], serde_json::json!(["WECHAT_API_BASE", "WECHAT_TOKEN_ENDPOINT"]));
        assert_eq!(h["features"]["callback"], true);
    }

    #[test]
    fn aes_key_without_appid_names_the_appid() {
        let c =
            build(&[("WECHAT_TOKEN", "t"), ("WECHAT_ENCODING_AES_KEY", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG")]);
        assert_eq!(c.callback().unwrap_err(), crate::error::Error::Config("WECHAT_APPID"));
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
        let h: serde_json::Value = serde_json::from_str(h).unwrap();
        assert_eq!(h["features"]["outbound_api"], true);
        assert_eq!(h["features"]["safe_mode"], true);
    }

    #[test]
    fn health_is_not_ok_while_a_variable_is_missing() {
        // The AppSecret without the AppID: the outbound API cannot work.
        let health = |c: &Config| serde_json::from_str::<serde_json::Value>(c.health()).unwrap();
        let h = health(&build(&[("WECHAT_TOKEN", "t"), ("WECHAT_APPSECRET", "s")]));
        assert_eq!(h["missing"], serde_json::json!(["WECHAT_APPID"]));
        assert_eq!(h["ok"], false);
        assert_eq!(health(&build(&[("WECHAT_TOKEN", "t")]))["ok"], true);
        let unbound = Config::build(|k| (k == "WECHAT_TOKEN").then(|| "t".to_string()));
        assert_eq!(health(&unbound)["missing"], serde_json::json!(["WECHAT_KV"]));
    }

    #[test]
    fn the_alert_webhook_is_https_or_loopback_and_never_shown() {
        let c = build(&[
            ("WECHAT_TOKEN", "t"),
            ("ALERT_WEBHOOK_URL", "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=SECRET-KEY"),
        ]);
        assert!(c.outbound().alert_webhook.is_some() && c.problems().count() == 0);
        assert!(!c.health().contains("SECRET-KEY"));
        assert!(build(&[("ALERT_WEBHOOK_URL", "http://127.0.0.1:9000/hook")]).outbound().alert_webhook.is_some());
        for bad in ["http://example.com/hook", "ftp://x/y", "https://a b/", "qyapi.weixin.qq.com"] {
            let c = build(&[("WECHAT_TOKEN", "t"), ("ALERT_WEBHOOK_URL", bad)]);
            assert_eq!(
                (c.outbound().alert_webhook.as_deref(), c.problems().collect::<Vec<_>>().as_slice()),
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
        assert_eq!(c.kf_accounts, ["a@x", "b@x"]);
        assert!(is_kf_account("kf2001@gh_1"));
        assert!(!is_kf_account("@x") && !is_kf_account("a@") && !is_kf_account("ax"));
    }
}
