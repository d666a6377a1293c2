//! sessiond's integration tests: one binary (links are slow on two cores),
//! one module per concern. Every test talks to a real server over gRPC, and
//! the Redis ones to a redis-server of their own.

mod bench;
mod cluster;
mod concurrency;
mod conformance;
mod docs;
mod durability;
mod expiry;
mod faults;
mod hardening;
mod hostile;
mod instances;
mod lifecycle;
mod observability;
mod quotas;
mod redis_durability;
mod redis_library;
mod redis_locks;
mod reflection;
mod sentinel;
pub mod support;
mod tls;
mod tokens;
mod traces;
mod watch;
