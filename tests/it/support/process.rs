//! The built `sessiond` binary in a process of its own, for the tests that
//! kill it (durability) or run several against one redis-server (instances).

use std::net::SocketAddr;
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};

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
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sessiond"));
        cmd.args(["--log-level", "warn"]).args(args);
        Process::spawn(port, cmd)
    }

    /// Starts `cmd` (the binary, with the caller's own flags, environment
    /// and stderr) listening on `port`.
    pub fn spawn(port: u16, mut cmd: Command) -> Process {
        let listen = format!("127.0.0.1:{port}");
        let child = cmd
            .args(["--listen", &listen])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        Process {
            addr: listen.parse().unwrap(),
            child,
        }
    }

    /// The binary under test, for [`Process::spawn`].
    pub fn command() -> Command {
        Command::new(env!("CARGO_BIN_EXE_sessiond"))
    }

    /// Its stderr, if `spawn` was given a piped one.
    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.child.stderr.take()
    }

    /// SIGTERM, and wait until it has drained and exited.
    pub fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success(), "kill -TERM {pid} failed");
        self.child.wait().unwrap()
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
