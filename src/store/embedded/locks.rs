//! The lock table of the embedded store: who holds each session's lock, until
//! when, and the FIFO queue of those waiting for it.
//!
//! It lives in memory only and is owned by the actor, the one thread that
//! applies every command, so it needs no synchronisation. It knows nothing of
//! redb: taking a fencing token (which must be durable) is the actor's step,
//! done before [`LockTable::hold`] makes the grant visible here. Entries exist
//! only for sessions that are locked or have waiters.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use super::actor::Reply;
use super::outcome::Refusal;
use crate::session::LockGrant;
use crate::stats::Stats;

/// A queued LockSession call.
pub(super) struct Waiter {
    pub token: String,
    pub lease: Duration,
    pub since: Instant,
    pub reply: Reply<LockGrant>,
}

/// What a token-guarded step needs to know of the lock its token holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Held {
    /// The version of the session the holder works on: the one it was
    /// granted with or last wrote (0: none).
    pub saw: u64,
    /// When the lease ends, in ms since the epoch: the session lives at
    /// least that long.
    pub until_ms: i64,
}

struct Holder {
    token: String,
    deadline: Instant,
    held: Held,
}

#[derive(Default)]
struct LockState {
    holder: Option<Holder>,
    queue: VecDeque<Waiter>,
}

impl LockState {
    fn is_idle(&self) -> bool {
        self.holder.is_none() && self.queue.is_empty()
    }

    /// Forgets a holder whose lease ran out.
    fn expire(&mut self, now: Instant, stats: &Stats) {
        if self.holder.as_ref().is_some_and(|h| h.deadline <= now) {
            self.holder = None;
            stats.lock_lease_expiries.fetch_add(1, Relaxed);
        }
    }
}

fn live<'a>(
    locks: &'a mut HashMap<Vec<u8>, LockState>,
    key: &[u8],
    now: Instant,
    stats: &Stats,
) -> Option<&'a mut LockState> {
    let state = locks.get_mut(key)?;
    state.expire(now, stats);
    Some(state)
}

pub(super) struct LockTable {
    locks: HashMap<Vec<u8>, LockState>,
    stats: Arc<Stats>,
}

impl LockTable {
    pub(super) fn new(stats: Arc<Stats>) -> LockTable {
        LockTable {
            locks: HashMap::new(),
            stats,
        }
    }

    /// The live state of `key`'s lock, an expired lease forgotten.
    fn live(&mut self, key: &[u8], now: Instant) -> Option<&mut LockState> {
        live(&mut self.locks, key, now, &self.stats)
    }

    /// Whether the lock can be granted at once: nobody holds it and nobody
    /// waits for it. Counts contention when not.
    pub(super) fn is_free(&mut self, key: &[u8], now: Instant) -> bool {
        let free = self.live(key, now).is_none_or(|s| s.is_idle());
        if !free {
            self.stats.lock_contended.fetch_add(1, Relaxed);
        }
        free
    }

    /// Makes `token` the holder until `deadline`.
    pub(super) fn hold(&mut self, key: &[u8], token: String, deadline: Instant, held: Held) {
        let holder = Holder {
            token,
            deadline,
            held,
        };
        self.locks.entry(key.to_vec()).or_default().holder = Some(holder);
    }

    /// Puts a waiter at the back of `key`'s queue.
    pub(super) fn enqueue(&mut self, key: Vec<u8>, waiter: Waiter) {
        self.locks.entry(key).or_default().queue.push_back(waiter);
    }

    /// The lock guard of a write: the token must hold the lock (what it holds
    /// is returned); without a token, nobody may hold it.
    pub(super) fn check(
        &mut self,
        key: &[u8],
        token: Option<&str>,
        now: Instant,
    ) -> Result<Option<Held>, Refusal> {
        match token {
            Some(token) => self.held_by(key, token, now).map(|h| Some(h.held)),
            None if self.live(key, now).is_some_and(|s| s.holder.is_some()) => {
                self.stats.lock_held_rejections.fetch_add(1, Relaxed);
                Err(Refusal::LockHeld)
            }
            None => Ok(None),
        }
    }

    /// Extends the lease of `token`, which must hold the lock, to `lease`
    /// from `now` (`until_ms` on the wall clock).
    pub(super) fn refresh(
        &mut self,
        key: &[u8],
        token: &str,
        lease: Duration,
        now: Instant,
        until_ms: i64,
    ) -> Result<(), Refusal> {
        let h = self.held_by(key, token, now)?;
        h.deadline = now + lease;
        h.held.until_ms = until_ms;
        Ok(())
    }

    /// The holder wrote (or deleted: 0) the session; this is now the one it
    /// works on.
    pub(super) fn saw(&mut self, key: &[u8], version: u64) {
        if let Some(h) = self.locks.get_mut(key).and_then(|s| s.holder.as_mut()) {
            h.held.saw = version;
        }
    }

    /// The holder, if `token` is it.
    fn held_by(&mut self, key: &[u8], token: &str, now: Instant) -> Result<&mut Holder, Refusal> {
        // Borrows the map and the stats apart, so the holder can be returned.
        let stats = &self.stats;
        let holder = live(&mut self.locks, key, now, stats).and_then(|s| s.holder.as_mut());
        match holder {
            Some(h) if h.token == token => Ok(h),
            _ => {
                stats.lock_stale_token.fetch_add(1, Relaxed);
                Err(Refusal::LockLost)
            }
        }
    }

    /// Frees the lock (whoever holds it); its waiters stay queued.
    pub(super) fn release(&mut self, key: &[u8]) {
        if let Some(state) = self.locks.get_mut(key) {
            state.holder = None;
        }
    }

    /// A queued caller gave up: forgets it, and frees the lock should it have
    /// been granted meanwhile (nobody knows that token).
    pub(super) fn abandon(&mut self, key: &[u8], token: &str) {
        let Some(state) = self.locks.get_mut(key) else {
            return;
        };
        let before = state.queue.len();
        state.queue.retain(|w| w.token != token);
        let left_queue = state.queue.len() < before;
        let holds = state.holder.as_ref().is_some_and(|h| h.token == token);
        if left_queue || holds {
            self.stats.lock_waits_abandoned.fetch_add(1, Relaxed);
        }
        if holds {
            state.holder = None;
        }
    }

    /// The first waiter still waiting, taken off the queue, if the lock is
    /// free; the caller grants it the lock (or the batch fails).
    pub(super) fn next_waiter(&mut self, key: &[u8]) -> Option<Waiter> {
        let state = self.locks.get_mut(key)?;
        if state.holder.is_some() {
            return None;
        }
        // A closed reply gave up; its Abandon is on the way.
        std::iter::from_fn(|| state.queue.pop_front()).find(|w| !w.reply.is_closed())
    }

    /// Drops the entry of a lock that nobody holds or waits for; true if it
    /// did.
    pub(super) fn forget_if_idle(&mut self, key: &[u8]) -> bool {
        let idle = self.locks.get(key).is_some_and(LockState::is_idle);
        if idle {
            self.locks.remove(key);
        }
        idle
    }

    /// Whether someone holds the lock or waits for it.
    pub(super) fn in_use(&self, key: &[u8], now: Instant) -> bool {
        self.locks.get(key).is_some_and(|s| {
            !s.queue.is_empty() || s.holder.as_ref().is_some_and(|h| h.deadline > now)
        })
    }

    /// Drops the entries whose lease ran out with nobody waiting (nothing
    /// else looks at them again).
    pub(super) fn forget_expired(&mut self, now: Instant) {
        let stats = &self.stats;
        self.locks.retain(|_, s| {
            s.expire(now, stats);
            !s.is_idle()
        });
    }

    /// The earliest lease that, when it runs out, must hand the lock to a
    /// waiter.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.locks
            .values()
            .filter(|s| !s.queue.is_empty())
            .filter_map(|s| s.holder.as_ref().map(|h| h.deadline))
            .min()
    }

    /// Forgets the leases that ran out while others were waiting, and names
    /// the locks that now must be handed over.
    pub(super) fn expire_waited_for(&mut self, now: Instant) -> Vec<Vec<u8>> {
        let mut due = Vec::new();
        for (key, state) in &mut self.locks {
            if !state.queue.is_empty() && state.holder.as_ref().is_none_or(|h| h.deadline <= now) {
                state.expire(now, &self.stats);
                due.push(key.clone());
            }
        }
        due
    }
}

#[cfg(test)]
mod tests {
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
        assert!(t.next_waiter(KEY).is_none(), "held: nobody is served");
        drop(rx1);
        t.release(KEY);
        assert_eq!(t.next_waiter(KEY).unwrap().token, "w2");
        t.hold(KEY, "w2".into(), now + LEASE, HELD);
        t.forget_if_idle(KEY);
        t.release(KEY);
        assert_eq!(t.next_waiter(KEY).unwrap().token, "w3");
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
        assert_eq!(t.next_waiter(KEY).unwrap().token, "w");
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
}
