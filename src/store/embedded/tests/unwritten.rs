//! No state that only grows: a lock of an id that is never written leaves no
//! meta row once it ends (released, abandoned, its lease run out, its
//! process gone), while fencing tokens and versions never go back.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redb::{ReadableDatabase, ReadableTableMetadata};

use super::{LEASE, key, limits, open, set};
use crate::error::Error;
use crate::session::{Guards, LockRequest};
use crate::stats::Stats;
use crate::store::embedded::tables::META;
use crate::store::embedded::{EmbeddedStore, Options};

fn meta_rows(store: &EmbeddedStore) -> u64 {
    let txn = store.file.get().unwrap().begin_read().unwrap();
    txn.open_table(META).unwrap().len().unwrap()
}

/// Waits (for a sweep) until the meta table has `n` rows.
async fn until_meta_rows(store: &EmbeddedStore, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while meta_rows(store) != n {
        assert!(Instant::now() < deadline, "{} meta rows", meta_rows(store));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn open_swept(path: &Path) -> EmbeddedStore {
    let options = Options {
        sweep_every: Duration::from_millis(50),
    };
    EmbeddedStore::open_with(path, options, limits(), Arc::new(Stats::default())).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locking_ids_never_written_leaves_no_meta_rows_behind() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(&dir.path().join("s.redb")));
    let kept = key("default", "kept");
    store
        .update(&kept, set("a", b"1"), Guards::default())
        .await
        .unwrap();
    store.delete(&kept, Guards::default()).await.unwrap();
    let before = meta_rows(&store);
    assert_eq!(before, 1);

    // 1000 random ids, locked and unlocked by 50 callers at a time.
    let ids: Vec<String> = (0..1000).map(|_| crate::store::new_token()).collect();
    let mut fences = HashMap::new();
    for chunk in ids.chunks(50) {
        let calls = chunk.iter().map(|id| {
            let store = store.clone();
            let k = key("default", id);
            async move {
                let grant = store
                    .lock(&k, LockRequest::new(LEASE, Duration::ZERO))
                    .await
                    .unwrap();
                store.unlock(&k, &grant.token).await.unwrap();
                grant.fence
            }
        });
        let got = futures::future::join_all(calls).await;
        fences.extend(chunk.iter().cloned().zip(got));
    }
    assert_eq!(meta_rows(&store), before, "back to its size");

    // A re-used id gets a fencing token above every one it had.
    let highest = fences.values().copied().max().unwrap();
    for id in ids.iter().take(5) {
        let k = key("default", id);
        let grant = store
            .lock(&k, LockRequest::new(LEASE, Duration::ZERO))
            .await
            .unwrap();
        assert!(grant.fence > highest, "{} > {highest}", grant.fence);
        store.unlock(&k, &grant.token).await.unwrap();
    }
    // A session written, then deleted, continues its versions.
    let w = store.update(&kept, set("b", b"2"), Guards::default()).await;
    assert_eq!(w.unwrap().version, 2);
    assert_eq!(meta_rows(&store), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_lapsed_and_crashed_locks_leave_no_meta_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let store = open_swept(&path);

    // Abandoned: the waiter gives up, then the holder releases.
    let q = key("default", "queued");
    let holder = store
        .lock(&q, LockRequest::new(LEASE, Duration::ZERO))
        .await
        .unwrap();
    assert!(matches!(
        store
            .lock(&q, LockRequest::new(LEASE, Duration::from_millis(20)))
            .await,
        Err(Error::LockWaitTimeout { .. })
    ));
    store.unlock(&q, &holder.token).await.unwrap();
    assert_eq!(meta_rows(&store), 0);

    // Lapsed: a lease nobody waits for runs out; the sweep drops the row.
    let lapsed = key("default", "lapsed");
    let first = store.lock(
        &lapsed,
        LockRequest::new(Duration::from_millis(100), Duration::ZERO),
    );
    let first = first.await.unwrap();
    assert_eq!(meta_rows(&store), 1);
    until_meta_rows(&store, 0).await;
    let again = store
        .lock(&lapsed, LockRequest::new(LEASE, Duration::ZERO))
        .await
        .unwrap();
    assert!(again.fence > first.fence);

    // Crashed: the process ends holding the lock; the restart drops the row.
    drop(store);
    let deadline = Instant::now() + Duration::from_secs(10);
    let store = loop {
        // The old actor closes the file as it ends.
        let options = Options::default();
        let stats = Arc::new(Stats::default());
        match EmbeddedStore::open_with(&path, options, limits(), stats) {
            Ok(store) => break store,
            Err(e) => assert!(Instant::now() < deadline, "cannot open again: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    until_meta_rows(&store, 0).await;
    let after = store
        .lock(&lapsed, LockRequest::new(LEASE, Duration::ZERO))
        .await
        .unwrap();
    assert!(
        after.fence > again.fence,
        "{} > {}",
        after.fence,
        again.fence
    );
}
