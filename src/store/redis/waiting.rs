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
use super::wire::{self, Handover, LockReply};
use super::{HEARTBEAT, Inner, Keys, WAIT};
use crate::error::{Error, Result};
use crate::session::LockGrant;

/// A caller queued for a lock through this instance.
#[derive(Default)]
struct Waiter {
    notify: Notify,
    /// The lock, when a releasing script on this instance handed it over.
    handed: Mutex<Option<LockGrant>>,
}

/// The callers queued for a lock through this instance, by token: the
/// releasing scripts and the wake-up channel name them by token.
#[derive(Default)]
pub(super) struct Waiters(Mutex<HashMap<String, Arc<Waiter>>>);

impl Waiters {
    fn add(&self, token: String) -> Arc<Waiter> {
        let waiter = Arc::new(Waiter::default());
        self.0.lock().insert(token, waiter.clone());
        waiter
    }

    fn remove(&self, token: &str) {
        self.0.lock().remove(token);
    }

    fn get(&self, token: &str) -> Option<Arc<Waiter>> {
        self.0.lock().get(token).cloned()
    }

    /// Wakes the waiter `token` names, when it is one of this instance's.
    pub(super) fn wake(&self, token: &str) {
        if let Some(w) = self.0.lock().get(token) {
            w.notify.notify_one();
        }
    }
}

/// One queueing attempt's outcome.
enum Queued {
    Granted(LockGrant),
    /// In the queue; the holder's lease runs out in `free_in` (`None`:
    /// unknown, or free already).
    Waiting {
        free_in: Option<Duration>,
    },
}

impl Inner {
    /// Waits up to `wait` for the lock: queues `token` behind the holder and
    /// the earlier waiters, and tries again when woken, when the holder's
    /// lease runs out, or at the heartbeat, whichever comes first.
    pub(super) async fn queue(
        self: &Arc<Self>,
        keys: Keys,
        token: String,
        lease: Duration,
        wait: Duration,
    ) -> Result<LockGrant> {
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
                None => self.try_queued(&guard.keys, &guard.token, lease).await?,
            };
            let free_in = match attempt {
                Queued::Granted(grant) => {
                    guard.armed = false;
                    if guard.counted {
                        self.stats.lock_waits_granted.fetch_add(1, Relaxed);
                        self.stats
                            .lock_wait_ms
                            .record(started.elapsed().as_millis() as u64);
                    }
                    return Ok(grant);
                }
                Queued::Waiting { free_in } => free_in,
            };
            if !guard.counted {
                guard.counted = true;
                self.stats.lock_contended.fetch_add(1, Relaxed);
                self.stats.lock_waiting_now.fetch_add(1, Relaxed);
            }
            let retry = free_in.map_or(HEARTBEAT, |d| d.min(HEARTBEAT));
            tokio::select! {
                _ = waiter.notify.notified() => {}
                _ = tokio::time::sleep(retry) => {}
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(Error::LockWaitTimeout { waited_ms: wait.as_millis() as u64 });
                }
            }
        }
    }

    /// One attempt that queues: takes the lock if it is free and `token` is
    /// first in line, otherwise queues `token` or renews its place.
    async fn try_queued(&self, keys: &Keys, token: &str, lease: Duration) -> Result<Queued, Fault> {
        match self.attempt(keys, token, lease, WAIT).await? {
            LockReply::Granted {
                fence,
                lease_expires_ms,
                session,
            } => {
                self.stats.lock_acquisitions.fetch_add(1, Relaxed);
                Ok(Queued::Granted(LockGrant {
                    token: token.to_owned(),
                    fence,
                    lease_expires_ms,
                    session,
                }))
            }
            LockReply::Queued { free_in } => Ok(Queued::Waiting { free_in }),
            LockReply::Held => Err(Fault::Protocol(
                "lock script refused an attempt to wait instead of queueing it".into(),
            )),
        }
    }

    /// Acts on what a releasing script did with the lock. Handed to a waiter
    /// of this instance: give it the grant. If that waiter has just gone
    /// (its call ended meanwhile), release the lock again. Woken a waiter:
    /// when it is one of ours, wake it now rather than after the pub/sub hop.
    pub(super) fn hand_over(self: &Arc<Self>, handover: Handover, keys: &Keys) {
        match handover {
            Handover::Nobody => {}
            Handover::Woke { token } => self.waiters.wake(&token),
            Handover::Handed(grant) => match self.waiters.get(&grant.token) {
                Some(w) => {
                    *w.handed.lock() = Some(grant);
                    w.notify.notify_one();
                }
                None => self.abandon(keys.clone(), grant.token),
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
            let mut inv = inner.scripts.abandon.prepare_invoke();
            keys.add_to(&mut inv);
            inv.arg(&token).arg(&inner.wake_channel);
            match inner.invoke(&mut inv, wire::abandon).await {
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
