//! Operator tokens: a bearer token that reaches one database account's admin routes and nothing
//! else. `kfo_` + the token's id (16 hex digits, its public part and the row's key) + `_` + its
//! secret (32 random bytes, base64url). The owner sees a token once, when it is issued; the
//! database keeps the SHA-256 of the secret, compared in constant time.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::document;
use crate::error::Error;

const PREFIX: &str = "kfo_";
const ID_LEN: usize = 16;
/// Most tokens one account has.
pub const MAX_PER_ACCOUNT: u64 = 100;
/// How long an isolate trusts a token it checked: a revoked token is refused at once in the
/// isolate that revoked it and within this time everywhere.
pub const TRUST_SECS: u64 = 30;
/// `last_used` is written at most this often per token.
pub const LAST_USED_EVERY_SECS: u64 = 3600;

/// A presented operator token: its id and the hash of its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented {
    pub id: String,
    pub hash: String,
}

/// The hash the database keeps of a token's secret: SHA-256, lowercase hex.
fn hash(secret: &str) -> String {
    Sha256::digest(secret.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// A bearer token shaped like an operator token, read; `None` for anything else.
pub fn parse(token: &str) -> Option<Presented> {
    let rest = token.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_at_checked(ID_LEN)?;
    let secret = secret.strip_prefix('_')?;
    let valid_id = is_id(id);
    let valid_secret = (40..=64).contains(&secret.len())
        && secret.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (valid_id && valid_secret).then(|| Presented { id: id.to_string(), hash: hash(secret) })
}

/// A new token from 48 random bytes (16 for the id's 8 bytes and padding, 32 for the secret):
/// the token to hand over once, and what the database keeps.
pub fn issue(random: [[u8; 16]; 3]) -> (String, Presented) {
    let [a, b, c] = random;
    let id: String = a.iter().take(ID_LEN / 2).map(|x| format!("{x:02x}")).collect();
    let mut secret_bytes = b.to_vec();
    secret_bytes.extend(c);
    let secret = URL_SAFE_NO_PAD.encode(secret_bytes);
    let token = format!("{PREFIX}{id}_{secret}");
    (token, Presented { id, hash: hash(&secret) })
}

/// Whether a token's id is well formed (a path's `{id}`).
pub fn is_id(id: &str) -> bool {
    id.len() == ID_LEN && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `POST /api/accounts/{appid}/tokens`' body: `{"name"}`, 1 to 64 characters.
pub fn name(body: &[u8]) -> Result<String, Error> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        name: Option<String>,
    }
    let (body, _) = document::read::<Body>(body)?;
    let name = body.name.ok_or(Error::InvalidRequest { field: "name".into(), reason: "is required" })?;
    crate::accounts::check_name(&name)
}

/// A token as the owner's list shows it (never the token, never its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listed {
    pub id: String,
    pub name: String,
    pub created: u64,
    pub last_used: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issued_token_reads_back_to_its_id_and_hash() {
        let (token, kept) = issue([[1; 16], [2; 16], [3; 16]]);
        assert!(token.starts_with("kfo_0101010101010101_"), "{token}");
        assert_eq!(parse(&token), Some(kept.clone()));
        assert_eq!(kept.hash.len(), 64);
        assert!(!token.contains(&kept.hash));
        // Anything else is not an operator token.
        for bad in [
            "",
            "kfo_",
            "Bearer x",
            "kfo_0101010101010101",
            "kfo_010101010101010X_abcdefghijklmnopqrstuvwxyzabcdefghijklmnop",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        let (other, _) = issue([[1; 16], [9; 16], [3; 16]]);
        assert_ne!(parse(&other).map(|p| p.hash), Some(kept.hash), "another secret, another hash");
    }
}
