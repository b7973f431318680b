//! Official Accounts kept in the database and served at `/wechat/{appid}`, beside the account of
//! the environment (`default`, at `/wechat`): the owner's request bodies and their checks (with
//! EasyWeChat's names), the secrets sealed at rest, and the account a push is served for.
//!
//! An account's secrets (its Token, EncodingAESKey and AppSecret) are one AES-256-GCM box under
//! `ACCOUNTS_KEY` (32 bytes, base64), with the appid as associated data: a box copied into
//! another account's row does not open. No route answers them and no log line holds them; what
//! the owner sees is whether each optional one is set.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use wechat_mp::WeChatCrypto;

use crate::config::{is_kf_account, Account, KfRouting, TokenEndpoint};
use crate::document;
use crate::error::Error;
pub use crate::seal::{Sealer, Secrets};

/// The Workers secret that seals accounts' secrets.
pub const KEY_VARIABLE: &str = "ACCOUNTS_KEY";
/// Most customer-service accounts an account lists.
pub const MAX_KF_ACCOUNTS: usize = 20;
/// Most accounts `GET /api/accounts` lists.
pub const MAX_LISTED: u64 = 1000;
/// What an account's row keeps in the clear (its `settings` column).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    pub kf_accounts: Vec<String>,
    pub kf_routing: KfRouting,
    pub token_endpoint: TokenEndpoint,
    /// Whether the sealed secrets hold an EncodingAESKey, an AppSecret (never the values).
    pub aes_key: bool,
    pub secret: bool,
}

/// An account's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub appid: String,
    pub name: String,
    pub sealed: String,
    pub settings: Settings,
    pub created: u64,
    pub updated: u64,
}

/// An account as every route answers it: no secret, whether each optional one is set, and the
/// path to paste into WeChat's console.
#[derive(Debug, Serialize)]
pub struct View<'a> {
    pub appid: &'a str,
    pub name: &'a str,
    pub callback_path: String,
    pub kf_accounts: &'a [String],
    pub kf_routing: &'a str,
    pub token_endpoint: &'a str,
    pub aes_key_set: bool,
    pub secret_set: bool,
    pub created: u64,
    pub updated: u64,
}

impl Stored {
    pub fn view(&self) -> View<'_> {
        View {
            appid: &self.appid,
            name: &self.name,
            callback_path: format!("/wechat/{}", self.appid),
            kf_accounts: &self.settings.kf_accounts,
            kf_routing: self.settings.kf_routing.as_str(),
            token_endpoint: self.settings.token_endpoint.as_str(),
            aes_key_set: self.settings.aes_key,
            secret_set: self.settings.secret,
            created: self.created,
            updated: self.updated,
        }
    }

    /// The account a push to `/wechat/{appid}` is served for, with its opened secrets.
    pub fn account(&self, secrets: Secrets, max_clock_skew_secs: u64) -> Account {
        let crypto = secrets.aes_key.as_deref().and_then(|key| WeChatCrypto::new(key, &self.appid));
        Account {
            appid: Some(self.appid.clone()),
            token: Some(secrets.token),
            crypto,
            secret: secrets.secret,
            kf_accounts: self.settings.kf_accounts.clone(),
            kf_routing: self.settings.kf_routing,
            token_endpoint: self.settings.token_endpoint,
            max_clock_skew_secs,
        }
    }
}

/// `POST /api/accounts`' and `PUT /api/accounts/{appid}`'s body, EasyWeChat's names.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    appid: Option<String>,
    name: Option<String>,
    token: Option<String>,
    aes_key: Option<String>,
    secret: Option<String>,
    kf_accounts: Option<Vec<String>>,
    kf_routing: Option<String>,
    token_endpoint: Option<String>,
}

fn invalid(field: impl Into<String>, reason: &'static str) -> Error {
    Error::InvalidRequest { field: field.into(), reason }
}

/// `wx` and 16 lowercase hexadecimal digits, as WeChat issues AppIDs.
pub fn is_appid(s: &str) -> bool {
    s.len() == 18 && s.starts_with("wx") && s.bytes().skip(2).all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn alphanumeric(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A name (an account's, an operator token's): 1 to 64 characters once trimmed, no control
/// characters.
pub fn check_name(name: &str) -> Result<String, Error> {
    let name = name.trim();
    let chars = name.chars().count();
    if chars == 0 || chars > 64 || name.chars().any(char::is_control) {
        return Err(invalid("name", "must be 1 to 64 characters, no control characters"));
    }
    Ok(name.to_string())
}

fn check_token(token: &str) -> Result<String, Error> {
    if !alphanumeric(token, 3, 32) {
        return Err(invalid("token", "must be 3 to 32 letters or digits"));
    }
    Ok(token.to_string())
}

fn check_aes_key(key: &str, appid: &str) -> Result<String, Error> {
    // 43 characters of the base64 alphabet (`wechat_mp::crypto::is_encoding_aes_key`).
    if WeChatCrypto::new(key, appid).is_none() {
        return Err(invalid("aes_key", "must be 43 characters of the base64 alphabet"));
    }
    Ok(key.to_string())
}

fn check_secret(secret: &str) -> Result<String, Error> {
    if !alphanumeric(secret, 16, 64) {
        return Err(invalid("secret", "must be 16 to 64 letters or digits"));
    }
    Ok(secret.to_string())
}

fn check_kf_accounts(list: Vec<String>) -> Result<Vec<String>, Error> {
    if list.len() > MAX_KF_ACCOUNTS {
        return Err(invalid("kf_accounts", "must list at most 20 accounts"));
    }
    if let Some(at) = list.iter().position(|a| !is_kf_account(a)) {
        return Err(invalid(format!("kf_accounts[{at}]"), "must be a customer-service account such as kf2001@gh_xxx"));
    }
    Ok(list)
}

fn check_routing(routing: Option<String>, current: KfRouting) -> Result<KfRouting, Error> {
    routing.map_or(Ok(current), |word| KfRouting::parse(&word).ok_or(invalid("kf_routing", "must be static or online")))
}

fn check_endpoint(endpoint: Option<String>, current: TokenEndpoint) -> Result<TokenEndpoint, Error> {
    endpoint.map_or(Ok(current), |word| {
        TokenEndpoint::parse(&word).ok_or(invalid("token_endpoint", "must be stable or classic"))
    })
}

/// An account as the owner gave it, checked: appid, name, secrets, settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub appid: String,
    pub name: String,
    pub secrets: Secrets,
    pub settings: Settings,
}

fn settings(
    secrets: &Secrets,
    kf_accounts: Vec<String>,
    kf_routing: KfRouting,
    token_endpoint: TokenEndpoint,
) -> Settings {
    Settings {
        kf_accounts,
        kf_routing,
        token_endpoint,
        aes_key: secrets.aes_key.is_some(),
        secret: secrets.secret.is_some(),
    }
}

/// `POST /api/accounts`' body: `appid`, `name` and `token` required; the first bad field named.
pub fn create(body: &[u8]) -> Result<Checked, Error> {
    let (b, _) = document::read::<Body>(body)?;
    let appid = b.appid.ok_or_else(|| invalid("appid", "is required"))?;
    if !is_appid(&appid) {
        return Err(invalid("appid", "must be wx followed by 16 lowercase hexadecimal digits"));
    }
    let name = check_name(&b.name.ok_or_else(|| invalid("name", "is required"))?)?;
    let token = check_token(&b.token.ok_or_else(|| invalid("token", "is required"))?)?;
    let aes_key = b.aes_key.as_deref().map(|k| check_aes_key(k, &appid)).transpose()?;
    let secret = b.secret.as_deref().map(check_secret).transpose()?;
    let kf_accounts = check_kf_accounts(b.kf_accounts.unwrap_or_default())?;
    let kf_routing = check_routing(b.kf_routing, KfRouting::Static)?;
    let token_endpoint = check_endpoint(b.token_endpoint, TokenEndpoint::Stable)?;
    let secrets = Secrets { token, aes_key, secret };
    let settings = settings(&secrets, kf_accounts, kf_routing, token_endpoint);
    Ok(Checked { appid, name, secrets, settings })
}

/// Whether a `PUT` body gives every secret anew: the Token, and the AES key and the AppSecret
/// (each a value or `null`): then the account's secrets need not be opened (after a change of
/// `ACCOUNTS_KEY`, this is how an account is repaired).
pub fn replaces_secrets(body: &[u8]) -> bool {
    let Ok(object) = document::object(body) else { return false };
    matches!(object.get("token"), Some(Value::String(_)))
        && ["aes_key", "secret"].iter().all(|key| matches!(object.get(*key), Some(Value::String(_) | Value::Null)))
}

/// `PUT /api/accounts/{appid}`'s body over the account as it is (`secrets` opened): a field left
/// out keeps its value, `aes_key` or `secret` set to `null` removes it; `appid`, if given, must
/// be the path's.
pub fn update(current: &Stored, secrets: Secrets, body: &[u8]) -> Result<Checked, Error> {
    let (b, raw) = document::read::<Body>(body)?;
    let appid = current.appid.clone();
    if b.appid.as_deref().is_some_and(|a| a != appid) {
        return Err(invalid("appid", "must be the appid of the path (an account's appid never changes)"));
    }
    let removed = |key: &str| matches!(raw.get(key), Some(Value::Null));
    let name = match b.name {
        Some(name) => check_name(&name)?,
        None if removed("name") => return Err(invalid("name", "must be 1 to 64 characters, no control characters")),
        None => current.name.clone(),
    };
    let token = match b.token {
        Some(token) => check_token(&token)?,
        None if removed("token") => return Err(invalid("token", "must be 3 to 32 letters or digits")),
        None => secrets.token,
    };
    let aes_key = match b.aes_key {
        Some(key) => Some(check_aes_key(&key, &appid)?),
        None if removed("aes_key") => None,
        None => secrets.aes_key,
    };
    let secret = match b.secret {
        Some(secret) => Some(check_secret(&secret)?),
        None if removed("secret") => None,
        None => secrets.secret,
    };
    let kf_accounts = match b.kf_accounts {
        Some(list) => check_kf_accounts(list)?,
        None => current.settings.kf_accounts.clone(),
    };
    let kf_routing = check_routing(b.kf_routing, current.settings.kf_routing)?;
    let token_endpoint = check_endpoint(b.token_endpoint, current.settings.token_endpoint)?;
    let secrets = Secrets { token, aes_key, secret };
    let settings = settings(&secrets, kf_accounts, kf_routing, token_endpoint);
    Ok(Checked { appid, name, secrets, settings })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_the_variable_the_configuration_reads() {
        assert_eq!(crate::config::ACCOUNT_VARIABLES, [KEY_VARIABLE]);
    }

    #[test]
    fn appids_are_wx_and_16_lowercase_hex_digits() {
        assert!(is_appid("wx0123456789abcdef"));
        for bad in [
            "wx0123456789ABCDEF",
            "wx0123456789abcde",
            "wx0123456789abcdefa",
            "gh_0123456789abcd",
            "wx0123456789abcdeg",
        ] {
            assert!(!is_appid(bad), "{bad}");
        }
    }
}
