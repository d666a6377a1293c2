//! Per-namespace quotas on the embedded store: the actor keeps every
//! namespace's usage (stored sessions and their bytes) in memory, and decides
//! a write against it in the write's own step, so no interleaving of callers
//! can overshoot a quota. Usage counts the records in the file, expired or
//! not, until a step removes them (a delete, a write over them, the sweep);
//! a write that would be refused first reaps a bounded number of expired
//! sessions, so sessions that expired idly stop counting without waiting for
//! the sweep.
//!
//! The usage is counted afresh from the file (a scan) before the first batch
//! and before the first batch after a failed one (whose changes the rollback
//! undid in the file but not here). With no quota set none of this exists:
//! the actor's steps are the uncounted ones.

use std::collections::HashMap;

use redb::WriteTransaction;

use super::Actor;
use crate::error::Error;
use crate::session::{Guards, Mutation, Quotas, Session, Usage, Written};
use crate::store::embedded::locks::Held;
use crate::store::embedded::outcome::{Fault, Outcome, Refusal};
use crate::store::embedded::tables;

/// Expired sessions a write reaps, at most, before it is refused.
const REAP_MAX: usize = 256;

/// The usage of every namespace that stores something.
pub(super) struct Counted {
    quotas: Quotas,
    by_namespace: HashMap<Box<[u8]>, Usage>,
    /// Whether the usage must be counted afresh before the next step.
    stale: bool,
}

impl Counted {
    /// `None` when no quota is set: nothing is counted.
    pub(super) fn new(quotas: Quotas) -> Option<Counted> {
        quotas.is_on().then(|| Counted {
            quotas,
            by_namespace: HashMap::new(),
            stale: true,
        })
    }

    fn usage(&self, ns: &[u8]) -> Usage {
        self.by_namespace.get(ns).copied().unwrap_or_default()
    }

    fn set(&mut self, ns: &[u8], usage: Usage) {
        if usage == Usage::default() {
            self.by_namespace.remove(ns);
        } else if let Some(u) = self.by_namespace.get_mut(ns) {
            *u = usage;
        } else {
            self.by_namespace.insert(ns.into(), usage);
        }
    }

    fn forget(&mut self, key: &[u8], record: &Session) {
        let ns = namespace(key);
        let usage = self.usage(ns).without(Some(record.fields.bytes()));
        self.set(ns, usage);
    }

    /// Counts the usage afresh from the file, if it must be.
    pub(super) fn refresh(&mut self, txn: &WriteTransaction) -> Result<(), Fault> {
        if !self.stale {
            return Ok(());
        }
        let mut by_namespace: HashMap<Box<[u8]>, Usage> = HashMap::new();
        tables::scan(txn, |key, record| {
            let ns = namespace(key);
            let size = record.fields.bytes();
            match by_namespace.get_mut(ns) {
                Some(u) => *u = u.with(size),
                None => {
                    by_namespace.insert(ns.into(), Usage::default().with(size));
                }
            }
        })?;
        self.by_namespace = by_namespace;
        self.stale = false;
        Ok(())
    }

    /// After a failed batch: what the rollback undid in the file is still
    /// counted here.
    pub(super) fn rolled_back(&mut self) {
        self.stale = true;
    }

    /// Deletes up to [`REAP_MAX`] sessions whose idle TTL ran out; how many.
    fn reap(&mut self, txn: &WriteTransaction, now: i64) -> Result<usize, Fault> {
        tables::sweep_expired(txn, now, REAP_MAX, |key, record| self.forget(key, record))
    }
}

/// The namespace of an embedded key (`namespace 0x00 id`).
fn namespace(key: &[u8]) -> &[u8] {
    key.split(|&b| b == 0).next().unwrap_or(key)
}

impl Actor {
    /// UpdateSession's step: counted against the quotas when they are on.
    pub(super) fn write(
        &mut self,
        txn: &WriteTransaction,
        key: &[u8],
        m: &Mutation,
        g: &Guards,
        now: i64,
        held: Option<Held>,
    ) -> Result<Outcome<Written>, Fault> {
        let Some(counted) = self.counted.as_mut() else {
            return tables::write(txn, key, m, g, &self.limits, now, held);
        };
        let ns = namespace(key);
        let mut reaped = false;
        loop {
            let usage = counted.usage(ns);
            let quotas = counted.quotas;
            let mut after = None;
            let outcome =
                tables::write_counted(txn, key, m, g, &self.limits, now, held, |old, new| {
                    let old = old.map(|s| s.fields.bytes());
                    let admitted = quotas.admit(usage, old, new).map_err(Refusal::Limit)?;
                    after = Some(admitted);
                    Ok(())
                })?;
            match (&outcome, after) {
                (Outcome::Done(_), Some(after)) => counted.set(ns, after),
                (Outcome::Refused(Refusal::Limit(Error::QuotaExceeded { .. })), _) if !reaped => {
                    reaped = true;
                    if counted.reap(txn, now)? > 0 {
                        continue;
                    }
                }
                _ => {}
            }
            return Ok(outcome);
        }
    }

    /// DeleteSession's step: the record it removes stops counting.
    pub(super) fn delete(
        &mut self,
        txn: &WriteTransaction,
        key: &[u8],
        g: &Guards,
        now: i64,
        held: Option<Held>,
    ) -> Result<Outcome<Option<u64>>, Fault> {
        match self.counted.as_mut() {
            None => tables::delete(txn, key, g, now, held),
            Some(counted) => tables::delete_counted(txn, key, g, now, held, |old| {
                counted.forget(key, old);
            }),
        }
    }
}

/// The sweep's deletions of idle sessions (counted, when quotas are on), and
/// of the meta rows of ids never written whose lock is not `in_use`.
pub(super) fn sweep(
    counted: Option<&mut Counted>,
    txn: &WriteTransaction,
    now: i64,
    in_use: impl Fn(&[u8]) -> bool,
) -> Result<tables::Swept, Fault> {
    match counted {
        None => tables::sweep(txn, now, in_use),
        Some(counted) => tables::sweep_counted(txn, now, in_use, |key, record| {
            counted.forget(key, record);
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_namespace_is_the_key_up_to_its_first_nul() {
        assert_eq!(namespace(b"tenant\0user-1"), b"tenant");
        assert_eq!(namespace(b"default\0a\0b"), b"default");
        assert_eq!(namespace(b"nokey"), b"nokey");
    }

    #[test]
    fn off_counts_nothing() {
        assert!(Counted::new(Quotas::default()).is_none());
        assert!(
            Counted::new(Quotas {
                max_sessions: 1,
                max_bytes: 0
            })
            .is_some()
        );
    }
}
