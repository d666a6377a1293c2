use tokio::sync::oneshot;

use super::*;
use crate::error::Result;

const KEY: &[u8] = b"ns\0id";
const LEASE: Duration = Duration::from_secs(10);
const HELD: Held = Held {
    saw: 0,
    until_ms: 0,
};

fn table() -> (LockTable, Arc<Stats>) {
    let stats = Arc::new(Stats::default());
    (LockTable::new(stats.clone()), stats)
}

fn waiter(token: &str) -> (Waiter, oneshot::Receiver<Result<LockGrant>>) {
    let (reply, rx) = oneshot::channel();
    let w = Waiter {
        token: token.into(),
        lease: LEASE,
        since: Instant::now(),
        reply,
        idem: None,
    };
    (w, rx)
}

#[test]
fn the_holder_passes_the_guard_and_others_are_refused() {
    let (mut t, stats) = table();
    let now = Instant::now();
    assert!(t.is_free(KEY, now));
    assert!(t.check(KEY, None, now).is_ok());
    t.hold(KEY, "a".into(), now + LEASE, HELD);
    assert!(!t.is_free(KEY, now));
    assert!(t.check(KEY, Some("a"), now).is_ok());
    assert!(matches!(t.check(KEY, None, now), Err(Refusal::LockHeld)));
    assert!(matches!(
        t.check(KEY, Some("b"), now),
        Err(Refusal::LockLost)
    ));
    assert_eq!(stats.lock_contended.load(Relaxed), 1);
    assert_eq!(stats.lock_held_rejections.load(Relaxed), 1);
    assert_eq!(stats.lock_stale_token.load(Relaxed), 1);
}

#[test]
fn an_expired_lease_frees_the_lock_and_loses_the_token() {
    let (mut t, stats) = table();
    let now = Instant::now();
    t.hold(KEY, "a".into(), now + LEASE, HELD);
    let later = now + LEASE;
    assert!(matches!(
        t.check(KEY, Some("a"), later),
        Err(Refusal::LockLost)
    ));
    assert!(t.is_free(KEY, later));
    assert_eq!(stats.lock_lease_expiries.load(Relaxed), 1);
}

#[test]
fn refresh_extends_only_the_holders_lease() {
    let (mut t, _) = table();
    let now = Instant::now();
    t.hold(KEY, "a".into(), now + LEASE, HELD);
    assert!(matches!(
        t.refresh(KEY, "b", LEASE, now, 0),
        Err(Refusal::LockLost)
    ));
    t.refresh(KEY, "a", 2 * LEASE, now + LEASE / 2, 0).unwrap();
    assert!(t.check(KEY, Some("a"), now + LEASE).is_ok());
    assert!(t.check(KEY, Some("a"), now + 3 * LEASE).is_err());
}

#[test]
fn waiters_are_served_in_order_skipping_those_that_left() {
    let (mut t, _) = table();
    let now = Instant::now();
    t.hold(KEY, "a".into(), now + LEASE, HELD);
    let (w1, rx1) = waiter("w1");
    let (w2, _rx2) = waiter("w2");
    let (w3, _rx3) = waiter("w3");
    t.enqueue(KEY.to_vec(), w1);
    t.enqueue(KEY.to_vec(), w2);
    t.enqueue(KEY.to_vec(), w3);
    assert!(
        t.next_waiter(KEY, Instant::now()).is_none(),
        "held: nobody is served"
    );
    drop(rx1);
    t.release(KEY);
    assert_eq!(t.next_waiter(KEY, Instant::now()).unwrap().token, "w2");
    t.hold(KEY, "w2".into(), now + LEASE, HELD);
    t.forget_if_idle(KEY);
    t.release(KEY);
    assert_eq!(t.next_waiter(KEY, Instant::now()).unwrap().token, "w3");
    t.forget_if_idle(KEY);
    assert!(t.locks.is_empty(), "idle entries are dropped");
}

#[test]
fn abandon_forgets_a_waiter_and_frees_a_lock_granted_too_late() {
    let (mut t, stats) = table();
    let now = Instant::now();
    t.hold(KEY, "a".into(), now + LEASE, HELD);
    let (w, _rx) = waiter("w");
    t.enqueue(KEY.to_vec(), w);
    t.abandon(KEY, "w");
    assert!(t.next_deadline().is_none(), "no waiter left");
    t.abandon(KEY, "a");
    assert!(t.is_free(KEY, now));
    t.abandon(KEY, "nobody");
    assert_eq!(stats.lock_waits_abandoned.load(Relaxed), 2);
}

#[test]
fn only_waited_for_leases_are_deadlines_and_expire_for_handover() {
    let (mut t, stats) = table();
    let now = Instant::now();
    t.hold(b"alone", "a".into(), now + LEASE, HELD);
    t.hold(KEY, "b".into(), now + 2 * LEASE, HELD);
    assert_eq!(t.next_deadline(), None);
    let (w, _rx) = waiter("w");
    t.enqueue(KEY.to_vec(), w);
    assert_eq!(t.next_deadline(), Some(now + 2 * LEASE));
    assert!(t.expire_waited_for(now + LEASE).is_empty());
    assert_eq!(t.expire_waited_for(now + 2 * LEASE), vec![KEY.to_vec()]);
    assert_eq!(t.next_waiter(KEY, Instant::now()).unwrap().token, "w");
    assert_eq!(stats.lock_lease_expiries.load(Relaxed), 1);
    assert!(!t.is_free(b"alone", now), "a lease nobody waits for stays");
}

#[test]
fn the_guard_tells_what_the_holder_saw_and_until_when() {
    let (mut t, _) = table();
    let now = Instant::now();
    let held = Held {
        saw: 4,
        until_ms: 1_000,
    };
    t.hold(KEY, "a".into(), now + LEASE, held);
    assert_eq!(t.check(KEY, None, now + LEASE).unwrap(), None);
    t.hold(KEY, "a".into(), now + LEASE, held);
    assert_eq!(t.check(KEY, Some("a"), now).unwrap(), Some(held));
    t.saw(KEY, 5);
    t.refresh(KEY, "a", LEASE, now, 2_000).unwrap();
    let now_held = Held {
        saw: 5,
        until_ms: 2_000,
    };
    assert_eq!(t.check(KEY, Some("a"), now).unwrap(), Some(now_held));
}

#[test]
fn a_rolled_back_batch_leaves_holders_leases_and_queues_as_they_were() {
    let (mut t, _) = table();
    let now = Instant::now();
    t.hold(KEY, "a".into(), now + LEASE, HELD);
    let (w1, _rx1) = waiter("w1");
    let (w2, _rx2) = waiter("w2");
    t.enqueue(KEY.to_vec(), w1);
    t.enqueue(KEY.to_vec(), w2);
    t.committed();

    // The batch: a refresh and a write by the holder, a release handing the
    // lock to w1, a new waiter, and a grant of a free lock.
    t.refresh(KEY, "a", 3 * LEASE, now, 9).unwrap();
    t.saw(KEY, 7);
    t.release(KEY);
    let w1 = t.next_waiter(KEY, Instant::now()).unwrap();
    t.hold(KEY, w1.token.clone(), now + LEASE, HELD);
    let (w3, _rx3) = waiter("w3");
    t.enqueue(KEY.to_vec(), w3);
    t.hold(b"free", "f".into(), now + LEASE, HELD);

    // It failed: w1 goes back to the head of the queue, the rest is undone.
    t.requeue(KEY.to_vec(), w1);
    let told: Vec<_> = t.roll_back().into_iter().map(|w| w.token).collect();
    assert_eq!(told, ["w3"], "waiters queued by the batch are told");
    assert!(t.is_free(b"free", now), "no grant of the batch stands");
    assert!(!t.locks.contains_key(&b"free"[..]), "nor its entry");
    assert_eq!(t.check(KEY, Some("a"), now).unwrap(), Some(HELD));
    assert!(
        t.check(KEY, Some("a"), now + LEASE).is_err(),
        "the old lease"
    );
    let queue: Vec<_> = t.locks[KEY]
        .queue
        .iter()
        .map(|w| w.token.as_str())
        .collect();
    assert_eq!(queue, ["w1", "w2"]);

    // A committed batch is not undone by a later rollback.
    t.release(KEY);
    t.committed();
    assert!(t.roll_back().is_empty());
    assert_eq!(t.next_waiter(KEY, Instant::now()).unwrap().token, "w1");
}

#[test]
fn leases_that_ran_out_unwaited_are_not_in_use_and_are_forgotten() {
    let (mut t, stats) = table();
    let now = Instant::now();
    t.hold(b"short", "a".into(), now + LEASE, HELD);
    t.hold(KEY, "b".into(), now + 3 * LEASE, HELD);
    let (w, _rx) = waiter("w");
    t.enqueue(b"queued".to_vec(), w);
    let later = now + 2 * LEASE;
    assert!(!t.in_use(b"short", later));
    assert!(t.in_use(KEY, later));
    assert!(
        t.in_use(b"queued", later),
        "a waiter keeps a free lock in use"
    );
    assert!(!t.in_use(b"never", now));
    t.forget_expired(later);
    assert_eq!(t.locks.len(), 2);
    assert_eq!(stats.lock_lease_expiries.load(Relaxed), 1);
}
