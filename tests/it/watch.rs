//! WatchSession: snapshots, every change in order, lock events, deletes and
//! idle expiry, resumes, a watcher that does not keep up, the caps, the
//! drain; on every backend, and across three instances on one Redis
//! (`watch/instances.rs`).

use std::time::Duration;

use sessiond::pb::watch_session_response::Event;
use sessiond::pb::*;
use tonic::Code;
use tonic::codec::Streaming;

use crate::support::{Backend, Client, Server, details, lock, reason, set, unlock};

mod instances;

/// How long a test waits for an event that must come.
const PATIENCE: Duration = Duration::from_secs(20);

pub async fn watch(
    c: &mut Client,
    id: &str,
    after: u64,
    values: bool,
) -> Streaming<WatchSessionResponse> {
    c.watch_session(WatchSessionRequest {
        session_id: id.into(),
        after_version: after,
        include_values: values,
    })
    .await
    .unwrap()
    .into_inner()
}

/// The next message of a watch, which must come.
pub async fn next(s: &mut Streaming<WatchSessionResponse>) -> WatchSessionResponse {
    tokio::time::timeout(PATIENCE, s.message())
        .await
        .expect("no watch event in time")
        .expect("the watch failed")
        .expect("the watch ended")
}

/// The next event of a watch and the version it came with.
pub async fn event(s: &mut Streaming<WatchSessionResponse>) -> (u64, Event) {
    let m = next(s).await;
    (m.version, m.event.expect("a message without an event"))
}

fn changed(e: Event) -> WatchChanged {
    match e {
        Event::Changed(c) => c,
        other => panic!("expected a change, got {other:?}"),
    }
}

async fn snapshot_then_every_change(b: Backend) {
    let s = Server::start(b, &[]).await;
    let mut c = s.client().await;
    let mut w0 = watch(&mut c, "w-absent", 0, false).await;
    match event(&mut w0).await {
        (0, Event::Snapshot(snap)) => {
            assert!(snap.session.is_none() && snap.lock.is_none() && !snap.resync)
        }
        other => panic!("expected an empty snapshot, got {other:?}"),
    }
    let v1 = c
        .update_session(set("w-1", &[("a", "1"), ("b", "2")]))
        .await
        .unwrap()
        .into_inner()
        .version;
    let mut w = watch(&mut c, "w-1", 0, true).await;
    match event(&mut w).await {
        (v, Event::Snapshot(snap)) => {
            assert_eq!(v, v1);
            let session = snap.session.unwrap();
            assert_eq!(session.version, v1);
            assert_eq!(&session.fields["b"][..], b"2");
        }
        other => panic!("expected a snapshot, got {other:?}"),
    }
    for i in 0..200u64 {
        let mut req = set("w-1", &[("n", &i.to_string())]);
        if i % 10 == 0 {
            req.delete_fields = vec!["a".into()];
        }
        c.update_session(req).await.unwrap();
    }
    for i in 0..200u64 {
        let (v, e) = event(&mut w).await;
        assert_eq!(v, v1 + 1 + i, "versions come in order, none skipped");
        let ch = changed(e);
        assert_eq!(ch.set_fields, ["n"]);
        assert_eq!(&ch.values["n"][..], i.to_string().as_bytes());
        if i % 10 == 0 {
            assert_eq!(ch.removed_fields, ["a"]);
        }
        assert!(!ch.created && !ch.replaced);
    }
    // A watch that did not ask for values gets the names only.
    let mut names = watch(&mut c, "w-1", 0, false).await;
    event(&mut names).await;
    c.update_session(set("w-1", &[("x", "y")])).await.unwrap();
    let ch = changed(event(&mut names).await.1);
    assert_eq!(ch.set_fields, ["x"]);
    assert!(ch.values.is_empty());
    assert_eq!(s.stats().await.watch.unwrap().watchers, 3);
}

async fn lock_events_in_order(b: Backend) {
    let s = Server::start(b, &[]).await;
    let mut c = s.client().await;
    let mut w = watch(&mut c, "w-lock", 0, false).await;
    event(&mut w).await;

    let g1 = lock(&mut c, "w-lock", 5_000, 0).await.unwrap();
    match event(&mut w).await.1 {
        Event::LockAcquired(a) => {
            assert_eq!(a.fencing_token, g1.fencing_token);
            assert_eq!(a.lease_expires_at, g1.lease_expires_at);
        }
        other => panic!("expected lock_acquired, got {other:?}"),
    }
    let mut write = set("w-lock", &[("k", "v")]);
    write.lock_token = g1.lock_token.clone();
    write.release_lock = true;
    c.update_session(write).await.unwrap();
    assert!(matches!(event(&mut w).await.1, Event::Changed(_)));
    match event(&mut w).await.1 {
        Event::LockReleased(r) => assert_eq!(r.fencing_token, g1.fencing_token),
        other => panic!("expected lock_released, got {other:?}"),
    }

    // A lease that runs out with nobody taking the lock over.
    let g2 = lock(&mut c, "w-lock", 200, 0).await.unwrap();
    assert!(matches!(event(&mut w).await.1, Event::LockAcquired(_)));
    match event(&mut w).await.1 {
        Event::LockExpired(e) => assert_eq!(e.fencing_token, g2.fencing_token),
        other => panic!("expected lock_expired, got {other:?}"),
    }

    // Unlocked by its holder, then forced open by an operator.
    let g3 = lock(&mut c, "w-lock", 5_000, 0).await.unwrap();
    unlock(&mut c, "w-lock", g3.lock_token).await.unwrap();
    let g4 = lock(&mut c, "w-lock", 5_000, 0).await.unwrap();
    s.admin()
        .await
        .force_unlock(ForceUnlockRequest {
            namespace: String::new(),
            session_id: "w-lock".into(),
        })
        .await
        .unwrap();
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(event(&mut w).await.1);
    }
    match &seen[..] {
        [
            Event::LockAcquired(a3),
            Event::LockReleased(r3),
            Event::LockAcquired(a4),
            Event::LockForced(f4),
        ] => {
            assert_eq!(a3.fencing_token, g3.fencing_token);
            assert_eq!(r3.fencing_token, g3.fencing_token);
            assert_eq!(a4.fencing_token, g4.fencing_token);
            assert_eq!(f4.fencing_token, g4.fencing_token);
        }
        other => panic!("lock events out of order: {other:?}"),
    }
}

async fn deleted_and_idly_expired(b: Backend) {
    let s = Server::start(b, &["--idle-ttl", "1s", "--sweep-every", "100ms"]).await;
    let mut c = s.client().await;
    let v1 = c
        .update_session(set("w-gone", &[("a", "1")]))
        .await
        .unwrap()
        .into_inner()
        .version;
    let mut w = watch(&mut c, "w-gone", 0, false).await;
    event(&mut w).await;
    c.delete_session(DeleteSessionRequest {
        session_id: "w-gone".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(matches!(event(&mut w).await, (v, Event::Deleted(_)) if v == v1));
    let v2 = c
        .update_session(set("w-gone", &[("a", "2")]))
        .await
        .unwrap()
        .into_inner()
        .version;
    let (v, e) = event(&mut w).await;
    assert_eq!(v, v2);
    assert!(
        changed(e).created,
        "a write after a delete creates the session"
    );
    // Nobody writes: it expires after its idle TTL.
    assert!(matches!(event(&mut w).await, (v, Event::IdleExpired(_)) if v == v2));
}

async fn resumed_watchers_miss_nothing(b: Backend) {
    let s = Server::start(b, &[]).await;
    let mut c = s.client().await;
    c.update_session(set("w-resume", &[("n", "0")]))
        .await
        .unwrap();
    let mut w = watch(&mut c, "w-resume", 0, false).await;
    let (mut last, _) = event(&mut w).await;
    for i in 1..=5 {
        c.update_session(set("w-resume", &[("n", &i.to_string())]))
            .await
            .unwrap();
    }
    for _ in 0..3 {
        last = event(&mut w).await.0;
    }
    // The watcher goes away having read three of five; more writes meanwhile.
    drop(w);
    for i in 6..=10 {
        c.update_session(set("w-resume", &[("n", &i.to_string())]))
            .await
            .unwrap();
    }
    let mut w = watch(&mut c, "w-resume", last, false).await;
    assert!(matches!(event(&mut w).await.1, Event::Resumed(r) if r.after_version == last));
    let end = last + 7;
    for v in last + 1..=end {
        assert_eq!(event(&mut w).await.0, v, "every version since, in order");
    }
    // A version the store no longer keeps events of: a snapshot, marked.
    let mut w = watch(&mut c, "w-resume", 1_000_000, false).await;
    match event(&mut w).await {
        (v, Event::Snapshot(snap)) => {
            assert!(snap.resync);
            assert_eq!(v, end);
            assert_eq!(snap.session.unwrap().version, end);
        }
        other => panic!("expected a resync snapshot, got {other:?}"),
    }
}

async fn bad_input_and_caps(b: Backend) {
    let s = Server::start(b, &["--max-watchers", "2"]).await;
    let mut c = s.client().await;
    let bad = c
        .watch_session(WatchSessionRequest {
            session_id: "a\nb".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(
        reason(bad),
        (Code::InvalidArgument, "INVALID_SESSION_ID".into())
    );
    let _w1 = watch(&mut c, "w-cap-1", 0, false).await;
    let _w2 = watch(&mut c, "w-cap-2", 0, false).await;
    let third = c
        .watch_session(WatchSessionRequest {
            session_id: "w-cap-3".into(),
            ..Default::default()
        })
        .await;
    let (code, why, meta) = details(third);
    assert_eq!(
        (code, why.as_str()),
        (Code::ResourceExhausted, "OVERLOADED")
    );
    assert_eq!(meta["limit"], "max_watchers");
    // GetStats counts the calls until their streams begin, refusals too.
    let rpc = s
        .stats()
        .await
        .rpcs
        .into_iter()
        .find(|r| r.method == "WatchSession")
        .unwrap();
    assert_eq!((rpc.calls, rpc.errors), (4, 2), "{rpc:?}");

    let s = Server::start(b, &["--max-watchers-per-namespace", "1"]).await;
    let mut c = s.client().await;
    let _w1 = watch(&mut c, "w-cap-1", 0, false).await;
    let (code, why, meta) = details(
        c.watch_session(WatchSessionRequest {
            session_id: "w-cap-1".into(),
            ..Default::default()
        })
        .await,
    );
    assert_eq!(
        (code, why.as_str()),
        (Code::ResourceExhausted, "OVERLOADED")
    );
    assert_eq!(meta["limit"], "max_watchers_per_namespace");
}

/// A write with more values than a log entry carries (16 KiB) reaches its
/// watchers as a snapshot marked resync, with the values; the log goes on.
async fn a_write_too_large_to_log_resyncs(b: Backend) {
    let s = Server::start(b, &[]).await;
    let mut c = s.client().await;
    let mut w = watch(&mut c, "w-large", 0, true).await;
    event(&mut w).await;
    let big = "b".repeat(20 * 1024);
    let v = c
        .update_session(set("w-large", &[("big", &big)]))
        .await
        .unwrap()
        .into_inner()
        .version;
    match event(&mut w).await {
        (got, Event::Snapshot(snap)) => {
            assert!(snap.resync);
            assert_eq!(got, v);
            assert_eq!(snap.session.unwrap().fields["big"].len(), big.len());
        }
        other => panic!("expected a resync snapshot, got {other:?}"),
    }
    c.update_session(set("w-large", &[("small", "1")]))
        .await
        .unwrap();
    let (next_v, e) = event(&mut w).await;
    assert_eq!(next_v, v + 1);
    assert_eq!(&changed(e).values["small"][..], b"1");
}

crate::on_every_backend!(
    a_write_too_large_to_log_resyncs,
    snapshot_then_every_change,
    lock_events_in_order,
    deleted_and_idly_expired,
    resumed_watchers_miss_nothing,
    bad_input_and_caps,
    a_slow_watcher_is_ended_and_freed
);

/// A watcher that does not read is ended with WATCH_LAGGED once its buffer
/// is full, and stops counting at once; it resumes from its version.
async fn a_slow_watcher_is_ended_and_freed(b: Backend) {
    let s = Server::start(b, &[]).await;
    // A small HTTP/2 window, so that what the server may send ahead of a
    // reader that does not read is small too.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", s.addr))
        .unwrap()
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(65_535)
        .connect()
        .await
        .unwrap();
    let mut slow_client = sessiond::pb::session_service_client::SessionServiceClient::new(channel);
    let mut c = s.client().await;
    c.update_session(set("w-slow", &[("n", "0")]))
        .await
        .unwrap();
    let mut slow = watch(&mut slow_client, "w-slow", 0, true).await;
    let (seen, _) = event(&mut slow).await;
    assert_eq!(s.stats().await.watch.unwrap().watchers, 1);
    let value = "x".repeat(1024);
    let mut writes = 0;
    while s.stats().await.watch.unwrap().lagged == 0 {
        assert!(writes < 20_000, "the watcher never lagged");
        let batch = (0..50).map(|_| {
            let mut c = c.clone();
            let value = value.clone();
            async move {
                c.update_session(set("w-slow", &[("v", &value)]))
                    .await
                    .unwrap()
            }
        });
        futures::future::join_all(batch).await;
        writes += 50;
    }
    // Dropped at once: neither counted nor buffered any more.
    let stats = s.stats().await.watch.unwrap();
    assert_eq!((stats.watchers, stats.lagged), (0, 1));
    let mut ended = None;
    for _ in 0..100_000 {
        match slow.message().await {
            Ok(Some(_)) => {}
            Ok(None) => panic!("the stream ended without a status"),
            Err(status) => {
                ended = Some(status);
                break;
            }
        }
    }
    let status = ended.expect("the lagging watch never ended");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(reason::<()>(Err(status)).1, "WATCH_LAGGED");
    // It resumes where it was.
    let mut again = watch(&mut c, "w-slow", seen, false).await;
    let (_, first) = event(&mut again).await;
    assert!(matches!(first, Event::Resumed(_) | Event::Snapshot(_)));
}

/// A drain ends watch streams with SHUTTING_DOWN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_ends_watches() {
    let s = Server::start(Backend::Embedded, &[]).await;
    let mut c = s.client().await;
    let mut w = watch(&mut c, "w-drain", 0, false).await;
    event(&mut w).await;
    let stopped = tokio::spawn(s.shutdown());
    let status = tokio::time::timeout(PATIENCE, w.message())
        .await
        .expect("the watch outlived the drain")
        .expect_err("the drain ends the watch with a status");
    assert_eq!(
        reason::<()>(Err(status)),
        (Code::Unavailable, "SHUTTING_DOWN".into())
    );
    stopped.await.unwrap();
}

/// A quiet watch keeps its connection: the stream counts as a call in
/// flight, so --connection-idle-timeout does not close it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_watch_is_not_an_idle_connection() {
    let s = Server::start(Backend::Embedded, &["--connection-idle-timeout", "1s"]).await;
    let mut watcher = s.client().await;
    let mut w = watch(&mut watcher, "w-quiet", 0, false).await;
    event(&mut w).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut c = s.client().await;
    let v = c
        .update_session(set("w-quiet", &[("a", "1")]))
        .await
        .unwrap()
        .into_inner()
        .version;
    assert_eq!(event(&mut w).await.0, v);
}
