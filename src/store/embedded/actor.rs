//! The actor: the one thread that applies every mutation of the embedded
//! store, in batches (one redb write transaction and one fsync each: group
//! commit), and answers them only once the batch is committed. It owns the
//! [`LockTable`]; the commands it takes are in `command`, how it applies
//! each in `apply`.
//!
//! A batch that fails (a step's fault, a failed commit) leaves nothing
//! behind: the transaction is rolled back, the lock table's changes are
//! undone (a waiter handed the lock waits on at its place, one queued by the
//! batch is told), every caller is told STORE_UNAVAILABLE, and abandons
//! stand. After an I/O failure the file is closed and opened again (see
//! `file`); the actor retries, with a growing delay, until a batch commits.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use redb::Database;

use super::file::DbFile;
use super::locks::LockTable;
use super::outcome::Fault;
use super::watch::Logs;
use crate::session::Limits;
use crate::stats::Stats;
use crate::watch::{Entry, Logged};

mod apply;
mod command;
mod lock_keys;
mod quota;
mod watched;

use command::Answer;
pub(super) use command::{Command, Reply};
use quota::Counted;

/// Commands applied by the actor in one transaction at most.
pub(super) const MAX_BATCH: usize = 512;

/// The first delay before a failed batch is retried (by opening the file
/// again, handing free locks to their waiters); doubled up to the second.
const RETRY_FIRST: Duration = Duration::from_millis(20);
const RETRY_MAX: Duration = Duration::from_secs(1);

/// When to try again after a failed batch.
#[derive(Clone, Copy)]
struct Retry {
    at: Instant,
    backoff: Duration,
}

pub(super) struct Actor {
    file: Arc<DbFile>,
    limits: Limits,
    stats: Arc<Stats>,
    locks: LockTable,
    sweep_every: Duration,
    /// Set while the last batch failed.
    retry: Option<Retry>,
    /// The namespaces' usage, while a quota is set (see `quota`).
    counted: Option<Counted>,
    /// The watched sessions' logs (see `embedded/watch.rs`), the last
    /// position given, and the entries of the batch, appended once it
    /// commits.
    logs: Arc<Logs>,
    seq: u64,
    noted: Vec<(Vec<u8>, Entry)>,
}

impl Actor {
    pub(super) fn new(
        file: Arc<DbFile>,
        limits: Limits,
        stats: Arc<Stats>,
        sweep_every: Duration,
        logs: Arc<Logs>,
    ) -> Actor {
        Actor {
            file,
            counted: Counted::new(limits.quotas),
            limits,
            locks: LockTable::new(stats.clone()),
            stats,
            sweep_every,
            retry: None,
            logs,
            seq: 0,
            noted: Vec::new(),
        }
    }

    /// Applies commands until every sender is gone. The first sweep runs at
    /// once: it drops what an earlier run left (meta rows of the locks that
    /// ended with it).
    pub(super) fn run(mut self, rx: mpsc::Receiver<Command>) {
        let mut next_sweep = Instant::now();
        loop {
            let now = Instant::now();
            let wake = [self.locks.next_deadline(), self.retry.map(|r| r.at)]
                .into_iter()
                .flatten()
                .fold(next_sweep, Instant::min);
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
        let mut abandons = Vec::new();
        let mut pending = batch.into_iter();
        let result = self
            .writer()
            .and_then(|db| self.run_batch(&db, &mut pending, sweep, &mut answers, &mut abandons));
        match result {
            Ok(()) => {
                self.locks.committed();
                self.retry = None;
                self.stats.store_ok();
                if !self.noted.is_empty() {
                    self.logs.append(std::mem::take(&mut self.noted));
                }
                answers.into_iter().for_each(|a| a.send(&self.stats));
            }
            Err(fault) => self.roll_back(&fault, answers, pending, abandons),
        }
    }

    /// The open database, opened again if an I/O failure closed it and the
    /// retry is due.
    fn writer(&mut self) -> Result<Arc<Database>, Fault> {
        match self.file.get() {
            Err(Fault::Closed) if self.retry.is_none_or(|r| Instant::now() >= r.at) => {
                let db = self.file.reopen()?;
                tracing::info!("embedded store file opened again");
                Ok(db)
            }
            db => db,
        }
    }

    fn run_batch(
        &mut self,
        db: &Database,
        pending: &mut impl Iterator<Item = Command>,
        sweep: bool,
        answers: &mut Vec<Answer>,
        abandons: &mut Vec<(Vec<u8>, String)>,
    ) -> Result<(), Fault> {
        let txn = db.begin_write()?;
        if let Some(counted) = &mut self.counted {
            counted.refresh(&txn)?;
        }
        for cmd in pending {
            if let Command::Abandon { key, token } = &cmd {
                abandons.push((key.clone(), token.clone()));
            }
            self.apply(&txn, cmd, answers)?;
        }
        self.expire_leases(&txn, answers)?;
        if sweep {
            self.sweep(&txn)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Undoes a failed batch (see the module doc).
    fn roll_back(
        &mut self,
        fault: &Fault,
        answers: Vec<Answer>,
        pending: impl Iterator<Item = Command>,
        mut abandons: Vec<(Vec<u8>, String)>,
    ) {
        // While the file is closed every batch fails at once: that is no
        // news, and no reason to retry later.
        let closed = matches!(fault, Fault::Closed);
        if closed {
            tracing::debug!("embedded store batch refused while its file is closed");
        } else {
            tracing::error!(error = %fault, "embedded store transaction failed and was rolled back");
        }
        self.stats.store_failed();
        self.noted.clear();
        if let Some(counted) = &mut self.counted {
            counted.rolled_back();
        }
        // Closed before anyone is told, so that nobody reads it in between.
        if fault.closes_file() {
            self.file.close();
        }
        // Newest first, so that waiters handed the lock regain their order.
        for answer in answers.into_iter().rev() {
            if let Some((key, waiter)) = answer.fail(fault) {
                self.locks.requeue(key, waiter);
            }
        }
        for waiter in self.locks.roll_back() {
            command::err(waiter.reply, fault);
        }
        abandons.extend(pending.filter_map(|cmd| cmd.fail(fault)));
        // A caller that gave up never holds a lock, whatever became of the
        // batch; a lock it frees is handed over by the retry.
        for (key, token) in abandons {
            self.locks.abandon(&key, &token);
            self.locks.forget_if_idle(&key);
        }
        self.locks.committed();
        if closed && self.retry.is_some() {
            return;
        }
        let backoff = self
            .retry
            .map_or(RETRY_FIRST, |r| (r.backoff * 2).min(RETRY_MAX));
        self.retry = Some(Retry {
            at: Instant::now() + backoff,
            backoff,
        });
    }
}

impl Actor {
    /// Whether `key` is watched: its steps are logged.
    pub(super) fn watched(&self, key: &[u8]) -> bool {
        self.logs.watched(key)
    }

    /// Logs a step of a watched session, at the next position.
    pub(super) fn note(&mut self, key: &[u8], logged: Logged) {
        self.seq += 1;
        self.noted.push((
            key.to_vec(),
            Entry {
                pos: (self.seq, 0),
                logged,
            },
        ));
    }
}
