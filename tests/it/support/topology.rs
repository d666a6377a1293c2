//! Redis topologies started by the tests, on free ports: one master with
//! two replicas watched by three sentinels ([`Sentinels`]), and a Redis
//! Cluster of three masters with a replica each ([`Cluster`]). `shared_*` gives
//! the one a test binary shares between its tests (each test uses a key
//! prefix of its own), started on first use and stopped when the binary
//! exits (a reaper process watches the binary's pid).

use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::{Redis, free_port};

/// The name the sentinels monitor the master under.
pub const MASTER_NAME: &str = "sessiond";

/// `redis-cli -p port args...`, its output trimmed.
pub fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli must be installed (run .ci/install)");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Waits up to `within` for `ok`, checking every 50 ms.
pub fn wait_for(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A key prefix no other test of this binary uses.
pub fn unique_prefix() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("t{}", N.fetch_add(1, Relaxed))
}

/// One master, two replicas, three sentinels (quorum 2).
pub struct Sentinels {
    /// The data nodes; `nodes[0]` is the first master.
    pub nodes: Vec<Redis>,
    sentinels: Vec<SentinelProcess>,
}

struct SentinelProcess {
    port: u16,
    child: Child,
    _dir: TempDir,
}

impl Drop for SentinelProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sentinels {
    /// Starts the topology; a master not answering for `down_after` is
    /// failed over. Returns once the replicas are in sync and every
    /// sentinel knows the other two and both replicas.
    pub fn start(down_after: Duration) -> Sentinels {
        let master = Redis::start_with(&["--repl-diskless-sync-delay", "0"]);
        let replicaof = ["--replicaof", "127.0.0.1", &master.port.to_string()];
        let replicas = [Redis::start_with(&replicaof), Redis::start_with(&replicaof)];
        let mut nodes = vec![master];
        nodes.extend(replicas);
        let sentinels: Vec<SentinelProcess> = (0..3)
            .map(|_| sentinel(nodes[0].port, down_after))
            .collect();
        let set = Sentinels { nodes, sentinels };
        let master = set.nodes[0].port;
        wait_for("the replicas in sync", Duration::from_secs(20), || {
            let info = cli(master, &["INFO", "replication"]);
            info.matches("state=online").count() == 2
        });
        for s in &set.sentinels {
            wait_for(
                "the sentinels know each other",
                Duration::from_secs(30),
                || {
                    let known = |what: &str| {
                        cli(s.port, &["SENTINEL", what, MASTER_NAME])
                            .lines()
                            .filter(|l| *l == "name")
                            .count()
                    };
                    known("sentinels") == 2 && known("replicas") == 2
                },
            );
        }
        set
    }

    /// `--redis-sentinel ... --redis-sentinel-master ...`.
    pub fn args(&self) -> Vec<String> {
        vec![
            "--redis-sentinel".into(),
            self.addrs(),
            "--redis-sentinel-master".into(),
            MASTER_NAME.into(),
        ]
    }

    /// The sentinels' addresses, comma-separated.
    pub fn addrs(&self) -> String {
        let a: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        a.join(",")
    }

    /// The master's port, as the first sentinel that answers says.
    pub fn master_port(&self) -> Option<u16> {
        self.sentinels.iter().find_map(|s| {
            let out = cli(
                s.port,
                &["SENTINEL", "get-master-addr-by-name", MASTER_NAME],
            );
            out.lines().nth(1)?.trim().parse().ok()
        })
    }

    /// SIGKILLs the current master; returns its port.
    pub fn kill_master(&mut self) -> u16 {
        let port = self.master_port().expect("a master");
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("the master is one of ours");
        node.stop();
        port
    }

    fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self.nodes.iter().filter_map(Redis::pid).collect();
        pids.extend(self.sentinels.iter().map(|s| s.child.id()));
        pids
    }
}

fn sentinel(master: u16, down_after: Duration) -> SentinelProcess {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let conf = dir.path().join("sentinel.conf");
    let ms = down_after.as_millis();
    std::fs::write(
        &conf,
        format!(
            "port {port}\nbind 127.0.0.1\ndir {}\n\
             sentinel monitor {MASTER_NAME} 127.0.0.1 {master} 2\n\
             sentinel down-after-milliseconds {MASTER_NAME} {ms}\n\
             sentinel failover-timeout {MASTER_NAME} {}\n\
             sentinel parallel-syncs {MASTER_NAME} 2\n",
            dir.path().display(),
            (ms * 4).max(2000),
        ),
    )
    .unwrap();
    let child = Command::new("redis-server")
        .arg(&conf)
        .arg("--sentinel")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server must be installed (run .ci/install)");
    wait_for("a sentinel to listen", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    SentinelProcess {
        port,
        child,
        _dir: dir,
    }
}

/// Kills `pids` once this test binary has exited: statics are never
/// dropped, so the shared topologies need someone to stop them.
#[allow(clippy::zombie_processes)] // reason: the reaper outlives this binary on purpose; init reaps it
fn reap_on_exit(pids: &[u32]) {
    let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
    let script = format!(
        "while kill -0 {} 2>/dev/null; do sleep 1; done; kill -9 {} 2>/dev/null",
        std::process::id(),
        pids.join(" ")
    );
    let _reaper = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sh");
}

/// The sentinel topology this test binary shares (started on first use;
/// failover only after 10 s of silence, so that a loaded machine does not
/// fail it over under the tests that share it).
pub fn shared_sentinels() -> &'static Sentinels {
    static SHARED: OnceLock<Sentinels> = OnceLock::new();
    SHARED.get_or_init(|| {
        let s = Sentinels::start(Duration::from_secs(10));
        reap_on_exit(&s.pids());
        s
    })
}

/// A Redis Cluster: three masters, a replica each (`redis-cli --cluster
/// create ... --cluster-replicas 1`).
pub struct Cluster {
    pub nodes: Vec<Redis>,
}

/// A free port whose cluster bus port (+10000) is free too.
pub fn free_cluster_port() -> u16 {
    loop {
        let p = free_port();
        if p < 55_000 && std::net::TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok() {
            return p;
        }
    }
}

impl Cluster {
    /// Starts six nodes and makes them a cluster; a master silent for
    /// `node_timeout` is failed over. Returns once every node sees the
    /// cluster as ok.
    pub fn start(node_timeout: Duration) -> Cluster {
        let ms = node_timeout.as_millis().to_string();
        let args = [
            "--cluster-enabled",
            "yes",
            "--cluster-node-timeout",
            ms.as_str(),
            "--cluster-replica-validity-factor",
            "0",
            // A replica (re)joining syncs at once, not after the default
            // 5 s wait for more replicas.
            "--repl-diskless-sync-delay",
            "0",
        ];
        let nodes: Vec<Redis> = (0..6)
            .map(|_| Redis::start_on(free_cluster_port(), &args))
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = Cluster { nodes };
        for n in &cluster.nodes {
            wait_for("the cluster ok", Duration::from_secs(30), || {
                let info = cli(n.port, &["CLUSTER", "INFO"]);
                info.contains("cluster_state:ok") && info.contains("cluster_known_nodes:6")
            });
        }
        for (port, _) in cluster.masters() {
            wait_for("the replicas in sync", Duration::from_secs(30), || {
                cli(port, &["INFO", "replication"]).contains("state=online")
            });
        }
        cluster
    }

    /// `--redis-cluster` and the nodes' addresses.
    pub fn args(&self) -> Vec<String> {
        let addrs: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        vec!["--redis-cluster".into(), addrs.join(",")]
    }

    /// A node that answers.
    pub fn any_port(&self) -> u16 {
        self.nodes
            .iter()
            .filter(|n| n.pid().is_some())
            .map(|n| n.port)
            .find(|p| cli(*p, &["PING"]) == "PONG")
            .expect("a live node")
    }

    /// The port of the master that owns `slot`, and its node id.
    pub fn owner(&self, slot: u16) -> (u16, String) {
        self.owner_now(slot)
            .unwrap_or_else(|| panic!("no live master owns slot {slot}"))
    }

    /// The live master that owns `slot`, if one does now.
    pub fn owner_now(&self, slot: u16) -> Option<(u16, String)> {
        let nodes = cli(self.any_port(), &["CLUSTER", "NODES"]);
        for line in nodes.lines() {
            let parts: Vec<&str> = line.split_whitespace().collect();
            if parts.len() < 9 || !parts[2].contains("master") || parts[2].contains("fail") {
                continue;
            }
            let port: u16 = parts[1]
                .split(['@', ':'])
                .nth(1)
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            for range in &parts[8..] {
                let (a, b) = range.split_once('-').unwrap_or((range, range));
                if let (Ok(a), Ok(b)) = (a.parse::<u16>(), b.parse::<u16>())
                    && (a..=b).contains(&slot)
                {
                    return Some((port, parts[0].to_owned()));
                }
            }
        }
        None
    }

    /// The master ports and node ids.
    pub fn masters(&self) -> Vec<(u16, String)> {
        let nodes = cli(self.any_port(), &["CLUSTER", "NODES"]);
        nodes
            .lines()
            .filter_map(|line| {
                let parts: Vec<&str> = line.split_whitespace().collect();
                if parts.len() < 9 || !parts[2].contains("master") || parts[2].contains("fail") {
                    return None;
                }
                let port = parts[1].split(['@', ':']).nth(1)?.parse().ok()?;
                Some((port, parts[0].to_owned()))
            })
            .collect()
    }

    fn pids(&self) -> Vec<u32> {
        self.nodes.iter().filter_map(Redis::pid).collect()
    }
}

/// The cluster this test binary shares (started on first use).
pub fn shared_cluster() -> &'static Cluster {
    static SHARED: OnceLock<Cluster> = OnceLock::new();
    SHARED.get_or_init(|| {
        let c = Cluster::start(Duration::from_secs(5));
        reap_on_exit(&c.pids());
        c
    })
}
