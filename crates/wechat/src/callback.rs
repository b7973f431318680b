//! The callback, pure: query + body + `now` in, reply body or [`Error`] out.
//!
//! A `GET` is WeChat's URL check ([`verify_url`]); a `POST` is a push, opened once by
//! [`open_message`] (verified, decrypted, parsed) and answered by [`respond`] with what the
//! caller decided in between.

use crate::crypto::WeChatCrypto;
use crate::message::{parse_message, Message};
use crate::reply::{EncryptedReply, TextReply, TransferCustomerServiceReply, SUCCESS};
use crate::signature;
use crate::xml::parse_fields;
use crate::Error;

/// Largest `POST /wechat` body accepted (WeChat's messages are a few KiB at most).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What the callback needs from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct CallbackSettings<'a> {
    pub token: &'a str,
    pub crypto: Option<&'a WeChatCrypto>,
    /// 0 turns the timestamp window off.
    pub max_clock_skew_secs: u64,
}

/// Longest `nonce` accepted (WeChat's are about ten digits); it is echoed in encrypted replies.
pub const MAX_NONCE_LEN: usize = 64;
/// Longest `echostr` accepted (WeChat's are about twenty digits); it is echoed verbatim.
pub const MAX_ECHOSTR_LEN: usize = 128;

/// The callback's query parameters, percent-decoded; the first occurrence of a name wins.
/// Values are checked when read: what is echoed (`nonce`, `echostr`) and what is parsed
/// (`timestamp`) must look like what WeChat sends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pub signature: Option<String>,
    pub timestamp: Option<String>,
    pub nonce: Option<String>,
    pub echostr: Option<String>,
    pub encrypt_type: Option<String>,
    pub msg_signature: Option<String>,
}

impl Query {
    /// Parses a query string (without the leading `?`), percent-decoding as
    /// `application/x-www-form-urlencoded`.
    pub fn parse(query: &str) -> Query {
        let mut q = Query::default();
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            q.set(&name, value);
        }
        q
    }

    /// Keeps `value` under `name` if it is a parameter the callback reads and not yet set.
    fn set(&mut self, name: &str, value: impl Into<String>) {
        let slot = match name {
            "signature" => &mut self.signature,
            "timestamp" => &mut self.timestamp,
            "nonce" => &mut self.nonce,
            "echostr" => &mut self.echostr,
            "encrypt_type" => &mut self.encrypt_type,
            "msg_signature" => &mut self.msg_signature,
            _ => return,
        };
        if slot.is_none() {
            *slot = Some(value.into());
        }
    }

    fn require<'a>(value: &'a Option<String>, name: &'static str) -> Result<&'a str, Error> {
        value.as_deref().filter(|v| !v.is_empty()).ok_or(Error::MissingParameter(name))
    }

    /// `timestamp`: 1 to 20 ASCII digits (seconds).
    fn timestamp(&self) -> Result<&str, Error> {
        let v = Query::require(&self.timestamp, "timestamp")?;
        if v.len() > 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::InvalidParameter("timestamp"));
        }
        Ok(v)
    }

    /// `nonce`: ASCII letters and digits, at most [`MAX_NONCE_LEN`].
    fn nonce(&self) -> Result<&str, Error> {
        let v = Query::require(&self.nonce, "nonce")?;
        if v.len() > MAX_NONCE_LEN || !v.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(Error::InvalidParameter("nonce"));
        }
        Ok(v)
    }

    /// `echostr`: ASCII letters and digits, at most [`MAX_ECHOSTR_LEN`].
    fn echostr(&self) -> Result<&str, Error> {
        let v = Query::require(&self.echostr, "echostr")?;
        if v.len() > MAX_ECHOSTR_LEN || !v.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(Error::InvalidParameter("echostr"));
        }
        Ok(v)
    }

    /// Whether WeChat marked the body as encrypted (safe or compatible mode).
    pub fn is_encrypted(&self) -> bool {
        self.encrypt_type.as_deref() == Some("aes")
    }
}

/// `GET` URL check: the `echostr` to answer verbatim, if the signature is WeChat's and the
/// timestamp inside the window.
pub fn verify_url<'q>(s: &CallbackSettings<'_>, q: &'q Query, now: u64) -> Result<&'q str, Error> {
    let signature = Query::require(&q.signature, "signature")?;
    let timestamp = q.timestamp()?;
    let nonce = q.nonce()?;
    let echostr = q.echostr()?;
    if !signature::check_signature(s.token, timestamp, nonce, signature) {
        return Err(Error::InvalidSignature);
    }
    check_timestamp(timestamp, now, s.max_clock_skew_secs)?;
    Ok(echostr)
}

/// An authenticated inbound message.
#[derive(Debug, Clone, PartialEq)]
pub struct Inbound {
    pub message: Message,
    /// It came encrypted, so the reply must be encrypted too.
    pub encrypted: bool,
    /// The request's nonce, echoed in an encrypted reply.
    pub nonce: String,
}

/// `POST`: verifies the request, decrypts it when encrypted, parses the message.
///
/// Plain mode verifies `signature`; safe and compatible mode (`encrypt_type=aes`) verify
/// `msg_signature` over `Encrypt` and read only the ciphertext, ignoring plaintext fields.
pub fn open_message(s: &CallbackSettings<'_>, q: &Query, body: &[u8], now: u64) -> Result<Inbound, Error> {
    if body.len() > MAX_BODY_BYTES {
        return Err(Error::PayloadTooLarge);
    }
    let timestamp = q.timestamp()?;
    let nonce = q.nonce()?;
    let encrypted = q.is_encrypted();
    let signature = if encrypted {
        Query::require(&q.msg_signature, "msg_signature")?
    } else {
        Query::require(&q.signature, "signature")?
    };

    let message = if encrypted {
        open_encrypted(s, body, timestamp, nonce, signature, now)?
    } else {
        if !signature::check_signature(s.token, timestamp, nonce, signature) {
            return Err(Error::InvalidSignature);
        }
        check_timestamp(timestamp, now, s.max_clock_skew_secs)?;
        parse_message(body_str(body)?)?
    };
    Ok(Inbound { message, encrypted, nonce: nonce.to_string() })
}

/// The message inside a safe-mode envelope.
#[inline(never)]
fn open_encrypted(
    s: &CallbackSettings<'_>,
    body: &[u8],
    timestamp: &str,
    nonce: &str,
    signature: &str,
    now: u64,
) -> Result<Message, Error> {
    let outer = parse_fields(body_str(body)?)?;
    let encrypt = outer.get("Encrypt").filter(|e| !e.is_empty()).ok_or(Error::MissingField("Encrypt"))?;
    if !signature::check(&[s.token, timestamp, nonce, encrypt], signature) {
        return Err(Error::InvalidSignature);
    }
    check_timestamp(timestamp, now, s.max_clock_skew_secs)?;
    // Only a push signed with the account's Token reaches here: a missing key is its to fix.
    let crypto = s.crypto.ok_or(Error::NoAesKey)?;
    parse_message(&crypto.decrypt(encrypt)?)
}

/// The one answer a push gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Passive<'a> {
    /// Hand the user's message to customer service (to this account when given).
    Transfer(Option<&'a str>),
    /// A text reply.
    Text(&'a str),
    /// `success`: acknowledged, nothing shown to the user.
    Success,
}

impl Passive<'_> {
    /// The answer's name in logs (never its text).
    pub fn as_str(&self) -> &'static str {
        match self {
            Passive::Transfer(_) => "transfer",
            Passive::Text(_) => "reply",
            Passive::Success => "ack",
        }
    }
}

/// The default answer: user messages are transferred, events acknowledged.
pub fn default_passive<'a>(inbound: &Inbound, kf_account: Option<&'a str>) -> Passive<'a> {
    if inbound.message.is_user_message() {
        Passive::Transfer(kf_account)
    } else {
        Passive::Success
    }
}

/// Renders `passive` for `inbound`. `success` is never encrypted; every other reply to an
/// encrypted push is, using `random` as the 16-byte plaintext prefix.
pub fn respond(
    s: &CallbackSettings<'_>,
    inbound: &Inbound,
    passive: Passive<'_>,
    now: u64,
    random: &[u8; 16],
) -> Result<String, Error> {
    let xml = match passive {
        Passive::Success => return Ok(SUCCESS.to_string()),
        Passive::Transfer(kf_account) => TransferCustomerServiceReply::to(&inbound.message, now, kf_account).render(),
        Passive::Text(text) => TextReply::to(&inbound.message, now, text).render(),
    };
    if !inbound.encrypted {
        return Ok(xml);
    }
    seal(s, inbound, &xml, now, random)
}

/// The safe-mode envelope around `xml`.
#[inline(never)]
fn seal(s: &CallbackSettings<'_>, inbound: &Inbound, xml: &str, now: u64, random: &[u8; 16]) -> Result<String, Error> {
    let crypto = s.crypto.ok_or(Error::NoAesKey)?;
    let encrypt = crypto.encrypt(xml, random)?;
    let msg_signature = signature::sign(&[s.token, &now.to_string(), &inbound.nonce, &encrypt]);
    let envelope = EncryptedReply { encrypt, msg_signature, timestamp: now, nonce: inbound.nonce.clone() };
    Ok(envelope.render())
}

fn check_timestamp(timestamp: &str, now: u64, max_skew: u64) -> Result<(), Error> {
    let ts: u64 = timestamp.parse().map_err(|_| Error::InvalidParameter("timestamp"))?;
    if max_skew != 0 && ts.abs_diff(now) > max_skew {
        return Err(Error::StaleTimestamp);
    }
    Ok(())
}

fn body_str(body: &[u8]) -> Result<&str, Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::MalformedXml("empty body"));
    }
    std::str::from_utf8(body).map_err(|_| Error::MalformedXml("body is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parse_decodes_and_keeps_first_occurrence() {
        let q = Query::parse("signature=ab&echostr=a%20b+c%2&nonce=1&signature=cd&x=1&timestamp");
        assert_eq!(q.signature.as_deref(), Some("ab"));
        assert_eq!(q.echostr.as_deref(), Some("a b c%2"));
        assert_eq!(q.timestamp.as_deref(), Some(""));
        assert_eq!(Query::parse("nonce=%E4%B8%AD%zz%").nonce.as_deref(), Some("中%zz%"));
    }

    #[test]
    fn echoed_and_parsed_parameters_must_look_like_wechat_s() {
        let q = |s: &str| Query::parse(s);
        assert_eq!(q("timestamp=1700000000").timestamp(), Ok("1700000000"));
        assert_eq!(q("timestamp=").timestamp(), Err(Error::MissingParameter("timestamp")));
        for bad in ["abc", "-1", "1e9", "123456789012345678901", "1%0A"] {
            assert_eq!(q(&format!("timestamp={bad}")).timestamp(), Err(Error::InvalidParameter("timestamp")), "{bad}");
        }
        assert_eq!(q("nonce=1320562132").nonce(), Ok("1320562132"));
        let long_nonce = format!("nonce={}", "1".repeat(MAX_NONCE_LEN + 1));
        for bad in ["a%00b", "a%01", "a+b", "%3C%2Fxml%3E", long_nonce.as_str()] {
            let query = if bad.starts_with("nonce=") { bad.to_string() } else { format!("nonce={bad}") };
            assert_eq!(q(&query).nonce(), Err(Error::InvalidParameter("nonce")), "{bad}");
        }
        assert_eq!(q("echostr=5837397749323563137").echostr(), Ok("5837397749323563137"));
        for bad in ["a%0Ab", "a+b", "%E4%B8%AD", "%3Cscript%3E", &"9".repeat(MAX_ECHOSTR_LEN + 1)] {
            assert_eq!(q(&format!("echostr={bad}")).echostr(), Err(Error::InvalidParameter("echostr")), "{bad}");
        }
    }

    #[test]
    fn timestamp_window_is_inclusive_and_can_be_disabled() {
        assert!(check_timestamp("1000", 1300, 300).is_ok());
        assert_eq!(check_timestamp("1000", 1301, 300), Err(Error::StaleTimestamp));
        assert_eq!(check_timestamp("1301", 1000, 300), Err(Error::StaleTimestamp));
        assert!(check_timestamp("1", 1_000_000, 0).is_ok());
        assert_eq!(check_timestamp("12a", 1000, 300), Err(Error::InvalidParameter("timestamp")));
    }
}
