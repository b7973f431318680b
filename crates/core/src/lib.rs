//! The core of wechat-kf-worker: policy and state over small runtime traits, no Workers code.
//!
//! Layers, each module using only those above it in this list:
//! - [`error`], [`http`], [`notes`]: the one error type and its HTTP mapping, the outbound call
//!   model, the log line's notes.
//! - [`runtime`]: the store, clock, upstream and database traits the stateful parts are written
//!   against.
//! - [`flight`], [`document`], [`config`], [`stats`], [`database`]: single flight, JSON request
//!   bodies, configuration, the fold of the ledger into hourly figures, every SQL statement of the
//!   core.
//! - [`api`]: the outbound WeChat API (answers, token policy and cache, calls, admin planning,
//!   uploads, customer-service routing).
//! - [`desk`]: the front desk (rules, hours, the decision, effects after the reply).
//! - [`push`], [`first_responses`]: the one push pipeline; the cron's import of agents' first
//!   responses from WeChat's message records.
//! - [`ledger`], [`report`]: a user's timeline for the admin API (validated queries, signed
//!   cursors); the service-level report (validated queries, buckets, JSON and CSV).
//! - [`app`]: routes, the admin API, the log line and the cron: the worker as a function.
//! - `testkit` (feature `testkit`): the in-memory runtime and shared test data.

// Tests may index and slice freely; the product code may not (see [lints] in Cargo.toml).
#![cfg_attr(test, allow(clippy::string_slice))]

pub mod accounts;
pub mod api;
pub mod app;
pub mod config;
pub mod database;
pub mod desk;
pub mod document;
pub mod error;
pub mod first_responses;
pub mod flight;
pub mod http;
pub mod ledger;
pub mod notes;
pub mod operators;
pub mod push;
pub mod report;
pub mod runtime;
pub mod seal;
pub mod stats;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use error::Error;
