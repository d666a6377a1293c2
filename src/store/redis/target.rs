//! Where the Redis master is: one server at a fixed URL, the master the
//! sentinels of `--redis-sentinel` name, or the nodes of a Redis Cluster
//! (`--redis-cluster`: the shared connections are cluster connections, and
//! the feed subscribes on one node after another, see `feed`).
//!
//! With Sentinel, a connection is opened to the master the first sentinel
//! that answers names (`SENTINEL get-master-addr-by-name`), and only once
//! that server says it is a master (`ROLE`): a demoted master, or a replica
//! named during a failover, is refused until the sentinels agree on the new
//! one. [`watch`] asks the sentinels every `POLL`; when the master they name
//! changes (a failover, `+switch-master`), it bumps the switch count: the
//! shared connections are closed (the next call opens one to the new
//! master), and the feed, which listens for the count, resubscribes there,
//! which goes through `FeedEvent::Down` and `Up`: the cache is dropped
//! across the switch. A master killed outright is noticed sooner, by its
//! connections failing; a master demoted but alive answers writes with
//! READONLY, which closes the connection too (see `conns`).

use std::sync::Weak;
use std::time::Duration;

use parking_lot::Mutex;
use redis::aio::MultiplexedConnection;
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::{AsyncConnectionConfig, ConnectionAddr, ConnectionInfo, IntoConnectionInfo};
use tokio::sync::watch;

use super::Inner;
use super::fault::Fault;
use crate::config::RedisSettings;

/// How often the sentinels are asked which server is the master.
const POLL: Duration = Duration::from_millis(500);

pub(super) enum Target {
    Fixed(Box<redis::Client>),
    Sentinel(Box<Sentinel>),
    Cluster(Nodes),
}

/// The cluster nodes sessiond was given, taken in turn by the feed.
pub(super) struct Nodes {
    nodes: Vec<ConnectionInfo>,
    next: std::sync::atomic::AtomicUsize,
}

pub(super) struct Sentinel {
    /// The sentinels, tried in order.
    sentinels: Vec<ConnectionInfo>,
    /// The name they monitor the master under.
    name: String,
    /// How to reach a data node besides its address (password, TLS): the
    /// first sentinel's settings with `--redis-password`.
    node: ConnectionInfo,
    /// The master's address as last found.
    master: Mutex<Option<(String, u16)>>,
    /// How many times the master changed.
    switches: watch::Sender<u64>,
    /// One connection to a sentinel, kept for the polls (with its index).
    asking: tokio::sync::Mutex<Option<(usize, MultiplexedConnection)>>,
    config: AsyncConnectionConfig,
}

impl Target {
    /// A target at `url`.
    pub(super) fn fixed(info: ConnectionInfo) -> Result<Target, String> {
        redis::Client::open(info)
            .map(|c| Target::Fixed(Box::new(c)))
            .map_err(|e| format!("bad Redis settings: {e}"))
    }

    /// The master the `sentinels` (URLs) monitor as `name`; data nodes are
    /// reached with `config`'s user and password and the first sentinel's
    /// TLS setting.
    pub(super) fn sentinel(
        sentinels: &[String],
        name: &str,
        config: &RedisSettings,
    ) -> Result<Target, String> {
        let timeout = config.timeout;
        let sentinels = sentinels
            .iter()
            .map(|s| {
                s.as_str()
                    .into_connection_info()
                    .map_err(|e| format!("bad sentinel address `{s}`: {e}"))
            })
            .collect::<Result<Vec<_>, String>>()?;
        let Some(first) = sentinels.first() else {
            return Err("no sentinel address given".into());
        };
        let node = log_in(
            first
                .clone()
                .set_redis_settings(redis::RedisConnectionInfo::default()),
            config,
        );
        Ok(Target::Sentinel(Box::new(Sentinel {
            sentinels,
            name: name.to_owned(),
            node,
            master: Mutex::new(None),
            switches: watch::Sender::new(0),
            asking: tokio::sync::Mutex::new(None),
            config: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout)),
        })))
    }

    /// The cluster at `nodes` (URLs), reached with `config`'s user and
    /// password; and the client the shared connections are opened with.
    pub(super) fn cluster(
        nodes: &[String],
        config: &RedisSettings,
        response_timeout: Duration,
    ) -> Result<(Target, ClusterClient), String> {
        let timeout = config.timeout;
        let mut infos = Vec::with_capacity(nodes.len());
        for n in nodes {
            let info = n
                .as_str()
                .into_connection_info()
                .map_err(|e| format!("bad cluster node address `{n}`: {e}"))?;
            infos.push(log_in(info, config));
        }
        // No resending by the library: a call whose connection broke may
        // have run (see `Conns::run`, which sends again only what Redis
        // refused without running).
        let client = ClusterClientBuilder::new(infos.clone())
            .retries(0)
            .connection_timeout(timeout)
            .response_timeout(response_timeout)
            .build()
            .map_err(|e| format!("bad Redis Cluster settings: {e}"))?;
        let nodes = Nodes {
            nodes: infos,
            next: Default::default(),
        };
        Ok((Target::Cluster(nodes), client))
    }

    /// A client for the current master, or for the next cluster node (the
    /// feed subscribes with it).
    pub(super) async fn client(&self) -> Result<redis::Client, Fault> {
        match self {
            Target::Fixed(client) => Ok(redis::Client::clone(client)),
            Target::Sentinel(s) => s.master_client().await.map(|(client, _)| client),
            Target::Cluster(n) => {
                let i = n.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(info) = n.nodes.get(i % n.nodes.len().max(1)) else {
                    return Err(Fault::NoMaster("no cluster node given".into()));
                };
                Ok(redis::Client::open(info.clone())?)
            }
        }
    }

    /// How to reach the cluster node at `host:port`: the settings of the
    /// first node given (password, TLS), speaking RESP3 (sharded pub/sub
    /// needs it, see `shards`). `None` unless on a cluster.
    pub(super) fn cluster_node(&self, host: &str, port: u16) -> Option<ConnectionInfo> {
        let Target::Cluster(n) = self else {
            return None;
        };
        let info = n.nodes.first()?.clone();
        let resp3 = info
            .redis_settings()
            .clone()
            .set_protocol(redis::ProtocolVersion::RESP3);
        Some(at(info, host, port).set_redis_settings(resp3))
    }

    /// Counts the master's changes (never changes for a fixed target).
    pub(super) fn switches(&self) -> watch::Receiver<u64> {
        match self {
            Target::Fixed(_) | Target::Cluster(_) => watch::Sender::new(0).subscribe(),
            Target::Sentinel(s) => s.switches.subscribe(),
        }
    }

    /// The sentinels, when there are.
    pub(super) fn as_sentinel(&self) -> Option<&Sentinel> {
        match self {
            Target::Fixed(_) | Target::Cluster(_) => None,
            Target::Sentinel(s) => Some(s),
        }
    }
}

impl Sentinel {
    /// A connection to the master the sentinels name, checked to be one.
    pub(super) async fn open(
        &self,
        config: &AsyncConnectionConfig,
    ) -> Result<MultiplexedConnection, Fault> {
        let (client, addr) = self.master_client().await?;
        let mut conn = client
            .get_multiplexed_async_connection_with_config(config)
            .await?;
        let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut conn).await?;
        match role.first() {
            Some(redis::Value::BulkString(r)) if r.as_slice() == b"master" => Ok(conn),
            _ => Err(Fault::NoMaster(format!(
                "{}:{} is not a master (yet): a failover is under way",
                addr.0, addr.1
            ))),
        }
    }

    /// A client for the master the sentinels name now, and its address.
    async fn master_client(&self) -> Result<(redis::Client, (String, u16)), Fault> {
        let addr = self.ask().await?;
        self.found(&addr);
        let client = redis::Client::open(at(self.node.clone(), &addr.0, addr.1))?;
        Ok((client, addr))
    }

    /// Records the master's address; a change is a switch.
    fn found(&self, addr: &(String, u16)) {
        let mut master = self.master.lock();
        if master.as_ref() == Some(addr) {
            return;
        }
        if let Some(old) = master.replace(addr.clone()) {
            tracing::warn!(
                from = %format!("{}:{}", old.0, old.1),
                to = %format!("{}:{}", addr.0, addr.1),
                master = %self.name,
                "Redis Sentinel switched the master"
            );
            self.switches.send_modify(|n| *n += 1);
        }
    }

    /// The master's address, from the first sentinel that knows it.
    async fn ask(&self) -> Result<(String, u16), Fault> {
        let mut asking = self.asking.lock().await;
        let start = asking.as_ref().map_or(0, |(i, _)| *i);
        let mut last = None;
        for k in 0..self.sentinels.len() {
            let i = (start + k) % self.sentinels.len();
            let conn = match asking.take() {
                Some((j, conn)) if j == i => conn,
                _ => {
                    let Some(info) = self.sentinels.get(i) else {
                        continue;
                    };
                    match self.connect(info).await {
                        Ok(conn) => conn,
                        Err(e) => {
                            last = Some(e);
                            continue;
                        }
                    }
                }
            };
            let mut c = conn.clone();
            let answer: redis::RedisResult<Option<(String, u16)>> = redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(&self.name)
                .query_async(&mut c)
                .await;
            match answer {
                Ok(Some(addr)) => {
                    *asking = Some((i, conn));
                    return Ok(addr);
                }
                Ok(None) => {
                    *asking = Some((i, conn));
                    last = Some(Fault::NoMaster(format!(
                        "the sentinel monitors no master named `{}`",
                        self.name
                    )));
                }
                Err(e) => last = Some(e.into()),
            }
        }
        Err(last.unwrap_or_else(|| Fault::NoMaster("no sentinel answered".into())))
    }

    async fn connect(&self, info: &ConnectionInfo) -> Result<MultiplexedConnection, Fault> {
        let client = redis::Client::open(info.clone())?;
        Ok(client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await?)
    }
}

/// `info` logging in as `config`'s user (`--redis-username`) with its
/// password, where given.
pub(super) fn log_in(info: ConnectionInfo, config: &RedisSettings) -> ConnectionInfo {
    let mut settings = info.redis_settings().clone();
    if let Some(user) = &config.username {
        settings = settings.set_username(user);
    }
    if let Some(password) = &config.password {
        settings = settings.set_password(password);
    }
    info.set_redis_settings(settings)
}

/// `info` with its address changed to `host:port`, over TLS when it was.
fn at(info: ConnectionInfo, host: &str, port: u16) -> ConnectionInfo {
    let addr = match info.addr() {
        ConnectionAddr::TcpTls {
            insecure,
            tls_params,
            ..
        } => ConnectionAddr::TcpTls {
            host: host.to_owned(),
            port,
            insecure: *insecure,
            tls_params: tls_params.clone(),
        },
        _ => ConnectionAddr::Tcp(host.to_owned(), port),
    };
    info.set_addr(addr)
}

/// Asks the sentinels every `POLL` which server is the master; on a switch,
/// closes the shared connections (the feed resubscribes by itself, told by
/// the switch count). Ends with the store.
pub(super) async fn watch(inner: Weak<Inner>) {
    let mut seen = match inner.upgrade() {
        Some(i) => *i.target.switches().borrow(),
        None => return,
    };
    loop {
        tokio::time::sleep(POLL).await;
        let Some(inner) = inner.upgrade() else { return };
        let Some(sentinel) = inner.target.as_sentinel() else {
            return;
        };
        match sentinel.ask().await {
            Ok(addr) => sentinel.found(&addr),
            Err(e) => tracing::debug!(error = %e, "no sentinel answered"),
        }
        let now = *sentinel.switches.borrow();
        if now != seen {
            seen = now;
            inner.conns.close_all();
        }
    }
}
