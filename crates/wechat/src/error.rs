//! What can go wrong between WeChat and the callback URL.
//!
//! Every variant is the caller's fault (a malformed, unsigned or stale push) except
//! [`Error::NoAesKey`], which is the account's configuration. The `&'static str` reasons are for
//! logs; what a caller is told is the layer above's choice.

use std::fmt;

/// Why a push or URL check was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A required query parameter is absent or empty (`signature`, `timestamp`, `nonce`, ...).
    MissingParameter(&'static str),
    /// A query parameter is present but malformed (a `timestamp` that is not digits, a `nonce`
    /// that is not letters and digits, ...).
    InvalidParameter(&'static str),
    /// `signature` or `msg_signature` does not match: the request is not from WeChat.
    InvalidSignature,
    /// The `timestamp` is outside the accepted window.
    StaleTimestamp,
    /// The body is larger than [`crate::callback::MAX_BODY_BYTES`].
    PayloadTooLarge,
    /// The body is not the XML WeChat sends: not UTF-8, not well formed, a DTD, too deep, ...
    MalformedXml(&'static str),
    /// A field every message carries is absent (`MsgType`, `FromUserName`, ...).
    MissingField(&'static str),
    /// A field is present but its value is not valid (a `CreateTime` that overflows, ...).
    InvalidField(&'static str),
    /// A safe-mode message could not be decrypted or belongs to another AppID. Deliberately one
    /// variant: the reason is for logs only.
    DecryptFailed(&'static str),
    /// A push signed with the account's Token came encrypted, but the account has no
    /// EncodingAESKey: the account's configuration is at fault, not the caller.
    NoAesKey,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::MissingParameter(name) => write!(f, "missing query parameter {name}"),
            Error::InvalidParameter(name) => write!(f, "invalid query parameter {name}"),
            Error::InvalidSignature => f.write_str("signature does not match"),
            Error::StaleTimestamp => f.write_str("timestamp outside the accepted window"),
            Error::PayloadTooLarge => f.write_str("body too large"),
            Error::MalformedXml(reason) => write!(f, "malformed XML: {reason}"),
            Error::MissingField(name) => write!(f, "missing field {name}"),
            Error::InvalidField(name) => write!(f, "invalid field {name}"),
            Error::DecryptFailed(reason) => write!(f, "decryption failed: {reason}"),
            Error::NoAesKey => f.write_str("an encrypted push but no EncodingAESKey"),
        }
    }
}

impl std::error::Error for Error {}
