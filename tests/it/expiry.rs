//! Idle expiry never loses an acknowledged write: a session resumed just
//! after it expired survives the sweeps that follow, and a locked session
//! does not expire under its holder.

use std::time::Duration;

use sessiond::pb::*;

use crate::on_both_backends;
use crate::support::{Backend, Client, Server, get, lock, reason, set};

/// A session resumed after it expired: one write, a pause of `gap` past the
/// idle TTL (3 s), then five writes 400 ms apart. Every write is
/// acknowledged with the next version, and the session holds them all.
async fn resume_after_expiry(mut c: Client, id: String, gap: Duration) {
    let w = c.update_session(set(&id, &[("a", "1")])).await.unwrap();
    assert_eq!(w.into_inner().version, 1);
    tokio::time::sleep(Duration::from_secs(3) + gap).await;
    let expired = get(&mut c, &id, Consistency::Strong).await;
    assert_eq!(reason(expired).1, "SESSION_NOT_FOUND", "{id} expired");
    let mut acknowledged = Vec::new();
    for i in 1..=5 {
        let name = format!("n{i}");
        let w = c.update_session(set(&id, &[(&name, "x")])).await.unwrap();
        assert_eq!(w.into_inner().version, 1 + i, "{id}: versions go on");
        acknowledged.push(name);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let got = get(&mut c, &id, Consistency::Strong).await.unwrap();
    let got = got.session.unwrap_or_else(|| panic!("{id} was deleted"));
    let mut names: Vec<String> = got.fields.into_keys().collect();
    names.sort();
    assert_eq!(names, acknowledged, "{id}: every acknowledged field");
    assert_eq!(got.version, 6);
}

/// The embedded store used to delete such a session through the expiry row
/// of the record that had expired, at the first sweep after the write that
/// resumed it, if no sweep had removed the expired record in between. With a
/// sweep every second, four sessions resumed 100 ms after their expiry and
/// 250 ms apart leave no sweep that removes every expired record first.
async fn a_session_resumed_after_it_expired_survives_the_sweeps(b: Backend) {
    let s = Server::start(b, &["--idle-ttl", "3s", "--sweep-every", "1s"]).await;
    let c = s.client().await;
    let mut sessions = Vec::new();
    for i in 0..4 {
        let resumed = resume_after_expiry(c.clone(), format!("s{i}"), Duration::from_millis(100));
        sessions.push(tokio::spawn(resumed));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for session in sessions {
        session.await.unwrap();
    }
}

on_both_backends!(a_session_resumed_after_it_expired_survives_the_sweeps);

fn guarded(id: &str, pairs: &[(&str, &str)], l: &LockSessionResponse) -> UpdateSessionRequest {
    let mut w = set(id, pairs);
    w.lock_token = l.lock_token.clone();
    w
}

async fn strong_fields(c: &mut Client, id: &str) -> (u64, Vec<String>) {
    let got = get(c, id, Consistency::Strong).await.unwrap();
    let got = got.session.unwrap_or_else(|| panic!("{id} expired"));
    let mut names: Vec<String> = got.fields.into_keys().collect();
    names.sort();
    (got.version, names)
}

/// Lock and refresh keep the session alive at least until the lease ends,
/// and so does a write under the lock. (Embedded only in this change: the
/// Redis scripts get the same rule on their own.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_session_does_not_expire_under_its_holder() {
    let args = ["--idle-ttl", "1s", "--sweep-every", "100ms"];
    let s = Server::start(Backend::Embedded, &args).await;
    let mut c = s.client().await;

    // Locked with a lease longer than the idle TTL, and written at once.
    c.update_session(set("l", &[("a", "1")])).await.unwrap();
    let l = lock(&mut c, "l", 4000, 0).await.unwrap();
    let lease_end = l.lease_expires_at.unwrap();
    let session = l.session.clone().unwrap();
    assert!(session.expires_at.unwrap().seconds >= lease_end.seconds);
    let w = c.update_session(guarded("l", &[("b", "2")], &l)).await;
    let w = w.unwrap().into_inner();
    assert!(w.expires_at.unwrap().seconds >= lease_end.seconds);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        strong_fields(&mut c, "l").await,
        (2, vec!["a".into(), "b".into()])
    );
    let mut w = guarded("l", &[("c", "3")], &l);
    w.release_lock = true;
    assert_eq!(c.update_session(w).await.unwrap().into_inner().version, 3);

    // Refreshed, past the idle TTL of the last write and the first lease.
    c.update_session(set("r", &[("a", "1")])).await.unwrap();
    let l = lock(&mut c, "r", 1500, 0).await.unwrap();
    for _ in 0..7 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let refresh = RefreshLockRequest {
            session_id: "r".into(),
            lock_token: l.lock_token.clone(),
            lease_ms: 1500,
        };
        c.refresh_lock(refresh).await.unwrap();
    }
    assert_eq!(strong_fields(&mut c, "r").await, (1, vec!["a".into()]));
    let mut w = guarded("r", &[("b", "2")], &l);
    w.release_lock = true;
    assert_eq!(c.update_session(w).await.unwrap().into_inner().version, 2);
    assert_eq!(
        strong_fields(&mut c, "r").await,
        (2, vec!["a".into(), "b".into()])
    );
}
