//! Safe mode (消息加解密): AES-256-CBC with the account's EncodingAESKey.
//!
//! plaintext = 16 random bytes ‖ u32 big-endian length ‖ message ‖ appid, PKCS#7-padded to a
//! multiple of **32** bytes; key = base64(EncodingAESKey + "="), IV = key[..16].
//! Every failure is reported as the same [`Error::DecryptFailed`] to the caller.

use aes::cipher::{block_padding::NoPadding, BlockDecryptMut, BlockEncryptMut, InnerIvInit, KeyInit};
use base64::engine::{general_purpose::STANDARD, DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use std::sync::OnceLock;

use crate::Error;

type Encryptor = cbc::Encryptor<aes::Aes256>;
type Decryptor = cbc::Decryptor<aes::Aes256>;

/// WeChat pads to a multiple of 32 bytes, not AES's 16.
const PAD_BLOCK: usize = 32;
/// Largest ciphertext we try to decrypt (the callback body is bounded far below this).
const MAX_CIPHERTEXT: usize = 1 << 20;

/// Some EncodingAESKeys carry non-zero bits after the last whole byte; WeChat ignores them.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The account's message cipher (wechatpy calls it `WeChatCrypto`): the EncodingAESKey and the
/// AppID every plaintext must end with. The key is checked when the cipher is built and decoded
/// and expanded on its first use: an account that only ever sees plain mode never needs it.
#[derive(Clone)]
pub struct WeChatCrypto {
    /// The 43 characters of the EncodingAESKey, known to decode (see [`is_encoding_aes_key`]).
    encoding_aes_key: String,
    cipher: OnceLock<(aes::Aes256, [u8; 16])>,
    appid: String,
}

impl std::fmt::Debug for WeChatCrypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("WeChatCrypto").field("appid", &self.appid).finish_non_exhaustive()
    }
}

/// Whether `key` is an EncodingAESKey: 43 characters of the standard base64 alphabet, which is
/// exactly what decodes (with a `=` appended, the trailing bits ignored) to 32 bytes.
pub fn is_encoding_aes_key(key: &str) -> bool {
    key.len() == 43 && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

impl WeChatCrypto {
    /// Builds the cipher from the 43-character EncodingAESKey and the account's AppID.
    /// Returns `None` when the key is not 43 base64 characters (see [`is_encoding_aes_key`]) or
    /// the AppID is empty.
    pub fn new(encoding_aes_key: &str, appid: &str) -> Option<Self> {
        if !is_encoding_aes_key(encoding_aes_key) || appid.is_empty() {
            return None;
        }
        Some(WeChatCrypto {
            encoding_aes_key: encoding_aes_key.to_string(),
            cipher: OnceLock::new(),
            appid: appid.to_string(),
        })
    }

    /// The key schedule and the IV, from the key on first use.
    #[inline(never)]
    fn cipher(&self) -> Result<&(aes::Aes256, [u8; 16]), Error> {
        if let Some(cipher) = self.cipher.get() {
            return Ok(cipher);
        }
        // `new` admitted only keys that decode to 32 bytes (a test pins that the check and the
        // decoder agree): failing here is a broken invariant, answered as a failed decryption.
        let broken = Error::DecryptFailed("EncodingAESKey does not decode");
        let key: [u8; 32] = LENIENT
            .decode(format!("{}=", self.encoding_aes_key))
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or(broken.clone())?;
        let (iv, _) = key.split_first_chunk::<16>().ok_or(broken)?;
        Ok(self.cipher.get_or_init(|| (aes::Aes256::new(&key.into()), *iv)))
    }

    /// The AppID the cipher expects at the end of every plaintext.
    pub fn appid(&self) -> &str {
        &self.appid
    }

    /// Encrypts `msg` with the given 16-byte random prefix; returns base64 (the `Encrypt` field).
    pub fn encrypt(&self, msg: &str, random: &[u8; 16]) -> Result<String, Error> {
        let (cipher, iv) = self.cipher()?;
        let appid = self.appid.as_bytes();
        let len = 16 + 4 + msg.len() + appid.len();
        let pad = PAD_BLOCK - (len % PAD_BLOCK);
        let mut buf = Vec::with_capacity(len + pad);
        buf.extend_from_slice(random);
        // A message over 4 GiB cannot reach us (bodies are bounded); saturate rather than panic.
        buf.extend_from_slice(&u32::try_from(msg.len()).unwrap_or(u32::MAX).to_be_bytes());
        buf.extend_from_slice(msg.as_bytes());
        buf.extend_from_slice(appid);
        // pad is 1..=32 so it always fits a u8.
        buf.resize(len + pad, pad as u8);
        let total = buf.len();
        // `total` is a multiple of 32, so the padding-free encryption cannot fail; if it ever
        // did, the empty `Encrypt` would fail to decrypt rather than pass as a message.
        let ct = Encryptor::inner_iv_init(cipher.clone(), &(*iv).into())
            .encrypt_padded_mut::<NoPadding>(&mut buf, total)
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        Ok(STANDARD.encode(ct))
    }

    /// Decrypts an `Encrypt` field and checks its AppID; returns the inner XML.
    pub fn decrypt(&self, encrypted: &str) -> Result<String, Error> {
        let fail = Error::DecryptFailed;
        if encrypted.len() > MAX_CIPHERTEXT * 4 / 3 + 4 {
            return Err(fail("ciphertext too long"));
        }
        let mut buf = STANDARD.decode(encrypted.trim()).map_err(|_| fail("invalid base64"))?;
        if buf.is_empty() || buf.len() % PAD_BLOCK != 0 {
            return Err(fail("ciphertext length is not a multiple of 32"));
        }
        let (cipher, iv) = self.cipher()?;
        let plain = Decryptor::inner_iv_init(cipher.clone(), &(*iv).into())
            .decrypt_padded_mut::<NoPadding>(&mut buf)
            .map_err(|_| fail("cbc"))?;
        let content = unpad(plain).ok_or(fail("invalid padding"))?;
        let (msg, appid) = split_frame(content).ok_or(fail("invalid frame"))?;
        if appid != self.appid.as_bytes() {
            return Err(fail("appid mismatch"));
        }
        String::from_utf8(msg.to_vec()).map_err(|_| fail("message is not UTF-8"))
    }
}

/// Strips 32-byte PKCS#7 padding (pad values 1..=32, every pad byte equal).
fn unpad(plain: &[u8]) -> Option<&[u8]> {
    let pad = usize::from(*plain.last()?);
    if pad == 0 || pad > PAD_BLOCK || pad > plain.len() {
        return None;
    }
    let (content, padding) = plain.split_at(plain.len() - pad);
    padding.iter().all(|&b| usize::from(b) == pad).then_some(content)
}

/// Splits `random(16) ‖ len(4) ‖ msg ‖ appid` into `(msg, appid)`.
fn split_frame(content: &[u8]) -> Option<(&[u8], &[u8])> {
    let rest = content.get(16..)?;
    let len_bytes: [u8; 4] = rest.get(..4)?.try_into().ok()?;
    let len = usize::try_from(u32::from_be_bytes(len_bytes)).ok()?;
    let body = rest.get(4..)?;
    if len > body.len() {
        return None;
    }
    Some(body.split_at(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    const APPID: &str = "wx5823bf96d3bd56c7";

    fn kat_msg() -> &'static str {
        include_str!("../../../tests/fixtures/safe/plaintext_kat.xml").trim_end()
    }
    fn kat_encrypt() -> &'static str {
        include_str!("../../../tests/fixtures/safe/encrypt_kat.txt").trim()
    }

    #[test]
    fn encrypt_matches_spec_example() {
        let c = WeChatCrypto::new(KEY, APPID).unwrap();
        assert_eq!(c.encrypt(kat_msg(), b"1234567890123456").unwrap(), kat_encrypt());
    }

    #[test]
    fn decrypt_matches_spec_example() {
        let c = WeChatCrypto::new(KEY, APPID).unwrap();
        assert_eq!(c.decrypt(kat_encrypt()).unwrap(), kat_msg());
    }

    #[test]
    fn encrypt_decrypt_roundtrip_for_every_padding_length() {
        let c = WeChatCrypto::new(KEY, APPID).unwrap();
        let mut seen = [false; 33];
        for n in 0..64 {
            let msg = "x".repeat(n);
            let enc = c.encrypt(&msg, &[7; 16]).unwrap();
            let pad = 32 - ((16 + 4 + n + APPID.len()) % 32);
            seen[pad] = true;
            assert_eq!(c.decrypt(&enc).unwrap(), msg, "length {n}, pad {pad}");
        }
        assert!(seen[1..=32].iter().all(|&s| s), "every pad value 1..=32 exercised");
    }

    #[test]
    fn new_rejects_bad_keys_and_accepts_trailing_bits() {
        assert!(WeChatCrypto::new("short", APPID).is_none());
        assert!(WeChatCrypto::new(&"!".repeat(43), APPID).is_none());
        assert!(WeChatCrypto::new(KEY, "").is_none());
        // 'H' instead of 'G' sets a non-zero trailing bit: WeChat still accepts such keys.
        assert!(WeChatCrypto::new("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFH", APPID).is_some());
    }

    /// The cheap check `new` makes admits exactly the keys the decoder turns into 32 bytes, so
    /// the decode on first use cannot fail: every character of every position, keys one too
    /// short and too long, padding and whitespace.
    #[test]
    fn the_key_check_admits_exactly_what_decodes_to_32_bytes() {
        let decodes = |key: &str| LENIENT.decode(format!("{key}=")).is_ok_and(|b| b.len() == 32);
        let mut keys = vec![KEY[..42].to_string(), format!("{KEY}A"), format!("{}=", &KEY[..42]), String::new()];
        for position in [0, 20, 41, 42] {
            for b in 0u8..=255 {
                let mut key = KEY.as_bytes().to_vec();
                key[position] = b;
                if let Ok(key) = String::from_utf8(key) {
                    keys.push(key);
                }
            }
        }
        keys.push("é".repeat(21) + "a");
        let mut admitted = 0;
        for key in &keys {
            assert_eq!(is_encoding_aes_key(key), decodes(key), "{key:?}");
            if let Some(c) = WeChatCrypto::new(key, APPID) {
                admitted += 1;
                assert!(c.cipher().is_ok(), "{key:?}");
            }
        }
        assert_eq!(admitted, 4 * 64, "every base64 character in each of the four positions");
    }

    #[test]
    fn decrypt_rejects_garbage_truncation_and_wrong_appid() {
        let c = WeChatCrypto::new(KEY, APPID).unwrap();
        let enc = kat_encrypt();
        let truncated = &enc[..enc.len() - 24];
        let other = WeChatCrypto::new(KEY, "wxffffffffffffffff").unwrap();
        let flipped = {
            let mut raw = STANDARD.decode(enc).unwrap();
            let last = raw.len() - 1;
            raw[last] ^= 0x55;
            STANDARD.encode(raw)
        };
        for bad in ["", "!!!not base64!!!", "AAAA", truncated, &flipped] {
            assert!(matches!(c.decrypt(bad), Err(Error::DecryptFailed(_))), "{bad:?}");
        }
        assert_eq!(other.decrypt(enc), Err(Error::DecryptFailed("appid mismatch")));
    }

    #[test]
    fn debug_never_prints_the_key() {
        let c = WeChatCrypto::new(KEY, APPID).unwrap();
        let s = format!("{c:?}");
        assert!(!s.contains("key") || !s.contains(KEY));
        assert!(s.contains(APPID));
    }
}
