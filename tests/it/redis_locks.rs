//! Redis locks and the data they guard (issue 11).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sessiond::pb::*;

use crate::support::{Backend, Server, counter_of, get, lock, reason, set};

const CALLERS: usize = 300;
const CONNECTIONS: usize = 8;
const LEASE_MS: u32 = 2000;

/// Hundreds of callers take turns on one session: lock (waiting), then write
/// +1 with the token and release. A caller whose write comes well within
/// its lease must never find its lock gone. Several Redis connections and a
/// session of some size make the replies of a releasing script and of a
/// waiter's own retry race, which is when a lock handed to a waiter that had
/// just found it its own was released again behind its back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_granted_lock_is_never_taken_back() {
    let s = Server::start(Backend::Redis, &["--redis-pool-size", "8"]).await;
    let mut clients = Vec::new();
    for _ in 0..CONNECTIONS {
        clients.push(s.client().await);
    }
    let data = "x".repeat(10_000);
    clients[0]
        .update_session(set("hot", &[("data", &data), ("n", "0")]))
        .await
        .unwrap();
    let acked = Arc::new(AtomicU64::new(0));
    let lost = Arc::new(AtomicU64::new(0));
    let stop = Instant::now() + Duration::from_secs(8);
    let mut tasks = Vec::new();
    for i in 0..CALLERS {
        let mut c = clients[i % CONNECTIONS].clone();
        let (acked, lost) = (acked.clone(), lost.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < stop {
                let l = lock(&mut c, "hot", LEASE_MS, 30_000).await.expect("lock");
                let lease_end = l.lease_expires_at.unwrap();
                let n = counter_of(l.session.as_ref());
                let mut w = set("hot", &[("n", &(n + 1).to_string())]);
                w.lock_token = l.lock_token;
                w.release_lock = true;
                match c.update_session(w).await {
                    Ok(_) => {
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        assert_eq!(reason::<()>(Err(e)).1, "LOCK_LOST");
                        // Redis's clock, which ends leases, is this host's.
                        if ms_before(&lease_end) > 200 {
                            lost.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let got = get(&mut clients[0], "hot", Consistency::Strong)
        .await
        .unwrap()
        .session;
    let acked = acked.load(Ordering::Relaxed);
    assert!(acked > CALLERS as u64, "the callers took turns: {acked}");
    assert_eq!(
        lost.load(Ordering::Relaxed),
        0,
        "holders refused well within their lease ({acked} turns)"
    );
    assert_eq!(counter_of(got.as_ref()), acked, "every acknowledged +1");
}

/// Milliseconds from now until `t` on this host's clock (negative: past).
fn ms_before(t: &prost_types::Timestamp) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    t.seconds * 1000 + i64::from(t.nanos) / 1_000_000 - now.as_millis() as i64
}
