//! The inbound protocol, pure: no runtime, no clock, no I/O. Everything WeChat pushes to the
//! callback URL and everything answered to it.

pub mod callback;
pub mod crypto;
pub mod message;
pub mod reply;
pub mod signature;
pub mod xml;
