//! The conformance suite: every RPC, status and reason of the contract,
//! through the real gRPC server, run unchanged against both backends.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use sessiond::pb::session_service_client::SessionServiceClient;
use sessiond::pb::*;
use tonic::Code;
use tonic::transport::Channel;

use crate::on_both_backends;
use crate::support::{Backend, Server, details, reason};

type Client = SessionServiceClient<Channel>;

pub fn fields(pairs: &[(&str, &str)]) -> HashMap<String, Bytes> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Bytes::from(v.to_string())))
        .collect()
}

pub fn set(id: &str, pairs: &[(&str, &str)]) -> UpdateSessionRequest {
    UpdateSessionRequest {
        session_id: id.into(),
        set_fields: fields(pairs),
        ..Default::default()
    }
}

pub async fn get(
    c: &mut Client,
    id: &str,
    consistency: Consistency,
) -> Result<GetSessionResponse, tonic::Status> {
    c.get_session(GetSessionRequest {
        session_id: id.into(),
        consistency: consistency as i32,
        min_version: 0,
    })
    .await
    .map(|r| r.into_inner())
}

pub async fn lock(
    c: &mut Client,
    id: &str,
    lease_ms: u32,
    wait_ms: u32,
) -> Result<LockSessionResponse, tonic::Status> {
    c.lock_session(LockSessionRequest {
        session_id: id.into(),
        lease_ms,
        wait_ms,
    })
    .await
    .map(|r| r.into_inner())
}

async fn get_missing_is_not_found(b: Backend) {
    let s = Server::start(b, &[]).await;
    let mut c = s.client().await;
    assert_eq!(
        reason(get(&mut c, "nobody", Consistency::Cached).await),
        (Code::NotFound, "SESSION_NOT_FOUND".into())
    );
    assert_eq!(
        reason(get(&mut c, "nobody", Consistency::Strong).await),
        (Code::NotFound, "SESSION_NOT_FOUND".into())
    );
}

async fn write_then_read_back(b: Backend) {
    let s = Server::start(b, &[]).await;
    let mut c = s.client().await;
    let r = c
        .update_session(set("u1", &[("lang", "en"), ("n", "1")]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.version, 1);
    assert!(r.expires_at.is_some());
    let strong = get(&mut c, "u1", Consistency::Strong).await.unwrap();
    assert!(!strong.from_cache);
    let sess = strong.session.unwrap();
    assert_eq!(sess.session_id, "u1");
    assert_eq!(sess.fields, fields(&[("lang", "en"), ("n", "1")]));
    assert_eq!(sess.version, 1);
    assert_eq!(sess.created_at, sess.updated_at);
    assert!(sess.expires_at.unwrap().seconds > sess.updated_at.unwrap().seconds);
    // The STRONG read filled the cache; a CACHED read is served from it.
    let cached = get(&mut c, "u1", Consistency::Cached).await.unwrap();
    assert!(cached.from_cache);
    assert_eq!(cached.session.unwrap().fields, sess.fields);
    // A write drops the cached copy: the next CACHED read sees version 2.
    let mut upd = set("u1", &[("n", "2")]);
    upd.delete_fields = vec!["lang".into(), "absent".into()];
    assert_eq!(c.update_session(upd).await.unwrap().into_inner().version, 2);
    let after = get(&mut c, "u1", Consistency::Cached).await.unwrap();
    assert!(!after.from_cache);
    let after = after.session.unwrap();
    assert_eq!(after.version, 2);
    assert_eq!(after.fields, fields(&[("n", "2")]));
    assert_eq!(after.created_at, sess.created_at);
    // replace drops every field not set.
    let mut rep = set("u1", &[("only", "x")]);
    rep.replace = true;
    assert_eq!(c.update_session(rep).await.unwrap().into_inner().version, 3);
    let after = get(&mut c, "u1", Consistency::Strong)
        .await
        .unwrap()
        .session
        .unwrap();
    assert_eq!(after.fields, fields(&[("only", "x")]));
    // Binary values round-trip untouched.
    let mut bin = UpdateSessionRequest {
        session_id: "u1".into(),
        ..Default::default()
    };
    bin.set_fields
        .insert("blob".into(), Bytes::from_static(&[0, 255, 10, 13, 0]));
    c.update_session(bin).await.unwrap();
    let after = get(&mut c, "u1", Consistency::Strong)
        .await
        .unwrap()
        .session
        .unwrap();
    assert_eq!(
        after.fields["blob"],
        Bytes::from_static(&[0, 255, 10, 13, 0])
    );
}

async fn min_version_forces_a_fresh_read(b: Backend) {
    let s = Server::start(b, &[]).await;
    let mut c = s.client().await;
    c.update_session(set("mv", &[("a", "1")])).await.unwrap();
    get(&mut c, "mv", Consistency::Strong).await.unwrap();
    let r = c
        .get_session(GetSessionRequest {
            session_id: "mv".into(),
            consistency: 0,
            min_version: 1,
        })
        .await
        .unwrap();
    assert!(r.get_ref().from_cache, "version 1 is cached and new enough");
    let r = c
        .get_session(GetSessionRequest {
            session_id: "mv".into(),
            consistency: 0,
            min_version: 2,
        })
        .await
        .unwrap();
    assert!(
        !r.get_ref().from_cache,
        "min_version above the cached copy reads the store"
    );
    assert_eq!(r.get_ref().session.as_ref().unwrap().version, 1);
}

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

async fn lock_is_mandatory_for_writers(b: Backend) {
    let s = Server::start(b, &[]).await;
    let mut c = s.client().await;
    // Locking a session that does not exist is allowed: get-or-create.
    let l = lock(&mut c, "m", 5000, 0).await.unwrap();
    assert!(l.session.is_none());
    assert!(l.fencing_token >= 1);
    assert!(l.lease_expires_at.is_some());
    assert_eq!(
        reason(lock(&mut c, "m", 5000, 0).await),
        (Code::FailedPrecondition, "LOCK_HELD".into())
    );
    assert_eq!(
        reason(c.update_session(set("m", &[("a", "1")])).await),
        (Code::FailedPrecondition, "LOCK_HELD".into())
    );
    let del = DeleteSessionRequest {
        session_id: "m".into(),
        ..Default::default()
    };
    assert_eq!(reason(c.delete_session(del).await).1, "LOCK_HELD");
    // The holder writes; reads are never blocked.
    let mut w = set("m", &[("a", "1")]);
    w.lock_token = l.lock_token.clone();
    assert_eq!(c.update_session(w).await.unwrap().into_inner().version, 1);
    assert_eq!(
        get(&mut c, "m", Consistency::Strong)
            .await
            .unwrap()
            .session
            .unwrap()
            .version,
        1
    );
    // Write-and-release in one step.
    let mut w = set("m", &[("a", "2")]);
    w.lock_token = l.lock_token.clone();
    w.release_lock = true;
    assert_eq!(c.update_session(w).await.unwrap().into_inner().version, 2);
    // Released: anyone can write again, and the old token is stale.
    c.update_session(set("m", &[("a", "3")])).await.unwrap();
    let mut w = set("m", &[("a", "4")]);
    w.lock_token = l.lock_token.clone();
    assert_eq!(
        reason(c.update_session(w).await),
        (Code::FailedPrecondition, "LOCK_LOST".into())
    );
    // The next lock returns the session as it is now (a STRONG read).
    let l2 = lock(&mut c, "m", 5000, 0).await.unwrap();
    assert!(l2.fencing_token > l.fencing_token);
    let snap = l2.session.unwrap();
    assert_eq!((snap.version, snap.fields), (3, fields(&[("a", "3")])));
}

async fn unlock_and_refresh(b: Backend) {
    let s = Server::start(b, &[]).await;
    let mut c = s.client().await;
    let l = lock(&mut c, "r", 300, 0).await.unwrap();
    // Refreshing keeps the lock past its first lease.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let r = c
            .refresh_lock(RefreshLockRequest {
                session_id: "r".into(),
                lock_token: l.lock_token.clone(),
                lease_ms: 300,
            })
            .await
            .unwrap();
        assert!(
            r.into_inner().lease_expires_at.unwrap().seconds >= l.lease_expires_at.unwrap().seconds
        );
    }
    let mut w = set("r", &[("k", "v")]);
    w.lock_token = l.lock_token.clone();
    c.update_session(w).await.unwrap();
    let unlock = UnlockSessionRequest {
        session_id: "r".into(),
        lock_token: l.lock_token.clone(),
    };
    c.unlock_session(unlock.clone()).await.unwrap();
    // Unlocking or refreshing a lock no longer held says LOCK_LOST.
    assert_eq!(
        reason(c.unlock_session(unlock).await),
        (Code::FailedPrecondition, "LOCK_LOST".into())
    );
    let refresh = RefreshLockRequest {
        session_id: "r".into(),
        lock_token: l.lock_token.clone(),
        lease_ms: 0,
    };
    assert_eq!(reason(c.refresh_lock(refresh).await).1, "LOCK_LOST");
    // A token of another session holds nothing here.
    let other = lock(&mut c, "r-other", 5000, 0).await.unwrap();
    let mut w = set("r", &[("k", "x")]);
    w.lock_token = other.lock_token;
    assert_eq!(reason(c.update_session(w).await).1, "LOCK_LOST");
}

async fn expired_lease_loses_to_the_next_holder(b: Backend) {
    let s = Server::start(b, &[]).await;
    let mut c = s.client().await;
    let a = lock(&mut c, "lease", 100, 0).await.unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    let bb = lock(&mut c, "lease", 5000, 0).await.unwrap();
    assert!(
        bb.fencing_token > a.fencing_token,
        "fencing tokens increase"
    );
    let mut w = set("lease", &[("by", "a")]);
    w.lock_token = a.lock_token.clone();
    assert_eq!(
        reason(c.update_session(w).await),
        (Code::FailedPrecondition, "LOCK_LOST".into())
    );
    let mut w = set("lease", &[("by", "b")]);
    w.lock_token = bb.lock_token.clone();
    c.update_session(w).await.unwrap();
    let got = get(&mut c, "lease", Consistency::Strong)
        .await
        .unwrap()
        .session
        .unwrap();
    assert_eq!(got.fields, fields(&[("by", "b")]));
    // Even with nobody else taking it, an expired lease is lost.
    let c2 = lock(&mut c, "lease2", 50, 0).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let mut w = set("lease2", &[("x", "1")]);
    w.lock_token = c2.lock_token;
    assert_eq!(reason(c.update_session(w).await).1, "LOCK_LOST");
    let stats = s.stats().await;
    let locks = stats.locks.unwrap();
    assert!(locks.lease_expiries >= 1, "{locks:?}");
}

async fn wait_times_out(b: Backend) {
    let s = Server::start(b, &[]).await;
    let mut c = s.client().await;
    let _held = lock(&mut c, "w", 5000, 0).await.unwrap();
    let started = std::time::Instant::now();
    assert_eq!(
        reason(lock(&mut c, "w", 5000, 200).await),
        (Code::DeadlineExceeded, "LOCK_WAIT_TIMEOUT".into())
    );
    assert!(started.elapsed() >= Duration::from_millis(190));
}

async fn waiter_gets_the_lock_on_release(b: Backend) {
    let s = Server::start(b, &[]).await;
    let mut c = s.client().await;
    let held = lock(&mut c, "wr", 5000, 0).await.unwrap();
    let mut c2 = c.clone();
    let waiter = tokio::spawn(async move { lock(&mut c2, "wr", 5000, 5000).await });
    // Let the waiter queue, then write-and-release.
    wait_until_queued(&s, 1).await;
    let mut w = set("wr", &[("step", "1")]);
    w.lock_token = held.lock_token.clone();
    w.release_lock = true;
    c.update_session(w).await.unwrap();
    let got = waiter.await.unwrap().unwrap();
    assert!(got.fencing_token > held.fencing_token);
    assert_eq!(
        got.session.unwrap().fields,
        fields(&[("step", "1")]),
        "the waiter sees the released write"
    );
}

async fn a_waiter_that_disconnects_leaves_the_queue(b: Backend) {
    let s = Server::start(b, &[]).await;
    let mut c = s.client().await;
    let held = lock(&mut c, "gone", 5000, 0).await.unwrap();
    // Its own connection, dropped with the task: the call is cancelled.
    let mut c2 = s.client().await;
    let waiter = tokio::spawn(async move { lock(&mut c2, "gone", 5000, 10_000).await });
    wait_until_queued(&s, 1).await;
    waiter.abort();
    wait_until_waiting(&s, |n| n == 0).await;
    c.unlock_session(UnlockSessionRequest {
        session_id: "gone".into(),
        lock_token: held.lock_token,
    })
    .await
    .unwrap();
    // The lock went to nobody: it is free at once.
    lock(&mut c, "gone", 5000, 0)
        .await
        .expect("free after the waiter left");
    let st = s.stats().await;
    assert!(st.locks.unwrap().waits_abandoned >= 1);
}

fn authed<T>(msg: T, token: Option<&str>, namespace: Option<&str>) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    if let Some(t) = token {
        req.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    if let Some(ns) = namespace {
        req.metadata_mut()
            .insert("sessiond-namespace", ns.parse().unwrap());
    }
    req
}

async fn namespaces_come_from_credentials(b: Backend) {
    const A: &str = "token-of-the-telegram-bot";
    const B: &str = "token-of-the-slack-and-line-bots";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens");
    std::fs::write(
        &file,
        format!("# token namespaces\n{A} telegram\n{B} slack,line\n"),
    )
    .unwrap();
    let s = Server::start(b, &["--auth-tokens-file", file.to_str().unwrap()]).await;
    let mut c = s.client().await;
    let get = |t: Option<&str>, ns: Option<&str>| {
        authed(
            GetSessionRequest {
                session_id: "user-1".into(),
                consistency: 2,
                min_version: 0,
            },
            t,
            ns,
        )
    };
    assert_eq!(
        reason(c.get_session(get(None, None)).await),
        (Code::Unauthenticated, "UNAUTHENTICATED".into())
    );
    let wrong = get(Some("not-a-token-anyone-was-given"), None);
    assert_eq!(
        reason(c.get_session(wrong).await),
        (Code::Unauthenticated, "UNAUTHENTICATED".into())
    );
    let denied = get(Some(B), Some("telegram"));
    assert_eq!(
        reason(c.get_session(denied).await),
        (Code::PermissionDenied, "NAMESPACE_DENIED".into())
    );
    // The same id in three namespaces: three sessions.
    for (token, ns, who) in [(A, None, "a"), (B, None, "b"), (B, Some("line"), "c")] {
        let l = c
            .lock_session(authed(
                LockSessionRequest {
                    session_id: "user-1".into(),
                    lease_ms: 5000,
                    wait_ms: 0,
                },
                Some(token),
                ns,
            ))
            .await;
        let l = l.expect("each namespace has its own lock").into_inner();
        let mut w = set("user-1", &[("who", who)]);
        w.lock_token = l.lock_token;
        w.release_lock = true;
        assert_eq!(
            c.update_session(authed(w, Some(token), ns))
                .await
                .unwrap()
                .into_inner()
                .version,
            1
        );
    }
    for (token, ns, who) in [
        (A, None, "a"),
        (B, Some("slack"), "b"),
        (B, Some("line"), "c"),
    ] {
        let got = c
            .get_session(get(Some(token), ns))
            .await
            .unwrap()
            .into_inner()
            .session
            .unwrap();
        assert_eq!(got.fields, fields(&[("who", who)]));
    }
    // Operators' calls need no token.
    s.admin().await.get_stats(GetStatsRequest {}).await.unwrap();
}

/// Waits until the server reports at least `n` callers queued.
pub async fn wait_until_queued(s: &Server, n: u64) {
    wait_until_waiting(s, |w| w >= n).await
}

/// Waits until the number of queued callers satisfies `ok`.
pub async fn wait_until_waiting(s: &Server, ok: impl Fn(u64) -> bool) {
    let mut admin = s.admin().await;
    let mut last = 0;
    for _ in 0..1000 {
        let st = admin
            .get_stats(GetStatsRequest {})
            .await
            .unwrap()
            .into_inner();
        last = st.locks.unwrap().waiting_now;
        if ok(last) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the number of waiters stayed at {last}");
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

async fn limits_refuse_and_write_nothing(b: Backend) {
    let s = Server::start(
        b,
        &[
            "--max-fields",
            "3",
            "--max-field-bytes",
            "100",
            "--max-session-bytes",
            "250",
        ],
    )
    .await;
    let mut c = s.client().await;
    c.update_session(set("lim", &[("a", "1"), ("b", "2")]))
        .await
        .unwrap();
    let cases: Vec<(UpdateSessionRequest, &str)> = vec![
        (set("lim", &[("c", "3"), ("d", "4")]), "max_fields"),
        (set("lim", &[("big", &"x".repeat(101))]), "max_field_bytes"),
        (
            set("lim", &[("c", &"x".repeat(100)), ("d", &"x".repeat(0))]),
            "max_fields",
        ),
        (
            set(
                "lim",
                &[
                    ("a", &"x".repeat(100)),
                    ("b", &"x".repeat(100)),
                    ("c", &"x".repeat(60)),
                ],
            ),
            "max_session_bytes",
        ),
    ];
    for (req, limit) in cases {
        let (code, why, md) = details(c.update_session(req).await);
        assert_eq!(
            (code, why.as_str()),
            (Code::InvalidArgument, "LIMIT_EXCEEDED")
        );
        assert_eq!(md["limit"], limit);
    }
    let got = get(&mut c, "lim", Consistency::Strong)
        .await
        .unwrap()
        .session
        .unwrap();
    assert_eq!(
        (got.version, got.fields),
        (1, fields(&[("a", "1"), ("b", "2")])),
        "nothing was written"
    );
    // Replacing frees the room of the fields it drops; deleting makes room too.
    let mut rep = set("lim", &[("x", "1"), ("y", "2"), ("z", "3")]);
    rep.replace = true;
    c.update_session(rep).await.unwrap();
    let mut swap = set("lim", &[("w", "4")]);
    swap.delete_fields = vec!["x".into()];
    c.update_session(swap).await.unwrap();
    let got = get(&mut c, "lim", Consistency::Strong)
        .await
        .unwrap()
        .session
        .unwrap();
    assert_eq!(got.fields.len(), 3);
}

async fn bad_arguments_are_named(b: Backend) {
    let s = Server::start(b, &[]).await;
    let mut c = s.client().await;
    let long = "x".repeat(257);
    for id in ["", "a\nb", "tab\there", long.as_str()] {
        let r = get(&mut c, id, Consistency::Cached).await;
        assert_eq!(
            reason(r),
            (Code::InvalidArgument, "INVALID_SESSION_ID".into()),
            "id {id:?}"
        );
        assert_eq!(
            reason(c.update_session(set(id, &[("a", "1")])).await).1,
            "INVALID_SESSION_ID"
        );
        assert_eq!(reason(lock(&mut c, id, 0, 0).await).1, "INVALID_SESSION_ID");
    }
    assert_eq!(
        reason(lock(&mut c, "ok", 1, 0).await),
        (Code::InvalidArgument, "INVALID_LEASE".into())
    );
    assert_eq!(
        reason(lock(&mut c, "ok", u32::MAX, 0).await).1,
        "INVALID_LEASE"
    );
    assert_eq!(
        reason(lock(&mut c, "ok", 0, u32::MAX).await),
        (Code::InvalidArgument, "INVALID_WAIT".into())
    );
    let mut w = set("ok", &[("a", "1")]);
    w.lock_token = "not a token!".into();
    assert_eq!(
        reason(c.update_session(w).await),
        (Code::InvalidArgument, "INVALID_LOCK_TOKEN".into())
    );
    let mut w = set("ok", &[("a", "1")]);
    w.release_lock = true;
    assert_eq!(reason(c.update_session(w).await).1, "INVALID_LOCK_TOKEN");
    let unlock = UnlockSessionRequest {
        session_id: "ok".into(),
        lock_token: String::new(),
    };
    assert_eq!(
        reason(c.unlock_session(unlock).await).1,
        "INVALID_LOCK_TOKEN"
    );
    let mut w = set("ok", &[("a", "1")]);
    w.delete_fields = vec!["a".into()];
    assert_eq!(
        reason(c.update_session(w).await),
        (Code::InvalidArgument, "INVALID_FIELD".into())
    );
    for name in ["", "bad\u{0}name"] {
        let w = set("ok", &[(name, "1")]);
        assert_eq!(reason(c.update_session(w).await).1, "INVALID_FIELD");
    }
    assert_eq!(
        reason(get(&mut c, "ok", Consistency::Strong).await).1,
        "SESSION_NOT_FOUND",
        "nothing was written"
    );
}

async fn crafted_ids_stay_apart(b: Backend) {
    let s = Server::start(b, &[]).await;
    let mut c = s.client().await;
    let ids = [
        "a",
        "a}b",
        "{a}",
        "a{b}",
        "a:b",
        "a/b",
        "a%2Fb",
        "a%",
        "default/a",
        "ユーザー",
        "a b",
        "A",
    ];
    for (i, id) in ids.iter().enumerate() {
        c.update_session(set(id, &[("who", &i.to_string())]))
            .await
            .unwrap();
    }
    let _lock = lock(&mut c, "a}b", 5000, 0).await.unwrap();
    for (i, id) in ids.iter().enumerate() {
        let got = get(&mut c, id, Consistency::Strong)
            .await
            .unwrap()
            .session
            .unwrap();
        assert_eq!(got.fields["who"], i.to_string(), "id {id:?}");
        assert_eq!(got.version, 1, "id {id:?}");
        assert_eq!(got.session_id, *id);
        if *id != "a}b" {
            // Only "a}b" is locked.
            c.update_session(set(id, &[("again", "1")])).await.unwrap();
        }
    }
}

async fn stats_and_request_ids(b: Backend) {
    let s = Server::start(b, &[]).await;
    let mut c = s.client().await;
    let r = c.update_session(set("st", &[("a", "1")])).await.unwrap();
    let rid = r
        .metadata()
        .get("x-request-id")
        .expect("x-request-id header")
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(uuid::Uuid::parse_str(&rid).unwrap().get_version_num(), 4);
    // A caller's own request id is kept.
    let mut req = tonic::Request::new(GetSessionRequest {
        session_id: "st".into(),
        ..Default::default()
    });
    req.metadata_mut()
        .insert("x-request-id", "bot-7f3a".parse().unwrap());
    let r = c.get_session(req).await.unwrap();
    assert_eq!(r.metadata().get("x-request-id").unwrap(), "bot-7f3a");
    get(&mut c, "st", Consistency::Cached).await.unwrap();
    let _ = get(&mut c, "missing", Consistency::Cached).await;
    let st = s.stats().await;
    assert_eq!(
        st.store_backend,
        if b == Backend::Redis {
            "redis"
        } else {
            "embedded"
        }
    );
    assert!(!st.instance_id.is_empty());
    let cache = st.cache.unwrap();
    assert!(cache.hits >= 1 && cache.misses >= 2, "{cache:?}");
    assert!(cache.entries >= 1 || cache.weighted_bytes > 0 || cache.hits >= 1);
    let gets = st.rpcs.iter().find(|r| r.method == "GetSession").unwrap();
    assert_eq!((gets.calls, gets.errors), (3, 1));
    assert!(gets.latency_us.unwrap().p50 > 0.0);
    assert!(st.store.unwrap().healthy);
}

on_both_backends!(
    get_missing_is_not_found,
    write_then_read_back,
    min_version_forces_a_fresh_read,
    compare_and_set,
    lock_is_mandatory_for_writers,
    unlock_and_refresh,
    expired_lease_loses_to_the_next_holder,
    wait_times_out,
    waiter_gets_the_lock_on_release,
    a_waiter_that_disconnects_leaves_the_queue,
    delete_and_recreate_never_reuses_versions_or_fences,
    idle_sessions_and_leases_expire,
    limits_refuse_and_write_nothing,
    bad_arguments_are_named,
    crafted_ids_stay_apart,
    stats_and_request_ids,
    namespaces_come_from_credentials,
);
