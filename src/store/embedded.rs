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
//! A batch that fails leaves nothing behind, in the file or in memory (see
//! `actor`), and a full disk does not end the store: once a write fits
//! again, the file is opened again and calls succeed (see `file`).
//!
//! Where things are:
//! - this file: [`EmbeddedStore`], the handle the callers hold; it sends
//!   commands to the actor and reads on its own;
//! - `actor`: the writer thread and its batches, undone when they fail;
//!   `actor/command`: the commands it takes and the answers it keeps;
//! - `locks`: the in-memory lock table, its FIFO queues of waiters and the
//!   journal that undoes a failed batch's changes;
//! - `file`: the redb file, opened again after an I/O failure;
//! - `tables`: the redb tables and the steps that read and write them
//!   (`tables/session`: sessions and their expiry; `tables/meta`: versions,
//!   fencing tokens and what bounds them);
//! - `record`: the record of a session on disk, the file format;
//! - `outcome`: how a step ends (done, refused, or a fault of the store) and
//!   how each becomes an [`Error`].

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc;
use std::time::Duration;

use redb::ReadableDatabase;
use tokio::sync::oneshot;

mod actor;
mod file;
mod locks;
mod operate;
mod outcome;
mod record;
mod tables;
#[cfg(test)]
mod tests;
mod watch;

use actor::{Actor, Command};
use file::{DbFile, Opener};
use outcome::Fault;
use tables::SESSIONS;

use super::{new_token, now_ms};
use crate::error::{Error, Result};
use crate::session::{
    Admitted, Guards, Idempotency, Limits, LockGrant, LockRequest, Mutation, RateLimit, RateScope,
    Session, SessionKey, Written,
};
use crate::stats::Stats;
use crate::telemetry::otlp::{self, LockWait};

/// How often idle sessions are swept from the file, unless told otherwise.
pub const DEFAULT_SWEEP_EVERY: Duration = Duration::from_secs(30);

/// How the embedded store runs, beyond its file and the limits.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// How often idle sessions (and the meta rows of ids never written) are
    /// swept from the file.
    pub sweep_every: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            sweep_every: DEFAULT_SWEEP_EVERY,
        }
    }
}

pub struct EmbeddedStore {
    file: Arc<DbFile>,
    /// The watched sessions' logs, appended by the actor (see `watch`).
    logs: Arc<watch::Logs>,
    actor: mpsc::Sender<Command>,
    stats: Arc<Stats>,
}

impl EmbeddedStore {
    /// Opens the store with the default [`Options`].
    pub fn open(path: &Path, limits: Limits, stats: Arc<Stats>) -> Result<EmbeddedStore> {
        EmbeddedStore::open_with(path, Options::default(), limits, stats)
    }

    pub fn open_with(
        path: &Path,
        options: Options,
        limits: Limits,
        stats: Arc<Stats>,
    ) -> Result<EmbeddedStore> {
        let opener = Opener::Path(path.to_owned());
        Ok(EmbeddedStore::start(opener, options, limits, stats)?)
    }

    fn start(
        opener: Opener,
        options: Options,
        limits: Limits,
        stats: Arc<Stats>,
    ) -> Result<EmbeddedStore, Fault> {
        let file = Arc::new(DbFile::open(opener)?);
        let (tx, rx) = mpsc::channel();
        let logs = Arc::new(watch::Logs::default());
        let actor = Actor::new(
            file.clone(),
            limits,
            stats.clone(),
            options.sweep_every,
            logs.clone(),
        );
        std::thread::Builder::new()
            .name("sessiond-embedded".into())
            .spawn(move || actor.run(rx))
            .map_err(Fault::Spawn)?;
        Ok(EmbeddedStore {
            file,
            logs,
            actor: tx,
            stats,
        })
    }

    pub async fn get(&self, key: &SessionKey) -> Result<Option<Session>> {
        Ok(self.read(key)?)
    }

    fn read(&self, key: &SessionKey) -> Result<Option<Session>, Fault> {
        let txn = self.file.get()?.begin_read()?;
        let table = txn.open_table(SESSIONS)?;
        tables::read_session(&table, &encode_key(key), now_ms())
    }

    /// Takes the lock, waiting up to `req.wait` in the queue (zero: try
    /// once), as `req.turn` says.
    pub async fn lock(&self, key: &SessionKey, req: LockRequest) -> Result<LockGrant> {
        if req.wait.is_zero() {
            self.try_lock(key, req.lease, req.idempotency).await
        } else {
            self.queue_lock(key, req).await
        }
    }

    /// Takes the lock if it is free now; LOCK_HELD otherwise.
    async fn try_lock(
        &self,
        key: &SessionKey,
        lease: Duration,
        idem: Option<Idempotency>,
    ) -> Result<LockGrant> {
        self.call(|reply| Command::TryLock {
            key: encode_key(key),
            token: new_token(),
            lease,
            idem,
            reply,
        })
        .await
    }

    /// Takes the lock, queueing behind its holder and earlier waiters for up
    /// to `req.wait` (or until a newer waiter of its burst supersedes it).
    async fn queue_lock(&self, key: &SessionKey, req: LockRequest) -> Result<LockGrant> {
        let LockRequest {
            lease,
            wait,
            turn,
            idempotency,
        } = req;
        let token = new_token();
        let (reply, rx) = oneshot::channel();
        self.send(Command::QueueLock {
            key: encode_key(key),
            token: token.clone(),
            lease,
            turn,
            idem: idempotency,
            reply,
        })?;
        // If this future is dropped (deadline, disconnect) or the wait runs
        // out, the guard tells the actor to forget the waiter and to release
        // the lock should it have been granted meanwhile.
        let guard = AbandonOnDrop {
            key: Some(encode_key(key)),
            token,
            actor: self.actor.clone(),
        };
        self.stats.lock_waiting_now.fetch_add(1, Relaxed);
        let _waiting = WaitingGauge(&self.stats);
        // In the lock's FIFO from here (a free lock is granted at once).
        otlp::lock_wait(LockWait::Queued);
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(result)) => {
                guard.disarm();
                if result.is_ok() {
                    otlp::lock_wait(LockWait::Granted);
                }
                result
            }
            Ok(Err(_)) => Err(Fault::Stopped.into()),
            Err(_) => {
                otlp::lock_wait(LockWait::TimedOut);
                Err(Error::LockWaitTimeout {
                    waited_ms: wait.as_millis() as u64,
                })
            }
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

    /// One GCRA step of `limit`, on this host's clock, committed like a
    /// write (a refusal writes nothing).
    pub async fn check_rate(&self, scope: &RateScope, limit: &RateLimit) -> Result<Admitted> {
        let key = match scope {
            RateScope::Session(key) => {
                let mut k = encode_key(key);
                k.push(0);
                k
            }
            RateScope::Namespace(ns) => {
                let mut k = ns.as_bytes().to_vec();
                k.push(1);
                k
            }
        };
        let mut key = key;
        key.extend_from_slice(limit.name.as_bytes());
        let limit = limit.clone();
        self.call(|reply| Command::CheckRate { key, limit, reply })
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
        self.file.get()?.begin_read().map_err(Fault::from)?;
        self.stats.store_ok();
        Ok(())
    }

    /// Sends a command to the actor and waits for its answer (given once its
    /// batch is committed).
    async fn call<T>(&self, cmd: impl FnOnce(actor::Reply<T>) -> Command) -> Result<T> {
        let (reply, rx) = oneshot::channel();
        self.send(cmd(reply))?;
        rx.await.map_err(|_| Fault::Stopped)?
    }

    fn send(&self, cmd: Command) -> Result<(), Fault> {
        self.actor.send(cmd).map_err(|_| Fault::Stopped)
    }
}

/// Counts a caller in `lock_waiting_now` for as long as it waits.
struct WaitingGauge<'a>(&'a Stats);

impl Drop for WaitingGauge<'_> {
    fn drop(&mut self) {
        self.0.lock_waiting_now.fetch_sub(1, Relaxed);
    }
}

/// Tells the actor that a queued caller gave up, unless disarmed once the
/// lock was received.
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

/// `namespace 0x00 id`: unambiguous, since neither may hold control characters.
fn encode_key(key: &SessionKey) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.namespace.len() + 1 + key.id.len());
    k.extend_from_slice(key.namespace.as_bytes());
    k.push(0);
    k.extend_from_slice(key.id.as_bytes());
    k
}
