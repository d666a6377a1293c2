//! Tests of [`EmbeddedStore`] as its callers use it: files written by earlier
//! builds, the two ways to take a lock, and faults surfacing as the right
//! errors; `full_disk`: batches that fail on a real file and leave nothing
//! behind; `unwritten`: locks leave no meta rows behind. (The conformance
//! suite runs the semantics over gRPC.)

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::Bytes;
use redb::Database;
use tonic::Code;

use super::tables::SESSIONS;
use super::{EmbeddedStore, encode_key};
use crate::error::Error;
use crate::session::{Guards, Limits, LockRequest, Mutation, Session, SessionKey};
use crate::stats::Stats;

mod full_disk;
mod unwritten;

const LEASE: Duration = Duration::from_secs(10);

fn limits() -> Limits {
    Limits {
        max_fields: 100,
        max_field_bytes: 1 << 20,
        max_session_bytes: 1 << 20,
        lease_default: LEASE,
        lease_min: Duration::from_millis(100),
        lease_max: Duration::from_secs(60),
        wait_max: Duration::from_secs(10),
        idle_ttl: Duration::from_secs(3600),
        quotas: Default::default(),
        idempotency_window: Duration::from_secs(600),
        rate_default: (10.0, 10),
        max_turn_payload_bytes: 4096,
    }
}

fn open(path: &Path) -> EmbeddedStore {
    EmbeddedStore::open(path, limits(), Arc::new(Stats::default())).unwrap()
}

fn key(namespace: &str, id: &str) -> SessionKey {
    SessionKey::new(namespace, id).unwrap()
}

fn set(name: &str, value: &[u8]) -> Mutation {
    Mutation {
        set: vec![(name.to_owned(), Bytes::copy_from_slice(value))],
        ..Default::default()
    }
}

fn fields(s: &Session) -> Vec<(&str, &[u8])> {
    s.fields.iter().map(|(n, v)| (n, v.as_ref())).collect()
}

/// `tests/fixtures/embedded-v1.redb` was written by the store while it
/// recorded sessions as the API's `pb::Session` (idle TTL of 100 years):
/// - default/chat-1: created with name, empty, bin and ünï (v1), locked
///   (fence 1), then `turn` set with the token, releasing the lock (v2);
/// - tenant-x/user/ü: created (v1), then deleted (its meta row stays);
/// - tenant-x/chat-1: created with one field (v1).
#[tokio::test]
async fn reads_a_file_written_by_the_first_record_format() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.redb");
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/embedded-v1.redb");
    std::fs::copy(fixture, &path).unwrap();
    let store = open(&path);

    let chat = key("default", "chat-1");
    let s = store
        .get(&chat)
        .await
        .unwrap()
        .expect("default/chat-1 is stored");
    assert_eq!(
        fields(&s),
        [
            ("bin", &[0, 255, 1, 2][..]),
            ("empty", b""),
            ("name", b"Ada"),
            ("turn", b"2"),
            ("ünï", "çödé".as_bytes()),
        ]
    );
    assert_eq!(s.version, 2);
    assert_eq!(s.created_ms, 1_795_449_651_883);
    assert_eq!(s.updated_ms, 1_795_449_651_945);
    assert_eq!(s.expires_ms, 4_949_049_651_945);

    let other = store
        .get(&key("tenant-x", "chat-1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fields(&other), [("only", &b"tenant-x"[..])]);
    assert_eq!(other.version, 1);
    assert_eq!(other.created_ms, 1_795_449_651_953);
    assert_eq!(other.updated_ms, 1_795_449_651_953);
    assert_eq!(other.expires_ms, 4_949_049_651_953);

    // The meta table too: fencing tokens and versions go on from the file.
    let grant = store
        .lock(&chat, LockRequest::new(LEASE, Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(grant.fence, 2);
    assert_eq!(grant.session.as_ref(), Some(&s));
    let deleted = key("tenant-x", "user/ü");
    assert_eq!(store.get(&deleted).await.unwrap(), None);
    let recreated = store
        .update(&deleted, set("k", b"v"), Guards::default())
        .await
        .unwrap();
    assert_eq!(recreated.version, 2);

    // And a record written now reads back the same way.
    let g = Guards {
        lock_token: Some(grant.token),
        expected_version: Some(2),
        release_lock: true,
        ..Default::default()
    };
    let written = store.update(&chat, set("turn", b"3"), g).await.unwrap();
    let again = store.get(&chat).await.unwrap().unwrap();
    assert_eq!(again.version, 3);
    assert_eq!(again.created_ms, s.created_ms);
    assert_eq!(again.expires_ms, written.expires_ms);
    assert_eq!(again.fields.get("turn").unwrap().as_ref(), b"3");
    assert_eq!(again.fields.len(), 5);
}

#[tokio::test]
async fn trying_once_is_refused_and_queueing_waits_for_the_release() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(&dir.path().join("s.redb")));
    let k = key("default", "locked");
    let first = store
        .lock(&k, LockRequest::new(LEASE, Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(first.fence, 1);
    assert!(matches!(
        store
            .lock(&k, LockRequest::new(LEASE, Duration::ZERO))
            .await,
        Err(Error::LockHeld)
    ));

    let queued = tokio::spawn({
        let (store, k) = (store.clone(), k.clone());
        async move {
            store
                .lock(&k, LockRequest::new(LEASE, Duration::from_secs(30)))
                .await
        }
    });
    while store.stats.lock_waiting_now.load(Relaxed) == 0 {
        tokio::task::yield_now().await;
    }
    store.unlock(&k, &first.token).await.unwrap();
    let second = queued.await.unwrap().unwrap();
    assert_eq!(second.fence, 2);
    assert!(matches!(
        store.unlock(&k, &first.token).await,
        Err(Error::LockLost)
    ));

    // A wait that runs out leaves nothing behind: once the holder releases,
    // the lock is free for a caller that tries once.
    assert!(matches!(
        store
            .lock(&k, LockRequest::new(LEASE, Duration::from_millis(20)))
            .await,
        Err(Error::LockWaitTimeout { waited_ms: 20 })
    ));
    store.unlock(&k, &second.token).await.unwrap();
    assert_eq!(
        store
            .lock(&k, LockRequest::new(LEASE, Duration::ZERO))
            .await
            .unwrap()
            .fence,
        3
    );
}

#[tokio::test]
async fn a_corrupt_record_is_internal_to_read_and_rolls_back_a_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let k = key("default", "damaged");
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(SESSIONS)
            .unwrap()
            .insert(encode_key(&k).as_slice(), &[0xff_u8][..])
            .unwrap();
        txn.commit().unwrap();
    }
    let store = open(&path);

    let read = store.get(&k).await.unwrap_err();
    assert_eq!(
        crate::status::code_and_reason(&read),
        (Code::Internal, "INTERNAL")
    );
    assert!(read.to_string().contains("corrupt session record"));

    // Inside a batch the fault rolls it back, and every command of the batch
    // is told STORE_UNAVAILABLE, as any failed commit.
    let write = store.update(&k, set("a", b"1"), Guards::default()).await;
    let e = write.unwrap_err();
    assert_eq!(
        crate::status::code_and_reason(&e),
        (Code::Unavailable, "STORE_UNAVAILABLE")
    );
    assert!(e.to_string().contains("corrupt session record"));

    // Other sessions are unaffected. (Their batch comes after the failed
    // one, so the failure is counted by then.)
    let fine = key("default", "fine");
    let w = store
        .update(&fine, set("a", b"1"), Guards::default())
        .await
        .unwrap();
    assert_eq!(w.version, 1);
    assert_eq!(store.stats.store_errors.load(Relaxed), 1);
}

#[tokio::test]
async fn a_file_that_cannot_be_opened_is_store_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing-dir").join("s.redb");
    let e = EmbeddedStore::open(&path, limits(), Arc::new(Stats::default()))
        .err()
        .expect("no such directory");
    assert_eq!(
        crate::status::code_and_reason(&e),
        (Code::Unavailable, "STORE_UNAVAILABLE")
    );
    assert!(e.to_string().contains("cannot open"), "{e}");
}
