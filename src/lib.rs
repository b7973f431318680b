//! wechat-kf-worker: a WeChat Official Account callback that hands users to customer service,
//! and an admin API for customer-service messages and accounts.
//!
//! Every module but `glue` is pure protocol code (no `worker::` types, no clock, no I/O) and is
//! tested natively; `glue` is the thin Cloudflare Workers layer, compiled for wasm32 only.

// Tests may index and slice freely; the product code may not (see [lints] in Cargo.toml).
#![cfg_attr(test, allow(clippy::string_slice))]

pub mod admin;
pub mod callback;
pub mod config;
pub mod crypto;
pub mod error;
pub mod kf;
pub mod message;
pub mod reply;
pub mod signature;
pub mod token;
pub mod xml;

#[cfg(target_arch = "wasm32")]
mod glue;

pub use error::Error;
