//! The protocol between [`EmbeddedStore`](crate::store::embedded::EmbeddedStore)
//! and the actor: the commands it sends, and the answers the actor keeps
//! until their batch is committed (or rolled back).

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::error::Error;
use crate::error::Result;
use crate::session::{
    Admitted, Guards, Idempotency, Inspection, LockGrant, Mutation, RateLimit, Turn, Written,
};
use crate::stats::Stats;
use crate::store::embedded::locks::Waiter;
use crate::store::embedded::outcome::{Fault, Outcome};
use crate::watch::Begin;

pub(in crate::store::embedded) type Reply<T> = oneshot::Sender<Result<T>>;

pub(in crate::store::embedded) enum Command {
    /// Take the lock if it is free now; LOCK_HELD otherwise.
    TryLock {
        key: Vec<u8>,
        token: String,
        lease: Duration,
        idem: Option<Idempotency>,
        reply: Reply<LockGrant>,
    },
    /// Take the lock if it is free now, else join the queue of waiters
    /// (answered when granted or superseded; the caller bounds the wait),
    /// as `turn` says.
    QueueLock {
        key: Vec<u8>,
        token: String,
        lease: Duration,
        turn: Turn,
        idem: Option<Idempotency>,
        reply: Reply<LockGrant>,
    },
    /// A queued caller gave up (see `AbandonOnDrop`).
    Abandon { key: Vec<u8>, token: String },
    Update {
        key: Vec<u8>,
        m: Mutation,
        g: Guards,
        reply: Reply<Written>,
    },
    Delete {
        key: Vec<u8>,
        g: Guards,
        reply: Reply<Option<u64>>,
    },
    Unlock {
        key: Vec<u8>,
        token: String,
        reply: Reply<()>,
    },
    Refresh {
        key: Vec<u8>,
        token: String,
        lease: Duration,
        reply: Reply<i64>,
    },
    /// The session and its lock as they are now (InspectSession).
    Inspect {
        key: Vec<u8>,
        reply: Reply<Inspection>,
    },
    /// Free the lock whoever holds it, and bump the fencing token; answers
    /// the released holder's fencing token (`None`: nobody held it).
    ForceUnlock {
        key: Vec<u8>,
        reply: Reply<Option<u64>>,
    },
    /// Log the session's steps from now on, and answer its snapshot, its
    /// lock and its log so far (see `embedded/watch.rs`).
    WatchBegin {
        key: Vec<u8>,
        notify: std::sync::Arc<tokio::sync::Notify>,
        reply: Reply<Begin>,
    },
    /// One GCRA step of a rate limit (`key` is its row in `rates`).
    CheckRate {
        key: Vec<u8>,
        limit: RateLimit,
        reply: Reply<Admitted>,
    },
}

impl Command {
    /// The batch failed before this command was applied: its caller is told
    /// the fault. An abandon has nobody to tell; it is returned, to be
    /// applied to the lock table anyway.
    pub(super) fn fail(self, fault: &Fault) -> Option<(Vec<u8>, String)> {
        match self {
            Command::TryLock { reply, .. } | Command::QueueLock { reply, .. } => err(reply, fault),
            Command::Update { reply, .. } => err(reply, fault),
            Command::Delete { reply, .. } => err(reply, fault),
            Command::Unlock { reply, .. } => err(reply, fault),
            Command::Refresh { reply, .. } => err(reply, fault),
            Command::Inspect { reply, .. } => err(reply, fault),
            Command::ForceUnlock { reply, .. } => err(reply, fault),
            Command::CheckRate { reply, .. } => err(reply, fault),
            Command::WatchBegin { reply, .. } => err(reply, fault),
            Command::Abandon { key, token } => return Some((key, token)),
        }
        None
    }
}

/// An answer to send once the batch is committed. It holds an [`Outcome`],
/// never a fault: a fault fails the whole batch instead.
pub(super) enum Answer {
    /// A lock taken at once (or refused).
    Granted(Reply<LockGrant>, Outcome<LockGrant>),
    /// The answer of an earlier grant under the same lock key (or its
    /// refusal): no grant of its own.
    Replayed(Reply<LockGrant>, Outcome<LockGrant>),
    /// A waiter superseded by a newer one of its burst (SUPERSEDED).
    Superseded(Reply<LockGrant>),
    /// A lock handed to a waiter.
    HandedOver {
        key: Vec<u8>,
        waiter: Waiter,
        grant: LockGrant,
    },
    Written(Reply<Written>, Outcome<Written>),
    Deleted(Reply<Option<u64>>, Outcome<Option<u64>>),
    Unit(Reply<()>, Outcome<()>),
    Refreshed(Reply<i64>, Outcome<i64>),
    Inspected(Reply<Inspection>, Inspection),
    Forced(Reply<Option<u64>>, Option<u64>),
    /// A rate limit's answer: admitted, or refused (RATE_LIMITED).
    Rated(Reply<Admitted>, Result<Admitted>),
    Began(Reply<Begin>, Begin),
}

impl Answer {
    /// The batch is committed: tells the caller, and counts the grants.
    pub(super) fn send(self, stats: &Stats) {
        // A caller that went away no longer needs its answer.
        let _ = match self {
            Answer::Granted(r, v) => {
                if v.is_done() {
                    stats.lock_acquisitions.fetch_add(1, Relaxed);
                }
                r.send(v.into_result()).map_err(drop)
            }
            Answer::HandedOver { waiter, grant, .. } => {
                stats.lock_acquisitions.fetch_add(1, Relaxed);
                stats.lock_waits_granted.fetch_add(1, Relaxed);
                let waited = waiter.since.elapsed().as_millis() as u64;
                stats.lock_wait_ms.record(waited);
                waiter.reply.send(Ok(grant)).map_err(drop)
            }
            Answer::Superseded(r) => r.send(Err(Error::Superseded)).map_err(drop),
            Answer::Replayed(r, v) => r.send(v.into_result()).map_err(drop),
            Answer::Written(r, v) => r.send(v.into_result()).map_err(drop),
            Answer::Deleted(r, v) => r.send(v.into_result()).map_err(drop),
            Answer::Unit(r, v) => r.send(v.into_result()).map_err(drop),
            Answer::Refreshed(r, v) => r.send(v.into_result()).map_err(drop),
            Answer::Inspected(r, v) => r.send(Ok(v)).map_err(drop),
            Answer::Forced(r, v) => r.send(Ok(v)).map_err(drop),
            Answer::Rated(r, v) => r.send(v).map_err(drop),
            Answer::Began(r, v) => r.send(Ok(v)).map_err(drop),
        };
    }

    /// The batch was rolled back: whatever the outcome was, it did not
    /// happen. Its caller is told the fault, except a waiter handed the lock,
    /// which is returned to wait on where it was.
    pub(super) fn fail(self, fault: &Fault) -> Option<(Vec<u8>, Waiter)> {
        match self {
            Answer::Granted(r, _) => err(r, fault),
            // Its burst was rolled back too: it is told the fault.
            Answer::Superseded(r) => err(r, fault),
            Answer::Replayed(r, _) => err(r, fault),
            Answer::HandedOver { key, waiter, .. } => return Some((key, waiter)),
            Answer::Written(r, _) => err(r, fault),
            Answer::Deleted(r, _) => err(r, fault),
            Answer::Unit(r, _) => err(r, fault),
            Answer::Refreshed(r, _) => err(r, fault),
            Answer::Inspected(r, _) => err(r, fault),
            Answer::Forced(r, _) => err(r, fault),
            Answer::Rated(r, _) => err(r, fault),
            Answer::Began(r, _) => err(r, fault),
        }
        None
    }
}

/// Tells a caller that its batch failed (STORE_UNAVAILABLE: nothing of it
/// happened, a retry is safe).
pub(super) fn err<T>(reply: Reply<T>, fault: &Fault) {
    let _ = reply.send(Err(fault.rolled_back()));
}
