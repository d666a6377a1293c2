//! The steps on the `sessions` table and its `expiry` index: write, delete,
//! keep alive under a lock, and the sweep of idle sessions.

use redb::{ReadableTable, Table, WriteTransaction};

use super::{EXPIRY, SESSIONS, meta, stored};
use crate::session::{self, Guards, Limits, Mutation, Session, Written};
use crate::store::embedded::locks::Held;
use crate::store::embedded::outcome::{Fault, Outcome, Refusal};
use crate::store::embedded::record;

type Sessions<'t> = Table<'t, &'static [u8], &'static [u8]>;
type Expiry<'t> = Table<'t, (i64, &'static [u8]), ()>;

/// UpdateSession's atomic step, after the lock guard passed (`held`: the
/// lock its token holds, if it brought one).
pub(in crate::store::embedded) fn write(
    txn: &WriteTransaction,
    key: &[u8],
    m: &Mutation,
    g: &Guards,
    limits: &Limits,
    now: i64,
    held: Option<Held>,
) -> Result<Outcome<Written>, Fault> {
    write_counted(txn, key, m, g, limits, now, held, |_, _| Ok(()))
}

/// [`write`], decided also by `admit`, which is given the record the write
/// replaces (expired or not: the quotas count stored records until they
/// are gone) and the new session's size, after every other check passed
/// and before anything is written.
#[allow(clippy::too_many_arguments)]
pub(in crate::store::embedded) fn write_counted(
    txn: &WriteTransaction,
    key: &[u8],
    m: &Mutation,
    g: &Guards,
    limits: &Limits,
    now: i64,
    held: Option<Held>,
    admit: impl FnOnce(Option<&Session>, u64) -> Result<(), Refusal>,
) -> Result<Outcome<Written>, Fault> {
    let mut sessions = txn.open_table(SESSIONS)?;
    let stored = stored(&sessions, key)?;
    let current = stored.as_ref().filter(|s| s.expires_ms > now);
    if let Err(r) = check_holder(held, current).and_then(|()| check_version(g, current)) {
        return Ok(Outcome::Refused(r));
    }
    let mut fields = current.map(|s| s.fields.clone()).unwrap_or_default();
    let op_values = match session::apply(&mut fields, m) {
        Ok(values) => values,
        Err((refusal, i)) => {
            let field = m.ops.get(i).map_or("", |op| op.field.as_str());
            return Ok(Outcome::Refused(Refusal::Limit(refusal.error(field))));
        }
    };
    // Only an append can make a value longer than the request's.
    let too_long = m.ops.iter().zip(&op_values).find(|(op, v)| {
        matches!(op.kind, session::OpKind::Append { .. }) && v.len() as u64 > limits.max_field_bytes
    });
    if let Some((op, v)) = too_long {
        let e = limits.field_too_long(&op.field, v.len() as u64);
        return Ok(Outcome::Refused(Refusal::Limit(e)));
    }
    let bytes = fields.bytes();
    if let Err(e) = limits.check_result(fields.len(), bytes) {
        return Ok(Outcome::Refused(Refusal::Limit(e)));
    }
    if let Err(r) = admit(stored.as_ref(), bytes) {
        return Ok(Outcome::Refused(r));
    }
    let version = meta::next_version(txn, key)?;
    // Under a lock the session lives at least as long as the lease.
    let expires_ms = (now + limits.idle_ttl.as_millis() as i64).max(held.map_or(0, |h| h.until_ms));
    let new = Session {
        fields,
        version,
        created_ms: current.map_or(now, |s| s.created_ms),
        updated_ms: now,
        expires_ms,
    };
    let mut expiry = txn.open_table(EXPIRY)?;
    let old_expiry = stored.as_ref().map(|s| s.expires_ms);
    put(&mut sessions, &mut expiry, key, old_expiry, &new)?;
    Ok(Outcome::Done(Written {
        version,
        expires_ms,
        op_values,
    }))
}

/// DeleteSession's atomic step, after the lock guard passed: the version the
/// session had, `None` when there was nothing to delete. An expired record
/// goes too (it is nothing to delete, but need not wait for the sweep).
pub(in crate::store::embedded) fn delete(
    txn: &WriteTransaction,
    key: &[u8],
    g: &Guards,
    now: i64,
    held: Option<Held>,
) -> Result<Outcome<Option<u64>>, Fault> {
    delete_counted(txn, key, g, now, held, |_| {})
}

/// [`delete`], telling `removed` of the record it removes.
pub(in crate::store::embedded) fn delete_counted(
    txn: &WriteTransaction,
    key: &[u8],
    g: &Guards,
    now: i64,
    held: Option<Held>,
    removed: impl FnOnce(&Session),
) -> Result<Outcome<Option<u64>>, Fault> {
    let mut sessions = txn.open_table(SESSIONS)?;
    let stored = stored(&sessions, key)?;
    let current = stored.as_ref().filter(|s| s.expires_ms > now);
    if let Err(r) = check_holder(held, current).and_then(|()| check_version(g, current)) {
        return Ok(Outcome::Refused(r));
    }
    let version = current.map(|s| s.version);
    if let Some(old) = stored {
        sessions.remove(key)?;
        txn.open_table(EXPIRY)?.remove((old.expires_ms, key))?;
        removed(&old);
    }
    Ok(Outcome::Done(version))
}

/// Keeps the session alive until at least `until` (a lease's end): the
/// session as it is now, its expiry pushed if it was earlier. Not a write:
/// the version stays.
pub(in crate::store::embedded) fn keep_alive(
    txn: &WriteTransaction,
    key: &[u8],
    now: i64,
    until: i64,
) -> Result<Option<Session>, Fault> {
    let mut sessions = txn.open_table(SESSIONS)?;
    let Some(mut session) = stored(&sessions, key)?.filter(|s| s.expires_ms > now) else {
        return Ok(None);
    };
    if session.expires_ms < until {
        let old_expiry = session.expires_ms;
        session.expires_ms = until;
        let mut expiry = txn.open_table(EXPIRY)?;
        put(&mut sessions, &mut expiry, key, Some(old_expiry), &session)?;
    }
    Ok(Some(session))
}

/// Stores `new` in place of the record that expired at `old_expiry` (if
/// any, live or not), and moves the expiry row with it.
fn put(
    sessions: &mut Sessions<'_>,
    expiry: &mut Expiry<'_>,
    key: &[u8],
    old_expiry: Option<i64>,
    new: &Session,
) -> Result<(), Fault> {
    sessions.insert(key, record::encode(new).as_slice())?;
    if let Some(old) = old_expiry {
        expiry.remove((old, key))?;
    }
    expiry.insert((new.expires_ms, key), ())?;
    Ok(())
}

/// A holder writes only to the session it holds: the one it was granted
/// with or last wrote (version 0: none). Another one means the session
/// expired under the lock (a wall clock that jumped past the lease's end),
/// and merging into a new one would drop what the holder read.
fn check_holder(held: Option<Held>, current: Option<&Session>) -> Result<(), Refusal> {
    match held {
        Some(h) if h.saw != current.map_or(0, |s| s.version) => Err(Refusal::SessionLost),
        _ => Ok(()),
    }
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

/// Deletes the sessions whose idle TTL ran out, by their expiry rows. A row
/// whose record is not due (it moved on, or the row is stale) only loses
/// the row: the record's own expiry decides. A record that does not decode
/// is left alone (reads report it) rather than failing every sweep.
/// At most `max` rows are looked at; `removed` is told of every session
/// deleted.
pub(in crate::store::embedded) fn sweep_expired(
    txn: &WriteTransaction,
    now: i64,
    max: usize,
    mut removed: impl FnMut(&[u8], &Session),
) -> Result<usize, Fault> {
    let mut expiry = txn.open_table(EXPIRY)?;
    let mut sessions = txn.open_table(SESSIONS)?;
    let mut due = Vec::new();
    for entry in expiry.range((i64::MIN, &[][..])..(now, &[][..]))?.take(max) {
        let (row, _) = entry?;
        let (expires_ms, key) = row.value();
        due.push((expires_ms, key.to_vec()));
    }
    let mut deleted = 0;
    for (expires_ms, key) in due {
        let key = key.as_slice();
        let record = match stored(&sessions, key) {
            Ok(record) => record,
            Err(Fault::Corrupt(e)) => {
                tracing::warn!(error = %e, "the sweep skips a session record that does not decode");
                continue;
            }
            Err(fault) => return Err(fault),
        };
        expiry.remove((expires_ms, key))?;
        if let Some(record) = record.filter(|r| r.expires_ms <= now) {
            sessions.remove(key)?;
            expiry.remove((record.expires_ms, key))?;
            removed(key, &record);
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// Calls `each` with every stored record (expired or not) and its key: how
/// the quotas' usage is counted afresh.
pub(in crate::store::embedded) fn scan(
    txn: &WriteTransaction,
    mut each: impl FnMut(&[u8], &Session),
) -> Result<(), Fault> {
    let sessions = txn.open_table(SESSIONS)?;
    for entry in sessions.iter()? {
        let (key, raw) = entry?;
        match record::decode(raw.value()) {
            Ok(record) => each(key.value(), &record),
            // As the sweep does: reads report it, counting goes on.
            Err(e) => {
                tracing::warn!(error = %e, "quota usage skips a session record that does not decode")
            }
        }
    }
    Ok(())
}
