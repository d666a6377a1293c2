//! Turn policies across three sessiond processes on one redis-server: the
//! burst lives in the store, so the newest waiter wins whichever instance
//! each message reached, and a burst's waiter on a dead instance stalls the
//! queue no longer than a dead FIFO waiter.

use std::time::{Duration, Instant};

use bytes::Bytes;
use sessiond::pb::*;
use tonic::Code;

use super::{queued_total, three};
use crate::support::{Process, Redis, lock, reason, unlock};

fn req(policy: TurnPolicy, debounce_ms: u32, payload: String) -> LockSessionRequest {
    LockSessionRequest {
        session_id: "burst".into(),
        lease_ms: 30_000,
        wait_ms: 30_000,
        policy: policy as i32,
        debounce_ms,
        payload: Bytes::from(payload),
        ..Default::default()
    }
}

type Waiting = tokio::task::JoinHandle<Result<LockSessionResponse, tonic::Status>>;

async fn send(inst: &Process, r: LockSessionRequest) -> Waiting {
    let mut c = inst.client().await;
    tokio::spawn(async move { c.lock_session(r).await.map(|r| r.into_inner()) })
}

/// Ten messages of one user reach A, B and C in turn while the session is
/// locked; each is sent once the one before it is queued (the message two
/// before it has been superseded). Every message but the last ends with
/// SUPERSEDED; the last is granted with the nine others, in order. Returns
/// the grant and when the last message was sent.
async fn burst(
    all: &[Process; 3],
    policy: TurnPolicy,
    debounce_ms: u32,
) -> (LockSessionResponse, Instant) {
    let mut ca = all[0].client().await;
    let held = lock(&mut ca, "burst", 30_000, 0).await.unwrap();
    let msg = |i: usize| format!("message {i}");
    let mut prev = send(&all[0], req(policy, debounce_ms, msg(0))).await;
    while queued_total(&[&all[0]]).await < 1 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut sent = Instant::now();
    for i in 1..10 {
        sent = Instant::now();
        let next = send(&all[i % 3], req(policy, debounce_ms, msg(i))).await;
        assert_eq!(
            reason(prev.await.unwrap()),
            (Code::Aborted, "SUPERSEDED".into()),
            "message {}",
            i - 1
        );
        prev = next;
    }
    unlock(&mut ca, "burst", held.lock_token).await.unwrap();
    let got = prev.await.unwrap().expect("the last message is granted");
    assert!(got.fencing_token > held.fencing_token);
    let want: Vec<Bytes> = (0..9).map(|i| Bytes::from(msg(i))).collect();
    assert_eq!(got.superseded_payloads, want, "the nine earlier, in order");
    assert_eq!(got.superseded_dropped, 0);
    (got, sent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_wins_answers_the_last_of_a_burst_over_three_instances() {
    let redis = Redis::start();
    let all = three(&redis).await;
    let (got, _) = burst(&all, TurnPolicy::LatestWins, 0).await;
    let mut c = all[1].client().await;
    unlock(&mut c, "burst", got.lock_token).await.unwrap();
    assert_eq!(queued_total(&[&all[0], &all[1], &all[2]]).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debounce_grants_the_last_of_a_burst_after_its_quiet_period() {
    let redis = Redis::start();
    let all = three(&redis).await;
    let (_, sent) = burst(&all, TurnPolicy::Debounce, 200).await;
    // Released at once after the last message arrived: the grant waited
    // for the quiet period from that arrival.
    assert!(
        sent.elapsed() >= Duration::from_millis(200),
        "granted {:?} after the last message was sent",
        sent.elapsed()
    );
}

/// The burst's waiter, first in line and debouncing, is on an instance that
/// dies: the FIFO waiter behind it gets the lock within the dead-waiter
/// bound, as behind a dead FIFO waiter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_instances_burst_waiter_stalls_the_queue_only_for_a_while() {
    let redis = Redis::start();
    let [a, b, mut c] = three(&redis).await;
    let mut ca = a.client().await;
    let held = lock(&mut ca, "burst", 30_000, 0).await.unwrap();
    let doomed = send(&c, req(TurnPolicy::Debounce, 5_000, "dead".into())).await;
    while queued_total(&[&c]).await < 1 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut cb = b.client().await;
    let next = tokio::spawn(async move { lock(&mut cb, "burst", 30_000, 30_000).await });
    while queued_total(&[&b]).await < 1 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    c.kill();
    let _ = doomed.await;
    let released = Instant::now();
    unlock(&mut ca, "burst", held.lock_token).await.unwrap();
    let granted = next
        .await
        .unwrap()
        .expect("the waiter behind the dead one gets the lock");
    assert!(granted.fencing_token > held.fencing_token);
    assert!(granted.superseded_payloads.is_empty());
    assert!(
        released.elapsed() < Duration::from_secs(10),
        "bounded stall: {:?}",
        released.elapsed()
    );
}

/// A lock's idempotency key replayed 1,000 times at once over A, B and C
/// makes one grant: one token, one fencing token, one caller not replayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_key_replayed_a_thousand_times_over_three_instances_grants_once() {
    let redis = Redis::start();
    let all = three(&redis).await;
    let mut clients = Vec::new();
    for i in 0..12 {
        clients.push(all[i % 3].client().await);
    }
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let mut c = clients[i % 12].clone();
        tasks.push(tokio::spawn(async move {
            let r = LockSessionRequest {
                session_id: "replayed".into(),
                lease_ms: 30_000,
                wait_ms: 30_000,
                idempotency_key: "slack:Ev0123".into(),
                ..Default::default()
            };
            c.lock_session(r).await.map(|r| r.into_inner())
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap().expect("every repeat is answered"));
    }
    let fences: std::collections::HashSet<u64> = answers.iter().map(|a| a.fencing_token).collect();
    assert_eq!(fences.len(), 1, "one grant: {fences:?}");
    assert!(
        answers
            .iter()
            .all(|a| a.lock_token == answers[0].lock_token)
    );
    assert_eq!(answers.iter().filter(|a| !a.replayed).count(), 1);
}
