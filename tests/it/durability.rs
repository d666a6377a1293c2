//! The embedded store keeps every acknowledged write across a crash.

use sessiond::pb::*;

use crate::support::{Process, fields, free_port, get, lock, reason, set};

#[tokio::test]
async fn sigkill_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.redb");
    let db = db.to_str().unwrap();
    let port = free_port();
    let mut sessiond = Process::start(port, &["--db-path", db]);
    let mut c = sessiond.client().await;
    for i in 1..=20 {
        c.update_session(set("durable", &[("n", &i.to_string())]))
            .await
            .unwrap();
    }
    c.update_session(set("gone", &[("x", "1")])).await.unwrap();
    c.delete_session(DeleteSessionRequest {
        session_id: "gone".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let l = lock(&mut c, "durable", 60_000, 0).await.unwrap();
    let mut w = set("durable", &[("n", "21")]);
    w.lock_token = l.lock_token.clone();
    assert_eq!(c.update_session(w).await.unwrap().into_inner().version, 21);

    sessiond.kill(); // SIGKILL: no chance to flush anything
    let sessiond = Process::start(port, &["--db-path", db]);
    let mut c = sessiond.client().await;
    let got = get(&mut c, "durable", Consistency::Strong)
        .await
        .unwrap()
        .session
        .unwrap();
    assert_eq!((got.version, got.fields), (21, fields(&[("n", "21")])));
    assert_eq!(
        reason(get(&mut c, "gone", Consistency::Strong).await).1,
        "SESSION_NOT_FOUND"
    );
    // Leases live in the process: the old token is gone, the fencing sequence is not.
    let mut w = set("durable", &[("n", "stale")]);
    w.lock_token = l.lock_token;
    assert_eq!(reason(c.update_session(w).await).1, "LOCK_LOST");
    let l2 = lock(&mut c, "durable", 5000, 0).await.unwrap();
    assert!(
        l2.fencing_token > l.fencing_token,
        "{} > {}",
        l2.fencing_token,
        l.fencing_token
    );
    let mut w = set("durable", &[("n", "22")]);
    w.lock_token = l2.lock_token;
    assert_eq!(
        c.update_session(w).await.unwrap().into_inner().version,
        22,
        "versions continue"
    );
    let recreated = c
        .update_session(set("gone", &[("x", "2")]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        recreated.version, 2,
        "a deleted session's version is not reused after a restart"
    );
}

/// An idempotency key outlives a crash: the repeat of a write acknowledged
/// before a SIGKILL gets its answer from the restarted store.
#[tokio::test]
async fn idempotency_keys_survive_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.redb");
    let db = db.to_str().unwrap();
    let port = free_port();
    let mut sessiond = Process::start(port, &["--db-path", db]);
    let mut c = sessiond.client().await;
    let mut w = set("idem", &[("a", "1")]);
    w.idempotency_key = "evt-7".into();
    let first = c.update_session(w.clone()).await.unwrap().into_inner();
    sessiond.kill();
    let sessiond = Process::start(port, &["--db-path", db]);
    let mut c = sessiond.client().await;
    assert_eq!(c.update_session(w).await.unwrap().into_inner(), first);
    let got = get(&mut c, "idem", Consistency::Strong)
        .await
        .unwrap()
        .session
        .unwrap();
    assert_eq!(got.version, 1);
}
