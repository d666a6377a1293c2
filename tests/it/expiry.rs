//! Idle expiry never loses an acknowledged write: a session resumed just
//! after it expired survives the sweeps that follow.

use std::time::Duration;

use sessiond::pb::*;

use crate::on_both_backends;
use crate::support::{Backend, Client, Server, get, reason, set};

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
