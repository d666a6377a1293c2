//! The actor: the one thread that applies every mutation of the embedded
//! store, in batches (one redb write transaction and one fsync each), and
//! owns the lock table and the FIFO queues of waiters.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use redb::{Database, ReadableTable, WriteTransaction};
use tokio::sync::oneshot;

use super::tables::{self, META, SESSIONS};
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
    Lock {
        key: Vec<u8>,
        token: String,
        lease: Duration,
        queue: bool,
        reply: Reply<LockGrant>,
    },
    Abandon {
        key: Vec<u8>,
        token: String,
    },
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

#[derive(Default)]
struct LockState {
    holder: Option<Holder>,
    queue: VecDeque<Waiter>,
}

struct Holder {
    token: String,
    deadline: Instant,
}

struct Waiter {
    token: String,
    lease: Duration,
    since: Instant,
    reply: Reply<LockGrant>,
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
    /// Sessions that are locked or have waiters; nothing else.
    locks: HashMap<Vec<u8>, LockState>,
}

impl Actor {
    pub(super) fn new(db: Arc<Database>, limits: Limits, stats: Arc<Stats>) -> Actor {
        Actor {
            db,
            limits,
            stats,
            locks: HashMap::new(),
        }
    }

    /// Applies commands until every sender is gone.
    pub(super) fn run(mut self, rx: mpsc::Receiver<Command>) {
        let mut next_sweep = Instant::now() + SWEEP_EVERY;
        loop {
            let now = Instant::now();
            let wake = self
                .next_lease_deadline()
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

    /// The earliest lease that, when it runs out, must hand the lock to a
    /// waiter.
    fn next_lease_deadline(&self) -> Option<Instant> {
        self.locks
            .values()
            .filter(|s| !s.queue.is_empty())
            .filter_map(|s| s.holder.as_ref().map(|h| h.deadline))
            .min()
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
            Command::Lock {
                key,
                token,
                lease,
                queue,
                reply,
            } => {
                let state = self.locks.entry(key.clone()).or_default();
                expire_holder(state, now, &self.stats);
                if state.holder.is_none() && state.queue.is_empty() {
                    let grant =
                        grant(txn, &key, state, token, lease, now).map_err(|e| e.to_string())?;
                    self.stats.lock_acquisitions.fetch_add(1, Relaxed);
                    out.push(Answer::Grant(reply, Ok(grant)));
                } else {
                    self.stats.lock_contended.fetch_add(1, Relaxed);
                    if queue {
                        state.queue.push_back(Waiter {
                            token,
                            lease,
                            since: now,
                            reply,
                        });
                    } else {
                        out.push(Answer::Grant(reply, Err(Error::LockHeld)));
                        self.forget_if_idle(&key);
                    }
                }
            }
            Command::Abandon { key, token } => {
                if let Some(state) = self.locks.get_mut(&key) {
                    let before = state.queue.len();
                    state.queue.retain(|w| w.token != token);
                    let left_queue = state.queue.len() < before;
                    let holds = state.holder.as_ref().is_some_and(|h| h.token == token);
                    if left_queue || holds {
                        self.stats.lock_waits_abandoned.fetch_add(1, Relaxed);
                    }
                    if holds {
                        // Granted just as its caller gave up: nobody knows
                        // this token, so pass the lock on at once.
                        state.holder = None;
                    }
                }
                self.hand_over(txn, &key, now, out)?;
            }
            Command::Update { key, m, g, reply } => {
                let answer = match self.check_lock(&key, &g, now) {
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
                let answer = match self.check_lock(&key, &g, now) {
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
                let g = Guards {
                    lock_token: Some(token),
                    ..Default::default()
                };
                let answer = self.check_lock(&key, &g, now);
                let ok = answer.is_ok();
                out.push(Answer::Unit(reply, answer));
                if ok {
                    self.release(txn, &key, now, out)?;
                }
            }
            Command::Refresh {
                key,
                token,
                lease,
                reply,
            } => {
                let g = Guards {
                    lock_token: Some(token),
                    ..Default::default()
                };
                let answer = self.check_lock(&key, &g, now).map(|()| {
                    let holder = self.locks.get_mut(&key).and_then(|s| s.holder.as_mut());
                    let holder = holder.expect("check_lock found the holder");
                    holder.deadline = now + lease;
                    now_ms() + lease.as_millis() as i64
                });
                out.push(Answer::Refreshed(reply, answer));
            }
        }
        Ok(())
    }

    /// The lock guard of a write: the token must hold the lock; without a
    /// token, nobody may hold it.
    fn check_lock(&mut self, key: &[u8], g: &Guards, now: Instant) -> Result<()> {
        let holder = match self.locks.get_mut(key) {
            Some(state) => {
                expire_holder(state, now, &self.stats);
                state.holder.as_ref()
            }
            None => None,
        };
        match (&g.lock_token, holder) {
            (Some(t), Some(h)) if *t == h.token => Ok(()),
            (Some(_), _) => {
                self.stats.lock_stale_token.fetch_add(1, Relaxed);
                Err(Error::LockLost)
            }
            (None, Some(_)) => {
                self.stats.lock_held_rejections.fetch_add(1, Relaxed);
                Err(Error::LockHeld)
            }
            (None, None) => Ok(()),
        }
    }

    fn release(
        &mut self,
        txn: &WriteTransaction,
        key: &[u8],
        now: Instant,
        out: &mut Vec<Answer>,
    ) -> std::result::Result<(), String> {
        if let Some(state) = self.locks.get_mut(key) {
            state.holder = None;
        }
        self.hand_over(txn, key, now, out)
    }

    /// Grants a free lock to the first waiter still waiting, or forgets the
    /// lock state when nobody waits.
    fn hand_over(
        &mut self,
        txn: &WriteTransaction,
        key: &[u8],
        now: Instant,
        out: &mut Vec<Answer>,
    ) -> std::result::Result<(), String> {
        let Some(state) = self.locks.get_mut(key) else {
            return Ok(());
        };
        if state.holder.is_none() {
            while let Some(w) = state.queue.pop_front() {
                if w.reply.is_closed() {
                    continue; // gave up; its Abandon is on the way
                }
                let grant =
                    grant(txn, key, state, w.token, w.lease, now).map_err(|e| e.to_string())?;
                self.stats.lock_acquisitions.fetch_add(1, Relaxed);
                self.stats.lock_waits_granted.fetch_add(1, Relaxed);
                self.stats
                    .lock_wait_ms
                    .record(now.duration_since(w.since).as_millis() as u64);
                out.push(Answer::Grant(w.reply, Ok(grant)));
                break;
            }
        }
        self.forget_if_idle(key);
        Ok(())
    }

    fn forget_if_idle(&mut self, key: &[u8]) {
        if self
            .locks
            .get(key)
            .is_some_and(|s| s.holder.is_none() && s.queue.is_empty())
        {
            self.locks.remove(key);
        }
    }

    /// Passes on the locks whose lease ran out while others were waiting.
    fn expire_leases(
        &mut self,
        txn: &WriteTransaction,
        out: &mut Vec<Answer>,
    ) -> std::result::Result<(), String> {
        let now = Instant::now();
        let due: Vec<Vec<u8>> = self
            .locks
            .iter()
            .filter(|(_, s)| {
                !s.queue.is_empty() && s.holder.as_ref().is_none_or(|h| h.deadline <= now)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            if let Some(state) = self.locks.get_mut(&key) {
                expire_holder(state, now, &self.stats);
            }
            self.hand_over(txn, &key, now, out)?;
        }
        Ok(())
    }
}

fn expire_holder(state: &mut LockState, now: Instant, stats: &Stats) {
    if state.holder.as_ref().is_some_and(|h| h.deadline <= now) {
        state.holder = None;
        stats.lock_lease_expiries.fetch_add(1, Relaxed);
    }
}

/// Makes `token` the holder: takes the next fencing token (durably, in this
/// transaction) and reads the session as it is now.
fn grant(
    txn: &WriteTransaction,
    key: &[u8],
    state: &mut LockState,
    token: String,
    lease: Duration,
    now: Instant,
) -> std::result::Result<LockGrant, redb::Error> {
    let mut meta = txn.open_table(META)?;
    let (version_hwm, fence) = meta.get(key)?.map(|g| g.value()).unwrap_or((0, 0));
    let fence = fence + 1;
    meta.insert(key, (version_hwm, fence))?;
    let sessions = txn.open_table(SESSIONS)?;
    let session = tables::read_session(&sessions, key, now_ms())
        .map_err(|e| redb::Error::Corrupted(e.to_string()))?;
    state.holder = Some(Holder {
        token: token.clone(),
        deadline: now + lease,
    });
    Ok(LockGrant {
        token,
        fence,
        lease_expires_ms: now_ms() + lease.as_millis() as i64,
        session,
    })
}
