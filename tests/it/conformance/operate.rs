//! The operator calls of AdminService: InspectSession shows the holder and
//! its waiters (never the token), ForceUnlock fences the old holder out,
//! ListSessions pages by prefix with no duplicate or miss, PurgeSessions
//! removes exactly a prefix, and all of them need the admin grant when
//! authentication is on.

use std::collections::HashSet;
use std::time::Duration;

use sessiond::pb::admin_service_client::AdminServiceClient;
use sessiond::pb::*;
use tonic::Code;
use tonic::transport::Channel;

use crate::on_every_backend;
use crate::support::{Backend, Server, lock, reason, set, wait_until_queued};

type Admin = AdminServiceClient<Channel>;

async fn inspect(a: &mut Admin, id: &str) -> InspectSessionResponse {
    a.inspect_session(InspectSessionRequest {
        namespace: String::new(),
        session_id: id.into(),
    })
    .await
    .unwrap()
    .into_inner()
}

async fn force(a: &mut Admin, id: &str) -> ForceUnlockResponse {
    a.force_unlock(ForceUnlockRequest {
        namespace: String::new(),
        session_id: id.into(),
    })
    .await
    .unwrap()
    .into_inner()
}

/// Every id under `prefix`, page by page, each page's ids checked unique
/// within it; the pages' ids in the order they came.
pub async fn list_all(a: &mut Admin, prefix: &str, page_size: u32) -> Vec<String> {
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let page = a
            .list_sessions(ListSessionsRequest {
                namespace: String::new(),
                id_prefix: prefix.into(),
                page_size,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        let unique: HashSet<&String> = page.session_ids.iter().collect();
        assert_eq!(unique.len(), page.session_ids.len(), "a page repeats an id");
        all.extend(page.session_ids);
        if page.next_page_token.is_empty() {
            return all;
        }
        token = page.next_page_token;
    }
}

async fn inspect_shows_holder_and_waiters(b: Backend) {
    let s = Server::start(b, &[]).await;
    let mut c = s.client().await;
    let mut a = s.admin().await;
    let none = inspect(&mut a, "in").await;
    assert!(!none.exists && none.lock.is_none() && none.waiters == 0);

    c.update_session(set("in", &[("name", "ada"), ("lang", "en")]))
        .await
        .unwrap();
    let held = lock(&mut c, "in", 10_000, 0).await.unwrap();
    let mut waiter = s.client().await;
    let queued = tokio::spawn(async move { lock(&mut waiter, "in", 5000, 10_000).await });
    wait_until_queued(&s, 1).await;
    // The wait being measured.
    tokio::time::sleep(Duration::from_millis(60)).await;

    let seen = inspect(&mut a, "in").await;
    assert!(seen.exists);
    assert_eq!(seen.version, 1);
    assert_eq!(seen.field_count, 2);
    assert_eq!(
        seen.size_bytes,
        ("name".len() + 3 + "lang".len() + 2) as u64
    );
    assert!(seen.expires_at.is_some());
    let holder = seen.lock.clone().expect("the lock's holder");
    assert_eq!(holder.fencing_token, held.fencing_token);
    assert_eq!(holder.lease_expires_at, held.lease_expires_at);
    let since = holder.held_since.unwrap();
    let until = holder.lease_expires_at.unwrap();
    assert!(
        (until.seconds - since.seconds - 10).abs() <= 1,
        "{since:?} {until:?}"
    );
    let instance = s.stats().await.instance_id;
    assert!(
        instance.starts_with(&holder.instance),
        "{instance} {holder:?}"
    );
    assert_eq!(holder.instance.len(), 16);
    assert_eq!(seen.waiters, 1);
    assert!(
        (60..10_000).contains(&seen.oldest_wait_ms),
        "{}",
        seen.oldest_wait_ms
    );
    // The token never shows.
    assert!(!format!("{seen:?}").contains(&held.lock_token));

    crate::support::unlock(&mut c, "in", held.lock_token)
        .await
        .unwrap();
    let next = queued.await.unwrap().unwrap();
    let seen = inspect(&mut a, "in").await;
    assert_eq!(seen.lock.unwrap().fencing_token, next.fencing_token);
    assert_eq!(seen.waiters, 0);
}

async fn force_unlock_fences_out_the_old_holder(b: Backend) {
    let s = Server::start(b, &[]).await;
    let mut c = s.client().await;
    let mut a = s.admin().await;
    c.update_session(set("f", &[("a", "0")])).await.unwrap();
    let old = lock(&mut c, "f", 10_000, 0).await.unwrap();
    // Someone waits behind the stuck holder; the forced release hands it on.
    let mut waiter = s.client().await;
    let queued = tokio::spawn(async move { lock(&mut waiter, "f", 10_000, 10_000).await });
    wait_until_queued(&s, 1).await;

    let forced = force(&mut a, "f").await;
    assert!(forced.released);
    assert_eq!(forced.released_fencing_token, old.fencing_token);
    let new = queued.await.unwrap().unwrap();
    assert!(
        new.fencing_token >= old.fencing_token + 2,
        "the fence was bumped at the release, then again at the grant: {} after {}",
        new.fencing_token,
        old.fencing_token
    );

    // The old holder's write, refresh and unlock are refused.
    let mut w = set("f", &[("a", "old")]);
    w.lock_token = old.lock_token.clone();
    assert_eq!(
        reason(c.update_session(w).await),
        (Code::FailedPrecondition, "LOCK_LOST".into())
    );
    let refresh = RefreshLockRequest {
        session_id: "f".into(),
        lock_token: old.lock_token.clone(),
        lease_ms: 5000,
    };
    assert_eq!(reason(c.refresh_lock(refresh).await).1, "LOCK_LOST");
    let unlock = crate::support::unlock(&mut c, "f", old.lock_token.clone()).await;
    assert_eq!(reason(unlock).1, "LOCK_LOST");
    // The new holder's write goes through.
    let mut w = set("f", &[("a", "new")]);
    w.lock_token = new.lock_token.clone();
    w.release_lock = true;
    assert_eq!(c.update_session(w).await.unwrap().into_inner().version, 2);

    // Nobody holds it now: nothing to release.
    let again = force(&mut a, "f").await;
    assert!(!again.released);
    assert_eq!(again.released_fencing_token, 0);
    // A lock taken after the release is fenced above everything before.
    let later = lock(&mut c, "f", 1000, 0).await.unwrap();
    assert!(later.fencing_token > new.fencing_token);
    let st = s.stats().await;
    assert_eq!(st.locks.unwrap().forced_releases, 1);
    let rpc = st.rpcs.iter().find(|r| r.method == "ForceUnlock").unwrap();
    assert_eq!((rpc.calls, rpc.errors), (2, 0));
}

async fn list_pages_by_prefix(b: Backend) {
    let s = Server::start(b, &[]).await;
    let mut c = s.client().await;
    let mut a = s.admin().await;
    let mut want = HashSet::new();
    for i in 0..57 {
        let id = format!("user-1/{i}");
        c.update_session(set(&id, &[("n", "1")])).await.unwrap();
        want.insert(id);
    }
    for id in ["user-10/x", "user-2/y", "user-", "other"] {
        c.update_session(set(id, &[("n", "1")])).await.unwrap();
    }
    // Gone sessions are not listed.
    c.update_session(set("user-1/gone", &[("n", "1")]))
        .await
        .unwrap();
    c.delete_session(DeleteSessionRequest {
        session_id: "user-1/gone".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    for size in [1, 7, 0, 1000] {
        let got = list_all(&mut a, "user-1/", size).await;
        let unique: HashSet<String> = got.iter().cloned().collect();
        assert_eq!(unique.len(), got.len(), "page size {size}: listed twice");
        assert_eq!(unique, want, "page size {size}");
    }
    assert_eq!(list_all(&mut a, "", 0).await.len(), 57 + 4);
    assert!(list_all(&mut a, "nobody", 0).await.is_empty());
}

async fn purge_removes_exactly_the_prefix(b: Backend) {
    let s = Server::start(b, &[]).await;
    let mut c = s.client().await;
    let mut a = s.admin().await;
    for i in 0..25 {
        c.update_session(set(&format!("user-7/{i}"), &[("n", "1")]))
            .await
            .unwrap();
    }
    // Twice written: its version is 2 when purged.
    c.update_session(set("user-7/0", &[("n", "2")]))
        .await
        .unwrap();
    for id in ["user-70/a", "user-8/b", "user-"] {
        c.update_session(set(id, &[("n", "1")])).await.unwrap();
    }
    // A stuck holder does not stop a purge; it loses its lock.
    let stuck = lock(&mut c, "user-7/3", 60_000, 0).await.unwrap();

    let mut deleted = 0;
    let mut token = String::new();
    let mut calls = 0;
    loop {
        let r = a
            .purge_sessions(PurgeSessionsRequest {
                namespace: String::new(),
                id_prefix: "user-7/".into(),
                page_size: 4,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        deleted += r.deleted;
        calls += 1;
        if r.next_page_token.is_empty() {
            break;
        }
        token = r.next_page_token;
    }
    assert_eq!(deleted, 25);
    assert!(calls >= 2, "a purge is paged");
    assert!(list_all(&mut a, "user-7/", 0).await.is_empty());
    let mut left: Vec<String> = list_all(&mut a, "", 0).await;
    left.sort();
    assert_eq!(left, ["user-", "user-70/a", "user-8/b"]);

    let mut w = set("user-7/3", &[("n", "late")]);
    w.lock_token = stuck.lock_token;
    assert_eq!(reason(c.update_session(w).await).1, "LOCK_LOST");
    // Versions never go back: a re-created session continues the sequence.
    let again = c
        .update_session(set("user-7/0", &[("n", "1")]))
        .await
        .unwrap();
    assert_eq!(again.into_inner().version, 3);
    assert_eq!(s.stats().await.locks.unwrap().forced_releases, 1);
}

async fn operator_calls_need_the_admin_grant(b: Backend) {
    const PLAIN: &str = "token-of-the-slack-bot-0001";
    const OPS: &str = "token-of-the-operators-0001";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens");
    std::fs::write(&file, format!("{PLAIN} slack\n{OPS} ops,slack admin\n")).unwrap();
    let s = Server::start(b, &["--auth-tokens-file", file.to_str().unwrap()]).await;
    let mut a = s.admin().await;
    let req = |token: Option<&str>, ns: &str, id: &str| {
        let mut r = tonic::Request::new(InspectSessionRequest {
            namespace: ns.into(),
            session_id: id.into(),
        });
        if let Some(t) = token {
            r.metadata_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        r
    };
    assert_eq!(
        reason(a.inspect_session(req(None, "slack", "u")).await),
        (Code::Unauthenticated, "UNAUTHENTICATED".into())
    );
    assert_eq!(
        reason(a.inspect_session(req(Some(PLAIN), "slack", "u")).await),
        (Code::PermissionDenied, "ADMIN_DENIED".into())
    );
    assert_eq!(
        reason(a.inspect_session(req(Some(OPS), "telegram", "u")).await),
        (Code::PermissionDenied, "NAMESPACE_DENIED".into())
    );
    assert_eq!(
        reason(a.inspect_session(req(Some(OPS), "bad/ns", "u")).await),
        (Code::InvalidArgument, "INVALID_NAMESPACE".into())
    );
    assert_eq!(
        reason(a.inspect_session(req(Some(OPS), "slack", "")).await),
        (Code::InvalidArgument, "INVALID_SESSION_ID".into())
    );

    // The admin sees the slack bot's session, in slack only.
    let mut c = s.client().await;
    let mut w = tonic::Request::new(set("u", &[("a", "1")]));
    w.metadata_mut()
        .insert("authorization", format!("Bearer {PLAIN}").parse().unwrap());
    c.update_session(w).await.unwrap();
    let seen = a
        .inspect_session(req(Some(OPS), "slack", "u"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((seen.exists, seen.version), (true, 1));
    let ops = a
        .inspect_session(req(Some(OPS), "", "u"))
        .await
        .unwrap()
        .into_inner();
    assert!(!ops.exists, "the token's first namespace is ops");

    let list = |token: &str, page_token: &str| {
        let mut r = tonic::Request::new(ListSessionsRequest {
            namespace: "slack".into(),
            id_prefix: String::new(),
            page_size: 10,
            page_token: page_token.into(),
        });
        r.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        r
    };
    // A page may hold none while more follow (on the shared cluster, a page's
    // SCAN steps may meet only other tests' keys): every page is read.
    let mut listed = Vec::new();
    let mut token = String::new();
    loop {
        let page = a
            .list_sessions(list(OPS, &token))
            .await
            .unwrap()
            .into_inner();
        listed.extend(page.session_ids);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(listed, ["u"]);
    for bad in ["x", "s0", "a0", "s12abc"] {
        assert_eq!(
            reason(a.list_sessions(list(OPS, bad)).await),
            (Code::InvalidArgument, "INVALID_PAGE_TOKEN".into()),
            "{bad}"
        );
    }
    assert_eq!(
        reason(a.list_sessions(list(PLAIN, "")).await).1,
        "ADMIN_DENIED"
    );
    let mut purge = tonic::Request::new(PurgeSessionsRequest {
        namespace: "slack".into(),
        ..Default::default()
    });
    purge
        .metadata_mut()
        .insert("authorization", format!("Bearer {OPS}").parse().unwrap());
    assert_eq!(
        reason(a.purge_sessions(purge).await),
        (Code::InvalidArgument, "INVALID_SESSION_ID".into())
    );
    // GetStats stays open: it shows counters, no session's data.
    a.get_stats(GetStatsRequest {}).await.unwrap();
}

on_every_backend!(
    inspect_shows_holder_and_waiters,
    force_unlock_fences_out_the_old_holder,
    list_pages_by_prefix,
    purge_removes_exactly_the_prefix,
    operator_calls_need_the_admin_grant,
);
