//! Many concurrent clients, and an invariant checked at the end: no
//! acknowledged update is lost or counted twice.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sessiond::pb::*;
use tonic::Code;

use crate::on_both_backends;
use crate::support::{
    Backend, Server, counter_of, get, lock, reason, set, unlock, wait_until_queued,
    wait_until_waiting,
};

const CLIENTS: usize = 32;
const SESSIONS: usize = 4;
const INCREMENTS: u64 = 200;

/// 32 clients lock, read, write +1 and release on 4 sessions, 200 times each.
async fn locked_increments_lose_nothing(b: Backend) {
    let s = Server::start(b, &[]).await;
    let acked = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        // Several connections, as many bot instances would have.
        let mut c = s.client().await;
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("counter-{}", i % SESSIONS);
            for _ in 0..INCREMENTS {
                let l = lock(&mut c, &id, 5000, 30_000).await.expect("lock");
                let n = counter_of(l.session.as_ref());
                let mut w = set(&id, &[("n", &(n + 1).to_string())]);
                w.lock_token = l.lock_token;
                w.release_lock = true;
                c.update_session(w).await.expect("locked write");
                acked.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut c = s.client().await;
    let mut total = 0;
    for i in 0..SESSIONS {
        let got = get(&mut c, &format!("counter-{i}"), Consistency::Strong)
            .await
            .unwrap()
            .session;
        assert_eq!(
            got.as_ref().unwrap().version,
            counter_of(got.as_ref()),
            "one version per increment"
        );
        total += counter_of(got.as_ref());
    }
    assert_eq!(total, acked.load(Ordering::Relaxed));
    assert_eq!(total, CLIENTS as u64 * INCREMENTS);
}

/// The same with compare-and-set retries instead of locks.
async fn cas_increments_lose_nothing(b: Backend) {
    let s = Server::start(b, &[]).await;
    let acked = Arc::new(AtomicU64::new(0));
    let conflicts = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        let mut c = s.client().await;
        let (acked, conflicts) = (acked.clone(), conflicts.clone());
        tasks.push(tokio::spawn(async move {
            let id = format!("cas-{}", i % SESSIONS);
            for _ in 0..INCREMENTS {
                loop {
                    let (n, version) = match get(&mut c, &id, Consistency::Strong).await {
                        Ok(r) => (counter_of(r.session.as_ref()), r.session.unwrap().version),
                        Err(e) if e.code() == Code::NotFound => (0, 0),
                        Err(e) => panic!("{e}"),
                    };
                    let mut w = set(&id, &[("n", &(n + 1).to_string())]);
                    w.expected_version = Some(version);
                    match c.update_session(w).await {
                        Ok(_) => break,
                        Err(e) => {
                            assert_eq!(reason::<()>(Err(e)).1, "VERSION_MISMATCH");
                            conflicts.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                acked.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut c = s.client().await;
    let mut total = 0;
    for i in 0..SESSIONS {
        total += counter_of(
            get(&mut c, &format!("cas-{i}"), Consistency::Strong)
                .await
                .unwrap()
                .session
                .as_ref(),
        );
    }
    assert_eq!(total, acked.load(Ordering::Relaxed));
    assert_eq!(total, CLIENTS as u64 * INCREMENTS);
    assert!(
        conflicts.load(Ordering::Relaxed) > 0,
        "the test did contend"
    );
}

/// Ten waiters queued in a known order get the lock in that order; one that
/// gives up (its deadline passes) is skipped and never holds the lock.
async fn fifo_order_and_cancelled_waiters(b: Backend) {
    let s = Server::start(b, &[]).await;
    let mut c = s.client().await;
    let first = lock(&mut c, "fifo", 10_000, 0).await.unwrap();
    let order = Arc::new(tokio::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..10u32 {
        let mut c = s.client().await;
        let order = order.clone();
        tasks.push(tokio::spawn(async move {
            let mut req = tonic::Request::new(LockSessionRequest {
                session_id: "fifo".into(),
                lease_ms: 10_000,
                wait_ms: 20_000,
                rate_limit: None,
                ..Default::default()
            });
            if i == 4 {
                // This caller's own deadline runs out while it is queued.
                req.set_timeout(Duration::from_millis(1500));
            }
            match c.lock_session(req).await {
                Ok(l) => {
                    let l = l.into_inner();
                    order.lock().await.push(i);
                    unlock(&mut c, "fifo", l.lock_token)
                        .await
                        .expect("holder unlocks");
                }
                Err(e) => {
                    assert_eq!(i, 4, "only the cancelled waiter fails: {e}");
                    assert!(
                        matches!(e.code(), Code::DeadlineExceeded | Code::Cancelled),
                        "{e}"
                    );
                }
            }
        }));
        // Queue them one at a time so the arrival order is known.
        wait_until_queued(&s, u64::from(i) + 1).await;
    }
    // The cancelled waiter's deadline passes while it is queued.
    wait_until_waiting(&s, |n| n == 9).await;
    unlock(&mut c, "fifo", first.lock_token).await.unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(*order.lock().await, vec![0, 1, 2, 3, 5, 6, 7, 8, 9]);
    // Nobody holds the lock now: the cancelled waiter did not end up with it.
    lock(&mut c, "fifo", 1000, 0)
        .await
        .expect("free at the end");
}

on_both_backends!(
    locked_increments_lose_nothing,
    cas_increments_lose_nothing,
    fifo_order_and_cancelled_waiters
);
