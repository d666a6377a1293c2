//! Test support: real sessiond servers on ephemeral ports (in-process, or
//! the built binary in a process of its own), real redis-server processes on
//! free ports, and the client calls every test file makes, written once.

mod history;
mod process;
mod redis_server;
mod rpc;
mod server;
pub mod topology;

use std::net::TcpListener as StdListener;

pub use history::{History, Turn, final_state};
pub use process::Process;
pub use redis_server::Redis;
pub use rpc::*;
pub use server::{Server, test_config};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    /// A redis-server of the test's own.
    Redis,
    /// The binary's shared master, replicas and sentinels
    /// (`topology::shared_sentinels`), under a key prefix of the test's own.
    Sentinel,
    /// The binary's shared Redis Cluster (`topology::shared_cluster`),
    /// under a key prefix of the test's own.
    Cluster,
}

/// A free TCP port on 127.0.0.1 (bound once, then released).
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `f` for each backend: embedded and standalone Redis.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $crate::on_backends!(embedded: Embedded, redis: Redis; $($name),*);
    };
}

/// Runs `f` on every backend and topology, as the conformance suite does:
/// embedded, standalone Redis, Redis behind Sentinel, and Redis Cluster.
#[macro_export]
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        $crate::on_backends!(
            embedded: Embedded, redis: Redis, sentinel: Sentinel, cluster: Cluster;
            $($name),*
        );
    };
}

/// One module per backend, one test per function in each.
#[macro_export]
macro_rules! on_backends {
    ($module:ident: $backend:ident $(, $more:ident: $more_backend:ident)*; $($name:ident),*) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Backend::$backend).await
                }
            )*
        }
        $crate::on_backends!($($more: $more_backend),*; $($name),*);
    };
    (; $($name:ident),*) => {};
}
