//! Test support: real sessiond servers on ephemeral ports (in-process, or
//! the built binary in a process of its own), real redis-server processes on
//! free ports, and the client calls every test file makes, written once.

mod history;
mod process;
mod redis_server;
mod rpc;
mod server;

use std::net::TcpListener as StdListener;

pub use history::{History, Turn, final_state};
pub use process::Process;
pub use redis_server::Redis;
pub use rpc::*;
pub use server::{Server, test_config};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Redis,
}

/// A free TCP port on 127.0.0.1 (bound once, then released).
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `f` for each backend, as the conformance suite does.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() { super::$name($crate::support::Backend::Embedded).await }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() { super::$name($crate::support::Backend::Redis).await }
            )*
        }
    };
}
