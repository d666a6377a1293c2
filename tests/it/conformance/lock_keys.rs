//! Idempotency keys on LockSession: a repeat within the window gets the
//! first grant's answer (`replayed`) instead of locking again, whether that
//! grant still holds or not; the same key with another request is refused;
//! a thousand concurrent repeats, queued or not, make one grant.

use std::collections::HashSet;

use sessiond::pb::*;
use tonic::Code;

use crate::on_every_backend;
use crate::support::{Backend, Client, Server, lock, reason, set, unlock, wait_until_queued};

fn keyed(id: &str, key: &str, wait_ms: u32) -> LockSessionRequest {
    LockSessionRequest {
        session_id: id.into(),
        lease_ms: 10_000,
        wait_ms,
        idempotency_key: key.into(),
        ..Default::default()
    }
}

async fn locked(c: &mut Client, r: LockSessionRequest) -> LockSessionResponse {
    c.lock_session(r).await.unwrap().into_inner()
}

async fn a_repeated_lock_gets_the_first_grant(b: Backend) {
    let s = Server::start(b, &[]).await;
    let mut c = s.client().await;
    let first = locked(&mut c, keyed("lk", "evt-1", 0)).await;
    assert!(!first.replayed);
    // Held by the first grant: the repeat learns the lock it holds, rather
    // than LOCK_HELD.
    let again = locked(&mut c, keyed("lk", "evt-1", 0)).await;
    assert!(again.replayed);
    assert_eq!(
        (
            &again.lock_token,
            again.fencing_token,
            again.lease_expires_at
        ),
        (
            &first.lock_token,
            first.fencing_token,
            first.lease_expires_at
        )
    );
    // The key's records are apart from the writes': the same event id
    // keys the write made under the lock.
    let mut w = set("lk", &[("a", "1")]);
    w.lock_token = first.lock_token.clone();
    w.idempotency_key = "evt-1".into();
    c.update_session(w).await.unwrap();
    // Refreshed: a repeat tells the lease's end now, and the session now.
    let refreshed = c
        .refresh_lock(RefreshLockRequest {
            session_id: "lk".into(),
            lock_token: first.lock_token.clone(),
            lease_ms: 20_000,
        })
        .await
        .unwrap()
        .into_inner();
    let again = locked(&mut c, keyed("lk", "evt-1", 5000)).await;
    assert_eq!(again.lease_expires_at, refreshed.lease_expires_at);
    assert_eq!(again.session.unwrap().version, 1);
    // Another request under the key: refused, nothing locked or queued.
    let mut other = keyed("lk", "evt-1", 0);
    other.lease_ms = 5000;
    assert_eq!(
        reason(c.lock_session(other).await),
        (Code::InvalidArgument, "IDEMPOTENCY_KEY_REUSED".into())
    );
    for bad in ["a\u{1}b", &"k".repeat(257)] {
        assert_eq!(
            reason(c.lock_session(keyed("lk", bad, 0)).await),
            (Code::InvalidArgument, "INVALID_IDEMPOTENCY_KEY".into())
        );
    }
    // Released: a repeat still answers the first grant, whose token is
    // stale now; a new key locks anew.
    unlock(&mut c, "lk", first.lock_token.clone())
        .await
        .unwrap();
    let late = locked(&mut c, keyed("lk", "evt-1", 0)).await;
    assert!(late.replayed);
    assert_eq!(late.lock_token, first.lock_token);
    let mut w = set("lk", &[("a", "2")]);
    w.lock_token = late.lock_token;
    assert_eq!(reason(c.update_session(w).await).1, "LOCK_LOST");
    let next = locked(&mut c, keyed("lk", "evt-2", 0)).await;
    assert!(!next.replayed);
    assert!(next.fencing_token > first.fencing_token);
}

/// 1,000 concurrent LockSessions under one key over 16 connections, queued
/// behind a holder: when it unlocks, one is granted and every other gets
/// that grant's answer, without waiting for it to end.
async fn a_thousand_concurrent_lock_repeats_grant_once(b: Backend) {
    let s = Server::start(b, &[]).await;
    let mut clients = Vec::new();
    for _ in 0..16 {
        clients.push(s.client().await);
    }
    let mut c = s.client().await;
    let held = lock(&mut c, "once", 10_000, 0).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let mut c = clients[i % 16].clone();
        tasks.push(tokio::spawn(async move {
            c.lock_session(keyed("once", "slack-Ev042", 30_000))
                .await
                .map(|r| r.into_inner())
        }));
    }
    wait_until_queued(&s, 1000).await;
    unlock(&mut c, "once", held.lock_token).await.unwrap();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap().unwrap());
    }
    let fences: HashSet<u64> = answers.iter().map(|a| a.fencing_token).collect();
    let tokens: HashSet<&str> = answers.iter().map(|a| a.lock_token.as_str()).collect();
    assert_eq!((fences.len(), tokens.len()), (1, 1), "one grant");
    assert_eq!(answers.iter().filter(|a| !a.replayed).count(), 1);
    assert!(answers[0].fencing_token > held.fencing_token);
    // Repeats after the fact, not queued: the same answer.
    let again = locked(&mut c, keyed("once", "slack-Ev042", 0)).await;
    assert_eq!(again.fencing_token, answers[0].fencing_token);
}

/// Two callers queued under one key with different requests: the one
/// granted records it, the other is refused (IDEMPOTENCY_KEY_REUSED) and
/// leaves the queue, so the lock is free again once the grant is released.
async fn a_queued_caller_of_another_request_is_refused_and_leaves(b: Backend) {
    let s = Server::start(b, &[]).await;
    let mut c = s.client().await;
    let held = lock(&mut c, "two", 10_000, 0).await.unwrap();
    let mut c1 = c.clone();
    let first = tokio::spawn(async move { locked(&mut c1, keyed("two", "k", 10_000)).await });
    wait_until_queued(&s, 1).await;
    let mut c2 = c.clone();
    let other = tokio::spawn(async move {
        let mut r = keyed("two", "k", 10_000);
        r.lease_ms = 5_000;
        c2.lock_session(r).await.map(|r| r.into_inner())
    });
    wait_until_queued(&s, 2).await;
    unlock(&mut c, "two", held.lock_token).await.unwrap();
    let granted = first.await.unwrap();
    assert!(!granted.replayed);
    assert_eq!(
        reason(other.await.unwrap()),
        (Code::InvalidArgument, "IDEMPOTENCY_KEY_REUSED".into())
    );
    unlock(&mut c, "two", granted.lock_token).await.unwrap();
    // Its leaving reaches the store after its answer (on Redis, a script run
    // in the background), well before a dead waiter's place would lapse
    // (2 s): the lock is then free for a try-once.
    let mut admin = s.admin().await;
    let mut waiters = u32::MAX;
    for _ in 0..200 {
        let seen = admin
            .inspect_session(InspectSessionRequest {
                namespace: String::new(),
                session_id: "two".into(),
            })
            .await
            .unwrap()
            .into_inner();
        waiters = seen.waiters;
        if waiters == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(waiters, 0, "the refused caller left the queue");
    let again = lock(&mut c, "two", 10_000, 0).await.unwrap();
    assert!(again.fencing_token > granted.fencing_token);
}

on_every_backend!(
    a_repeated_lock_gets_the_first_grant,
    a_thousand_concurrent_lock_repeats_grant_once,
    a_queued_caller_of_another_request_is_refused_and_leaves,
);
