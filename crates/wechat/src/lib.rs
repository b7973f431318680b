//! The WeChat Official Account (微信公众号) callback protocol, pure: no runtime, no clock, no I/O.
//! Everything WeChat pushes to the server URL and everything answered to it.
//!
//! - [`signature`]: `check_signature` and `msg_signature`, SHA-1 compared in constant time.
//! - [`crypto`]: safe mode (消息加解密), AES-256-CBC with the EncodingAESKey ([`WeChatCrypto`]).
//! - [`xml`]: the strict reader of WeChat's flat `<xml>` documents (no DTD, bounded depth and size).
//! - [`message`]: typed messages and events ([`parse_message`]).
//! - [`reply`]: passive replies (the transfer, a text) and the safe-mode envelope.
//! - [`callback`]: verify, decrypt and parse a push; render and seal its reply.

// Tests may index and slice freely; the product code may not (see [lints] in Cargo.toml).
#![cfg_attr(test, allow(clippy::string_slice))]

pub mod callback;
pub mod crypto;
mod error;
pub mod message;
pub mod reply;
pub mod signature;
pub mod xml;

pub use crypto::WeChatCrypto;
pub use error::Error;
pub use message::{parse_message, Event, Message, MessageKind};

#[cfg(feature = "testkit")]
pub mod testkit;
