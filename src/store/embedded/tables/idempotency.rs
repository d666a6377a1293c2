//! The `idempotency` table: per session and idempotency key, the digest of
//! the first successful write's request and its answer, until the window
//! ends; `idempotency_expiry` indexes the rows by that end for the sweep.
//! Keys are `ns 0x00 id 0x00 key` (a LockSession's: `ns 0x00 id 0x01
//! key`, apart from the writes'): none of the three holds a control
//! character, so the layout is injective. A row past its end is never
//! answered from, whether or not the sweep has removed it yet. A lock's row
//! keeps its grant: the token, the fencing token (`version`), the lease's
//! end (`expires_ms`) and the superseded payloads it carried.

use bytes::Bytes;
use prost::Message;
use redb::{ReadableTable, TableDefinition, WriteTransaction};

use crate::session::{Idempotency, LockGrant, Superseded, Written};
use crate::store::embedded::outcome::Fault;

pub(in crate::store::embedded) const IDEMPOTENCY: TableDefinition<&[u8], &[u8]> =
    TableDefinition::new("idempotency");

pub(in crate::store::embedded) const IDEMPOTENCY_EXPIRY: TableDefinition<(i64, &[u8]), ()> =
    TableDefinition::new("idempotency_expiry");

/// A row: its own prost message, apart from the API.
#[derive(Clone, PartialEq, prost::Message)]
struct Row {
    #[prost(bytes = "vec", tag = "1")]
    digest: Vec<u8>,
    /// When the window ends (ms since the epoch).
    #[prost(int64, tag = "2")]
    until_ms: i64,
    #[prost(uint64, tag = "3")]
    version: u64,
    #[prost(int64, tag = "4")]
    expires_ms: i64,
    #[prost(bytes = "bytes", repeated, tag = "5")]
    op_values: Vec<Bytes>,
    /// A delete's answer: the version it deleted, 0 for none.
    #[prost(uint64, tag = "6")]
    deleted: u64,
    /// A lock's grant: its token.
    #[prost(string, tag = "7")]
    token: String,
    /// A lock's grant: the payloads of the waiters it superseded, and how
    /// many older ones were dropped (a row written before these fields
    /// decodes with none).
    #[prost(bytes = "bytes", repeated, tag = "8")]
    superseded: Vec<Bytes>,
    #[prost(uint32, tag = "9")]
    superseded_dropped: u32,
}

/// What an earlier write under the same key left.
pub(in crate::store::embedded) enum Earlier {
    /// The same request: its answer (an update's, or a delete's version).
    Same {
        written: Written,
        deleted: Option<u64>,
    },
    /// Another request under the same key.
    Other,
}

fn row_key(key: &[u8], idem: &Idempotency) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1 + idem.key.len());
    k.extend_from_slice(key);
    k.push(u8::from(idem.lock));
    k.extend_from_slice(idem.key.as_bytes());
    k
}

/// What an earlier LockSession under the same key was granted.
pub(in crate::store::embedded) enum EarlierGrant {
    Same {
        token: String,
        fence: u64,
        lease_expires_ms: i64,
        superseded: Superseded,
    },
    Other,
}

/// The row under `idem` on session `key`, while its window is open.
fn live_row(
    txn: &WriteTransaction,
    key: &[u8],
    idem: &Idempotency,
    now: i64,
) -> Result<Option<Row>, Fault> {
    let table = txn.open_table(IDEMPOTENCY)?;
    let Some(raw) = table.get(row_key(key, idem).as_slice())? else {
        return Ok(None);
    };
    let row = Row::decode(raw.value()).map_err(Fault::Corrupt)?;
    Ok((row.until_ms > now).then_some(row))
}

/// The earlier grant under the lock key `idem` on session `key`, if its
/// window is open.
pub(in crate::store::embedded) fn earlier_grant(
    txn: &WriteTransaction,
    key: &[u8],
    idem: &Idempotency,
    now: i64,
) -> Result<Option<EarlierGrant>, Fault> {
    let Some(row) = live_row(txn, key, idem, now)? else {
        return Ok(None);
    };
    if row.digest != idem.digest {
        return Ok(Some(EarlierGrant::Other));
    }
    Ok(Some(EarlierGrant::Same {
        token: row.token,
        fence: row.version,
        lease_expires_ms: row.expires_ms,
        superseded: Superseded {
            payloads: row.superseded,
            dropped: row.superseded_dropped,
        },
    }))
}

/// Records a grant under the lock key `idem` until `until`.
pub(in crate::store::embedded) fn remember_grant(
    txn: &WriteTransaction,
    key: &[u8],
    idem: &Idempotency,
    until: i64,
    grant: &LockGrant,
) -> Result<(), Fault> {
    let row = Row {
        digest: idem.digest.to_vec(),
        until_ms: until,
        version: grant.fence,
        expires_ms: grant.lease_expires_ms,
        token: grant.token.clone(),
        superseded: grant.superseded.payloads.clone(),
        superseded_dropped: grant.superseded.dropped,
        ..Default::default()
    };
    insert(txn, row_key(key, idem), row, until)
}

/// The earlier write under `idem` on session `key`, if its window is open.
pub(in crate::store::embedded) fn earlier(
    txn: &WriteTransaction,
    key: &[u8],
    idem: &Idempotency,
    now: i64,
) -> Result<Option<Earlier>, Fault> {
    let Some(row) = live_row(txn, key, idem, now)? else {
        return Ok(None);
    };
    if row.digest != idem.digest {
        return Ok(Some(Earlier::Other));
    }
    Ok(Some(Earlier::Same {
        written: Written {
            version: row.version,
            expires_ms: row.expires_ms,
            op_values: row.op_values,
        },
        deleted: Some(row.deleted).filter(|&v| v > 0),
    }))
}

/// Records a successful write's answer under `idem` until `until`.
pub(in crate::store::embedded) fn remember(
    txn: &WriteTransaction,
    key: &[u8],
    idem: &Idempotency,
    until: i64,
    written: Option<&Written>,
    deleted: Option<u64>,
) -> Result<(), Fault> {
    let row = Row {
        digest: idem.digest.to_vec(),
        until_ms: until,
        version: written.map_or(0, |w| w.version),
        expires_ms: written.map_or(0, |w| w.expires_ms),
        op_values: written.map(|w| w.op_values.clone()).unwrap_or_default(),
        deleted: deleted.unwrap_or(0),
        ..Default::default()
    };
    insert(txn, row_key(key, idem), row, until)
}

/// Writes `row` under `k`, indexed by its end `until`.
fn insert(txn: &WriteTransaction, k: Vec<u8>, row: Row, until: i64) -> Result<(), Fault> {
    let mut table = txn.open_table(IDEMPOTENCY)?;
    let mut expiry = txn.open_table(IDEMPOTENCY_EXPIRY)?;
    if let Some(old) = table.insert(k.as_slice(), row.encode_to_vec().as_slice())? {
        // A row whose window ended: its index entry goes with it.
        if let Ok(old) = Row::decode(old.value()) {
            expiry.remove((old.until_ms, k.as_slice()))?;
        }
    }
    expiry.insert((until, k.as_slice()), ())?;
    Ok(())
}

/// Removes the rows whose window ended by `now`; returns how many.
pub(in crate::store::embedded) fn sweep(txn: &WriteTransaction, now: i64) -> Result<usize, Fault> {
    let mut expiry = txn.open_table(IDEMPOTENCY_EXPIRY)?;
    let mut table = txn.open_table(IDEMPOTENCY)?;
    let mut due = Vec::new();
    for entry in expiry.range((i64::MIN, &[][..])..(now, &[][..]))? {
        let (row, _) = entry?;
        let (until, key) = row.value();
        due.push((until, key.to_vec()));
    }
    for (until, key) in &due {
        expiry.remove((*until, key.as_slice()))?;
        table.remove(key.as_slice())?;
    }
    Ok(due.len())
}
