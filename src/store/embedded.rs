//! The embedded store: one sessiond instance, state in a local redb file.
//!
//! Every mutation (writes, deletes, lock grants, which bump the durable
//! fencing sequence) is applied by one writer thread, the *actor*. It takes
//! all queued commands at once, applies them in order inside one redb write
//! transaction, commits (one fsync for the whole batch: group commit) and only
//! then answers them, so an acknowledged write survives a crash. Because one
//! thread applies everything, the lock table needs no synchronisation: it is
//! owned by the actor, like the FIFO queues of waiters. Reads go straight to a
//! redb read transaction (MVCC) from the caller's task.
//!
//! Tables: `sessions` (key -> prost-encoded record), `meta` (key -> (highest
//! version ever given, highest fencing token ever given); never deleted, so
//! neither goes back across delete and re-create) and `expiry` ((expires_ms,
//! key) -> ()), the index the sweeper uses to delete idle sessions.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use prost::Message;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use tokio::sync::oneshot;

use super::{new_token, now_ms};
use crate::error::{Error, Result};
use crate::pb;
use crate::session::{self, Guards, Limits, LockGrant, Mutation, Session, SessionKey, Written};
use crate::stats::Stats;

const SESSIONS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("sessions");
const META: TableDefinition<&[u8], (u64, u64)> = TableDefinition::new("meta");
const EXPIRY: TableDefinition<(i64, &[u8]), ()> = TableDefinition::new("expiry");

/// Commands applied by the actor in one transaction at most.
const MAX_BATCH: usize = 512;
/// How often idle sessions are swept from the file.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

pub struct EmbeddedStore {
    db: Arc<Database>,
    actor: mpsc::Sender<Command>,
    stats: Arc<Stats>,
}

impl EmbeddedStore {
    pub fn open(path: &Path, limits: Limits, stats: Arc<Stats>) -> Result<EmbeddedStore> {
        let db = Database::create(path)
            .map_err(|e| Error::StoreUnavailable(format!("cannot open {}: {e}", path.display())))?;
        let db = Arc::new(db);
        // Create the tables so that readers never meet a missing one.
        let txn = db.begin_write().map_err(store_err)?;
        {
            txn.open_table(SESSIONS).map_err(store_err)?;
            txn.open_table(META).map_err(store_err)?;
            txn.open_table(EXPIRY).map_err(store_err)?;
        }
        txn.commit().map_err(store_err)?;
        let (tx, rx) = mpsc::channel();
        let actor = Actor {
            db: db.clone(),
            limits,
            stats: stats.clone(),
            locks: HashMap::new(),
        };
        std::thread::Builder::new()
            .name("sessiond-embedded".into())
            .spawn(move || actor.run(rx))
            .map_err(|e| Error::Internal(format!("cannot start the store thread: {e}")))?;
        Ok(EmbeddedStore {
            db,
            actor: tx,
            stats,
        })
    }

    pub async fn get(&self, key: &SessionKey) -> Result<Option<Session>> {
        let txn = self.db.begin_read().map_err(store_err)?;
        let table = txn.open_table(SESSIONS).map_err(store_err)?;
        read_session(&table, &encode_key(key), now_ms())
    }

    pub async fn lock(
        &self,
        key: &SessionKey,
        lease: Duration,
        wait: Duration,
    ) -> Result<LockGrant> {
        let token = new_token();
        let (reply, rx) = oneshot::channel();
        let queue = !wait.is_zero();
        self.send(Command::Lock {
            key: encode_key(key),
            token: token.clone(),
            lease,
            queue,
            reply,
        })?;
        if !queue {
            return rx.await.map_err(actor_gone)?;
        }
        // Queued: if this future is dropped (deadline, disconnect) or the wait
        // runs out, the guard tells the actor to forget the waiter and to
        // release the lock should it have been granted meanwhile.
        let guard = AbandonOnDrop {
            key: Some(encode_key(key)),
            token,
            actor: self.actor.clone(),
        };
        self.stats.lock_waiting_now.fetch_add(1, Relaxed);
        let _waiting = WaitingGauge(&self.stats);
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(result)) => {
                guard.disarm();
                result
            }
            Ok(Err(e)) => Err(actor_gone(e)),
            Err(_) => Err(Error::LockWaitTimeout {
                waited_ms: wait.as_millis() as u64,
            }),
        }
    }

    pub async fn update(&self, key: &SessionKey, m: Mutation, g: Guards) -> Result<Written> {
        self.call(|reply| Command::Update {
            key: encode_key(key),
            m,
            g,
            reply,
        })
        .await
    }

    pub async fn delete(&self, key: &SessionKey, g: Guards) -> Result<Option<u64>> {
        self.call(|reply| Command::Delete {
            key: encode_key(key),
            g,
            reply,
        })
        .await
    }

    pub async fn unlock(&self, key: &SessionKey, token: &str) -> Result<()> {
        self.call(|reply| Command::Unlock {
            key: encode_key(key),
            token: token.to_owned(),
            reply,
        })
        .await
    }

    pub async fn refresh(&self, key: &SessionKey, token: &str, lease: Duration) -> Result<i64> {
        self.call(|reply| Command::Refresh {
            key: encode_key(key),
            token: token.to_owned(),
            lease,
            reply,
        })
        .await
    }

    pub async fn ping(&self) -> Result<()> {
        self.db.begin_read().map_err(store_err)?;
        self.stats.store_ok();
        Ok(())
    }

    async fn call<T>(&self, cmd: impl FnOnce(oneshot::Sender<Result<T>>) -> Command) -> Result<T> {
        let (reply, rx) = oneshot::channel();
        self.send(cmd(reply))?;
        rx.await.map_err(actor_gone)?
    }

    fn send(&self, cmd: Command) -> Result<()> {
        self.actor
            .send(cmd)
            .map_err(|_| Error::StoreUnavailable("the store thread stopped".into()))
    }
}

struct WaitingGauge<'a>(&'a Stats);

impl Drop for WaitingGauge<'_> {
    fn drop(&mut self) {
        self.0.lock_waiting_now.fetch_sub(1, Relaxed);
    }
}

struct AbandonOnDrop {
    key: Option<Vec<u8>>,
    token: String,
    actor: mpsc::Sender<Command>,
}

impl AbandonOnDrop {
    fn disarm(mut self) {
        self.key = None;
    }
}

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let _ = self.actor.send(Command::Abandon {
                key,
                token: std::mem::take(&mut self.token),
            });
        }
    }
}

type Reply<T> = oneshot::Sender<Result<T>>;

enum Command {
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

struct Actor {
    db: Arc<Database>,
    limits: Limits,
    stats: Arc<Stats>,
    /// Sessions that are locked or have waiters; nothing else.
    locks: HashMap<Vec<u8>, LockState>,
}

impl Actor {
    fn run(mut self, rx: mpsc::Receiver<Command>) {
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
                sweep_expired(&txn).map_err(|e| e.to_string())?;
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
                    Ok(()) => write(txn, &key, &m, &g, &self.limits).map_err(|e| e.to_string())?,
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
                    Ok(()) => delete(txn, &key, &g).map_err(|e| e.to_string())?,
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
    let session = read_session(&sessions, key, now_ms())
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

/// UpdateSession's atomic step, after the lock guard passed.
fn write(
    txn: &WriteTransaction,
    key: &[u8],
    m: &Mutation,
    g: &Guards,
    limits: &Limits,
) -> std::result::Result<Result<Written>, redb::Error> {
    let now = now_ms();
    let mut sessions = txn.open_table(SESSIONS)?;
    let current =
        read_session(&sessions, key, now).map_err(|e| redb::Error::Corrupted(e.to_string()))?;
    if let Err(e) = check_version(g, current.as_ref()) {
        return Ok(Err(e));
    }
    let mut fields = current
        .as_ref()
        .map(|s| s.fields.clone())
        .unwrap_or_default();
    session::apply(&mut fields, m);
    let bytes = fields.bytes();
    if let Err(e) = limits.check_result(fields.len(), bytes) {
        return Ok(Err(e));
    }
    let mut meta = txn.open_table(META)?;
    let (hwm, fence) = meta.get(key)?.map(|g| g.value()).unwrap_or((0, 0));
    let version = hwm + 1;
    meta.insert(key, (version, fence))?;
    let expires_ms = now + limits.idle_ttl.as_millis() as i64;
    let record = Session {
        fields,
        version,
        created_ms: current.as_ref().map_or(now, |s| s.created_ms),
        updated_ms: now,
        expires_ms,
    };
    sessions.insert(key, encode_record(&record).as_slice())?;
    let mut expiry = txn.open_table(EXPIRY)?;
    if let Some(old) = &current {
        expiry.remove((old.expires_ms, key))?;
    }
    expiry.insert((expires_ms, key), ())?;
    Ok(Ok(Written {
        version,
        expires_ms,
    }))
}

fn delete(
    txn: &WriteTransaction,
    key: &[u8],
    g: &Guards,
) -> std::result::Result<Result<Option<u64>>, redb::Error> {
    let mut sessions = txn.open_table(SESSIONS)?;
    let current = read_session(&sessions, key, now_ms())
        .map_err(|e| redb::Error::Corrupted(e.to_string()))?;
    if let Err(e) = check_version(g, current.as_ref()) {
        return Ok(Err(e));
    }
    let Some(current) = current else {
        return Ok(Ok(None));
    };
    sessions.remove(key)?;
    txn.open_table(EXPIRY)?.remove((current.expires_ms, key))?;
    Ok(Ok(Some(current.version)))
}

fn check_version(g: &Guards, current: Option<&Session>) -> Result<()> {
    let Some(expected) = g.expected_version else {
        return Ok(());
    };
    let actual = current.map_or(0, |s| s.version);
    if actual != expected {
        return Err(Error::VersionMismatch {
            expected,
            current: actual,
        });
    }
    Ok(())
}

/// Deletes the sessions whose idle TTL ran out (their meta rows stay).
fn sweep_expired(txn: &WriteTransaction) -> std::result::Result<(), redb::Error> {
    let now = now_ms();
    let mut expiry = txn.open_table(EXPIRY)?;
    let mut sessions = txn.open_table(SESSIONS)?;
    let mut due = Vec::new();
    for entry in expiry.range((i64::MIN, &[][..])..(now, &[][..]))? {
        let (k, _) = entry?;
        due.push(k.value().1.to_vec());
    }
    expiry.retain_in((i64::MIN, &[][..])..(now, &[][..]), |_, _| false)?;
    for key in due {
        sessions.remove(key.as_slice())?;
    }
    Ok(())
}

fn read_session(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    key: &[u8],
    now: i64,
) -> Result<Option<Session>> {
    let Some(raw) = table.get(key).map_err(store_err)? else {
        return Ok(None);
    };
    let session = decode_record(raw.value())?;
    Ok((session.expires_ms > now).then_some(session))
}

/// `namespace 0x00 id`: unambiguous, since neither may hold control characters.
fn encode_key(key: &SessionKey) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.namespace.len() + 1 + key.id.len());
    k.extend_from_slice(key.namespace.as_bytes());
    k.push(0);
    k.extend_from_slice(key.id.as_bytes());
    k
}

fn encode_record(s: &Session) -> Vec<u8> {
    pb::Session::from_session("", s).encode_to_vec()
}

fn decode_record(raw: &[u8]) -> Result<Session> {
    let r = pb::Session::decode(raw)
        .map_err(|e| Error::Internal(format!("corrupt session record: {e}")))?;
    Ok(Session {
        fields: r.fields.into_iter().collect(),
        version: r.version,
        created_ms: pb::millis(r.created_at),
        updated_ms: pb::millis(r.updated_at),
        expires_ms: pb::millis(r.expires_at),
    })
}

fn store_err(e: impl std::fmt::Display) -> Error {
    Error::StoreUnavailable(e.to_string())
}

fn actor_gone(_: oneshot::error::RecvError) -> Error {
    Error::StoreUnavailable("the store thread stopped".into())
}
