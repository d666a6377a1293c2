//! Locks: while one is held only its holder writes; leases run out, are
//! refreshed and released; waiters queue in order, and one that leaves the
//! queue is skipped.

use std::time::Duration;

use sessiond::pb::*;
use tonic::Code;

use crate::on_every_backend;
use crate::support::{
    Backend, Server, fields, get, lock, reason, set, wait_until_queued, wait_until_waiting,
};

async fn lock_is_mandatory_for_writers(b: Backend) {
    let s = Server::start(b, &[]).await;
    let mut c = s.client().await;
    // Locking a session that does not exist is allowed: get-or-create.
    let l = lock(&mut c, "m", 5000, 0).await.unwrap();
    assert!(l.session.is_none());
    assert!(l.fencing_token >= 1);
    assert!(l.lease_expires_at.is_some());
    assert_eq!(
        reason(lock(&mut c, "m", 5000, 0).await),
        (Code::FailedPrecondition, "LOCK_HELD".into())
    );
    assert_eq!(
        reason(c.update_session(set("m", &[("a", "1")])).await),
        (Code::FailedPrecondition, "LOCK_HELD".into())
    );
    let del = DeleteSessionRequest {
        session_id: "m".into(),
        ..Default::default()
    };
    assert_eq!(reason(c.delete_session(del).await).1, "LOCK_HELD");
    // The holder writes; reads are never blocked.
    let mut w = set("m", &[("a", "1")]);
    w.lock_token = l.lock_token.clone();
    assert_eq!(c.update_session(w).await.unwrap().into_inner().version, 1);
    assert_eq!(
        get(&mut c, "m", Consistency::Strong)
            .await
            .unwrap()
            .session
            .unwrap()
            .version,
        1
    );
    // Write-and-release in one step.
    let mut w = set("m", &[("a", "2")]);
    w.lock_token = l.lock_token.clone();
    w.release_lock = true;
    assert_eq!(c.update_session(w).await.unwrap().into_inner().version, 2);
    // Released: anyone can write again, and the old token is stale.
    c.update_session(set("m", &[("a", "3")])).await.unwrap();
    let mut w = set("m", &[("a", "4")]);
    w.lock_token = l.lock_token.clone();
    assert_eq!(
        reason(c.update_session(w).await),
        (Code::FailedPrecondition, "LOCK_LOST".into())
    );
    // The next lock returns the session as it is now (a STRONG read).
    let l2 = lock(&mut c, "m", 5000, 0).await.unwrap();
    assert!(l2.fencing_token > l.fencing_token);
    let snap = l2.session.unwrap();
    assert_eq!((snap.version, snap.fields), (3, fields(&[("a", "3")])));
}

async fn unlock_and_refresh(b: Backend) {
    let s = Server::start(b, &[]).await;
    let mut c = s.client().await;
    let l = lock(&mut c, "r", 300, 0).await.unwrap();
    // Refreshing keeps the lock past its first lease.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let r = c
            .refresh_lock(RefreshLockRequest {
                session_id: "r".into(),
                lock_token: l.lock_token.clone(),
                lease_ms: 300,
            })
            .await
            .unwrap();
        assert!(
            r.into_inner().lease_expires_at.unwrap().seconds >= l.lease_expires_at.unwrap().seconds
        );
    }
    let mut w = set("r", &[("k", "v")]);
    w.lock_token = l.lock_token.clone();
    c.update_session(w).await.unwrap();
    let unlock = UnlockSessionRequest {
        session_id: "r".into(),
        lock_token: l.lock_token.clone(),
    };
    c.unlock_session(unlock.clone()).await.unwrap();
    // Unlocking or refreshing a lock no longer held says LOCK_LOST.
    assert_eq!(
        reason(c.unlock_session(unlock).await),
        (Code::FailedPrecondition, "LOCK_LOST".into())
    );
    let refresh = RefreshLockRequest {
        session_id: "r".into(),
        lock_token: l.lock_token.clone(),
        lease_ms: 0,
    };
    assert_eq!(reason(c.refresh_lock(refresh).await).1, "LOCK_LOST");
    // A token of another session holds nothing here.
    let other = lock(&mut c, "r-other", 5000, 0).await.unwrap();
    let mut w = set("r", &[("k", "x")]);
    w.lock_token = other.lock_token;
    assert_eq!(reason(c.update_session(w).await).1, "LOCK_LOST");
}

async fn expired_lease_loses_to_the_next_holder(b: Backend) {
    let s = Server::start(b, &[]).await;
    let mut c = s.client().await;
    let a = lock(&mut c, "lease", 100, 0).await.unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    let bb = lock(&mut c, "lease", 5000, 0).await.unwrap();
    assert!(
        bb.fencing_token > a.fencing_token,
        "fencing tokens increase"
    );
    let mut w = set("lease", &[("by", "a")]);
    w.lock_token = a.lock_token.clone();
    assert_eq!(
        reason(c.update_session(w).await),
        (Code::FailedPrecondition, "LOCK_LOST".into())
    );
    let mut w = set("lease", &[("by", "b")]);
    w.lock_token = bb.lock_token.clone();
    c.update_session(w).await.unwrap();
    let got = get(&mut c, "lease", Consistency::Strong)
        .await
        .unwrap()
        .session
        .unwrap();
    assert_eq!(got.fields, fields(&[("by", "b")]));
    // Even with nobody else taking it, an expired lease is lost.
    let c2 = lock(&mut c, "lease2", 50, 0).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let mut w = set("lease2", &[("x", "1")]);
    w.lock_token = c2.lock_token;
    assert_eq!(reason(c.update_session(w).await).1, "LOCK_LOST");
    let stats = s.stats().await;
    let locks = stats.locks.unwrap();
    assert!(locks.lease_expiries >= 1, "{locks:?}");
}

async fn wait_times_out(b: Backend) {
    let s = Server::start(b, &[]).await;
    let mut c = s.client().await;
    let _held = lock(&mut c, "w", 5000, 0).await.unwrap();
    let started = std::time::Instant::now();
    assert_eq!(
        reason(lock(&mut c, "w", 5000, 200).await),
        (Code::DeadlineExceeded, "LOCK_WAIT_TIMEOUT".into())
    );
    assert!(started.elapsed() >= Duration::from_millis(190));
}

async fn waiter_gets_the_lock_on_release(b: Backend) {
    let s = Server::start(b, &[]).await;
    let mut c = s.client().await;
    let held = lock(&mut c, "wr", 5000, 0).await.unwrap();
    let mut c2 = c.clone();
    let waiter = tokio::spawn(async move { lock(&mut c2, "wr", 5000, 5000).await });
    // Let the waiter queue, then write-and-release.
    wait_until_queued(&s, 1).await;
    let mut w = set("wr", &[("step", "1")]);
    w.lock_token = held.lock_token.clone();
    w.release_lock = true;
    c.update_session(w).await.unwrap();
    let got = waiter.await.unwrap().unwrap();
    assert!(got.fencing_token > held.fencing_token);
    assert_eq!(
        got.session.unwrap().fields,
        fields(&[("step", "1")]),
        "the waiter sees the released write"
    );
}

async fn a_waiter_that_disconnects_leaves_the_queue(b: Backend) {
    let s = Server::start(b, &[]).await;
    let mut c = s.client().await;
    let held = lock(&mut c, "gone", 5000, 0).await.unwrap();
    // Its own connection, dropped with the task: the call is cancelled.
    let mut c2 = s.client().await;
    let waiter = tokio::spawn(async move { lock(&mut c2, "gone", 5000, 10_000).await });
    wait_until_queued(&s, 1).await;
    waiter.abort();
    wait_until_waiting(&s, |n| n == 0).await;
    c.unlock_session(UnlockSessionRequest {
        session_id: "gone".into(),
        lock_token: held.lock_token,
    })
    .await
    .unwrap();
    // The lock went to nobody: it is free at once.
    lock(&mut c, "gone", 5000, 0)
        .await
        .expect("free after the waiter left");
    let st = s.stats().await;
    assert!(st.locks.unwrap().waits_abandoned >= 1);
}

on_every_backend!(
    lock_is_mandatory_for_writers,
    unlock_and_refresh,
    expired_lease_loses_to_the_next_holder,
    wait_times_out,
    waiter_gets_the_lock_on_release,
    a_waiter_that_disconnects_leaves_the_queue,
);
