//! Redis durability made explicit: the settings sessiond reads and reports,
//! and `--redis-durability` on real redis-server processes (a master and a
//! replica of the test's own; a replica paused with SIGSTOP stops
//! acknowledging).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sessiond::pb::*;
use tempfile::TempDir;

use crate::support::scrape_metrics;
use crate::support::{Server, free_port, get, lock, reason, set};

/// A redis-server started with the test's own settings, killed on drop.
struct Node {
    port: u16,
    child: Option<Child>,
    _dir: TempDir,
}

impl Node {
    /// Starts with `settings`, each a redis.conf directive and its value.
    fn start(settings: &[(&str, &str)]) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(dir.path())
            .args(
                settings
                    .iter()
                    .flat_map(|(k, v)| [format!("--{k}"), v.to_string()]),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (run .ci/install)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        Node {
            port,
            child: Some(child),
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    async fn cmd<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> T {
        let client = redis::Client::open(self.url()).unwrap();
        let mut c = client.get_multiplexed_async_connection().await.unwrap();
        cmd.query_async(&mut c).await.unwrap()
    }

    async fn info(&self, field: &str) -> String {
        let info: String = self.cmd(redis::cmd("INFO").arg("replication")).await;
        info.lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .unwrap_or_default()
            .trim()
            .to_owned()
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        assert!(
            Command::new("kill")
                .args([sig, &pid])
                .status()
                .unwrap()
                .success()
        );
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // A paused process is killed all the same.
        self.stop();
    }
}

/// A master with AOF fsynced on every write, and one replica in sync.
async fn master_and_replica() -> (Node, Node) {
    let master = Node::start(&[("appendonly", "yes"), ("appendfsync", "always")]);
    let of = format!("127.0.0.1 {}", master.port);
    let replica = Node::start(&[("replicaof", &of)]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !master.info("slave0").await.contains("state=online")
        || replica.info("master_link_status").await != "up"
    {
        assert!(Instant::now() < deadline, "the replica never synced");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (master, replica)
}

async fn on(node: &Node, extra: &[&str]) -> Server {
    let url = node.url();
    let mut args = vec!["--redis-url", url.as_str()];
    args.extend_from_slice(extra);
    Server::start_with(None, &args).await
}

fn store_stats(s: &GetStatsResponse) -> &StoreStats {
    s.store.as_ref().unwrap()
}

/// GetStats until `ok` holds (the settings are read again in the
/// background), or fails with the last figures.
async fn stats_until(s: &Server, ok: impl Fn(&StoreStats) -> bool) -> StoreStats {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let st = s.stats().await;
        let store = store_stats(&st).clone();
        if ok(&store) {
            return store;
        }
        assert!(Instant::now() < deadline, "never reached: {store:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_one_acknowledges_only_what_a_replica_has() {
    let (master, replica) = master_and_replica().await;
    let s = on(
        &master,
        &[
            "--redis-durability",
            "replicas:1",
            "--redis-durability-timeout",
            "1s",
        ],
    )
    .await;
    // The replica has applied sessiond's Functions library, which sessiond
    // loaded on the master as it started (compiling it is the replica's
    // slowest step of the stream on a loaded machine).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let libraries: Vec<redis::Value> = replica
            .cmd(
                redis::cmd("FUNCTION")
                    .arg("LIST")
                    .arg("LIBRARYNAME")
                    .arg("sessiond_*"),
            )
            .await;
        if !libraries.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the replica never had the library"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut c = s.client().await;
    for i in 1..=5 {
        let w = c.update_session(set("d", &[("n", &i.to_string())])).await;
        assert_eq!(w.unwrap().into_inner().version, i);
    }
    let l = lock(&mut c, "d", 5000, 0).await.unwrap();
    unlock_with(&mut c, l.lock_token).await;
    // Each acknowledged write was on the replica when it was acknowledged.
    let keys: Vec<String> = replica.cmd(redis::cmd("KEYS").arg("sd:*:d")).await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    // (A session's field `n` is `f:n` in its data hash.)
    let n: String = replica
        .cmd(redis::cmd("HGET").arg(&keys[0]).arg("f:n"))
        .await;
    assert_eq!(n, "5");
    let st = store_stats(&s.stats().await).clone();
    assert_eq!(
        (st.durability.as_str(), st.durability_wait.as_str()),
        ("aof-always", "replicas:1")
    );
    assert!(
        st.durability_warnings.is_empty(),
        "{:?}",
        st.durability_warnings
    );
    assert_eq!(st.durability_failures, 0);

    // A replica that stops acknowledging: the write is applied on the master
    // but not acknowledged, within the wait's timeout.
    replica.signal("-STOP");
    let started = Instant::now();
    let failed = c.update_session(set("d", &[("n", "6")])).await;
    let took = started.elapsed();
    let status = failed.as_ref().unwrap_err().clone();
    assert_eq!(
        reason(failed),
        (tonic::Code::Unavailable, "STORE_UNAVAILABLE".into())
    );
    assert!(
        status
            .message()
            .contains("only 0 of the 1 replicas wanted acknowledged it within 1s")
            && status.message().contains("may have been applied"),
        "{}",
        status.message()
    );
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(3),
        "failed after {took:?}"
    );
    // A grant is no more acknowledged than a write.
    let refused = lock(&mut c, "d", 1000, 0).await;
    assert_eq!(
        reason(refused),
        (tonic::Code::Unavailable, "STORE_UNAVAILABLE".into())
    );
    // A STRONG read says whether the write landed: here it did, on the master.
    let now = get(&mut c, "d", Consistency::Strong).await.unwrap();
    let now = now.session.unwrap();
    assert_eq!((now.version, &now.fields["n"][..]), (6, &b"6"[..]));
    let st = store_stats(&s.stats().await).clone();
    assert!(st.durability_failures >= 2, "{st:?}");

    // Back: the replica catches up and acknowledges again.
    replica.signal("-CONT");
    // The grant refused above was applied on the master: its lock is held
    // (by a caller who never got the token) until its 1 s lease ends.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match c.update_session(set("d", &[("n", "7")])).await {
            Ok(w) => {
                assert_eq!(w.into_inner().version, 7);
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "never recovered: {e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let n: String = replica
        .cmd(redis::cmd("HGET").arg(&keys[0]).arg("f:n"))
        .await;
    assert_eq!(n, "7", "the replica caught up");
}

async fn unlock_with(c: &mut crate::support::Client, token: String) {
    crate::support::unlock(c, "d", token).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_replica_is_reported() {
    let (master, mut replica) = master_and_replica().await;
    let s = on(
        &master,
        &[
            "--redis-durability",
            "replicas:1",
            "--redis-check-interval",
            "200ms",
        ],
    )
    .await;
    let st = stats_until(&s, |st| st.durability == "aof-always").await;
    assert!(st.durability_warnings.is_empty(), "{st:?}");
    replica.stop();
    let st = stats_until(&s, |st| !st.durability_warnings.is_empty()).await;
    assert_eq!(
        st.durability_warnings,
        [
            "0 replica(s) connected, --redis-durability replicas:1 needs 1: writes and grants \
          fail with UNAVAILABLE until they are back"
        ]
    );
    let mut c = s.client().await;
    let started = Instant::now();
    let r = c.update_session(set("x", &[("a", "1")])).await;
    assert_eq!(
        reason(r),
        (tonic::Code::Unavailable, "STORE_UNAVAILABLE".into())
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

/// Waits for a process to exit, at most 20 s.
fn exit_of(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "sessiond did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aof_on_a_server_that_cannot_refuses_to_start() {
    let master = Node::start(&[("appendonly", "no")]);
    let version: String = master.cmd(redis::cmd("INFO").arg("server")).await;
    let version = version
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .unwrap()
        .trim()
        .to_owned();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut sessiond = Command::new(env!("CARGO_BIN_EXE_sessiond"))
        .args(["--listen", &listen, "--log-level", "error"])
        .args(["--redis-url", &master.url(), "--redis-durability", "aof"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = exit_of(&mut sessiond);
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut sessiond.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{status:?}: {stderr}");
    assert!(
        stderr.starts_with("sessiond: cannot open the store: "),
        "{stderr}"
    );
    let major_minor: Vec<u32> = version
        .split('.')
        .take(2)
        .map(|p| p.parse().unwrap())
        .collect();
    if major_minor < vec![7, 2] {
        // This machine's Debian Redis is 7.0: no WAITAOF at all.
        let want = format!(
            "Redis {version} has no WAITAOF, which --redis-durability aof needs (Redis 7.2 or later)"
        );
        assert!(stderr.contains(&want), "{stderr}");
    } else {
        // A newer one has WAITAOF, but no AOF to wait for.
        assert!(
            stderr.contains(&format!(
                "Redis {version} cannot honour --redis-durability aof: WAITAOF answered"
            )) && stderr.contains("appendonly"),
            "{stderr}"
        );
    }
    // The same in-process: a StartError, before serving anything.
    let url = master.url();
    let config = crate::support::test_config(&["--redis-url", &url, "--redis-durability", "aof"]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let e = sessiond::run(config, listener, std::future::pending())
        .await
        .unwrap_err();
    assert!(matches!(e, sessiond::StartError::Store(_)), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn risky_settings_are_reported_and_followed() {
    let node = Node::start(&[
        ("appendonly", "no"),
        ("maxmemory", "100mb"),
        ("maxmemory-policy", "volatile-lru"),
    ]);
    let metrics_port = free_port();
    let metrics = format!("127.0.0.1:{metrics_port}");
    let s = on(
        &node,
        &[
            "--redis-check-interval",
            "200ms",
            "--metrics-listen",
            &metrics,
        ],
    )
    .await;
    let st = store_stats(&s.stats().await).clone();
    assert_eq!(
        (st.durability.as_str(), st.durability_wait.as_str()),
        ("none", "none")
    );
    assert_eq!(st.durability_warnings.len(), 2, "{st:?}");
    assert!(st.durability_warnings[0].starts_with("appendonly no: a restart of Redis loses"));
    assert!(
        st.durability_warnings[1]
            .starts_with("maxmemory-policy volatile-lru: at maxmemory Redis evicts session keys")
    );
    let text = scrape_metrics(metrics_port).await;
    for (series, value) in [
        ("sessiond_store_durability{setting=\"none\"}", "1"),
        ("sessiond_store_durability_risk{risk=\"no_aof\"}", "1"),
        ("sessiond_store_durability_risk{risk=\"eviction\"}", "1"),
        ("sessiond_store_durability_risk{risk=\"fsync\"}", "0"),
        ("sessiond_store_durability_risk{risk=\"unknown\"}", "0"),
    ] {
        assert!(
            text.contains(&format!("\n{series} {value}\n")),
            "{series}: {text}"
        );
    }

    // AOF turned on without fsync on every write: the next read says so.
    for (k, v) in [
        ("appendonly", "yes"),
        ("appendfsync", "everysec"),
        ("maxmemory-policy", "noeviction"),
    ] {
        let _: () = node
            .cmd(redis::cmd("CONFIG").arg("SET").arg(k).arg(v))
            .await;
    }
    let st = stats_until(&s, |st| st.durability == "aof-everysec").await;
    assert_eq!(st.durability_warnings.len(), 1, "{st:?}");
    assert!(st.durability_warnings[0].starts_with(
        "appendfsync everysec: a crash of the Redis host (not only of the process) loses up to about a second"
    ));
    let _: () = node
        .cmd(
            redis::cmd("CONFIG")
                .arg("SET")
                .arg("appendfsync")
                .arg("always"),
        )
        .await;
    let st = stats_until(&s, |st| st.durability == "aof-always").await;
    assert!(st.durability_warnings.is_empty(), "{st:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_are_read_again_after_a_reconnect() {
    let mut node = Node::start(&[("appendonly", "no")]);
    // The periodic check is far off: only the reconnect can prompt a read.
    let s = on(&node, &["--redis-check-interval", "1h"]).await;
    assert_eq!(store_stats(&s.stats().await).durability, "none");
    let port = node.port;
    node.stop();
    // The same port, now with AOF: sessiond reconnects and reads again.
    let dir = tempfile::tempdir().unwrap();
    let mut again = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", "yes", "--appendfsync", "always"])
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut c = s.client().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.update_session(set("r", &[("a", "1")])).await.is_err() {
        assert!(Instant::now() < deadline, "never reconnected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let st = stats_until(&s, |st| st.durability == "aof-always").await;
    assert!(st.durability_warnings.is_empty(), "{st:?}");
    let _ = again.kill();
    let _ = again.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_denied_by_acl_is_unknown_not_an_error() {
    let node = Node::start(&[("appendonly", "no")]);
    let _: () = node
        .cmd(
            redis::cmd("ACL")
                .arg("SETUSER")
                .arg("bot")
                .arg("on")
                .arg(">secret-pass")
                .arg("~*")
                .arg("&*")
                .arg("+@all")
                .arg("-config"),
        )
        .await;
    let url = format!("redis://bot:secret-pass@127.0.0.1:{}/0", node.port);
    let s = Server::start_with(None, &["--redis-url", &url]).await;
    let mut c = s.client().await;
    let w = c.update_session(set("u", &[("a", "1")])).await.unwrap();
    assert_eq!(w.into_inner().version, 1);
    let st = store_stats(&s.stats().await).clone();
    assert_eq!(st.durability, "unknown");
    assert_eq!(st.durability_warnings.len(), 1, "{st:?}");
    assert!(
        st.durability_warnings[0]
            .starts_with("cannot read Redis's persistence settings (CONFIG GET: ")
            && st.durability_warnings[0].contains("NoPerm"),
        "{st:?}"
    );
    assert!(
        st.healthy && st.errors == 0,
        "a refused CONFIG is no store error: {st:?}"
    );
}
