//! `sessiond-bench` itself, run briefly against a real sessiond, etcd and
//! Redis: every workload makes calls and its end-of-run check finds every
//! acknowledged increment, closed and open loop, and the peers' workloads
//! too. Nothing here looks at a timing (BENCHMARKS.md has the figures).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Backend, Server, free_port};

/// Runs the bench with `args` and returns its JSON lines, the empty
/// baseline's left out.
fn bench(args: &[&str]) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_sessiond-bench"))
        .args(["--duration", "300ms", "--callers", "8", "--sessions", "20"])
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "sessiond-bench {args:?} failed");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["workload"] != "empty")
        .collect()
}

/// Each report made calls without an error, and the ones that increment
/// counted every acknowledged increment.
fn assert_sound(reports: &[Value], workloads: &[&str]) {
    let names: Vec<&str> = reports
        .iter()
        .map(|r| r["workload"].as_str().unwrap())
        .collect();
    assert_eq!(names, workloads);
    for r in reports {
        assert!(r["ops"].as_u64().unwrap() > 0, "{r}");
        assert_eq!(r["errors"], serde_json::json!({}), "{r}");
        let w = r["workload"].as_str().unwrap();
        if w.contains("rmw")
            || w.contains("hot")
            || w.starts_with("ops")
            || w.starts_with("burst")
            || w == "bot-mix"
        {
            let check = r["check"].as_str().unwrap();
            assert!(check.starts_with("ok: counted"), "{r}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_and_open_loop_workloads_lose_no_update() {
    let s = Server::start(Backend::Redis, &[]).await;
    let target = s.addr.to_string();
    let closed = [
        "read-cached",
        "read-strong",
        "rmw",
        "cas",
        "hot",
        "ops",
        "ops-hot",
        "bot-mix",
        "burst",
        "burst-debounce",
    ];
    let reports = tokio::task::spawn_blocking({
        let (target, list) = (target.clone(), closed.join(","));
        move || bench(&["--target", &target, "--workloads", &list])
    })
    .await
    .unwrap();
    assert_sound(&reports, &closed);

    let open = ["read-cached", "rmw"];
    let reports = tokio::task::spawn_blocking(move || {
        bench(&[
            "--target",
            &target,
            "--workloads",
            "read-cached,rmw",
            "--rate",
            "200",
        ])
    })
    .await
    .unwrap();
    assert_sound(&reports, &open);
    for r in &reports {
        assert_eq!(r["rate"], 200, "{r}");
        assert!(r["send_lag_us"]["p99"].is_number(), "{r}");
        assert!(r["handover_lag_us"]["p99"].is_number(), "{r}");
        // On schedule: 300 ms at 200/s is 60 requests, each sent.
        assert_eq!(r["ops"], 60, "{r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_authentication_on_the_bench_sends_its_token() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "bench-token-0123456789 default\n").unwrap();
    let s = Server::start(
        Backend::Embedded,
        &["--auth-tokens-file", tokens.to_str().unwrap()],
    )
    .await;
    let target = s.addr.to_string();
    let reports = tokio::task::spawn_blocking({
        let target = target.clone();
        move || {
            bench(&[
                "--target",
                &target,
                "--workloads",
                "read-cached,rmw",
                "--token",
                "bench-token-0123456789",
            ])
        }
    })
    .await
    .unwrap();
    assert_sound(&reports, &["read-cached", "rmw"]);
    // Without it every call is refused, so the token was what let them in.
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_sessiond-bench"))
            .args(["--duration", "200ms", "--callers", "2", "--sessions", "2"])
            .args(["--target", &target, "--workloads", "read-cached"])
            .stderr(Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!out.status.success(), "preparing without a token must fail");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_mode_caches_every_session_and_reads_them_all() {
    let s = Server::start(Backend::Redis, &[]).await;
    let (target, pid) = (s.addr.to_string(), std::process::id().to_string());
    let lines = tokio::task::spawn_blocking(move || {
        bench(&[
            "--target",
            &target,
            "--memory",
            "--rounds",
            "1",
            "--server-pid",
            &pid,
        ])
    })
    .await
    .unwrap();
    let [memory, all, few, result] = lines.as_slice() else {
        panic!("{lines:?}")
    };
    let memory = &memory["memory"];
    assert_eq!(memory["sessions"], 20, "{memory}");
    assert!(memory["cache_entries"].as_u64().unwrap() >= 20, "{memory}");
    assert!(memory["rss_mib_filled"].as_f64().unwrap() > 0.0, "{memory}");
    for (r, n) in [(all, 20), (few, 20)] {
        assert_eq!(r["workload"], "read-cached", "{r}");
        assert!(r["ops"].as_u64().unwrap() > 0, "{r}");
        assert_eq!(r["check"], format!("{n} sessions, 0 cache misses"), "{r}");
    }
    assert!(
        result["memory_result"]["all_over_1000"].is_number(),
        "{result}"
    );
}

/// An etcd of its own on free ports, killed on drop.
struct Etcd {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Etcd {
    fn start() -> Etcd {
        let dir = tempfile::tempdir().unwrap();
        let (port, peer) = (free_port(), free_port());
        let client = format!("http://127.0.0.1:{port}");
        let child = Command::new("etcd")
            .arg("--data-dir")
            .arg(dir.path().join("etcd"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd (Debian's etcd-server; .ci/install installs it)");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "etcd did not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Etcd {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peers_turns_lose_no_update_either() {
    let s = Server::start(Backend::Redis, &[]).await;
    let target = s.addr.to_string();
    let redis = format!("{}1", s.redis.as_ref().unwrap().url().trim_end_matches('0'));
    let reports = tokio::task::spawn_blocking(move || {
        let etcd = Etcd::start();
        let workloads = "etcd-rmw,etcd-hot,redis-lock-rmw,redis-lock-hot";
        let etcd_addr = format!("127.0.0.1:{}", etcd.port);
        let args = [
            "--target",
            &target,
            "--workloads",
            workloads,
            "--etcd",
            &etcd_addr,
        ];
        bench(&[&args[..], &["--redis-lock", &redis]].concat())
    })
    .await
    .unwrap();
    assert_sound(
        &reports,
        &["etcd-rmw", "etcd-hot", "redis-lock-rmw", "redis-lock-hot"],
    );
}

/// The watch workload, on two instances of one Redis: the writes lose no
/// increment, and every watcher (half of them on the other instance) saw
/// every version written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_workload_fans_out_every_write() {
    let a = Server::start(Backend::Redis, &[]).await;
    let redis_url = a.redis.as_ref().unwrap().url();
    let b = Server::start_with(None, &["--redis-url", &redis_url]).await;
    b.wait_for_feed().await;
    let targets = format!("{},{}", a.addr, b.addr);
    let reports = tokio::task::spawn_blocking(move || {
        bench(&[
            "--target",
            &targets,
            "--workloads",
            "watch",
            "--watchers",
            "20",
        ])
    })
    .await
    .unwrap();
    assert_eq!(reports.len(), 1);
    let r = &reports[0];
    assert!(r["ops"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(r["errors"], serde_json::json!({}), "{r}");
    assert!(
        r["check"].as_str().unwrap().starts_with("ok: counted"),
        "{r}"
    );
    assert_eq!(r["watchers"], 20, "{r}");
    assert!(r["watch_check"].as_str().unwrap().starts_with("ok"), "{r}");
    // Every watcher saw every write to its session.
    assert!(
        r["events"].as_u64().unwrap() >= r["ops"].as_u64().unwrap(),
        "{r}"
    );
    assert!(r["fanout_us"]["p99"].is_number(), "{r}");
}
