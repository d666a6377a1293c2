//! The redb tables of the embedded store and the steps that read and write
//! them inside the actor's transaction. Checks come before writes: a refused
//! step writes nothing. Every step takes the time (`now`, ms since the epoch)
//! from its caller: one clock reading decides a command, and tests drive the
//! clock.
//!
//! - `sessions`: key -> [`record`](super::record) (the file format). A record
//!   past its expiry is never returned; the sweep or the next write removes it.
//! - `expiry`: (expires_ms, key) -> (), the index the sweep finds idle
//!   sessions by. Every step that replaces or removes a record removes the
//!   row of the record it found, expired or not, so a session has one row.
//!   The sweep still deletes a session only if its record's own expiry is
//!   due: a row left behind (files written before this rule have them)
//!   never deletes a live session.
//! - `meta`: key -> (highest version ever given, highest fencing token ever
//!   given). The row of a session ever written stays for good, so its
//!   versions never go back across delete, expiry and re-create.
//! - `unwritten`: the keys whose meta row a lock made and no write followed
//!   (version 0). Their rows are dropped once nobody holds or waits for the
//!   lock, so locking random ids leaves nothing behind.
//! - `idempotency`, `idempotency_expiry`: the answers of writes made with an
//!   idempotency key, until `--idempotency-window` ends (see
//!   `tables/idempotency.rs`); swept with the sessions.
//! - `rates`, `rate_expiry`: the rate limits' theoretical arrival times
//!   (see `tables/rates.rs`), dropped by the sweep once they pass.
//! - `floors`: the fence floor, the highest fencing token of any dropped meta
//!   row. A new fencing token is above its row's and the floor, so an id
//!   whose row was dropped still never sees a fencing token go back.

use redb::{Database, ReadableTable, TableDefinition, TableHandle, WriteTransaction};

use super::outcome::Fault;
use super::record;
use crate::session::Session;

mod idempotency;
mod meta;
mod rates;
mod session;
#[cfg(test)]
mod tests;

pub(super) use idempotency::{
    Earlier, EarlierGrant, earlier, earlier_grant, remember, remember_grant,
};
pub(super) use meta::{drop_if_unwritten, next_fence};
pub(super) use rates::check as check_rate;
pub(super) use session::{
    delete, delete_counted, keep_alive, scan, sweep_expired, write, write_counted,
};

pub(super) const SESSIONS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("sessions");

pub(super) const META: TableDefinition<&[u8], (u64, u64)> = TableDefinition::new("meta");

pub(super) const EXPIRY: TableDefinition<(i64, &[u8]), ()> = TableDefinition::new("expiry");

pub(super) const UNWRITTEN: TableDefinition<&[u8], ()> = TableDefinition::new("unwritten");

pub(super) const FLOORS: TableDefinition<&str, u64> = TableDefinition::new("floors");

/// Creates the tables that do not exist yet, so that readers never meet a
/// missing one. A file written before `unwritten` existed has its lock-only
/// meta rows listed there once, for the first sweep to drop.
pub(super) fn create(db: &Database) -> Result<(), Fault> {
    let txn = db.begin_write()?;
    let listed = txn.list_tables()?.any(|t| t.name() == UNWRITTEN.name());
    {
        txn.open_table(SESSIONS)?;
        txn.open_table(META)?;
        txn.open_table(EXPIRY)?;
        txn.open_table(UNWRITTEN)?;
        txn.open_table(FLOORS)?;
        txn.open_table(idempotency::IDEMPOTENCY)?;
        txn.open_table(idempotency::IDEMPOTENCY_EXPIRY)?;
        txn.open_table(rates::RATES)?;
        txn.open_table(rates::RATE_EXPIRY)?;
    }
    if !listed {
        meta::list_unwritten(&txn)?;
    }
    txn.commit()?;
    Ok(())
}

/// What a sweep removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Swept {
    /// Sessions whose idle TTL ran out.
    pub sessions: usize,
    /// Meta rows of ids never written that nobody held or waited for.
    pub metas: usize,
    /// Idempotency keys whose window ended.
    pub idempotency_keys: usize,
    /// Rate limits back to a full burst.
    pub rates: usize,
}

/// Deletes the sessions whose idle TTL ran out (their meta rows stay), and
/// drops the meta rows of ids never written whose lock is not `in_use`.
pub(super) fn sweep(
    txn: &WriteTransaction,
    now: i64,
    in_use: impl Fn(&[u8]) -> bool,
) -> Result<Swept, Fault> {
    sweep_counted(txn, now, in_use, |_, _| {})
}

/// [`sweep`], telling `removed` of every session it deletes.
pub(super) fn sweep_counted(
    txn: &WriteTransaction,
    now: i64,
    in_use: impl Fn(&[u8]) -> bool,
    removed: impl FnMut(&[u8], &Session),
) -> Result<Swept, Fault> {
    Ok(Swept {
        sessions: session::sweep_expired(txn, now, usize::MAX, removed)?,
        metas: meta::sweep_unwritten(txn, in_use)?,
        idempotency_keys: idempotency::sweep(txn, now)?,
        rates: rates::sweep(txn, now.saturating_mul(1000))?,
    })
}

/// The session stored under `key`, `None` when there is none or it expired.
pub(super) fn read_session(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    key: &[u8],
    now: i64,
) -> Result<Option<Session>, Fault> {
    Ok(stored(table, key)?.filter(|s| s.expires_ms > now))
}

/// The record stored under `key`, expired or not.
fn stored(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    key: &[u8],
) -> Result<Option<Session>, Fault> {
    match table.get(key)? {
        Some(raw) => Ok(Some(record::decode(raw.value())?)),
        None => Ok(None),
    }
}
