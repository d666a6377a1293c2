//! CheckRate: a burst is admitted then refused with when to come back (in
//! ErrorInfo and RetryInfo), and admitted again after that; limits of
//! different names, sessions and scopes are counted apart; arguments that
//! make no limit are refused with a reason; the server's defaults apply
//! when a call gives none.

use std::time::Duration;

use sessiond::pb::*;
use tonic::Code;
use tonic_types::StatusExt;

use crate::on_every_backend;
use crate::support::{Backend, Client, Server, details, reason, unlock};

fn rate(id: &str, name: &str, per_second: f64, burst: u64) -> CheckRateRequest {
    CheckRateRequest {
        session_id: id.into(),
        name: name.into(),
        per_second: Some(per_second),
        burst: Some(burst),
        ..Default::default()
    }
}

async fn remaining(c: &mut Client, req: &CheckRateRequest) -> u64 {
    c.check_rate(req.clone())
        .await
        .unwrap()
        .into_inner()
        .remaining
}

async fn a_burst_is_admitted_then_refused_until_its_time(b: Backend) {
    let s = Server::start(b, &[]).await;
    let mut c = s.client().await;
    // 10 a second (one unit every 100 ms), 3 at once.
    let req = rate("rate-burst", "replies", 10.0, 3);
    for left in [2, 1, 0] {
        let r = c.check_rate(req.clone()).await.unwrap().into_inner();
        assert_eq!(r.remaining, left);
        assert!(r.reset_after_ms <= 300 && r.reset_after_ms > 0, "{r:?}");
    }
    let refused = c.check_rate(req.clone()).await;
    let status = refused.as_ref().unwrap_err().clone();
    let (code, why, meta) = details(refused);
    assert_eq!((code, &*why), (Code::ResourceExhausted, "RATE_LIMITED"));
    assert_eq!(meta["limit"], "replies");
    let after: u64 = meta["retry_after_ms"].parse().unwrap();
    assert!((1..=100).contains(&after), "retry after {after} ms");
    let retry = status.get_details_retry_info().expect("RetryInfo attached");
    assert_eq!(retry.retry_delay, Some(Duration::from_millis(after)));
    // A refusal takes nothing: refused again at once, admitted once the
    // time it named has passed, with nothing more left.
    assert_eq!(
        reason(c.check_rate(req.clone()).await),
        (Code::ResourceExhausted, "RATE_LIMITED".into())
    );
    tokio::time::sleep(Duration::from_millis(after)).await;
    assert_eq!(remaining(&mut c, &req).await, 0);
}

async fn limits_are_counted_apart(b: Backend) {
    let s = Server::start(b, &[]).await;
    let mut c = s.client().await;
    // One unit every 100 s: a second call within the test is refused.
    let slow = |id: &str, name: &str| rate(id, name, 0.01, 1);
    let limited = (Code::ResourceExhausted, "RATE_LIMITED".to_owned());
    assert_eq!(remaining(&mut c, &slow("apart-a", "x")).await, 0);
    assert_eq!(reason(c.check_rate(slow("apart-a", "x")).await), limited);
    assert_eq!(remaining(&mut c, &slow("apart-b", "x")).await, 0);
    assert_eq!(remaining(&mut c, &slow("apart-a", "y")).await, 0);
    // The namespace's limit of the same name is another one, whatever
    // session_id says.
    let mut ns = slow("apart-a", "x");
    ns.set_scope(RateScope::Namespace);
    assert_eq!(remaining(&mut c, &ns).await, 0);
    ns.session_id = "apart-c".into();
    assert_eq!(reason(c.check_rate(ns.clone()).await), limited);
    ns.session_id = String::new();
    assert_eq!(reason(c.check_rate(ns).await), limited);
    // Names and ids that would read alike if not encoded stay apart.
    assert_eq!(remaining(&mut c, &slow("apart-a/x", "y")).await, 0);
    assert_eq!(remaining(&mut c, &slow("apart-a", "x}:r:y")).await, 0);
}

async fn bad_arguments_name_their_reason(b: Backend) {
    let s = Server::start(
        b,
        &[
            "--rate-limit-default-per-second",
            "2",
            "--rate-limit-default-burst",
            "4",
        ],
    )
    .await;
    let mut c = s.client().await;
    let invalid = (Code::InvalidArgument, "INVALID_RATE_LIMIT".to_owned());
    for per_second in [0.0, -1.0, f64::NAN, f64::INFINITY, 2e6] {
        let r = c.check_rate(rate("bad", "x", per_second, 1)).await;
        assert_eq!(reason(r), invalid, "per_second {per_second}");
    }
    for burst in [0, 2_000_000_000, 1_000_000_000] {
        let r = c.check_rate(rate("bad", "x", 1.0, burst)).await;
        assert_eq!(reason(r), invalid, "burst {burst}");
    }
    let mut costly = rate("bad", "x", 1.0, 2);
    costly.cost = 3;
    assert_eq!(reason(c.check_rate(costly).await), invalid);
    assert_eq!(
        reason(c.check_rate(rate("bad", "a\nb", 1.0, 1)).await),
        invalid
    );
    assert_eq!(
        reason(c.check_rate(rate("", "x", 1.0, 1)).await),
        (Code::InvalidArgument, "INVALID_SESSION_ID".to_owned())
    );
    // Nothing given: the server's defaults (2 a second, a burst of 4), the
    // name "default", a cost of 1; a cost takes that many units.
    let plain = CheckRateRequest {
        session_id: "defaults".into(),
        ..Default::default()
    };
    let r = c.check_rate(plain.clone()).await.unwrap().into_inner();
    assert_eq!((r.remaining, r.reset_after_ms), (3, 500));
    let mut named = plain.clone();
    named.name = "default".into();
    named.cost = 3;
    let r = c.check_rate(named).await.unwrap().into_inner();
    assert_eq!(r.remaining, 0);
    let (code, why, meta) = details(c.check_rate(plain).await);
    assert_eq!((code, &*why), (Code::ResourceExhausted, "RATE_LIMITED"));
    assert_eq!(meta["limit"], "default");
}

/// LockSession with a rate limit: checked before the lock is tried or
/// queued for; a refused caller neither locks nor queues, and the attempt
/// that met a held lock still took its unit.
async fn lock_session_checks_its_rate_limit_first(b: Backend) {
    let s = Server::start(b, &[]).await;
    let (mut c, mut other) = (s.client().await, s.client().await);
    let req = |wait_ms: u32, scope: RateScope| LockSessionRequest {
        session_id: "rate-lock".into(),
        lease_ms: 5_000,
        wait_ms,
        rate_limit: Some(RateLimit {
            name: "locks".into(),
            scope: scope as i32,
            per_second: Some(0.01),
            burst: Some(2),
            cost: 0,
        }),
        ..Default::default()
    };
    let held = c
        .lock_session(req(0, RateScope::Session))
        .await
        .unwrap()
        .into_inner();
    // Held: LOCK_HELD, and its unit is taken all the same.
    assert_eq!(
        reason(other.lock_session(req(0, RateScope::Session)).await),
        (Code::FailedPrecondition, "LOCK_HELD".to_owned())
    );
    // The limit is used up: refused before queueing, so no wait of 5 s.
    let started = std::time::Instant::now();
    let (code, why, meta) = details(other.lock_session(req(5_000, RateScope::Session)).await);
    assert_eq!((code, &*why), (Code::ResourceExhausted, "RATE_LIMITED"));
    assert_eq!(meta["limit"], "locks");
    assert!(started.elapsed() < Duration::from_secs(2));
    let stats = s.stats().await;
    assert_eq!(stats.locks.unwrap().waiting_now, 0);
    // CheckRate sees the same limit.
    let mut check = rate("rate-lock", "locks", 0.01, 2);
    check.cost = 1;
    assert_eq!(
        reason(c.check_rate(check).await),
        (Code::ResourceExhausted, "RATE_LIMITED".to_owned())
    );
    // The namespace's limit of that name is another; bad arguments are refused.
    unlock(&mut c, "rate-lock", held.lock_token).await.unwrap();
    let ns = c.lock_session(req(0, RateScope::Namespace)).await.unwrap();
    unlock(&mut c, "rate-lock", ns.into_inner().lock_token)
        .await
        .unwrap();
    let mut bad = req(0, RateScope::Session);
    bad.rate_limit.as_mut().unwrap().per_second = Some(f64::NAN);
    assert_eq!(
        reason(c.lock_session(bad).await),
        (Code::InvalidArgument, "INVALID_RATE_LIMIT".to_owned())
    );
}

on_every_backend!(
    lock_session_checks_its_rate_limit_first,
    a_burst_is_admitted_then_refused_until_its_time,
    limits_are_counted_apart,
    bad_arguments_name_their_reason,
);
