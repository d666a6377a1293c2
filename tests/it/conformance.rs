//! The conformance suite: every RPC, status and reason of the contract,
//! through the real gRPC server, run unchanged against both backends
//! (`on_both_backends!` gives each test an `embedded::` and a `redis::` run).
//! One module per concern; the requests and error readers they share are in
//! `support`.

mod auth;
mod idempotency;
mod limits;
mod listing;
mod locks;
mod operate;
mod ops;
mod ops_parity;
mod purging;
mod reads;
mod stats;
mod writes;
