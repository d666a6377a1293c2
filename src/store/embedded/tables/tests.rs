//! The steps on the tables, with the clock in the test's hands.

use std::time::Duration;

use bytes::Bytes;
use redb::{Database, ReadableDatabase, ReadableTableMetadata, WriteTransaction};
use tempfile::TempDir;

use super::*;
use crate::session::{Guards, Limits, Mutation, Written};
use crate::store::embedded::locks::Held;
use crate::store::embedded::outcome::{Outcome, Refusal};

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
        quotas: Default::default(),
        idempotency_window: Duration::from_secs(600),
        rate_default: (10.0, 10),
        max_turn_payload_bytes: 4096,
    }
}

fn set(name: &str) -> Mutation {
    Mutation {
        set: vec![(name.to_owned(), Bytes::from_static(b"v"))],
        ..Default::default()
    }
}

fn write_at(db: &Database, name: &str, now: i64, held: Option<Held>) -> Outcome<Written> {
    step(db, |t| {
        write(t, KEY, &set(name), &Guards::default(), &limits(), now, held)
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

fn meta_rows(db: &Database) -> u64 {
    let txn = db.begin_read().unwrap();
    txn.open_table(META).unwrap().len().unwrap()
}

fn sweep_at(db: &Database, now: i64) -> Swept {
    step(db, |t| sweep(t, now, |_| false))
}

#[test]
fn a_session_written_again_after_it_expired_survives_the_sweep() {
    let (_dir, db) = db();
    assert_eq!(written(write_at(&db, "a", T0, None)).version, 1);
    assert_eq!(read_at(&db, T0 + TTL), None, "expired");
    let n1 = written(write_at(&db, "n1", T0 + 2_600, None));
    assert_eq!((n1.version, n1.expires_ms), (2, T0 + 2_600 + TTL));
    assert_eq!(rows(&db), [n1.expires_ms], "the expired record's row went");

    assert_eq!(sweep_at(&db, T0 + 2_700), Swept::default());
    written(write_at(&db, "n2", T0 + 3_000, None));
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
    let w = written(write_at(&db, "a", T0, None));
    // Builds before this rule left the row of an expired record behind.
    step(&db, |t| {
        t.open_table(EXPIRY)?.insert((T0 - 10, KEY), ())?;
        Ok(())
    });
    assert_eq!(sweep_at(&db, T0 + 1), Swept::default());
    assert!(read_at(&db, T0 + 1).is_some());
    assert_eq!(rows(&db), [w.expires_ms], "only the stale row went");
}

#[test]
fn keeping_alive_pushes_the_expiry_and_moves_its_row() {
    let (_dir, db) = db();
    written(write_at(&db, "a", T0, None));
    let until = T0 + 5_000;
    let kept = step(&db, |t| keep_alive(t, KEY, T0 + 100, until)).unwrap();
    assert_eq!((kept.version, kept.expires_ms), (1, until));
    assert_eq!(rows(&db), [until]);
    // A shorter lease never shortens it.
    let again = step(&db, |t| keep_alive(t, KEY, T0 + 200, T0 + 4_000)).unwrap();
    assert_eq!(again.expires_ms, until);
    assert_eq!(sweep_at(&db, T0 + TTL + 1), Swept::default());
    assert_eq!(read_at(&db, T0 + 4_999), Some(again));
    // An expired session is not brought back.
    assert_eq!(step(&db, |t| keep_alive(t, KEY, until, until + 9)), None);
    assert_eq!(sweep_at(&db, until + 1).sessions, 1);
}

#[test]
fn a_write_under_a_lock_lives_until_the_lease_ends() {
    let (_dir, db) = db();
    let held = Held {
        saw: 0,
        until_ms: T0 + 9_000,
    };
    let w = written(write_at(&db, "a", T0, Some(held)));
    assert_eq!(w.expires_ms, T0 + 9_000);
    let short = Held {
        saw: 1,
        until_ms: T0 + 10,
    };
    let w = written(write_at(&db, "b", T0 + 100, Some(short)));
    assert_eq!(
        w.expires_ms,
        T0 + 100 + TTL,
        "the idle TTL when it is later"
    );
    assert_eq!(rows(&db), [w.expires_ms]);
}

#[test]
fn a_holder_never_writes_into_a_session_that_expired_under_it() {
    let (_dir, db) = db();
    written(write_at(&db, "a", T0, None));
    let held = Held {
        saw: 1,
        until_ms: T0 + 1_000,
    };
    // The wall clock jumped past the idle TTL while the lease ran.
    let later = T0 + TTL + 500;
    assert!(matches!(
        write_at(&db, "b", later, Some(held)),
        Outcome::Refused(Refusal::SessionLost)
    ));
    let deleted = step(&db, |t| {
        delete(t, KEY, &Guards::default(), later, Some(held))
    });
    assert!(matches!(deleted, Outcome::Refused(Refusal::SessionLost)));
    assert_eq!(rows(&db), [T0 + TTL], "nothing was written");
    // A holder that saw no session creates one.
    let fresh = Held { saw: 0, ..held };
    let w = written(write_at(&db, "b", later, Some(fresh)));
    assert_eq!(w.version, 2, "versions go on");
    let s = read_at(&db, later).unwrap();
    assert_eq!((names(&s), s.created_ms), (vec!["b"], later));
}

#[test]
fn dropped_rows_raise_the_fence_floor_and_written_rows_stay() {
    let (_dir, db) = db();
    assert_eq!(step(&db, |t| next_fence(t, b"a")), 1);
    assert_eq!(step(&db, |t| next_fence(t, b"a")), 2);
    assert!(step(&db, |t| drop_if_unwritten(t, b"a")));
    assert!(!step(&db, |t| drop_if_unwritten(t, b"a")), "once");
    assert_eq!(meta_rows(&db), 0);
    assert_eq!(
        step(&db, |t| next_fence(t, b"a")),
        3,
        "above its old fences"
    );
    assert_eq!(step(&db, |t| next_fence(t, b"b")), 3, "above the floor");

    // A session written once keeps its row: versions are never reused.
    assert_eq!(step(&db, |t| next_fence(t, KEY)), 3);
    written(write_at(&db, "x", T0, None));
    assert!(!step(&db, |t| drop_if_unwritten(t, KEY)));
    let deleted = step(&db, |t| delete(t, KEY, &Guards::default(), T0, None));
    assert!(matches!(deleted, Outcome::Done(Some(1))));
    assert_eq!(written(write_at(&db, "x", T0, None)).version, 2);
    assert_eq!(step(&db, |t| next_fence(t, KEY)), 4);
}

#[test]
fn the_sweep_drops_the_unwritten_rows_of_locks_not_in_use() {
    let (_dir, db) = db();
    step(&db, |t| next_fence(t, b"held"));
    step(&db, |t| next_fence(t, b"gone"));
    step(&db, |t| next_fence(t, b"gone"));
    let swept = step(&db, |t| sweep(t, T0, |k| k == b"held"));
    assert_eq!(swept.metas, 1);
    assert_eq!(meta_rows(&db), 1);
    assert_eq!(step(&db, |t| next_fence(t, b"gone")), 3);
    assert_eq!(step(&db, |t| sweep(t, T0, |_| false)).metas, 2);
    assert_eq!(meta_rows(&db), 0);
}

#[test]
fn a_file_from_before_the_list_has_its_lock_only_rows_dropped_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::create(dir.path().join("old.redb")).unwrap();
    step(&db, |t| {
        let mut meta = t.open_table(META)?;
        meta.insert(&b"locked-only"[..], (0, 7))?;
        meta.insert(KEY, (3, 2))?;
        Ok(())
    });
    create(&db).unwrap();
    assert_eq!(sweep_at(&db, T0).metas, 1);
    assert_eq!(meta_rows(&db), 1, "the written session's row stays");
    assert_eq!(step(&db, |t| next_fence(t, b"locked-only")), 8);
    create(&db).unwrap();
    assert_eq!(step(&db, |t| next_fence(t, KEY)), 8, "the floor stands");
}

/// A rate limit's row is written only by an admitted call, and the sweep
/// drops it once its TAT passes (ms there, µs in the row), not before.
#[test]
fn a_rate_limits_row_lives_until_it_is_full_again() {
    use crate::session::{Gcra, RateLimit};
    let (_dir, db) = db();
    let limit = RateLimit::new("x", Some(10.0), Some(2), 1, (1.0, 1)).unwrap();
    let now_us = T0 * 1000;
    let check = |at: i64| step(&db, |t| super::check_rate(t, b"ns\x01x", &limit, at));
    let rates = || {
        let txn = db.begin_read().unwrap();
        txn.open_table(super::rates::RATES).unwrap().len().unwrap()
    };
    assert!(matches!(check(now_us), Gcra::Admit { .. }));
    assert!(matches!(check(now_us), Gcra::Admit { .. }));
    assert_eq!(
        check(now_us),
        Gcra::Refuse {
            retry_after_us: 100_000,
            remaining: 0
        }
    );
    assert_eq!(rates(), 1);
    // Full again at T0 + 200 ms.
    assert_eq!(sweep_at(&db, T0 + 199).rates, 0);
    assert_eq!(rates(), 1);
    assert_eq!(sweep_at(&db, T0 + 200).rates, 1);
    assert_eq!(rates(), 0);
}
