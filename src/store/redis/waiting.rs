//! Waiting for a lock across instances (see the FIFO paragraph of the store's
//! module doc): the registry of the callers queued through this instance,
//! the wait loop, the `Abandon` guard that takes a waiter out of the queue
//! however its wait ends, and what this instance does with a lock that a
//! releasing script passed on (`Inner::hand_over`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::fault::Fault;
use super::library::Function;
use super::wire::{self, Handover, LockReply};
use super::{HEARTBEAT, Inner, Keys, WAIT};
use crate::error::{Error, Result};
use crate::session::{Idempotency, LockGrant, LockRequest, Turn};
use crate::telemetry::otlp::{self, LockWait};

/// A caller queued for a lock through this instance.
#[derive(Default)]
struct Waiter {
    notify: Notify,
    /// The lock, when a releasing script on this instance handed it over.
    handed: Mutex<Option<LockGrant>>,
}

/// The callers queued for a lock through this instance, by token: the
/// releasing scripts and the wake-up channel name them by token.
///
/// A releasing script can hand the lock to a waiter of this instance while
/// that waiter's own retry finds the lock already its own and returns it to
/// its caller: two answers for one grant, and the handover's may be read
/// second. So a waiter that takes the lock by its own attempt leaves a mark
/// ([`Registry::taken`]) that tells a late handover of that grant apart from
/// one whose waiter has gone; only the latter is abandoned. Never abandoning
/// a token a caller of this instance holds is what keeps a grant from being
/// taken back behind its holder's back.
#[derive(Default)]
pub(super) struct Waiters(Mutex<Registry>);

#[derive(Default)]
struct Registry {
    waiting: HashMap<String, Arc<Waiter>>,
    /// Tokens that took the lock by their own attempt, while a handover of
    /// the same grant may still be on its way, until when it may arrive.
    taken: HashMap<String, Instant>,
    /// `taken` is rid of marks past their time when it reaches this length
    /// (doubling, so that pruning costs O(1) a mark).
    prune_at: usize,
}

/// What became of a grant a releasing script handed to a waiter of ours.
enum Delivery {
    /// Given to its waiter.
    Given,
    /// Its waiter already took the lock by its own attempt: the same grant,
    /// in use. Nothing to do.
    AlreadyTaken,
    /// Nobody of ours waits for it any more: the lock must be released.
    Orphaned(LockGrant),
}

impl Waiters {
    fn add(&self, token: String) -> Arc<Waiter> {
        let waiter = Arc::new(Waiter::default());
        self.0.lock().waiting.insert(token, waiter.clone());
        waiter
    }

    fn remove(&self, token: &str) {
        self.0.lock().waiting.remove(token);
    }

    /// `token`'s own attempt was granted the lock. Unless a handover of it
    /// was already delivered, one may still come, until `handovers_end`.
    fn took(&self, token: &str, handovers_end: Instant) {
        let mut r = self.0.lock();
        let delivered = match r.waiting.remove(token) {
            Some(w) => w.handed.lock().take().is_some(),
            None => false,
        };
        if delivered {
            return;
        }
        r.taken.insert(token.to_owned(), handovers_end);
        if r.taken.len() >= r.prune_at {
            let now = Instant::now();
            r.taken.retain(|_, end| *end > now);
            r.prune_at = (2 * r.taken.len()).max(64);
        }
    }

    /// Delivers a grant a releasing script handed to one of our waiters.
    fn deliver(&self, grant: LockGrant) -> Delivery {
        let mut r = self.0.lock();
        if let Some(w) = r.waiting.get(&grant.token) {
            *w.handed.lock() = Some(grant);
            w.notify.notify_one();
            return Delivery::Given;
        }
        if r.taken.remove(&grant.token).is_some() {
            return Delivery::AlreadyTaken;
        }
        Delivery::Orphaned(grant)
    }

    /// Wakes the waiter `token` names, when it is one of this instance's.
    pub(super) fn wake(&self, token: &str) {
        if let Some(w) = self.0.lock().waiting.get(token) {
            w.notify.notify_one();
        }
    }
}

/// One queueing attempt's outcome.
enum Queued {
    Granted(LockGrant),
    /// A newer waiter of the burst took this one's turn.
    Superseded,
    /// The grant made earlier under the call's idempotency key.
    Replayed(LockGrant),
    /// The call's idempotency key is another request's.
    KeyReused,
    /// In the queue; the holder's lease runs out in `free_in` (`None`:
    /// unknown, or free already).
    Waiting {
        free_in: Option<Duration>,
    },
}

impl Inner {
    /// Waits up to `req.wait` for the lock: queues `token` behind the
    /// holder and the earlier waiters (its first attempt joining the burst,
    /// as `req.turn` says), and tries again when woken, when the holder's
    /// lease runs out or its quiet period ends, or at the heartbeat,
    /// whichever comes first. A newer waiter of its burst ends the wait
    /// with SUPERSEDED.
    pub(super) async fn queue(
        self: &Arc<Self>,
        keys: Keys,
        token: String,
        req: LockRequest,
    ) -> Result<LockGrant> {
        let LockRequest {
            lease,
            wait,
            turn,
            idempotency,
        } = req;
        let mut join = Some(turn);
        let deadline = Instant::now() + wait;
        let waiter = self.waiters.add(token.clone());
        let mut guard = Abandon {
            inner: self.clone(),
            keys,
            token,
            armed: true,
            counted: false,
        };
        let started = Instant::now();
        loop {
            let handed = waiter.handed.lock().take();
            let attempt = match handed {
                Some(grant) => {
                    self.stats.lock_acquisitions.fetch_add(1, Relaxed);
                    Queued::Granted(grant)
                }
                None => {
                    let attempt = self
                        .try_queued(
                            &guard.keys,
                            &guard.token,
                            lease,
                            join.take(),
                            idempotency.as_ref(),
                        )
                        .await?;
                    if let Queued::Granted(_) = attempt {
                        // A handover of this grant is read within the Redis
                        // timeout of the call whose script made it, which
                        // ran before this attempt's (a second more for the
                        // timers' slack).
                        let end = Instant::now() + self.timeout + Duration::from_secs(1);
                        self.waiters.took(&guard.token, end);
                    }
                    attempt
                }
            };
            let free_in = match attempt {
                Queued::Granted(grant) => {
                    guard.armed = false;
                    if guard.counted {
                        otlp::lock_wait(LockWait::Granted);
                        self.stats.lock_waits_granted.fetch_add(1, Relaxed);
                        self.stats
                            .lock_wait_ms
                            .record(started.elapsed().as_millis() as u64);
                    }
                    return Ok(grant);
                }
                Queued::Waiting { free_in } => free_in,
                Queued::Superseded => {
                    // Out of the queue already: nothing to abandon.
                    guard.armed = false;
                    return Err(Error::Superseded);
                }
                Queued::Replayed(grant) => {
                    // The script took this token out of the queue.
                    guard.armed = false;
                    return Ok(grant);
                }
                // Still queued, if it was: the guard takes it out.
                Queued::KeyReused => return Err(super::reused(idempotency.as_ref())),
            };
            if !guard.counted {
                otlp::lock_wait(LockWait::Queued);
                guard.counted = true;
                self.stats.lock_contended.fetch_add(1, Relaxed);
                self.stats.lock_waiting_now.fetch_add(1, Relaxed);
            }
            let retry = free_in.map_or(HEARTBEAT, |d| d.min(HEARTBEAT));
            tokio::select! {
                _ = waiter.notify.notified() => otlp::lock_wait(LockWait::Woken),
                _ = tokio::time::sleep(retry) => {}
                _ = tokio::time::sleep_until(deadline) => {
                    otlp::lock_wait(LockWait::TimedOut);
                    return Err(Error::LockWaitTimeout { waited_ms: wait.as_millis() as u64 });
                }
            }
        }
    }

    /// One attempt that queues: takes the lock if it is free and `token` is
    /// first in line, otherwise queues `token` or renews its place.
    async fn try_queued(
        &self,
        keys: &Keys,
        token: &str,
        lease: Duration,
        join: Option<Turn>,
        idem: Option<&Idempotency>,
    ) -> Result<Queued, Fault> {
        match self
            .attempt(keys, token, lease, WAIT, join.as_ref(), idem)
            .await?
        {
            LockReply::Granted {
                fence,
                lease_expires_ms,
                session,
                superseded,
            } => {
                self.stats.lock_acquisitions.fetch_add(1, Relaxed);
                Ok(Queued::Granted(LockGrant {
                    token: token.to_owned(),
                    fence,
                    lease_expires_ms,
                    session,
                    superseded,
                    replayed: false,
                }))
            }
            LockReply::Queued { free_in } => Ok(Queued::Waiting { free_in }),
            LockReply::Superseded => Ok(Queued::Superseded),
            LockReply::Replayed(grant) => Ok(Queued::Replayed(grant)),
            LockReply::KeyReused => Ok(Queued::KeyReused),
            LockReply::Held => Err(Fault::Protocol(
                "lock script refused an attempt to wait instead of queueing it".into(),
            )),
        }
    }

    /// Acts on what a releasing script did with the lock. Handed to a waiter
    /// of this instance: give it the grant, or nothing when that waiter took
    /// the lock by its own attempt meanwhile. If that waiter has gone (its
    /// call ended without the lock), release the lock again. Woken a waiter:
    /// when it is one of ours, wake it now rather than after the pub/sub hop.
    pub(super) fn hand_over(self: &Arc<Self>, handover: Handover, keys: &Keys) {
        match handover {
            Handover::Nobody => {}
            Handover::Woke { token } => self.waiters.wake(&token),
            Handover::Handed(grant) => match self.waiters.deliver(grant) {
                Delivery::Given | Delivery::AlreadyTaken => {}
                Delivery::Orphaned(grant) => self.abandon(keys.clone(), grant.token),
            },
            Handover::Unreadable(fault) => {
                tracing::error!(error = %fault, "unreadable lock handover");
            }
        }
    }

    /// Runs the abandon script for `token` in the background: it leaves the
    /// queue, and a lock it holds is released and passed on.
    fn abandon(self: &Arc<Self>, keys: Keys, token: String) {
        let inner = self.clone();
        tokio::spawn(async move {
            let mut inv = inner.library.call(Function::Abandon);
            keys.add_to(&mut inv);
            inv.arg(&token).arg(inner.channels.wake(keys.slot));
            match inner.invoke(&inv, wire::abandon).await {
                Ok(handover) => inner.hand_over(handover, &keys),
                // The queue entry still expires after WAITER_ALIVE, and a
                // granted lock after its lease.
                Err(e) => tracing::warn!(error = %e, "could not leave the lock queue"),
            }
        });
    }
}

/// Takes a waiter out of the queue when its wait ends without a grant: on
/// timeout, error, or when the caller's future is dropped (deadline passed,
/// client disconnected). Runs the abandon script in the background, which also
/// releases the lock if it was granted to this token meanwhile.
struct Abandon {
    inner: Arc<Inner>,
    keys: Keys,
    token: String,
    /// Cleared when the wait ends with the lock: nothing to abandon then.
    armed: bool,
    /// The wait queued, and is counted in `lock_waiting_now`.
    counted: bool,
}

impl Drop for Abandon {
    fn drop(&mut self) {
        self.inner.waiters.remove(&self.token);
        if self.counted {
            self.inner.stats.lock_waiting_now.fetch_sub(1, Relaxed);
        }
        if !self.armed {
            return;
        }
        if self.counted {
            self.inner.stats.lock_waits_abandoned.fetch_add(1, Relaxed);
        }
        self.inner.abandon(
            std::mem::take(&mut self.keys),
            std::mem::take(&mut self.token),
        );
    }
}
