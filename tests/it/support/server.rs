//! sessiond served in-process by `sessiond::run`, as most tests want it.

use std::net::SocketAddr;

use clap::Parser;
use sessiond::Config;
use sessiond::pb::admin_service_client::AdminServiceClient;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tonic::transport::Channel;

use super::topology::{shared_cluster, shared_sentinels, unique_prefix};
use super::{Backend, Client, Redis, client, connect, stats};

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
        match backend {
            Backend::Embedded => Server::start_with(None, extra).await,
            Backend::Redis => Server::start_with(Some(Redis::start()), extra).await,
            Backend::Sentinel | Backend::Cluster => {
                let mut args = tokio::task::spawn_blocking(move || match backend {
                    Backend::Cluster => shared_cluster().args(),
                    _ => shared_sentinels().args(),
                })
                .await
                .unwrap();
                args.extend(["--redis-key-prefix".into(), unique_prefix()]);
                let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
                all.extend_from_slice(extra);
                Server::start_on(None, &all, true).await
            }
        }
    }

    /// Starts on `redis` (if any; else on the embedded store).
    pub async fn start_with(redis: Option<Redis>, extra: &[&str]) -> Server {
        let shared = redis.is_some();
        Server::start_on(redis, extra, shared).await
    }

    /// Starts with `extra` settings on `redis` if there is one; `shared`:
    /// the settings name a shared store, whose feed must be up first.
    async fn start_on(redis: Option<Redis>, extra: &[&str], shared: bool) -> Server {
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
        let server = Server {
            addr,
            redis,
            _dir: dir,
            stop: Some(stop),
            task: Some(task),
        };
        if shared {
            server.wait_for_feed().await;
        }
        server
    }

    /// Waits until the invalidation feed is up, so that CACHED reads may use
    /// the cache (a server on Redis trusts it only from then on).
    pub async fn wait_for_feed(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !self.stats().await.cache.is_some_and(|c| c.feed_healthy) {
            assert!(
                std::time::Instant::now() < deadline,
                "the invalidation feed never came up"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    pub async fn client(&self) -> Client {
        client(self.addr).await
    }

    pub async fn admin(&self) -> AdminServiceClient<Channel> {
        AdminServiceClient::new(self.channel().await)
    }

    /// GetStats of this server.
    pub async fn stats(&self) -> sessiond::pb::GetStatsResponse {
        stats(self.addr).await
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
