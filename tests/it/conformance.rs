//! The conformance suite: every RPC, status and reason of the contract,
//! through the real gRPC server, run unchanged against every backend
//! (`on_every_backend!` gives each test an `embedded::`, a `redis::`, a
//! `sentinel::` and a `cluster::` run).
//! One module per concern; the requests and error readers they share are in
//! `support`.

mod auth;
mod idempotency;
mod limits;
mod listing;
mod lock_keys;
mod locks;
mod operate;
mod ops;
mod ops_parity;
mod purging;
mod rates;
mod reads;
mod stats;
mod turns;
mod writes;
