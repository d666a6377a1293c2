//! A full disk: the store on a real redb file whose writes fail on demand as
//! a full disk fails them (ENOSPC), through redb's own failure path. Each
//! scenario fails one batch at its commit, then frees the space: nothing of
//! the batch stands, in the file or in the lock table, and the store works
//! again at once.

use std::fs::OpenOptions;
use std::io;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::time::{Duration, Instant};

use redb::backends::FileBackend;
use redb::{BackendError, Database, StorageBackend};
use tonic::Code;

use super::{LEASE, key, limits, set};
use crate::error::{Error, Result};
use crate::session::{Guards, Limits, LockRequest, Quota, Quotas};
use crate::stats::Stats;
use crate::store::embedded::file::Opener;
use crate::store::embedded::{EmbeddedStore, Options};

/// A file whose writes, resizes and syncs fail while `full` is set.
#[derive(Debug)]
struct FailingDisk {
    file: FileBackend,
    full: Arc<AtomicBool>,
}

impl FailingDisk {
    fn space(&self) -> io::Result<()> {
        if self.full.load(SeqCst) {
            return Err(io::ErrorKind::StorageFull.into());
        }
        Ok(())
    }
}

impl StorageBackend for FailingDisk {
    fn len(&self) -> io::Result<u64> {
        self.file.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.file.read(offset, out)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.space()?;
        self.file.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.space()?;
        self.file.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.space()?;
        self.file.write(offset, data)
    }

    fn close(&self) -> io::Result<()> {
        self.file.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.file.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.file.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.file.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.file.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.file.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.file.query_lock_range(start, end)
    }
}

/// The store on a failing disk, and the switch that fills the disk.
fn open_on_failing_disk(path: &Path) -> (Arc<EmbeddedStore>, Arc<AtomicBool>) {
    open_on_failing_disk_with(path, limits())
}

fn open_on_failing_disk_with(path: &Path, limits: Limits) -> (Arc<EmbeddedStore>, Arc<AtomicBool>) {
    let full = Arc::new(AtomicBool::new(false));
    let open = {
        let (path, full) = (path.to_owned(), full.clone());
        move || {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)?;
            let disk = FailingDisk {
                file: FileBackend::new(file)?,
                full: full.clone(),
            };
            Database::builder().create_with_backend(disk)
        }
    };
    let opener = Opener::Backend {
        path: path.to_owned(),
        open: Box::new(open),
    };
    let stats = Arc::new(Stats::default());
    let store = EmbeddedStore::start(opener, Options::default(), limits, stats).unwrap();
    (Arc::new(store), full)
}

#[track_caller]
fn assert_unavailable<T: std::fmt::Debug>(r: Result<T>) {
    let e = r.expect_err("the batch failed");
    assert_eq!(
        crate::status::code_and_reason(&e),
        (Code::Unavailable, "STORE_UNAVAILABLE"),
        "{e}"
    );
}

/// Frees the space and waits until the store reads again (its file opened
/// again).
async fn free_space(store: &EmbeddedStore, full: &AtomicBool) {
    full.store(false, SeqCst);
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.ping().await.is_err() {
        assert!(Instant::now() < deadline, "the store never came back");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_leaves_nothing_behind_and_the_store_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let (store, full) = open_on_failing_disk(&dir.path().join("s.redb"));
    let long = Duration::from_secs(60);
    let (held, free, kept) = (key("t", "held"), key("t", "free"), key("t", "kept"));
    let a = store
        .lock(&held, LockRequest::new(long, Duration::ZERO))
        .await
        .unwrap();
    let w = store.update(&kept, set("a", b"1"), Guards::default()).await;
    assert_eq!(w.unwrap().version, 1);
    let w1 = tokio::spawn({
        let (store, held) = (store.clone(), held.clone());
        async move {
            store
                .lock(&held, LockRequest::new(LEASE, Duration::from_secs(60)))
                .await
        }
    });
    while store.stats.lock_waiting_now.load(Relaxed) == 0 {
        tokio::task::yield_now().await;
    }
    // Its command is sent before it counts as waiting; one sent after it is
    // applied after it.
    assert!(matches!(
        store
            .lock(&held, LockRequest::new(LEASE, Duration::ZERO))
            .await,
        Err(Error::LockHeld)
    ));

    // A lock granted in the failed batch is not held afterwards.
    full.store(true, SeqCst);
    assert_unavailable(
        store
            .lock(&free, LockRequest::new(long, Duration::ZERO))
            .await,
    );
    assert_unavailable(store.get(&kept).await);
    free_space(&store, &full).await;
    let f = store
        .lock(&free, LockRequest::new(LEASE, Duration::ZERO))
        .await;
    assert!(f.is_ok(), "free at once: {f:?}");

    // A write in the failed batch is absent.
    full.store(true, SeqCst);
    assert_unavailable(store.update(&kept, set("b", b"2"), Guards::default()).await);
    free_space(&store, &full).await;
    let s = store.get(&kept).await.unwrap().unwrap();
    assert_eq!((s.version, s.fields.len()), (1, 1));

    // A waiter queued in the failed batch is told, and not left queued.
    full.store(true, SeqCst);
    let w2 = store.lock(&held, LockRequest::new(LEASE, Duration::from_secs(60)));
    let w2 = tokio::time::timeout(Duration::from_secs(10), w2).await;
    assert_unavailable(w2.expect("told at once, not left waiting"));
    free_space(&store, &full).await;

    // A release that handed the lock to a waiter: the holder still holds
    // it, and the waiter still waits, first in line.
    full.store(true, SeqCst);
    assert_unavailable(store.unlock(&held, &a.token).await);
    free_space(&store, &full).await;
    assert!(!w1.is_finished(), "still waiting");
    assert_eq!(store.stats.lock_waiting_now.load(Relaxed), 1);
    assert!(matches!(
        store
            .lock(&held, LockRequest::new(LEASE, Duration::ZERO))
            .await,
        Err(Error::LockHeld)
    ));
    store.refresh(&held, &a.token, long).await.unwrap();
    store.unlock(&held, &a.token).await.unwrap();
    let granted = w1.await.unwrap().unwrap();
    assert_eq!(granted.fence, a.fence + 1);
    store.unlock(&held, &granted.token).await.unwrap();
    // Nobody else was left in the queue.
    store
        .lock(&held, LockRequest::new(LEASE, Duration::ZERO))
        .await
        .unwrap();
    // Writes go on where they were.
    let w = store.update(&kept, set("b", b"2"), Guards::default()).await;
    assert_eq!(w.unwrap().version, 2);
    assert!(store.stats.store_errors.load(Relaxed) >= 4);
}

/// The quotas' usage lives in the actor's memory: a batch that fails must
/// not leave its writes counted (nor its deletes uncounted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_leaves_the_quota_usage_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        quotas: Quotas {
            max_sessions: 2,
            max_bytes: 0,
        },
        ..limits()
    };
    let (store, full) = open_on_failing_disk_with(&dir.path().join("q.redb"), limits);
    let (a, b, c) = (key("t", "a"), key("t", "b"), key("t", "c"));
    let at_quota = |r: Result<crate::session::Written>| match r {
        Err(Error::QuotaExceeded {
            quota: Quota::Sessions,
            limit: 2,
            usage: 2,
        }) => {}
        other => panic!("expected the sessions quota at 2 of 2, got {other:?}"),
    };
    store
        .update(&a, set("n", b"1"), Guards::default())
        .await
        .unwrap();
    // A create in a failed batch does not count: room for one more still.
    full.store(true, SeqCst);
    assert_unavailable(store.update(&b, set("n", b"1"), Guards::default()).await);
    free_space(&store, &full).await;
    store
        .update(&b, set("n", b"1"), Guards::default())
        .await
        .unwrap();
    at_quota(store.update(&c, set("n", b"1"), Guards::default()).await);
    // A delete in a failed batch frees nothing.
    full.store(true, SeqCst);
    assert_unavailable(store.delete(&a, Guards::default()).await);
    free_space(&store, &full).await;
    at_quota(store.update(&c, set("n", b"1"), Guards::default()).await);
}
