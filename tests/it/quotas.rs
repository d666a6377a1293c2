//! Per-namespace quotas (`--max-sessions-per-namespace`,
//! `--max-bytes-per-namespace`): a write that would grow a namespace beyond
//! one is refused with RESOURCE_EXHAUSTED / QUOTA_EXCEEDED and writes
//! nothing; deletes, shrinking writes and idle expiry free room; other
//! namespaces are not touched; concurrent creators on three instances never
//! overshoot; the embedded store's usage survives a restart.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sessiond::pb::*;
use tonic::Code;

use crate::hostile::{CALM, FLOOD, Tokens, bearer};
use crate::on_both_backends;
use crate::support::{
    Backend, Client, Process, Redis, Server, client, details, free_port, lock, scrape_metrics, set,
};

/// Code, reason and the quota metadata of a refused write.
fn quota_refusal<T: std::fmt::Debug>(
    r: Result<T, tonic::Status>,
) -> (Code, String, HashMap<String, String>) {
    let (code, reason, md) = details(r);
    (code, reason, md)
}

fn exceeded(quota: &str, limit: u64, usage: u64) -> (Code, String, HashMap<String, String>) {
    let md = [
        ("quota", quota.to_owned()),
        ("limit", limit.to_string()),
        ("usage", usage.to_string()),
    ];
    (
        Code::ResourceExhausted,
        "QUOTA_EXCEEDED".to_owned(),
        md.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
    )
}

/// The session's version, 0 when there is none (a STRONG read).
async fn version_of(c: &mut Client, id: &str) -> u64 {
    let req = GetSessionRequest {
        session_id: id.into(),
        consistency: Consistency::Strong as i32,
        min_version: 0,
    };
    match c.get_session(req).await {
        Ok(r) => r.into_inner().session.map_or(0, |s| s.version),
        Err(s) if s.code() == Code::NotFound => 0,
        Err(s) => panic!("read of {id} failed: {s}"),
    }
}

fn delete(id: &str) -> DeleteSessionRequest {
    DeleteSessionRequest {
        session_id: id.into(),
        ..Default::default()
    }
}

/// `sessiond_quota_refusals_total{quota="<quota>"}` as scraped.
fn refusals(metrics: &str, quota: &str) -> u64 {
    let name = format!("sessiond_quota_refusals_total{{quota=\"{quota}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&name))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

async fn the_session_quota_refuses_a_new_session_and_writes_nothing(b: Backend) {
    let port = free_port();
    let metrics = format!("127.0.0.1:{port}");
    let s = Server::start(
        b,
        &[
            "--max-sessions-per-namespace",
            "3",
            "--metrics-listen",
            &metrics,
        ],
    )
    .await;
    let mut c = s.client().await;
    for id in ["q-1", "q-2", "q-3"] {
        c.update_session(set(id, &[("n", "1")])).await.unwrap();
    }
    let refused = c.update_session(set("q-4", &[("n", "1")])).await;
    assert_eq!(quota_refusal(refused), exceeded("sessions", 3, 3));
    assert_eq!(
        version_of(&mut c, "q-4").await,
        0,
        "a refused create wrote nothing"
    );
    // A namespace at its quota still writes to the sessions it has, larger
    // or not.
    c.update_session(set("q-2", &[("n", &"x".repeat(500))]))
        .await
        .unwrap();
    assert_eq!(version_of(&mut c, "q-2").await, 2);
    // A delete frees room, once.
    c.delete_session(delete("q-1")).await.unwrap();
    c.update_session(set("q-4", &[("n", "1")])).await.unwrap();
    let refused = c.update_session(set("q-5", &[("n", "1")])).await;
    assert_eq!(quota_refusal(refused), exceeded("sessions", 3, 3));
    // Deleting what is not there, or deleting at the quota, always passes.
    c.delete_session(delete("never-was")).await.unwrap();
    let text = scrape_metrics(port).await;
    assert_eq!(
        (refusals(&text, "sessions"), refusals(&text, "bytes")),
        (2, 0)
    );
}

async fn the_byte_quota_counts_stored_sizes_and_shrinking_passes(b: Backend) {
    // Sizes as --max-session-bytes counts them: names plus values.
    let s = Server::start(b, &["--max-bytes-per-namespace", "100"]).await;
    let mut c = s.client().await;
    c.update_session(set("big", &[("a", &"x".repeat(59))])) // 60 bytes
        .await
        .unwrap();
    let refused = c
        .update_session(set("other", &[("b", &"x".repeat(40))]))
        .await; // 41
    assert_eq!(quota_refusal(refused), exceeded("bytes", 100, 60));
    assert_eq!(version_of(&mut c, "other").await, 0);
    // Growing a session past the quota is refused and leaves it as it was.
    let refused = c
        .update_session(set("big", &[("c", &"x".repeat(40))]))
        .await; // +41
    assert_eq!(quota_refusal(refused), exceeded("bytes", 100, 60));
    assert_eq!(version_of(&mut c, "big").await, 1);
    // Up to the quota exactly passes.
    c.update_session(set("other", &[("b", &"x".repeat(39))])) // 40: 100 in all
        .await
        .unwrap();
    let refused = c.update_session(set("third", &[("d", "")])).await; // +1
    assert_eq!(quota_refusal(refused), exceeded("bytes", 100, 100));
    // Shrinking passes at the quota, and makes room.
    c.update_session(UpdateSessionRequest {
        session_id: "big".into(),
        delete_fields: vec!["a".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    c.update_session(set("third", &[("d", &"x".repeat(59))]))
        .await
        .unwrap();
}

async fn idle_expiry_frees_room(b: Backend) {
    let s = Server::start(
        b,
        &["--max-sessions-per-namespace", "2", "--idle-ttl", "1s"],
    )
    .await;
    let mut c = s.client().await;
    for id in ["idle-1", "idle-2"] {
        c.update_session(set(id, &[("n", "1")])).await.unwrap();
    }
    let refused = c.update_session(set("idle-3", &[("n", "1")])).await;
    assert_eq!(quota_refusal(refused), exceeded("sessions", 2, 2));
    let deadline = Instant::now() + Duration::from_secs(10);
    while version_of(&mut c, "idle-1").await + version_of(&mut c, "idle-2").await > 0 {
        assert!(Instant::now() < deadline, "the sessions never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Expired, they no longer count: without waiting for any sweep.
    for id in ["idle-3", "idle-4"] {
        c.update_session(set(id, &[("n", "1")])).await.unwrap();
    }
    let refused = c.update_session(set("idle-5", &[("n", "1")])).await;
    assert_eq!(quota_refusal(refused), exceeded("sessions", 2, 2));
}

/// A lock keeps its session past the idle TTL (see README, "Idle expiry"):
/// so long as it lives it counts, however stale the expiry it was written
/// with; once it is gone it stops counting.
async fn a_session_kept_alive_by_its_lock_still_counts(b: Backend) {
    let s = Server::start(
        b,
        &["--max-sessions-per-namespace", "1", "--idle-ttl", "1s"],
    )
    .await;
    let mut c = s.client().await;
    c.update_session(set("held", &[("n", "1")])).await.unwrap();
    let grant = lock(&mut c, "held", 3_000, 0).await.unwrap();
    // Past the idle TTL the write gave it, the lease keeps it.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        version_of(&mut c, "held").await,
        1,
        "the lock keeps it alive"
    );
    let refused = c.update_session(set("other", &[("n", "1")])).await;
    assert_eq!(quota_refusal(refused), exceeded("sessions", 1, 1));
    c.unlock_session(UnlockSessionRequest {
        session_id: "held".into(),
        lock_token: grant.lock_token,
    })
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while version_of(&mut c, "held").await > 0 {
        assert!(Instant::now() < deadline, "the session never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.update_session(set("other", &[("n", "1")])).await.unwrap();
}

async fn another_namespace_is_unaffected(b: Backend) {
    let tokens = Tokens::new();
    let s = tokens
        .server(
            b,
            &[
                "--max-sessions-per-namespace",
                "2",
                "--max-bytes-per-namespace",
                "1KiB",
            ],
        )
        .await;
    let mut c = s.client().await;
    for id in ["a", "b"] {
        c.update_session(bearer(set(id, &[("n", "1")]), FLOOD))
            .await
            .unwrap();
    }
    let refused = c
        .update_session(bearer(set("c", &[("n", "1")]), FLOOD))
        .await;
    assert_eq!(quota_refusal(refused), exceeded("sessions", 2, 2));
    // The same ids, and as many, in another namespace: its own count.
    for id in ["a", "b"] {
        c.update_session(bearer(set(id, &[("n", &"x".repeat(499))]), CALM))
            .await
            .unwrap();
    }
    let refused = c
        .update_session(bearer(set("a", &[("m", &"x".repeat(30))]), CALM))
        .await;
    assert_eq!(quota_refusal(refused), exceeded("bytes", 1024, 1000));
    // Deleting in one namespace frees room there only.
    c.delete_session(bearer(delete("a"), CALM)).await.unwrap();
    let refused = c
        .update_session(bearer(set("c", &[("n", "1")]), FLOOD))
        .await;
    assert_eq!(quota_refusal(refused), exceeded("sessions", 2, 2));
    c.update_session(bearer(set("c", &[("n", "1")]), CALM))
        .await
        .unwrap();
}

on_both_backends!(
    the_session_quota_refuses_a_new_session_and_writes_nothing,
    the_byte_quota_counts_stored_sizes_and_shrinking_passes,
    idle_expiry_frees_room,
    a_session_kept_alive_by_its_lock_still_counts,
    another_namespace_is_unaffected,
);

fn is_quota_refusal(s: &tonic::Status) -> bool {
    use tonic_types::StatusExt;
    s.code() == Code::ResourceExhausted
        && s.get_details_error_info()
            .is_some_and(|i| i.reason == "QUOTA_EXCEEDED")
}

/// Many creators on three instances of one Redis, one instance killed
/// halfway: the namespace never holds more sessions than its quota, the
/// quota is reached, every refusal is QUOTA_EXCEEDED, and the usage Redis
/// keeps is the count of the sessions that are there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creators_on_three_instances_never_overshoot() {
    const QUOTA: u64 = 25;
    let redis = Redis::start();
    let args = [
        "--redis-url",
        &redis.url(),
        "--max-sessions-per-namespace",
        "25",
    ];
    let mut instances = [
        Process::start(free_port(), &args),
        Process::start(free_port(), &args),
        Process::start(free_port(), &args),
    ];
    let mut clients = Vec::new();
    for i in &instances {
        clients.push(i.client().await);
    }
    let mut creators = Vec::new();
    let done = Arc::new(AtomicU64::new(0));
    for n in 0..24 {
        let mut c = clients[n % 3].clone();
        let done = done.clone();
        creators.push(tokio::spawn(async move {
            let (mut created, mut refused, mut failed) = (Vec::new(), 0, 0);
            for k in 0..8 {
                let id = format!("c-{n}-{k}");
                match c.update_session(set(&id, &[("n", "1")])).await {
                    Ok(_) => created.push(id),
                    Err(s) if is_quota_refusal(&s) => refused += 1,
                    Err(s) => {
                        // Only the killed instance's calls may fail so.
                        assert!(n % 3 == 2, "instance {} failed a create: {s}", n % 3);
                        failed += 1;
                    }
                }
                // A few delete what they made, so that room comes and goes.
                // (A delete that failed on the killed instance may or may not
                // have happened: its id is no longer counted as confirmed.)
                if k % 4 == 3
                    && let Some(id) = created.pop()
                    && c.delete_session(delete(&id)).await.is_err()
                {
                    assert!(n % 3 == 2, "a delete failed on a live instance");
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            (created, refused, failed)
        }));
    }
    // The third instance dies while the creators are at work.
    let deadline = Instant::now() + Duration::from_secs(30);
    while done.load(Ordering::Relaxed) < 48 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    instances[2].kill();
    let (mut confirmed, mut refused) = (Vec::new(), 0);
    for creator in creators {
        let (created, r, _) = creator.await.unwrap();
        confirmed.extend(created);
        refused += r;
    }
    assert!(refused > 0, "the quota was never reached");
    // The invariant, counted from the store itself: every id any creator
    // tried, read STRONG through a live instance.
    let mut c = client(instances[0].addr).await;
    let mut live = 0;
    for n in 0..24 {
        for k in 0..8 {
            if version_of(&mut c, &format!("c-{n}-{k}")).await > 0 {
                live += 1;
            }
        }
    }
    assert!(
        live <= QUOTA,
        "{live} sessions stored, above the quota of {QUOTA}"
    );
    assert!(
        live >= confirmed.len() as u64,
        "an acknowledged create is missing"
    );
    let conn = ::redis::Client::open(redis.url()).unwrap();
    let mut conn = conn.get_multiplexed_async_connection().await.unwrap();
    let counted: Option<u64> = ::redis::cmd("HGET")
        .arg("sd:q:{default}:u")
        .arg("s")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        counted,
        Some(live),
        "the usage Redis keeps is not the sessions there"
    );
    // Room is decided against that count: fill up to the quota exactly.
    let mut filled = live;
    let mut i = 0;
    while filled < QUOTA {
        c.update_session(set(&format!("fill-{i}"), &[("n", "1")]))
            .await
            .unwrap();
        filled += 1;
        i += 1;
    }
    let over = c.update_session(set("one-too-many", &[("n", "1")])).await;
    assert_eq!(quota_refusal(over), exceeded("sessions", QUOTA, QUOTA));
}

/// The embedded store counts its usage afresh when it opens its file: a
/// restart (SIGKILL) neither forgets the sessions nor counts them twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_usage_is_right_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("quota.redb");
    let db = db.to_str().unwrap();
    let args = [
        "--db-path",
        db,
        "--max-sessions-per-namespace",
        "3",
        "--max-bytes-per-namespace",
        "100",
    ];
    let port = free_port();
    let mut p = Process::start(port, &args);
    let mut c = p.client().await;
    c.update_session(set("r-1", &[("a", &"x".repeat(29))])) // 30 bytes
        .await
        .unwrap();
    c.update_session(set("r-2", &[("a", &"x".repeat(29))]))
        .await
        .unwrap();
    p.kill();
    let mut p = Process::start(port, &args);
    let mut c = p.client().await;
    let refused = c
        .update_session(set("r-3", &[("a", &"x".repeat(49))]))
        .await;
    assert_eq!(quota_refusal(refused), exceeded("bytes", 100, 60));
    c.update_session(set("r-3", &[("a", &"x".repeat(9))])) // 10: 70 in all
        .await
        .unwrap();
    let refused = c.update_session(set("r-4", &[("a", "")])).await;
    assert_eq!(quota_refusal(refused), exceeded("sessions", 3, 3));
    c.delete_session(delete("r-1")).await.unwrap();
    p.kill();
    let p = Process::start(port, &args);
    let mut c = p.client().await;
    // Two sessions of 40 bytes in all: room for one more, of 60 bytes.
    let refused = c
        .update_session(set("r-4", &[("a", &"x".repeat(60))]))
        .await;
    assert_eq!(quota_refusal(refused), exceeded("bytes", 100, 40));
    c.update_session(set("r-4", &[("a", &"x".repeat(59))]))
        .await
        .unwrap();
    let refused = c.update_session(set("r-5", &[("a", "")])).await;
    assert_eq!(quota_refusal(refused), exceeded("sessions", 3, 3));
}
