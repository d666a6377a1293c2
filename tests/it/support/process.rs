//! The built `sessiond` binary in a process of its own, for the tests that
//! kill it (durability) or run several against one redis-server (instances).

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use sessiond::pb::GetStatsResponse;

use super::{Client, client, stats};

/// A sessiond process listening on 127.0.0.1, killed (SIGKILL) on drop.
pub struct Process {
    pub addr: SocketAddr,
    child: Child,
}

impl Process {
    /// Starts the binary on `port` with `args` besides `--listen` and
    /// `--log-level warn`. It may not accept calls yet: [`client`] waits.
    pub fn start(port: u16, args: &[&str]) -> Process {
        let listen = format!("127.0.0.1:{port}");
        let child = Command::new(env!("CARGO_BIN_EXE_sessiond"))
            .args(["--listen", &listen, "--log-level", "warn"])
            .args(args)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        Process {
            addr: listen.parse().unwrap(),
            child,
        }
    }

    pub async fn client(&self) -> Client {
        client(self.addr).await
    }

    pub async fn stats(&self) -> GetStatsResponse {
        stats(self.addr).await
    }

    /// SIGKILL, and reap: no chance to flush anything.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}
