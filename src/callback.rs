//! The callback pipeline, pure: query + body + `now` in, reply body or [`Error`] out.
//!
//! The glue reads the request, calls [`verify_url`] for `GET` and [`open_message`] then
//! [`respond`] for `POST` (choosing the `KfAccount` in between, which may need I/O).

use crate::crypto::WeChatCrypto;
use crate::error::Error;
use crate::message::{parse_message, Message};
use crate::reply::{EncryptedReply, TransferCustomerServiceReply, SUCCESS};
use crate::signature;
use crate::xml::parse_fields;

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

/// The callback's query parameters, percent-decoded. The first occurrence of a name wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pub signature: Option<String>,
    pub timestamp: Option<String>,
    pub nonce: Option<String>,
    pub echostr: Option<String>,
    pub encrypt_type: Option<String>,
    pub msg_signature: Option<String>,
    pub openid: Option<String>,
}

impl Query {
    /// Parses a query string (without the leading `?`).
    pub fn parse(query: &str) -> Query {
        let mut q = Query::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let slot = match k {
                "signature" => &mut q.signature,
                "timestamp" => &mut q.timestamp,
                "nonce" => &mut q.nonce,
                "echostr" => &mut q.echostr,
                "encrypt_type" => &mut q.encrypt_type,
                "msg_signature" => &mut q.msg_signature,
                "openid" => &mut q.openid,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(percent_decode(v));
            }
        }
        q
    }

    fn require<'a>(value: &'a Option<String>, name: &'static str) -> Result<&'a str, Error> {
        value.as_deref().filter(|v| !v.is_empty()).ok_or(Error::MissingParameter(name))
    }

    /// Whether WeChat marked the body as encrypted (safe or compatible mode).
    pub fn is_encrypted(&self) -> bool {
        self.encrypt_type.as_deref() == Some("aes")
    }
}

/// `GET` URL check: the `echostr` to answer verbatim, if the signature is WeChat's.
pub fn verify_url<'q>(s: &CallbackSettings<'_>, q: &'q Query) -> Result<&'q str, Error> {
    let signature = Query::require(&q.signature, "signature")?;
    let timestamp = Query::require(&q.timestamp, "timestamp")?;
    let nonce = Query::require(&q.nonce, "nonce")?;
    let echostr = Query::require(&q.echostr, "echostr")?;
    if !signature::check_signature(s.token, timestamp, nonce, signature) {
        return Err(Error::InvalidSignature);
    }
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
    let timestamp = Query::require(&q.timestamp, "timestamp")?;
    let nonce = Query::require(&q.nonce, "nonce")?;
    let encrypted = q.is_encrypted();
    let signature = if encrypted {
        Query::require(&q.msg_signature, "msg_signature")?
    } else {
        Query::require(&q.signature, "signature")?
    };
    check_timestamp(timestamp, now, s.max_clock_skew_secs)?;

    let message = if encrypted {
        let crypto = s.crypto.ok_or(Error::Config("WECHAT_ENCODING_AES_KEY"))?;
        let outer = parse_fields(body_str(body)?)?;
        let encrypt = outer.get("Encrypt").filter(|e| !e.is_empty()).ok_or(Error::MissingField("Encrypt"))?;
        if !signature::check(&[s.token, timestamp, nonce, encrypt], signature) {
            return Err(Error::InvalidSignature);
        }
        parse_message(&crypto.decrypt(encrypt)?)?
    } else {
        if !signature::check_signature(s.token, timestamp, nonce, signature) {
            return Err(Error::InvalidSignature);
        }
        parse_message(body_str(body)?)?
    };
    Ok(Inbound { message, encrypted, nonce: nonce.to_string() })
}

/// What the callback answered, for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A user message handed to customer service.
    Transfer,
    /// An event acknowledged with `success`.
    Acknowledge,
}

impl Action {
    pub fn as_str(&self) -> &'static str {
        match self {
            Action::Transfer => "transfer",
            Action::Acknowledge => "ack",
        }
    }
}

/// Renders the reply: user messages are transferred to customer service (to `kf_account` when
/// given), events are acknowledged with `success`. Encrypted requests get an encrypted reply,
/// using `random` as the 16-byte plaintext prefix.
pub fn respond(
    s: &CallbackSettings<'_>,
    inbound: &Inbound,
    kf_account: Option<&str>,
    now: u64,
    random: &[u8; 16],
) -> Result<(Action, String), Error> {
    if !inbound.message.is_user_message() {
        return Ok((Action::Acknowledge, SUCCESS.to_string()));
    }
    let xml = TransferCustomerServiceReply::to(&inbound.message, now, kf_account).render();
    if !inbound.encrypted {
        return Ok((Action::Transfer, xml));
    }
    let crypto = s.crypto.ok_or(Error::Config("WECHAT_ENCODING_AES_KEY"))?;
    let encrypt = crypto.encrypt(&xml, random);
    let ts = now.to_string();
    let msg_signature = signature::sign(&[s.token, &ts, &inbound.nonce, &encrypt]);
    let envelope = EncryptedReply { encrypt, msg_signature, timestamp: now, nonce: inbound.nonce.clone() };
    Ok((Action::Transfer, envelope.render()))
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

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a byte; invalid escapes
/// are kept as written and invalid UTF-8 is replaced, so decoding never fails.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        match byte {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
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
        assert_eq!(percent_decode("%E4%B8%AD%zz%"), "中%zz%");
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
