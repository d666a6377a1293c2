//! The actor: the one thread that applies every mutation of the embedded
//! store, in batches (one redb write transaction and one fsync each: group
//! commit), and answers them only once the batch is committed. It owns the
//! [`LockTable`], and the commands it takes are the protocol between
//! [`EmbeddedStore`](super::EmbeddedStore) and it.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use redb::{Database, WriteTransaction};
use tokio::sync::oneshot;

use super::locks::{Held, LockTable, Waiter};
use super::outcome::{Fault, Outcome, Refusal};
use super::tables;
use crate::error::Result;
use crate::session::{Guards, Limits, LockGrant, Mutation, Written};
use crate::stats::Stats;
use crate::store::now_ms;

/// Commands applied by the actor in one transaction at most.
pub(super) const MAX_BATCH: usize = 512;

pub(super) type Reply<T> = oneshot::Sender<Result<T>>;

pub(super) enum Command {
    /// Take the lock if it is free now; LOCK_HELD otherwise.
    TryLock {
        key: Vec<u8>,
        token: String,
        lease: Duration,
        reply: Reply<LockGrant>,
    },
    /// Take the lock if it is free now, else join the FIFO queue of waiters
    /// (answered when granted; the caller bounds the wait).
    QueueLock {
        key: Vec<u8>,
        token: String,
        lease: Duration,
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
}

/// An answer to send once the batch is committed. It holds an [`Outcome`],
/// never a fault: a fault fails the whole batch instead.
enum Answer {
    Grant(Reply<LockGrant>, Outcome<LockGrant>),
    Written(Reply<Written>, Outcome<Written>),
    Deleted(Reply<Option<u64>>, Outcome<Option<u64>>),
    Unit(Reply<()>, Outcome<()>),
    Refreshed(Reply<i64>, Outcome<i64>),
}

impl Answer {
    fn send(self) {
        // A caller that went away no longer needs its answer.
        let _ = match self {
            Answer::Grant(r, v) => r.send(v.into_result()).map_err(drop),
            Answer::Written(r, v) => r.send(v.into_result()).map_err(drop),
            Answer::Deleted(r, v) => r.send(v.into_result()).map_err(drop),
            Answer::Unit(r, v) => r.send(v.into_result()).map_err(drop),
            Answer::Refreshed(r, v) => r.send(v.into_result()).map_err(drop),
        };
    }

    /// The batch was rolled back: whatever the outcome was, it did not happen.
    fn fail(self, fault: &Fault) {
        fn err<T>(r: Reply<T>, fault: &Fault) {
            let _ = r.send(Err(fault.rolled_back()));
        }
        match self {
            Answer::Grant(r, _) => err(r, fault),
            Answer::Written(r, _) => err(r, fault),
            Answer::Deleted(r, _) => err(r, fault),
            Answer::Unit(r, _) => err(r, fault),
            Answer::Refreshed(r, _) => err(r, fault),
        }
    }
}

pub(super) struct Actor {
    db: Arc<Database>,
    limits: Limits,
    stats: Arc<Stats>,
    locks: LockTable,
    sweep_every: Duration,
}

impl Actor {
    pub(super) fn new(
        db: Arc<Database>,
        limits: Limits,
        stats: Arc<Stats>,
        sweep_every: Duration,
    ) -> Actor {
        Actor {
            db,
            limits,
            locks: LockTable::new(stats.clone()),
            stats,
            sweep_every,
        }
    }

    /// Applies commands until every sender is gone. The first sweep runs at
    /// once: it drops what an earlier run left (meta rows of the locks that
    /// ended with it).
    pub(super) fn run(mut self, rx: mpsc::Receiver<Command>) {
        let mut next_sweep = Instant::now();
        loop {
            let now = Instant::now();
            let wake = self
                .locks
                .next_deadline()
                .map_or(next_sweep, |d| d.min(next_sweep));
            let first = match rx.recv_timeout(wake.saturating_duration_since(now)) {
                Ok(cmd) => Some(cmd),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            };
            let mut batch: Vec<Command> = first.into_iter().collect();
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(cmd) => batch.push(cmd),
                    Err(_) => break,
                }
            }
            let sweep = Instant::now() >= next_sweep;
            if sweep {
                next_sweep = Instant::now() + self.sweep_every;
            }
            self.apply_batch(batch, sweep);
        }
    }

    fn apply_batch(&mut self, batch: Vec<Command>, sweep: bool) {
        let mut answers = Vec::with_capacity(batch.len());
        let result = (|| -> Result<(), Fault> {
            let txn = self.db.begin_write()?;
            for cmd in batch {
                self.apply(&txn, cmd, &mut answers)?;
            }
            self.expire_leases(&txn, &mut answers)?;
            if sweep {
                self.sweep(&txn)?;
            }
            txn.commit()?;
            Ok(())
        })();
        match result {
            Ok(()) => {
                self.stats.store_ok();
                answers.into_iter().for_each(Answer::send);
            }
            Err(fault) => {
                tracing::error!(error = %fault, "embedded store transaction failed");
                self.stats.store_failed();
                answers.into_iter().for_each(|a| a.fail(&fault));
            }
        }
    }

    /// Applies one command. Checks come before writes, so a refused command
    /// writes nothing. `Err` only for faults, which abort the batch.
    fn apply(
        &mut self,
        txn: &WriteTransaction,
        cmd: Command,
        out: &mut Vec<Answer>,
    ) -> Result<(), Fault> {
        let now = Instant::now();
        match cmd {
            Command::TryLock {
                key,
                token,
                lease,
                reply,
            } => {
                let outcome = if self.locks.is_free(&key, now) {
                    match self.grant(txn, &key, token, lease, now) {
                        Ok(grant) => Outcome::Done(grant),
                        Err(fault) => return Err(answered(reply, fault)),
                    }
                } else {
                    Outcome::Refused(Refusal::LockHeld)
                };
                out.push(Answer::Grant(reply, outcome));
            }
            Command::QueueLock {
                key,
                token,
                lease,
                reply,
            } => {
                if self.locks.is_free(&key, now) {
                    match self.grant(txn, &key, token, lease, now) {
                        Ok(grant) => out.push(Answer::Grant(reply, Outcome::Done(grant))),
                        Err(fault) => return Err(answered(reply, fault)),
                    }
                } else {
                    let waiter = Waiter {
                        token,
                        lease,
                        since: now,
                        reply,
                    };
                    self.locks.enqueue(key, waiter);
                }
            }
            Command::Abandon { key, token } => {
                self.locks.abandon(&key, &token);
                self.hand_over(txn, &key, now, out)?;
            }
            Command::Update { key, m, g, reply } => {
                let outcome = match self.locks.check(&key, g.lock_token.as_deref(), now) {
                    Err(r) => Outcome::Refused(r),
                    Ok(held) => {
                        let written =
                            tables::write(txn, &key, &m, &g, &self.limits, now_ms(), held);
                        match written {
                            Ok(outcome) => {
                                if let (Outcome::Done(w), Some(_)) = (&outcome, held) {
                                    self.locks.saw(&key, w.version);
                                }
                                outcome
                            }
                            Err(fault) => return Err(answered(reply, fault)),
                        }
                    }
                };
                let release = ends_lock(&outcome, g.release_lock);
                out.push(Answer::Written(reply, outcome));
                if release {
                    self.release(txn, &key, now, out)?;
                }
            }
            Command::Delete { key, g, reply } => {
                let outcome = match self.locks.check(&key, g.lock_token.as_deref(), now) {
                    Err(r) => Outcome::Refused(r),
                    Ok(held) => match tables::delete(txn, &key, &g, now_ms(), held) {
                        Ok(outcome) => {
                            if let (Outcome::Done(_), Some(_)) = (&outcome, held) {
                                self.locks.saw(&key, 0);
                            }
                            outcome
                        }
                        Err(fault) => return Err(answered(reply, fault)),
                    },
                };
                let release = ends_lock(&outcome, g.release_lock);
                out.push(Answer::Deleted(reply, outcome));
                if release {
                    self.release(txn, &key, now, out)?;
                }
            }
            Command::Unlock { key, token, reply } => {
                let outcome = Outcome::from(self.locks.check(&key, Some(&token), now).map(drop));
                let release = outcome.is_done();
                out.push(Answer::Unit(reply, outcome));
                if release {
                    self.release(txn, &key, now, out)?;
                }
            }
            Command::Refresh {
                key,
                token,
                lease,
                reply,
            } => {
                let now_ms = now_ms();
                let until = now_ms + lease.as_millis() as i64;
                let outcome = match self.locks.refresh(&key, &token, lease, now, until) {
                    Err(r) => Outcome::Refused(r),
                    // The session lives at least as long as the lease.
                    Ok(()) => match tables::keep_alive(txn, &key, now_ms, until) {
                        Ok(_) => Outcome::Done(until),
                        Err(fault) => return Err(answered(reply, fault)),
                    },
                };
                out.push(Answer::Refreshed(reply, outcome));
            }
        }
        Ok(())
    }

    /// Makes `token` the holder: takes the next fencing token (durably, in
    /// this transaction) and reads the session as it is now, kept alive at
    /// least until the lease ends.
    fn grant(
        &mut self,
        txn: &WriteTransaction,
        key: &[u8],
        token: String,
        lease: Duration,
        now: Instant,
    ) -> Result<LockGrant, Fault> {
        let now_ms = now_ms();
        let until_ms = now_ms + lease.as_millis() as i64;
        let fence = tables::next_fence(txn, key)?;
        let session = tables::keep_alive(txn, key, now_ms, until_ms)?;
        let held = Held {
            saw: session.as_ref().map_or(0, |s| s.version),
            until_ms,
        };
        self.locks.hold(key, token.clone(), now + lease, held);
        self.stats.lock_acquisitions.fetch_add(1, Relaxed);
        Ok(LockGrant {
            token,
            fence,
            lease_expires_ms: until_ms,
            session,
        })
    }

    fn release(
        &mut self,
        txn: &WriteTransaction,
        key: &[u8],
        now: Instant,
        out: &mut Vec<Answer>,
    ) -> Result<(), Fault> {
        self.locks.release(key);
        self.hand_over(txn, key, now, out)
    }

    /// Grants a free lock to the first waiter still waiting; if nobody holds
    /// or waits for it then, forgets the lock's entry and drops the meta row
    /// of an id that was never written.
    fn hand_over(
        &mut self,
        txn: &WriteTransaction,
        key: &[u8],
        now: Instant,
        out: &mut Vec<Answer>,
    ) -> Result<(), Fault> {
        if let Some(w) = self.locks.next_waiter(key) {
            let grant = match self.grant(txn, key, w.token, w.lease, now) {
                Ok(grant) => grant,
                Err(fault) => return Err(answered(w.reply, fault)),
            };
            self.stats.lock_waits_granted.fetch_add(1, Relaxed);
            self.stats
                .lock_wait_ms
                .record(now.duration_since(w.since).as_millis() as u64);
            out.push(Answer::Grant(w.reply, Outcome::Done(grant)));
        }
        if self.locks.forget_if_idle(key) {
            tables::drop_if_unwritten(txn, key)?;
        }
        Ok(())
    }

    /// Passes on the locks whose lease ran out while others were waiting.
    fn expire_leases(
        &mut self,
        txn: &WriteTransaction,
        out: &mut Vec<Answer>,
    ) -> Result<(), Fault> {
        let now = Instant::now();
        for key in self.locks.expire_waited_for(now) {
            self.hand_over(txn, &key, now, out)?;
        }
        Ok(())
    }

    /// Deletes idle sessions, forgets leases that ran out unwaited, and drops
    /// the meta rows of ids never written that nobody holds or waits for.
    fn sweep(&mut self, txn: &WriteTransaction) -> Result<(), Fault> {
        let now = Instant::now();
        self.locks.forget_expired(now);
        let locks = &self.locks;
        let swept = tables::sweep(txn, now_ms(), |key| locks.in_use(key, now))?;
        if swept != tables::Swept::default() {
            tracing::debug!(?swept, "embedded store swept");
        }
        Ok(())
    }
}

/// A command whose own step failed: its caller is told at once (the batch is
/// lost with it, and nothing after it is applied), and the fault goes on to
/// fail the rest of the batch.
fn answered<T>(reply: Reply<T>, fault: Fault) -> Fault {
    let _ = reply.send(Err(fault.rolled_back()));
    fault
}

/// Whether a step's outcome ends the lock: a release asked for with a write
/// that was done, or a session that expired under its holder.
fn ends_lock<T>(outcome: &Outcome<T>, release_lock: bool) -> bool {
    match outcome {
        Outcome::Done(_) => release_lock,
        Outcome::Refused(r) => matches!(r, Refusal::SessionLost),
    }
}
