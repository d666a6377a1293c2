//! Idempotency keys on UpdateSession and DeleteSession: a repeat gets the
//! first call's answer and is not applied again, whatever its guards; the
//! same key with another request is refused; the window ends; a thousand
//! concurrent repeats apply once.

use std::time::Duration;

use bytes::Bytes;
use sessiond::pb::*;
use tonic::Code;

use crate::on_every_backend;
use crate::support::{Backend, Client, Server, details, get, lock, reason, set};

fn inc(id: &str, key: &str) -> UpdateSessionRequest {
    UpdateSessionRequest {
        session_id: id.into(),
        idempotency_key: key.into(),
        ops: vec![FieldOp {
            field: "n".into(),
            op: Some(field_op::Op::Increment(1)),
        }],
        ..Default::default()
    }
}

fn delete(id: &str, key: &str) -> DeleteSessionRequest {
    DeleteSessionRequest {
        session_id: id.into(),
        idempotency_key: key.into(),
        ..Default::default()
    }
}

async fn stored(c: &mut Client, id: &str) -> Option<Session> {
    get(c, id, Consistency::Strong).await.ok()?.session
}

async fn repeats_get_the_first_answer(b: Backend) {
    let s = Server::start(b, &[]).await;
    let mut c = s.client().await;
    let mut first = inc("idem", "evt-1");
    first.set_fields = [("last".to_owned(), Bytes::from("hi"))].into();
    let w = c.update_session(first.clone()).await.unwrap().into_inner();
    assert_eq!((w.version, &w.op_values[..]), (1, &[Bytes::from("1")][..]));
    for _ in 0..3 {
        let again = c.update_session(first.clone()).await.unwrap().into_inner();
        assert_eq!(again, w, "the first answer, expiry included");
    }
    // A repeat is recognised before the guards: it comes from another
    // attempt with guards of its own, here a stale expected version.
    let mut stale = first.clone();
    stale.expected_version = Some(0);
    assert_eq!(c.update_session(stale).await.unwrap().into_inner(), w);
    let now = stored(&mut c, "idem").await.unwrap();
    assert_eq!((now.version, &now.fields["n"][..]), (1, &b"1"[..]));
    // Another key applies; the same key on another session is another key.
    assert_eq!(
        c.update_session(inc("idem", "evt-2"))
            .await
            .unwrap()
            .into_inner()
            .version,
        2
    );
    let other = c
        .update_session(inc("idem-other", "evt-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (other.version, &other.op_values[..]),
        (1, &[Bytes::from("1")][..])
    );
    // The same key with another write: refused, named, nothing written.
    let mut changed = first.clone();
    changed.set_fields = [("last".to_owned(), Bytes::from("ho"))].into();
    let (code, why, _) = details(c.update_session(changed).await);
    assert_eq!(
        (code, why.as_str()),
        (Code::InvalidArgument, "IDEMPOTENCY_KEY_REUSED")
    );
    let (code, why) = reason(c.delete_session(delete("idem", "evt-1")).await);
    assert_eq!(
        (code, why.as_str()),
        (Code::InvalidArgument, "IDEMPOTENCY_KEY_REUSED")
    );
    let now = stored(&mut c, "idem").await.unwrap();
    assert_eq!((now.version, &now.fields["last"][..]), (2, &b"hi"[..]));
    // Keys are names: 1..=256 bytes, no control characters.
    for bad in ["a\u{0}b", &"k".repeat(257)] {
        let (code, why) = reason(c.update_session(inc("idem", bad)).await);
        assert_eq!(
            (code, why.as_str()),
            (Code::InvalidArgument, "INVALID_IDEMPOTENCY_KEY")
        );
    }
}

async fn deletes_repeat_without_deleting_again(b: Backend) {
    let s = Server::start(b, &[]).await;
    let mut c = s.client().await;
    c.update_session(set("del", &[("a", "1")])).await.unwrap();
    assert!(
        c.delete_session(delete("del", "d-1"))
            .await
            .unwrap()
            .into_inner()
            .deleted
    );
    // Created again since: the repeat answers as the first did and leaves it.
    c.update_session(set("del", &[("a", "2")])).await.unwrap();
    assert!(
        c.delete_session(delete("del", "d-1"))
            .await
            .unwrap()
            .into_inner()
            .deleted
    );
    assert_eq!(&stored(&mut c, "del").await.unwrap().fields["a"][..], b"2");
    // A delete of nothing repeats as "nothing deleted".
    assert!(
        !c.delete_session(delete("none", "d-2"))
            .await
            .unwrap()
            .into_inner()
            .deleted
    );
    c.update_session(set("none", &[("a", "1")])).await.unwrap();
    assert!(
        !c.delete_session(delete("none", "d-2"))
            .await
            .unwrap()
            .into_inner()
            .deleted
    );
    assert!(stored(&mut c, "none").await.is_some());
    let (code, why) = reason(c.update_session(inc("none", "d-2")).await);
    assert_eq!(
        (code, why.as_str()),
        (Code::InvalidArgument, "IDEMPOTENCY_KEY_REUSED")
    );
}

/// A repeat with `release_lock` releases its own attempt's lock: the
/// handler that got the event twice does not leave the session locked.
async fn a_repeat_releases_its_own_lock(b: Backend) {
    let s = Server::start(b, &[]).await;
    let mut c = s.client().await;
    let first = lock(&mut c, "rel", 30_000, 0).await.unwrap();
    let mut w = inc("rel", "evt");
    w.lock_token = first.lock_token;
    w.release_lock = true;
    let answer = c.update_session(w.clone()).await.unwrap().into_inner();
    let second = lock(&mut c, "rel", 30_000, 0).await.unwrap();
    w.lock_token = second.lock_token.clone();
    assert_eq!(
        c.update_session(w.clone()).await.unwrap().into_inner(),
        answer
    );
    let third = lock(&mut c, "rel", 30_000, 0).await.unwrap();
    assert_ne!(
        third.lock_token, second.lock_token,
        "the repeat released its lock"
    );
    // Without the token's lock held, a repeat still answers and releases
    // nothing (another holder keeps it).
    assert_eq!(c.update_session(w).await.unwrap().into_inner(), answer);
    let (code, why) = reason(lock(&mut c, "rel", 30_000, 0).await);
    assert_eq!(
        (code, why.as_str()),
        (Code::FailedPrecondition, "LOCK_HELD")
    );
    assert_eq!(stored(&mut c, "rel").await.unwrap().version, 1);
}

async fn the_window_ends(b: Backend) {
    let s = Server::start(b, &["--idempotency-window", "1s"]).await;
    let mut c = s.client().await;
    assert_eq!(
        c.update_session(inc("win", "k"))
            .await
            .unwrap()
            .into_inner()
            .version,
        1
    );
    assert_eq!(
        c.update_session(inc("win", "k"))
            .await
            .unwrap()
            .into_inner()
            .version,
        1
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let w = c
        .update_session(inc("win", "k"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((w.version, &w.op_values[..]), (2, &[Bytes::from("2")][..]));
}

/// 1,000 concurrent calls of one request under one key, over 16
/// connections: one applies, all get its answer.
async fn a_thousand_concurrent_repeats_apply_once(b: Backend) {
    let s = Server::start(b, &[]).await;
    let mut clients = Vec::new();
    for _ in 0..16 {
        clients.push(s.client().await);
    }
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let mut c = clients[i % 16].clone();
        tasks.push(tokio::spawn(async move {
            c.update_session(inc("burst", "slack-Ev042"))
                .await
                .map(|r| r.into_inner())
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap().unwrap());
    }
    let first = answers[0].clone();
    assert_eq!(
        (first.version, &first.op_values[..]),
        (1, &[Bytes::from("1")][..])
    );
    assert!(answers.iter().all(|a| *a == first));
    let mut c = s.client().await;
    let now = stored(&mut c, "burst").await.unwrap();
    assert_eq!((now.version, &now.fields["n"][..]), (1, &b"1"[..]));
}

on_every_backend!(
    repeats_get_the_first_answer,
    deletes_repeat_without_deleting_again,
    a_repeat_releases_its_own_lock,
    the_window_ends,
    a_thousand_concurrent_repeats_apply_once,
);
