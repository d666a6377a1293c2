//! sessiond: per-user session state for chat bots over gRPC, shared by any
//! number of bot instances: isolated, consistent, durable and fast.
//!
//! Map of the crate (ARCHITECTURE.md has the longer tour):
//! - [`config`]: the one `Config` (clap; every flag also `SESSIOND_*`).
//! - [`server`]: `run(config, listener, shutdown)`, middleware, health,
//!   reflection, drain. `main.rs` and the tests call the same `run`.
//! - `conn`: accepted connections, shaped for h2's write batching.
//! - [`service`] / [`admin`]: the gRPC services, thin translations.
//! - [`auth`]: bearer tokens and the namespaces they grant.
//! - [`session`]: sessions, mutations, limits and validation; no I/O.
//! - [`cache`]: the read-through cache (sharded, bounded by bytes and age)
//!   and its version floors.
//! - [`store`]: the storage abstraction and its backends, `embedded` (redb)
//!   and `redis` (Lua scripts).
//! - [`error`]: the error enum and its one mapping to gRPC statuses.
//! - [`stats`]: lock-free counters and histograms behind GetStats.
//! - [`metrics`]: the same figures for Prometheus, on `/metrics`.
//! - [`watch`]: WatchSession's events, followers and watchers.
//! - [`telemetry`]: logging and tracing set-up (OTLP export, W3C trace context).

#![forbid(unsafe_code)]
// Nothing on a request path panics: no unwrap, expect, panic, unreachable or
// unchecked indexing outside tests; a local `allow` names its reason.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::unreachable,
        clippy::indexing_slicing
    )
)]

pub mod admin;
pub mod auth;
pub mod cache;
pub mod config;
pub(crate) mod conn;
pub mod error;
pub mod metrics;
pub mod pb;
pub mod server;
pub mod service;
pub mod session;
pub mod sessions;
pub mod shares;
pub mod state;
pub mod stats;
pub mod status;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod watch;

pub use config::Config;
pub use config::Settings;
pub use server::{StartError, run, serve};
