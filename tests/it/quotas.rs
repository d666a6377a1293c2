//! Per-namespace quotas (`--max-sessions-per-namespace`,
//! `--max-bytes-per-namespace`): a write that would grow a namespace beyond
//! one is refused with RESOURCE_EXHAUSTED / QUOTA_EXCEEDED and writes
//! nothing; deletes, shrinking writes and idle expiry free room; other
//! namespaces are not touched; and (in `processes`) concurrent creators on
//! three instances never overshoot, and the embedded store's usage survives
//! a restart.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sessiond::pb::*;
use tonic::Code;

use crate::hostile::{CALM, FLOOD, Tokens, bearer};
use crate::on_both_backends;
use crate::support::{Backend, Client, Server, details, free_port, lock, scrape_metrics, set};

mod processes;

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

/// Quotas and idempotency keys together: a repeat of a create at the
/// quota gets the first answer (it grows nothing), a new key's create is
/// refused, and a repeated delete frees its room once.
async fn idempotent_writes_count_once(b: Backend) {
    let s = Server::start(b, &["--max-sessions-per-namespace", "2"]).await;
    let mut c = s.client().await;
    let create = |id: &str, key: &str| {
        let mut req = set(id, &[("n", "1")]);
        req.idempotency_key = key.into();
        req
    };
    let first = c
        .update_session(create("a", "k-a"))
        .await
        .unwrap()
        .into_inner();
    c.update_session(create("b", "k-b")).await.unwrap();
    let again = c
        .update_session(create("a", "k-a"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.version, first.version);
    assert_eq!(
        quota_refusal(c.update_session(create("c", "k-c")).await),
        exceeded("sessions", 2, 2)
    );
    let mut gone = delete("a");
    gone.idempotency_key = "d-a".into();
    c.delete_session(gone.clone()).await.unwrap();
    c.delete_session(gone).await.unwrap();
    c.update_session(create("c", "k-c")).await.unwrap();
    assert_eq!(
        quota_refusal(c.update_session(create("d", "k-d")).await),
        exceeded("sessions", 2, 2)
    );
    assert_eq!(version_of(&mut c, "a").await, 0);
    assert!(version_of(&mut c, "b").await > 0 && version_of(&mut c, "c").await > 0);
}

on_both_backends!(
    the_session_quota_refuses_a_new_session_and_writes_nothing,
    the_byte_quota_counts_stored_sizes_and_shrinking_passes,
    idle_expiry_frees_room,
    a_session_kept_alive_by_its_lock_still_counts,
    another_namespace_is_unaffected,
    idempotent_writes_count_once,
);
