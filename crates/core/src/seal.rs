//! The sealed box that keeps an account's secrets at rest: AES-256-GCM under `ACCOUNTS_KEY`
//! (32 bytes, base64), a fresh 12-byte nonce each time, the appid as associated data (a box
//! copied into another account's row does not open). The key and the secrets never print.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// The version of the sealed box's format, its first characters.
const SEALED_PREFIX: &str = "v1.";
const NONCE_BYTES: usize = 12;

/// The key that seals and opens accounts' secrets (never printed).
pub struct Sealer(Aes256Gcm);

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealer(..)")
    }
}

fn unopened() -> Error {
    Error::Internal("accounts: the sealed secrets do not open with ACCOUNTS_KEY")
}

impl Sealer {
    /// `ACCOUNTS_KEY`: 32 bytes in standard base64; `None` for anything else.
    pub fn from_base64(key: &str) -> Option<Sealer> {
        let bytes = STANDARD.decode(key.trim()).ok().filter(|b| b.len() == 32)?;
        Aes256Gcm::new_from_slice(&bytes).ok().map(Sealer)
    }

    /// The account's secrets as its row keeps them: `v1.` and base64 of nonce, ciphertext, tag.
    /// `nonce`: 12 random bytes, never reused under the key.
    pub fn seal(&self, appid: &str, secrets: &Secrets, nonce: [u8; NONCE_BYTES]) -> Result<String, Error> {
        let plain =
            serde_json::to_vec(secrets).map_err(|_| Error::Internal("accounts: the secrets do not serialize"))?;
        let sealed = self
            .0
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: &plain, aad: appid.as_bytes() })
            .map_err(|_| Error::Internal("accounts: sealing failed"))?;
        let mut boxed = nonce.to_vec();
        boxed.extend(sealed);
        Ok(format!("{SEALED_PREFIX}{}", STANDARD.encode(boxed)))
    }

    /// The secrets of `appid`'s row; an error when the box was sealed under another key, for
    /// another account, or altered.
    pub fn open(&self, appid: &str, sealed: &str) -> Result<Secrets, Error> {
        let boxed = sealed.strip_prefix(SEALED_PREFIX).and_then(|b| STANDARD.decode(b).ok()).ok_or_else(unopened)?;
        let (nonce, body) = boxed.split_at_checked(NONCE_BYTES).ok_or_else(unopened)?;
        let plain = self
            .0
            .decrypt(Nonce::from_slice(nonce), Payload { msg: body, aad: appid.as_bytes() })
            .map_err(|_| unopened())?;
        serde_json::from_slice(&plain).map_err(|_| unopened())
    }
}

/// An account's secrets (printed redacted).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secrets {
    pub token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aes_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secrets(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const OTHER: &str = "Hx4dHBsaGRgXFhUUExIREA8ODQwLCgkIBwYFBAMCAQA=";

    fn secrets() -> Secrets {
        Secrets { token: "tok123".into(), aes_key: None, secret: Some("0123456789abcdef0123456789abcdef".into()) }
    }

    #[test]
    fn a_box_opens_with_its_key_for_its_account_only() {
        let sealer = Sealer::from_base64(KEY).unwrap();
        let sealed = sealer.seal("wx0123456789abcdef", &secrets(), [7; 12]).unwrap();
        assert!(sealed.starts_with("v1."));
        assert!(!sealed.contains("tok123"));
        assert_eq!(sealer.open("wx0123456789abcdef", &sealed).unwrap(), secrets());
        assert_eq!(sealer.open("wxfedcba9876543210", &sealed), Err(unopened()), "another account's row");
        assert_eq!(Sealer::from_base64(OTHER).unwrap().open("wx0123456789abcdef", &sealed), Err(unopened()));
        let mut altered = sealed.clone().into_bytes();
        if let Some(last) = altered.get_mut(20) {
            *last = if *last == b'A' { b'B' } else { b'A' };
        }
        assert_eq!(sealer.open("wx0123456789abcdef", &String::from_utf8(altered).unwrap()), Err(unopened()));
        assert_eq!(sealer.open("wx0123456789abcdef", "v1."), Err(unopened()));
        assert_eq!(format!("{sealer:?} {:?}", secrets()), "Sealer(..) Secrets(..)");
    }

    #[test]
    fn a_key_is_32_bytes_of_base64() {
        assert!(Sealer::from_base64(KEY).is_some());
        for bad in ["", "c2hvcnQ=", "not base64 at all!", KEY.get(..40).unwrap()] {
            assert!(Sealer::from_base64(bad).is_none(), "{bad}");
        }
    }
}
