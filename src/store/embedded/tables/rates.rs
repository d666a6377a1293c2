//! The `rates` table: per rate limit, its theoretical arrival time (µs since
//! the epoch, see `session/rate.rs`); `rate_expiry` indexes the rows by it,
//! for the sweep to drop those that passed (a TAT in the past means a full
//! burst, as no row does). Keys are `ns 0x00 id 0x00 name` (a session's
//! limit) or `ns 0x01 name` (a namespace's): none of the parts holds a
//! control character, so the layout is injective.

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use crate::session::{Gcra, RateLimit};
use crate::store::embedded::outcome::Fault;

pub(in crate::store::embedded) const RATES: TableDefinition<&[u8], i64> =
    TableDefinition::new("rates");

pub(in crate::store::embedded) const RATE_EXPIRY: TableDefinition<(i64, &[u8]), ()> =
    TableDefinition::new("rate_expiry");

/// One GCRA step of `limit` on the row `key` at `now_us`; an admitted call's
/// TAT is stored, a refusal writes nothing.
pub(in crate::store::embedded) fn check(
    txn: &WriteTransaction,
    key: &[u8],
    limit: &RateLimit,
    now_us: i64,
) -> Result<Gcra, Fault> {
    let mut table = txn.open_table(RATES)?;
    let stored = table.get(key)?.map(|v| v.value());
    let decision = limit.decide(stored, now_us);
    if let Gcra::Admit { tat, .. } = decision {
        let mut expiry = txn.open_table(RATE_EXPIRY)?;
        if let Some(old) = stored {
            expiry.remove((old, key))?;
        }
        table.insert(key, tat)?;
        expiry.insert((tat, key), ())?;
    }
    Ok(decision)
}

/// Removes the rows whose TAT passed by `now_us`; returns how many.
pub(in crate::store::embedded) fn sweep(
    txn: &WriteTransaction,
    now_us: i64,
) -> Result<usize, Fault> {
    let mut expiry = txn.open_table(RATE_EXPIRY)?;
    let mut table = txn.open_table(RATES)?;
    let mut due = Vec::new();
    for entry in expiry.range((i64::MIN, &[][..])..(now_us.saturating_add(1), &[][..]))? {
        let (row, _) = entry?;
        let (tat, key) = row.value();
        due.push((tat, key.to_vec()));
    }
    for (tat, key) in &due {
        expiry.remove((*tat, key.as_slice()))?;
        table.remove(key.as_slice())?;
    }
    Ok(due.len())
}
