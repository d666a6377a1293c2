//! The redb tables of the embedded store and the steps that read and write
//! them inside the actor's transaction. Checks come before writes: a refused
//! step writes nothing.
//!
//! - `sessions`: key -> [`record`](super::record) (the file format).
//! - `meta`: key -> (highest version ever given, highest fencing token ever
//!   given). Never deleted, so neither goes back across delete and re-create.
//! - `expiry`: (expires_ms, key) -> (), the index the sweeper deletes idle
//!   sessions by.

use redb::{Database, ReadableTable, TableDefinition, WriteTransaction};

use super::outcome::{Fault, Outcome, Refusal};
use super::record;
use crate::session::{self, Guards, Limits, Mutation, Session, Written};
use crate::store::now_ms;

pub(super) const SESSIONS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("sessions");

pub(super) const META: TableDefinition<&[u8], (u64, u64)> = TableDefinition::new("meta");

pub(super) const EXPIRY: TableDefinition<(i64, &[u8]), ()> = TableDefinition::new("expiry");

/// Creates the tables that do not exist yet, so that readers never meet a
/// missing one.
pub(super) fn create(db: &Database) -> Result<(), Fault> {
    let txn = db.begin_write()?;
    {
        txn.open_table(SESSIONS)?;
        txn.open_table(META)?;
        txn.open_table(EXPIRY)?;
    }
    txn.commit()?;
    Ok(())
}

/// UpdateSession's atomic step, after the lock guard passed.
pub(super) fn write(
    txn: &WriteTransaction,
    key: &[u8],
    m: &Mutation,
    g: &Guards,
    limits: &Limits,
) -> Result<Outcome<Written>, Fault> {
    let now = now_ms();
    let mut sessions = txn.open_table(SESSIONS)?;
    let current = read_session(&sessions, key, now)?;
    if let Err(r) = check_version(g, current.as_ref()) {
        return Ok(Outcome::Refused(r));
    }
    let mut fields = current
        .as_ref()
        .map(|s| s.fields.clone())
        .unwrap_or_default();
    session::apply(&mut fields, m);
    let bytes = fields.bytes();
    if let Err(e) = limits.check_result(fields.len(), bytes) {
        return Ok(Outcome::Refused(Refusal::Limit(e)));
    }
    let mut meta = txn.open_table(META)?;
    let (hwm, fence) = meta.get(key)?.map(|g| g.value()).unwrap_or((0, 0));
    let version = hwm + 1;
    meta.insert(key, (version, fence))?;
    let expires_ms = now + limits.idle_ttl.as_millis() as i64;
    let stored = Session {
        fields,
        version,
        created_ms: current.as_ref().map_or(now, |s| s.created_ms),
        updated_ms: now,
        expires_ms,
    };
    sessions.insert(key, record::encode(&stored).as_slice())?;
    let mut expiry = txn.open_table(EXPIRY)?;
    if let Some(old) = &current {
        expiry.remove((old.expires_ms, key))?;
    }
    expiry.insert((expires_ms, key), ())?;
    Ok(Outcome::Done(Written {
        version,
        expires_ms,
    }))
}

/// DeleteSession's atomic step, after the lock guard passed: the version the
/// session had, `None` when there was nothing to delete.
pub(super) fn delete(
    txn: &WriteTransaction,
    key: &[u8],
    g: &Guards,
) -> Result<Outcome<Option<u64>>, Fault> {
    let mut sessions = txn.open_table(SESSIONS)?;
    let current = read_session(&sessions, key, now_ms())?;
    if let Err(r) = check_version(g, current.as_ref()) {
        return Ok(Outcome::Refused(r));
    }
    let Some(current) = current else {
        return Ok(Outcome::Done(None));
    };
    sessions.remove(key)?;
    txn.open_table(EXPIRY)?.remove((current.expires_ms, key))?;
    Ok(Outcome::Done(Some(current.version)))
}

/// A lock grant's durable part: takes the next fencing token of `key` and
/// reads the session as it is now.
pub(super) fn next_fence(
    txn: &WriteTransaction,
    key: &[u8],
) -> Result<(u64, Option<Session>), Fault> {
    let mut meta = txn.open_table(META)?;
    let (version_hwm, fence) = meta.get(key)?.map(|g| g.value()).unwrap_or((0, 0));
    let fence = fence + 1;
    meta.insert(key, (version_hwm, fence))?;
    let sessions = txn.open_table(SESSIONS)?;
    let session = read_session(&sessions, key, now_ms())?;
    Ok((fence, session))
}

fn check_version(g: &Guards, current: Option<&Session>) -> Result<(), Refusal> {
    let Some(expected) = g.expected_version else {
        return Ok(());
    };
    let actual = current.map_or(0, |s| s.version);
    if actual != expected {
        return Err(Refusal::VersionMismatch {
            expected,
            current: actual,
        });
    }
    Ok(())
}

/// Deletes the sessions whose idle TTL ran out (their meta rows stay).
pub(super) fn sweep_expired(txn: &WriteTransaction) -> Result<(), Fault> {
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

/// The session stored under `key`, `None` when there is none or it expired.
pub(super) fn read_session(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    key: &[u8],
    now: i64,
) -> Result<Option<Session>, Fault> {
    let Some(raw) = table.get(key)? else {
        return Ok(None);
    };
    let session = record::decode(raw.value())?;
    Ok((session.expires_ms > now).then_some(session))
}
