//! Quotas across processes: three sessiond instances on one redis-server,
//! one killed while creators race, and an embedded store killed and started
//! again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tonic::Code;

use super::{delete, exceeded, quota_refusal, version_of};
use crate::support::{Process, Redis, client, free_port, set};

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
