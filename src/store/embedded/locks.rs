//! The lock table of the embedded store: who holds each session's lock, until
//! when, the queue of those waiting for it, and its burst (the newest waiter
//! that asked for LATEST_WINS or DEBOUNCE, see `burst`).
//!
//! It lives in memory only and is owned by the actor, the one thread that
//! applies every command, so it needs no synchronisation. It knows nothing of
//! redb: taking a fencing token (which must be durable) is the actor's step,
//! done before [`LockTable::hold`] makes the grant visible here. Entries exist
//! only for sessions that are locked or have waiters.
//!
//! The commands of a batch see each other's lock changes at once, but a
//! batch whose transaction fails must leave no grant behind. So every change
//! of a holder or a queue is journaled until the batch ends:
//! [`LockTable::committed`] forgets the journal, [`LockTable::roll_back`]
//! undoes it, newest first. Only what no outcome can undo is left out: a
//! lease that ran out, a waiter that gave up.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use super::actor::Reply;
use super::outcome::Refusal;
use crate::session::{Idempotency, LockGrant};
use crate::stats::Stats;

mod burst;
mod inspect;
#[cfg(test)]
mod tests;

/// A queued LockSession call.
pub(super) struct Waiter {
    pub token: String,
    pub lease: Duration,
    pub since: Instant,
    pub reply: Reply<LockGrant>,
    /// Its LockSession's idempotency key: its grant is recorded under it.
    pub idem: Option<Idempotency>,
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
    /// Its fencing token and when it was granted (ms since the epoch), for
    /// InspectSession (see `inspect`); set by the grant after `hold`.
    granted: (u64, i64),
}

#[derive(Default)]
struct LockState {
    holder: Option<Holder>,
    queue: VecDeque<Waiter>,
    /// The burst's waiter, while one may be queued (see `burst`).
    burst: Option<burst::Burst>,
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

/// How to undo one change of the batch.
enum Undo {
    /// The holder had been this.
    Holder(Vec<u8>, Option<Holder>),
    /// The holder's lease and what it knew had been these.
    Held(Vec<u8>, Instant, Held),
    /// The batch queued the waiter with this token.
    Queued(Vec<u8>, String),
    /// The burst had been this.
    Burst(Vec<u8>, Option<burst::Burst>),
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

/// The holder, if `token` is it.
fn held_by<'a>(
    locks: &'a mut HashMap<Vec<u8>, LockState>,
    key: &[u8],
    token: &str,
    now: Instant,
    stats: &Stats,
) -> Result<&'a mut Holder, Refusal> {
    match live(locks, key, now, stats).and_then(|s| s.holder.as_mut()) {
        Some(h) if h.token == token => Ok(h),
        _ => {
            stats.lock_stale_token.fetch_add(1, Relaxed);
            Err(Refusal::LockLost)
        }
    }
}

pub(super) struct LockTable {
    locks: HashMap<Vec<u8>, LockState>,
    /// The changes of the batch being applied.
    journal: Vec<Undo>,
    stats: Arc<Stats>,
}

impl LockTable {
    pub(super) fn new(stats: Arc<Stats>) -> LockTable {
        LockTable {
            locks: HashMap::new(),
            journal: Vec::new(),
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
            granted: (0, 0),
        };
        let state = self.locks.entry(key.to_vec()).or_default();
        let before = state.holder.replace(holder);
        self.journal.push(Undo::Holder(key.to_vec(), before));
    }

    /// Puts a waiter at the back of `key`'s queue.
    pub(super) fn enqueue(&mut self, key: Vec<u8>, waiter: Waiter) {
        self.journal
            .push(Undo::Queued(key.clone(), waiter.token.clone()));
        self.locks.entry(key).or_default().queue.push_back(waiter);
    }

    /// Puts a waiter back at the head of `key`'s queue: its grant did not
    /// happen.
    pub(super) fn requeue(&mut self, key: Vec<u8>, waiter: Waiter) {
        self.locks.entry(key).or_default().queue.push_front(waiter);
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
            Some(token) => {
                let h = held_by(&mut self.locks, key, token, now, &self.stats)?;
                Ok(Some(h.held))
            }
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
        let h = held_by(&mut self.locks, key, token, now, &self.stats)?;
        let before = (h.deadline, h.held);
        h.deadline = now + lease;
        h.held.until_ms = until_ms;
        self.journal
            .push(Undo::Held(key.to_vec(), before.0, before.1));
        Ok(())
    }

    /// The holder wrote (or deleted: 0) the session; this is now the one it
    /// works on.
    pub(super) fn saw(&mut self, key: &[u8], version: u64) {
        let Some(h) = self.locks.get_mut(key).and_then(|s| s.holder.as_mut()) else {
            return;
        };
        let before = (h.deadline, h.held);
        h.held.saw = version;
        self.journal
            .push(Undo::Held(key.to_vec(), before.0, before.1));
    }

    /// When `token`'s lease ends (ms since the epoch), if it holds the lock.
    pub(super) fn held_until(&mut self, key: &[u8], token: &str, now: Instant) -> Option<i64> {
        let h = self.live(key, now)?.holder.as_ref()?;
        (h.token == token).then_some(h.held.until_ms)
    }

    /// Takes out of `key`'s queue the waiters of the lock key `idem` (a
    /// grant under it was just made): they get its answer instead.
    pub(super) fn take_same_key(&mut self, key: &[u8], idem: &Idempotency) -> Vec<Waiter> {
        let Some(state) = self.locks.get_mut(key) else {
            return Vec::new();
        };
        let same_key = |w: &Waiter| w.idem.as_ref().is_some_and(|i| i.key == idem.key);
        if !state.queue.iter().any(same_key) {
            return Vec::new();
        }
        let (same, rest): (VecDeque<Waiter>, VecDeque<Waiter>) = std::mem::take(&mut state.queue)
            .into_iter()
            .partition(same_key);
        state.queue = rest;
        same.into()
    }

    /// Frees the lock (whoever holds it); its waiters stay queued.
    pub(super) fn release(&mut self, key: &[u8]) {
        if let Some(before) = self.locks.get_mut(key).and_then(|s| s.holder.take()) {
            self.journal.push(Undo::Holder(key.to_vec(), Some(before)));
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
        // The burst's payloads end with its waiter (see TurnPolicy).
        if state.burst.as_ref().is_some_and(|b| b.token == token) {
            state.burst = None;
        }
        if left_queue || holds {
            self.stats.lock_waits_abandoned.fetch_add(1, Relaxed);
        }
        if holds {
            let before = state.holder.take();
            self.journal.push(Undo::Holder(key.to_vec(), before));
        }
    }

    /// The first waiter still waiting, taken off the queue, if the lock is
    /// free and that waiter is not waiting out a quiet period (DEBOUNCE);
    /// the caller grants it the lock (or puts it back with
    /// [`LockTable::requeue`]).
    pub(super) fn next_waiter(&mut self, key: &[u8], now: Instant) -> Option<Waiter> {
        let state = self.locks.get_mut(key)?;
        if state.holder.is_some() {
            return None;
        }
        // A closed reply gave up; its Abandon is on the way.
        while state.queue.front().is_some_and(|w| w.reply.is_closed()) {
            state.queue.pop_front();
        }
        if state.quiet_until().is_some_and(|t| t > now) {
            return None;
        }
        state.queue.pop_front()
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
    /// waiter, or quiet period that, when it ends, must grant a free lock to
    /// the burst's waiter.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.locks
            .values()
            .filter(|s| !s.queue.is_empty())
            .filter_map(|s| match &s.holder {
                Some(h) => Some(h.deadline),
                None => s.quiet_until(),
            })
            .min()
    }

    /// Forgets the leases that ran out while others were waiting, and names
    /// the locks that now must be handed over (free ones with waiters too).
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

    /// The batch committed: its changes stand.
    pub(super) fn committed(&mut self) {
        self.journal.clear();
    }

    /// The batch failed: undoes its changes, newest first, and returns the
    /// waiters it queued (their callers are told the fault).
    pub(super) fn roll_back(&mut self) -> Vec<Waiter> {
        let mut dropped = Vec::new();
        while let Some(undo) = self.journal.pop() {
            let key = match undo {
                Undo::Holder(key, before) => {
                    self.locks.entry(key.clone()).or_default().holder = before;
                    key
                }
                Undo::Held(key, deadline, held) => {
                    let holder = self.locks.get_mut(&key).and_then(|s| s.holder.as_mut());
                    if let Some(h) = holder {
                        (h.deadline, h.held) = (deadline, held);
                    }
                    key
                }
                Undo::Burst(key, before) => {
                    self.locks.entry(key.clone()).or_default().burst = before;
                    key
                }
                Undo::Queued(key, token) => {
                    if let Some(state) = self.locks.get_mut(&key) {
                        let queue = std::mem::take(&mut state.queue);
                        for w in queue {
                            if w.token == token {
                                dropped.push(w);
                            } else {
                                state.queue.push_back(w);
                            }
                        }
                    }
                    key
                }
            };
            self.forget_if_idle(&key);
        }
        dropped
    }
}
