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

use super::locks::{LockTable, Waiter};
use super::tables;
use crate::error::{Error, Result};
use crate::session::{Guards, Limits, LockGrant, Mutation, Written};
use crate::stats::Stats;
use crate::store::now_ms;

/// Commands applied by the actor in one transaction at most.
pub(super) const MAX_BATCH: usize = 512;

/// How often idle sessions are swept from the file.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

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

/// An answer to send once the batch is committed.
enum Answer {
    Grant(Reply<LockGrant>, Result<LockGrant>),
    Written(Reply<Written>, Result<Written>),
    Deleted(Reply<Option<u64>>, Result<Option<u64>>),
    Unit(Reply<()>, Result<()>),
    Refreshed(Reply<i64>, Result<i64>),
}

impl Answer {
    fn send(self) {
        // A caller that went away no longer needs its answer.
        let _ = match self {
            Answer::Grant(r, v) => r.send(v).map_err(drop),
            Answer::Written(r, v) => r.send(v).map_err(drop),
            Answer::Deleted(r, v) => r.send(v).map_err(drop),
            Answer::Unit(r, v) => r.send(v).map_err(drop),
            Answer::Refreshed(r, v) => r.send(v).map_err(drop),
        };
    }

    fn fail(self, e: &str) {
        fn err<T>(r: Reply<T>, e: &str) {
            let _ = r.send(Err(Error::StoreUnavailable(e.to_owned())));
        }
        match self {
            Answer::Grant(r, _) => err(r, e),
            Answer::Written(r, _) => err(r, e),
            Answer::Deleted(r, _) => err(r, e),
            Answer::Unit(r, _) => err(r, e),
            Answer::Refreshed(r, _) => err(r, e),
        }
    }
}

pub(super) struct Actor {
    db: Arc<Database>,
    limits: Limits,
    stats: Arc<Stats>,
    locks: LockTable,
}

impl Actor {
    pub(super) fn new(db: Arc<Database>, limits: Limits, stats: Arc<Stats>) -> Actor {
        Actor {
            db,
            limits,
            locks: LockTable::new(stats.clone()),
            stats,
        }
    }

    /// Applies commands until every sender is gone.
    pub(super) fn run(mut self, rx: mpsc::Receiver<Command>) {
        let mut next_sweep = Instant::now() + SWEEP_EVERY;
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
                next_sweep = Instant::now() + SWEEP_EVERY;
            }
            self.apply_batch(batch, sweep);
        }
    }

    fn apply_batch(&mut self, batch: Vec<Command>, sweep: bool) {
        let mut answers = Vec::with_capacity(batch.len());
        let result = (|| -> std::result::Result<(), String> {
            let txn = self.db.begin_write().map_err(|e| e.to_string())?;
            for cmd in batch {
                self.apply(&txn, cmd, &mut answers)?;
            }
            self.expire_leases(&txn, &mut answers)?;
            if sweep {
                tables::sweep_expired(&txn).map_err(|e| e.to_string())?;
            }
            txn.commit().map_err(|e| e.to_string())
        })();
        match result {
            Ok(()) => {
                self.stats.store_ok();
                answers.into_iter().for_each(Answer::send);
            }
            Err(e) => {
                tracing::error!(error = %e, "embedded store transaction failed");
                self.stats.store_failed();
                answers.into_iter().for_each(|a| a.fail(&e));
            }
        }
    }

    /// Applies one command. Checks come before writes, so a refused command
    /// writes nothing. `Err` only for storage failures, which abort the batch.
    fn apply(
        &mut self,
        txn: &WriteTransaction,
        cmd: Command,
        out: &mut Vec<Answer>,
    ) -> std::result::Result<(), String> {
        let now = Instant::now();
        match cmd {
            Command::TryLock {
                key,
                token,
                lease,
                reply,
            } => {
                let answer = if self.locks.is_free(&key, now) {
                    Ok(self.grant(txn, &key, token, lease, now)?)
                } else {
                    Err(Error::LockHeld)
                };
                out.push(Answer::Grant(reply, answer));
            }
            Command::QueueLock {
                key,
                token,
                lease,
                reply,
            } => {
                if self.locks.is_free(&key, now) {
                    let grant = self.grant(txn, &key, token, lease, now)?;
                    out.push(Answer::Grant(reply, Ok(grant)));
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
                let answer = match self.locks.check(&key, g.lock_token.as_deref(), now) {
                    Err(e) => Err(e),
                    Ok(()) => {
                        tables::write(txn, &key, &m, &g, &self.limits).map_err(|e| e.to_string())?
                    }
                };
                let release = answer.is_ok() && g.release_lock;
                out.push(Answer::Written(reply, answer));
                if release {
                    self.release(txn, &key, now, out)?;
                }
            }
            Command::Delete { key, g, reply } => {
                let answer = match self.locks.check(&key, g.lock_token.as_deref(), now) {
                    Err(e) => Err(e),
                    Ok(()) => tables::delete(txn, &key, &g).map_err(|e| e.to_string())?,
                };
                let release = answer.is_ok() && g.release_lock;
                out.push(Answer::Deleted(reply, answer));
                if release {
                    self.release(txn, &key, now, out)?;
                }
            }
            Command::Unlock { key, token, reply } => {
                let answer = self.locks.check(&key, Some(&token), now);
                let release = answer.is_ok();
                out.push(Answer::Unit(reply, answer));
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
                let refreshed = self.locks.refresh(&key, &token, lease, now);
                let answer = refreshed.map(|()| now_ms() + lease.as_millis() as i64);
                out.push(Answer::Refreshed(reply, answer));
            }
        }
        Ok(())
    }

    /// Makes `token` the holder: takes the next fencing token (durably, in
    /// this transaction) and reads the session as it is now.
    fn grant(
        &mut self,
        txn: &WriteTransaction,
        key: &[u8],
        token: String,
        lease: Duration,
        now: Instant,
    ) -> std::result::Result<LockGrant, String> {
        let (fence, session) = tables::next_fence(txn, key).map_err(|e| e.to_string())?;
        self.locks.hold(key, token.clone(), now + lease);
        self.stats.lock_acquisitions.fetch_add(1, Relaxed);
        Ok(LockGrant {
            token,
            fence,
            lease_expires_ms: now_ms() + lease.as_millis() as i64,
            session,
        })
    }

    fn release(
        &mut self,
        txn: &WriteTransaction,
        key: &[u8],
        now: Instant,
        out: &mut Vec<Answer>,
    ) -> std::result::Result<(), String> {
        self.locks.release(key);
        self.hand_over(txn, key, now, out)
    }

    /// Grants a free lock to the first waiter still waiting, then forgets the
    /// lock's entry if nobody holds or waits for it.
    fn hand_over(
        &mut self,
        txn: &WriteTransaction,
        key: &[u8],
        now: Instant,
        out: &mut Vec<Answer>,
    ) -> std::result::Result<(), String> {
        if let Some(w) = self.locks.next_waiter(key) {
            let grant = self.grant(txn, key, w.token, w.lease, now)?;
            self.stats.lock_waits_granted.fetch_add(1, Relaxed);
            self.stats
                .lock_wait_ms
                .record(now.duration_since(w.since).as_millis() as u64);
            out.push(Answer::Grant(w.reply, Ok(grant)));
        }
        self.locks.forget_if_idle(key);
        Ok(())
    }

    /// Passes on the locks whose lease ran out while others were waiting.
    fn expire_leases(
        &mut self,
        txn: &WriteTransaction,
        out: &mut Vec<Answer>,
    ) -> std::result::Result<(), String> {
        let now = Instant::now();
        for key in self.locks.expire_waited_for(now) {
            self.hand_over(txn, &key, now, out)?;
        }
        Ok(())
    }
}
