//! Test support: real sessiond servers on ephemeral ports, real redis-server
//! processes on free ports, clients, and helpers to read error details.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use sessiond::Config;
use sessiond::pb::admin_service_client::AdminServiceClient;
use sessiond::pb::session_service_client::SessionServiceClient;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tonic::transport::Channel;
use tonic_types::StatusExt;

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

/// A redis-server of this test's own, killed on drop.
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
    dir: TempDir,
}

impl Redis {
    pub fn start() -> Redis {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Redis {
            port: free_port(),
            child: None,
            dir,
        };
        r.restart();
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts (again) on the same port.
    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (run .ci/install)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A sessiond served in-process by `sessiond::run`, stopped on drop.
pub struct Server {
    pub addr: SocketAddr,
    pub redis: Option<Redis>,
    _dir: TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), sessiond::StartError>>>,
}

/// The settings every test server starts from: short leases allowed, a
/// small idle TTL only where a test asks for it.
pub fn test_config(extra: &[&str]) -> Config {
    let mut args = vec!["sessiond", "--lease-min", "20ms", "--log-level", "warn"];
    args.extend_from_slice(extra);
    let c = Config::parse_from(args);
    c.validate().expect("valid test config");
    c
}

impl Server {
    pub async fn start(backend: Backend, extra: &[&str]) -> Server {
        let redis = (backend == Backend::Redis).then(Redis::start);
        Server::start_with(redis, extra).await
    }

    /// Starts on `redis` (if any; else on the embedded store).
    pub async fn start_with(redis: Option<Redis>, extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(extra);
        config.db_path = dir.path().join("sessiond.redb");
        if let Some(r) = &redis {
            config.redis_url = Some(r.url());
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(sessiond::run(config, listener, async {
            let _ = stopped.await;
        }));
        Server {
            addr,
            redis,
            _dir: dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub async fn client(&self) -> SessionServiceClient<Channel> {
        SessionServiceClient::new(self.channel().await)
    }

    pub async fn admin(&self) -> AdminServiceClient<Channel> {
        AdminServiceClient::new(self.channel().await)
    }

    /// GetStats of this server.
    pub async fn stats(&self) -> sessiond::pb::GetStatsResponse {
        let mut admin = self.admin().await;
        admin
            .get_stats(sessiond::pb::GetStatsRequest {})
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn channel(&self) -> Channel {
        connect(self.addr).await
    }

    /// Begins the drain and waits for `run` to return.
    pub async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// A channel to `addr`, retrying while the server comes up.
pub async fn connect(addr: SocketAddr) -> Channel {
    let endpoint = Channel::from_shared(format!("http://{addr}")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match endpoint.connect().await {
            Ok(c) => return c,
            Err(e) if Instant::now() > deadline => panic!("cannot connect to {addr}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// The status code and ErrorInfo reason of a failed call.
pub fn reason<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> (tonic::Code, String) {
    let status = r.expect_err("the call should have failed");
    let info = status
        .get_details_error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    assert_eq!(info.domain, "sessiond");
    (status.code(), info.reason)
}

/// Code, reason and ErrorInfo metadata of a failed call.
pub fn details<T: std::fmt::Debug>(
    r: Result<T, tonic::Status>,
) -> (
    tonic::Code,
    String,
    std::collections::HashMap<String, String>,
) {
    let status = r.expect_err("the call should have failed");
    let info = status
        .get_details_error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    (status.code(), info.reason, info.metadata)
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
