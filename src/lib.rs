//! wechat-kf-worker: a WeChat Official Account callback that hands users to customer service,
//! and an admin API for customer-service messages and accounts.
//!
//! - [`wechat`]: the inbound protocol, pure (signatures, safe mode, XML, messages, replies).
//! - [`api`]: the outbound WeChat API: call model, answers, token policy and cache, admin API
//!   planning, customer-service routing.
//! - [`desk`]: the front desk's rules before the transfer (pure decision, cached rules).
//! - [`app`]: the worker as a function from request to response.
//! - [`runtime`]: the store, clock and upstream traits the stateful parts are written against.
//! - `glue` (wasm32 only): the only code that names `worker::`; it implements the traits over
//!   KV, timers and `fetch`, and moves bytes.
//! - `testkit` (native only): shared test data and the in-memory runtime.

// Tests may index and slice freely; the product code may not (see [lints] in Cargo.toml).
#![cfg_attr(test, allow(clippy::string_slice))]

pub mod api;
pub mod app;
pub mod config;
pub mod desk;
pub mod error;
pub mod json;
pub mod runtime;
pub mod text;
pub mod wechat;

#[cfg(not(target_arch = "wasm32"))]
pub mod testkit;

#[cfg(target_arch = "wasm32")]
mod glue;

pub use error::Error;
