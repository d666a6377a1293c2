//! Fair shares between namespaces: a namespace that floods is refused at
//! its own limits (RESOURCE_EXHAUSTED / OVERLOADED, the limit named in the
//! ErrorInfo) and the others keep being served; callers queued for a lock
//! hold waiter slots, not the working calls' slots.

use std::time::{Duration, Instant};

use sessiond::pb::*;
use tonic::Code;

use super::raw::{Answer, Open, Raw, answer_of};
use super::{CALM, FLOOD, Tokens, bearer, canary, strong};
use crate::on_both_backends;
use crate::support::{Backend, Client, details, wait_until_queued};

async fn lock_as(
    c: &mut Client,
    token: &str,
    id: &str,
    wait_ms: u32,
) -> Result<LockSessionResponse, tonic::Status> {
    let req = LockSessionRequest {
        session_id: id.into(),
        lease_ms: 10_000,
        wait_ms,
        rate_limit: None,
        ..Default::default()
    };
    c.lock_session(bearer(req, token))
        .await
        .map(|r| r.into_inner())
}

async fn unlock_as(c: &mut Client, token: &str, id: &str, lock_token: String) {
    let req = UnlockSessionRequest {
        session_id: id.into(),
        lock_token,
    };
    c.unlock_session(bearer(req, token)).await.unwrap();
}

/// Code, reason and `limit` of a refusal.
fn refusal<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> (Code, String, String) {
    let (code, reason, md) = details(r);
    (code, reason, md.get("limit").cloned().unwrap_or_default())
}

fn overloaded(limit: &str) -> (Code, String, String) {
    (
        Code::ResourceExhausted,
        "OVERLOADED".to_owned(),
        limit.to_owned(),
    )
}

async fn a_flooding_namespace_leaves_the_others_alone(b: Backend) {
    let tokens = Tokens::new();
    let s = tokens
        .server(
            b,
            &[
                "--max-concurrent-calls",
                "8",
                "--max-calls-per-namespace",
                "4",
            ],
        )
        .await;
    // `flood` opens 16 calls whose bodies never come: four are admitted and
    // hold their namespace's share, twelve are refused at once.
    let mut raw = Raw::connect(s.addr).await;
    let auth = format!("Bearer {FLOOD}");
    let mut bodies = Vec::new();
    let mut answers = Vec::new();
    for _ in 0..16 {
        let Open { response, body } = raw
            .open("GetSession", &[("authorization", auth.as_bytes())])
            .await;
        bodies.push(body);
        answers.push(tokio::spawn(answer_of(response)));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while answers.iter().filter(|a| a.is_finished()).count() < 12 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut held = Vec::new();
    for a in answers {
        if a.is_finished() {
            let Answer {
                code,
                reason,
                limit,
            } = a.await.unwrap();
            assert_eq!(
                (code, reason, limit.unwrap_or_default()),
                overloaded("max_calls_per_namespace")
            );
        } else {
            held.push(a);
        }
    }
    assert_eq!(held.len(), 4, "the namespace's share is in use");
    let mut c = s.client().await;
    assert_eq!(
        refusal(c.get_session(bearer(strong("x"), FLOOD)).await),
        overloaded("max_calls_per_namespace")
    );
    // `calm` is served, up to its own share at once.
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let mut c = c.clone();
        calls.spawn(async move {
            for _ in 0..5 {
                println!("calm canary: {:?}", canary(&mut c, Some(CALM)).await);
            }
        });
    }
    while let Some(done) = calls.join_next().await {
        done.unwrap();
    }
    // Once the flood's calls end, its share is free again.
    for a in held {
        a.abort();
    }
    drop((bodies, raw));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match c.get_session(bearer(strong("x"), FLOOD)).await {
            Err(e) if e.code() == Code::NotFound => break,
            Err(e) if e.code() == Code::ResourceExhausted && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

async fn waiters_have_slots_of_their_own(b: Backend) {
    let tokens = Tokens::new();
    let s = tokens
        .server(
            b,
            &[
                "--max-concurrent-calls",
                "2",
                "--max-waiters-per-namespace",
                "3",
                "--max-waiters-per-session",
                "2",
            ],
        )
        .await;
    let mut c = s.client().await;
    let mut holders = Vec::new();
    for id in ["s1", "s2", "s3"] {
        holders.push(lock_as(&mut c, FLOOD, id, 0).await.unwrap().lock_token);
    }
    let queue = c.clone();
    let waiter = |id: &'static str, token: &'static str| {
        let mut c = queue.clone();
        tokio::spawn(async move { lock_as(&mut c, token, id, 10_000).await })
    };
    let w1 = waiter("s1", FLOOD);
    wait_until_queued(&s, 1).await;
    let w2 = waiter("s1", FLOOD);
    wait_until_queued(&s, 2).await;
    // A third caller for s1 is over the session's cap, at once.
    assert_eq!(
        refusal(lock_as(&mut c, FLOOD, "s1", 10_000).await),
        overloaded("max_waiters_per_session")
    );
    let w3 = waiter("s2", FLOOD);
    wait_until_queued(&s, 3).await;
    // A fourth waiter of `flood` is over its namespace's waiters.
    assert_eq!(
        refusal(lock_as(&mut c, FLOOD, "s3", 10_000).await),
        overloaded("max_waiters_per_namespace")
    );
    // Three callers queued and --max-concurrent-calls 2: working calls of
    // either namespace still go through, and `calm` can queue for its locks.
    println!("calm canary: {:?}", canary(&mut c, Some(CALM)).await);
    println!("flood canary: {:?}", canary(&mut c, Some(FLOOD)).await);
    let calm_holder = lock_as(&mut c, CALM, "s1", 0).await.unwrap().lock_token;
    let calm_waiter = waiter("s1", CALM);
    wait_until_queued(&s, 4).await;
    unlock_as(&mut c, CALM, "s1", calm_holder).await;
    let granted = calm_waiter.await.unwrap().unwrap();
    unlock_as(&mut c, CALM, "s1", granted.lock_token).await;
    // The queues are served in order as the holders let go.
    unlock_as(&mut c, FLOOD, "s1", holders.remove(0)).await;
    let first = w1.await.unwrap().unwrap();
    unlock_as(&mut c, FLOOD, "s1", first.lock_token).await;
    let second = w2.await.unwrap().unwrap();
    assert!(second.fencing_token > first.fencing_token);
    unlock_as(&mut c, FLOOD, "s2", holders.remove(0)).await;
    w3.await.unwrap().unwrap();
    // With its waiters gone, `flood` may queue again.
    let again = waiter("s3", FLOOD);
    wait_until_queued(&s, 1).await;
    unlock_as(&mut c, FLOOD, "s3", holders.remove(0)).await;
    again.await.unwrap().unwrap();
}

on_both_backends!(
    a_flooding_namespace_leaves_the_others_alone,
    waiters_have_slots_of_their_own,
);
