//! The steps on the `meta` table: the version and fencing sequences.

use redb::{ReadableTable, WriteTransaction};

use super::META;
use crate::store::embedded::outcome::Fault;

/// A lock grant's durable part: the next fencing token of `key`.
pub(in crate::store::embedded) fn next_fence(
    txn: &WriteTransaction,
    key: &[u8],
) -> Result<u64, Fault> {
    let mut meta = txn.open_table(META)?;
    let (version, fence) = meta.get(key)?.map_or((0, 0), |g| g.value());
    let fence = fence + 1;
    meta.insert(key, (version, fence))?;
    Ok(fence)
}

/// Takes the next version of `key`, 1 at its first write ever.
pub(super) fn next_version(txn: &WriteTransaction, key: &[u8]) -> Result<u64, Fault> {
    let mut meta = txn.open_table(META)?;
    let (version, fence) = meta.get(key)?.map_or((0, 0), |g| g.value());
    let version = version + 1;
    meta.insert(key, (version, fence))?;
    Ok(version)
}
