//! Guarded writes and deletes: compare-and-set on versions, versions and
//! fencing tokens that go on after a delete, and sessions that expire idle.

use std::time::Duration;

use sessiond::pb::*;
use tonic::Code;

use crate::on_every_backend;
use crate::support::{Backend, Server, details, fields, get, lock, reason, set};

async fn compare_and_set(b: Backend) {
    let s = Server::start(b, &[]).await;
    let mut c = s.client().await;
    let mut create = set("cas", &[("a", "1")]);
    create.expected_version = Some(0);
    assert_eq!(
        c.update_session(create.clone())
            .await
            .unwrap()
            .into_inner()
            .version,
        1
    );
    // 0 = create only: a second create fails and says what the version is.
    let (code, why, md) = details(c.update_session(create).await);
    assert_eq!((code, why.as_str()), (Code::Aborted, "VERSION_MISMATCH"));
    assert_eq!(md["current_version"], "1");
    let mut stale = set("cas", &[("a", "x")]);
    stale.expected_version = Some(7);
    assert_eq!(reason(c.update_session(stale).await).1, "VERSION_MISMATCH");
    let mut ok = set("cas", &[("a", "2")]);
    ok.expected_version = Some(1);
    assert_eq!(c.update_session(ok).await.unwrap().into_inner().version, 2);
    // Nothing was written by the refused calls.
    let got = get(&mut c, "cas", Consistency::Strong)
        .await
        .unwrap()
        .session
        .unwrap();
    assert_eq!((got.version, got.fields), (2, fields(&[("a", "2")])));
    // Deletes are guarded the same way.
    let del = DeleteSessionRequest {
        session_id: "cas".into(),
        expected_version: Some(1),
        ..Default::default()
    };
    assert_eq!(reason(c.delete_session(del).await).1, "VERSION_MISMATCH");
    let del = DeleteSessionRequest {
        session_id: "cas".into(),
        expected_version: Some(2),
        ..Default::default()
    };
    assert!(c.delete_session(del).await.unwrap().into_inner().deleted);
}

async fn delete_and_recreate_never_reuses_versions_or_fences(b: Backend) {
    let s = Server::start(b, &[]).await;
    let mut c = s.client().await;
    for _ in 0..3 {
        c.update_session(set("d", &[("a", "1")])).await.unwrap();
    }
    let l1 = lock(&mut c, "d", 5000, 0).await.unwrap();
    let del = DeleteSessionRequest {
        session_id: "d".into(),
        lock_token: l1.lock_token.clone(),
        release_lock: true,
        ..Default::default()
    };
    assert!(
        c.delete_session(del.clone())
            .await
            .unwrap()
            .into_inner()
            .deleted
    );
    assert_eq!(
        reason(get(&mut c, "d", Consistency::Cached).await).1,
        "SESSION_NOT_FOUND"
    );
    // Deleting again is harmless.
    let del = DeleteSessionRequest {
        session_id: "d".into(),
        ..Default::default()
    };
    assert!(!c.delete_session(del).await.unwrap().into_inner().deleted);
    let mut create = set("d", &[("b", "2")]);
    create.expected_version = Some(0);
    assert_eq!(
        c.update_session(create).await.unwrap().into_inner().version,
        4,
        "versions continue"
    );
    let got = get(&mut c, "d", Consistency::Cached)
        .await
        .unwrap()
        .session
        .unwrap();
    assert_eq!((got.version, got.fields), (4, fields(&[("b", "2")])));
    let l2 = lock(&mut c, "d", 5000, 0).await.unwrap();
    assert!(l2.fencing_token > l1.fencing_token, "fencing continues");
}

async fn idle_sessions_and_leases_expire(b: Backend) {
    let s = Server::start(b, &["--idle-ttl", "1s"]).await;
    let mut c = s.client().await;
    c.update_session(set("idle", &[("a", "1")])).await.unwrap();
    c.update_session(set("idle", &[("a", "2")])).await.unwrap();
    let kept = c
        .update_session(set("busy", &[("a", "1")]))
        .await
        .unwrap()
        .into_inner();
    assert!(
        get(&mut c, "idle", Consistency::Cached)
            .await
            .unwrap()
            .session
            .is_some()
    );
    // "busy" is written again halfway: every write extends its life.
    tokio::time::sleep(Duration::from_millis(600)).await;
    c.update_session(set("busy", &[("a", "2")])).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    for consistency in [Consistency::Cached, Consistency::Strong] {
        assert_eq!(
            reason(get(&mut c, "idle", consistency).await).1,
            "SESSION_NOT_FOUND"
        );
    }
    assert_eq!(
        get(&mut c, "busy", Consistency::Strong)
            .await
            .unwrap()
            .session
            .unwrap()
            .version,
        kept.version + 1
    );
    // An expired session behaves like a missing one, but its version is not reused.
    let l = lock(&mut c, "idle", 5000, 0).await.unwrap();
    assert!(l.session.is_none());
    let mut create = set("idle", &[("b", "1")]);
    create.expected_version = Some(0);
    create.lock_token = l.lock_token;
    create.release_lock = true;
    assert_eq!(
        c.update_session(create).await.unwrap().into_inner().version,
        3
    );
}

on_every_backend!(
    compare_and_set,
    delete_and_recreate_never_reuses_versions_or_fences,
    idle_sessions_and_leases_expire,
);
