//! The steps on the tables, with the clock in the test's hands.

use std::time::Duration;

use bytes::Bytes;
use redb::{Database, ReadableDatabase, WriteTransaction};
use tempfile::TempDir;

use super::*;
use crate::session::{Guards, Limits, Mutation, Written};
use crate::store::embedded::outcome::Outcome;

const T0: i64 = 1_800_000_000_000;
const TTL: i64 = 2_000;
const KEY: &[u8] = b"default\0s";

fn db() -> (TempDir, Database) {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::create(dir.path().join("t.redb")).unwrap();
    create(&db).unwrap();
    (dir, db)
}

/// Runs `step` in a write transaction and commits it.
fn step<T>(db: &Database, step: impl FnOnce(&WriteTransaction) -> Result<T, Fault>) -> T {
    let txn = db.begin_write().unwrap();
    let value = step(&txn).unwrap();
    txn.commit().unwrap();
    value
}

fn limits() -> Limits {
    Limits {
        max_fields: 100,
        max_field_bytes: 1 << 20,
        max_session_bytes: 1 << 20,
        lease_default: Duration::from_secs(10),
        lease_min: Duration::from_millis(100),
        lease_max: Duration::from_secs(60),
        wait_max: Duration::from_secs(10),
        idle_ttl: Duration::from_millis(TTL as u64),
    }
}

fn set(name: &str) -> Mutation {
    Mutation {
        set: vec![(name.to_owned(), Bytes::from_static(b"v"))],
        ..Default::default()
    }
}

fn write_at(db: &Database, name: &str, now: i64) -> Outcome<Written> {
    step(db, |t| {
        write(t, KEY, &set(name), &Guards::default(), &limits(), now)
    })
}

fn written(outcome: Outcome<Written>) -> Written {
    match outcome {
        Outcome::Done(w) => w,
        Outcome::Refused(r) => panic!("refused: {r:?}"),
    }
}

fn read_at(db: &Database, now: i64) -> Option<Session> {
    let txn = db.begin_read().unwrap();
    read_session(&txn.open_table(SESSIONS).unwrap(), KEY, now).unwrap()
}

fn names(s: &Session) -> Vec<&str> {
    s.fields.iter().map(|(n, _)| n).collect()
}

fn rows(db: &Database) -> Vec<i64> {
    let txn = db.begin_read().unwrap();
    let expiry = txn.open_table(EXPIRY).unwrap();
    let rows = expiry.iter().unwrap().map(|e| e.unwrap().0.value().0);
    rows.collect()
}

fn sweep_at(db: &Database, now: i64) -> Swept {
    step(db, |t| sweep(t, now))
}

#[test]
fn a_session_written_again_after_it_expired_survives_the_sweep() {
    let (_dir, db) = db();
    assert_eq!(written(write_at(&db, "a", T0)).version, 1);
    assert_eq!(read_at(&db, T0 + TTL), None, "expired");
    let n1 = written(write_at(&db, "n1", T0 + 2_600));
    assert_eq!((n1.version, n1.expires_ms), (2, T0 + 2_600 + TTL));
    assert_eq!(rows(&db), [n1.expires_ms], "the expired record's row went");

    assert_eq!(sweep_at(&db, T0 + 2_700), Swept::default());
    written(write_at(&db, "n2", T0 + 3_000));
    assert_eq!(sweep_at(&db, T0 + 3_100), Swept::default());
    let s = read_at(&db, T0 + 3_100).expect("the live session stays");
    assert_eq!((names(&s), s.version), (vec!["n1", "n2"], 3));

    let swept = sweep_at(&db, T0 + 3_000 + TTL + 1);
    assert_eq!(swept.sessions, 1);
    assert_eq!(read_at(&db, T0), None, "deleted, not just expired");
    assert!(rows(&db).is_empty());
}

#[test]
fn a_stale_row_from_an_older_build_never_deletes_a_live_session() {
    let (_dir, db) = db();
    let w = written(write_at(&db, "a", T0));
    // Builds before this rule left the row of an expired record behind.
    step(&db, |t| {
        t.open_table(EXPIRY)?.insert((T0 - 10, KEY), ())?;
        Ok(())
    });
    assert_eq!(sweep_at(&db, T0 + 1), Swept::default());
    assert!(read_at(&db, T0 + 1).is_some());
    assert_eq!(rows(&db), [w.expires_ms], "only the stale row went");
}
