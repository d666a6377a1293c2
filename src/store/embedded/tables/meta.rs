//! The steps on the `meta` table and what bounds it: the `unwritten` list
//! and the fence floor in `floors`.
//!
//! The policy (the same on both backends): the meta row of an id that was
//! never written (version 0) and whose lock nobody holds or waits for is
//! dropped, when its lock is released or abandoned, or by the sweep (a lease
//! that ran out, a restart). Its fencing tokens are not forgotten: the floor
//! rises to the row's, and every new fencing token is above the floor. The
//! row of a session ever written stays: versions are never reused.

use redb::{ReadableTable, WriteTransaction};

use super::{FLOORS, META, UNWRITTEN};
use crate::store::embedded::outcome::Fault;

/// The key of the fence floor in `floors`.
const FENCE_FLOOR: &str = "fence";

/// A lock grant's durable part: the next fencing token of `key`, above
/// every one it was ever given (its row's, and the floor of dropped rows).
pub(in crate::store::embedded) fn next_fence(
    txn: &WriteTransaction,
    key: &[u8],
) -> Result<u64, Fault> {
    let mut meta = txn.open_table(META)?;
    let (version, fence) = meta.get(key)?.map_or((0, 0), |g| g.value());
    let fence = fence.max(floor(txn)?) + 1;
    meta.insert(key, (version, fence))?;
    if version == 0 {
        txn.open_table(UNWRITTEN)?.insert(key, ())?;
    }
    Ok(fence)
}

/// Takes the next version of `key`, 1 at its first write ever. A first write
/// takes the key off the `unwritten` list: its row stays from now on.
pub(super) fn next_version(txn: &WriteTransaction, key: &[u8]) -> Result<u64, Fault> {
    let mut meta = txn.open_table(META)?;
    let (version, fence) = meta.get(key)?.map_or((0, 0), |g| g.value());
    if version == 0 {
        txn.open_table(UNWRITTEN)?.remove(key)?;
    }
    let version = version + 1;
    meta.insert(key, (version, fence))?;
    Ok(version)
}

/// Drops the meta row of `key` if no write ever followed its locks; the
/// caller knows that nobody holds or waits for the lock any more.
pub(in crate::store::embedded) fn drop_if_unwritten(
    txn: &WriteTransaction,
    key: &[u8],
) -> Result<bool, Fault> {
    if txn.open_table(UNWRITTEN)?.remove(key)?.is_none() {
        return Ok(false);
    }
    drop_row(txn, key)
}

/// Drops the listed rows whose lock is not `in_use`.
pub(super) fn sweep_unwritten(
    txn: &WriteTransaction,
    in_use: impl Fn(&[u8]) -> bool,
) -> Result<usize, Fault> {
    let mut idle = Vec::new();
    {
        let mut unwritten = txn.open_table(UNWRITTEN)?;
        for entry in unwritten.iter()? {
            let (key, _) = entry?;
            let key = key.value();
            if !in_use(key) {
                idle.push(key.to_vec());
            }
        }
        for key in &idle {
            unwritten.remove(key.as_slice())?;
        }
    }
    let mut dropped = 0;
    for key in &idle {
        if drop_row(txn, key)? {
            dropped += 1;
        }
    }
    Ok(dropped)
}

/// Lists every row of version 0 as unwritten: once, for a file written
/// before the list existed.
pub(super) fn list_unwritten(txn: &WriteTransaction) -> Result<(), Fault> {
    let meta = txn.open_table(META)?;
    let mut unwritten = txn.open_table(UNWRITTEN)?;
    for entry in meta.iter()? {
        let (key, row) = entry?;
        if row.value().0 == 0 {
            unwritten.insert(key.value(), ())?;
        }
    }
    Ok(())
}

/// Drops `key`'s row if it was never written, raising the floor to its
/// fencing token.
fn drop_row(txn: &WriteTransaction, key: &[u8]) -> Result<bool, Fault> {
    let mut meta = txn.open_table(META)?;
    let Some((version, fence)) = meta.get(key)?.map(|g| g.value()) else {
        return Ok(false);
    };
    if version != 0 {
        return Ok(false);
    }
    meta.remove(key)?;
    if fence > floor(txn)? {
        txn.open_table(FLOORS)?.insert(FENCE_FLOOR, fence)?;
    }
    Ok(true)
}

/// The highest fencing token of any dropped row.
fn floor(txn: &WriteTransaction) -> Result<u64, Fault> {
    Ok(txn
        .open_table(FLOORS)?
        .get(FENCE_FLOOR)?
        .map_or(0, |g| g.value()))
}
