//! Turn policies on LockSession: a newer LATEST_WINS or DEBOUNCE waiter
//! supersedes the burst's older one (SUPERSEDED) and takes its place and its
//! payloads; FIFO waiters keep theirs; DEBOUNCE waits out its quiet period;
//! the chain of payloads is bounded; bad arguments are refused and queue
//! nothing.

use std::time::{Duration, Instant};

use bytes::Bytes;
use sessiond::pb::*;
use tokio::task::JoinHandle;
use tonic::Code;

use crate::on_every_backend;
use crate::support::{
    Backend, Client, Server, details, lock, reason, unlock, wait_until_queued, wait_until_waiting,
};

/// A LockSession with a policy and a payload.
pub fn turn_req(
    id: &str,
    policy: TurnPolicy,
    debounce_ms: u32,
    payload: &str,
) -> LockSessionRequest {
    LockSessionRequest {
        session_id: id.into(),
        lease_ms: 10_000,
        wait_ms: 10_000,
        policy: policy as i32,
        debounce_ms,
        payload: Bytes::from(payload.to_owned()),
        ..Default::default()
    }
}

type Waiting = JoinHandle<Result<LockSessionResponse, tonic::Status>>;

fn spawn_lock(c: &Client, req: LockSessionRequest) -> Waiting {
    let mut c = c.clone();
    tokio::spawn(async move { c.lock_session(req).await.map(|r| r.into_inner()) })
}

async fn superseded(w: Waiting) {
    assert_eq!(
        reason(w.await.unwrap()),
        (Code::Aborted, "SUPERSEDED".into())
    );
}

fn payloads(r: &LockSessionResponse) -> Vec<&str> {
    r.superseded_payloads
        .iter()
        .map(|p| std::str::from_utf8(p).unwrap())
        .collect()
}

/// A newer LATEST_WINS waiter supersedes the older one and takes its place
/// ahead of a FIFO waiter that queued between them; the FIFO waiter keeps
/// its turn and carries nothing.
async fn latest_wins_supersedes_and_takes_the_older_place(b: Backend) {
    let s = Server::start(b, &[]).await;
    let c = s.client().await;
    let held = lock(&mut c.clone(), "lw", 10_000, 0).await.unwrap();
    let a = spawn_lock(&c, turn_req("lw", TurnPolicy::LatestWins, 0, "m0"));
    wait_until_queued(&s, 1).await;
    let fifo = spawn_lock(&c, turn_req("lw", TurnPolicy::Fifo, 0, ""));
    wait_until_queued(&s, 2).await;
    let bb = spawn_lock(&c, turn_req("lw", TurnPolicy::LatestWins, 0, "m1"));
    superseded(a).await;
    wait_until_waiting(&s, |n| n == 2).await;
    unlock(&mut c.clone(), "lw", held.lock_token).await.unwrap();
    let got = bb.await.unwrap().unwrap();
    assert_eq!(payloads(&got), ["m0"]);
    assert_eq!(got.superseded_dropped, 0);
    assert!(got.fencing_token > held.fencing_token);
    assert!(
        !fifo.is_finished(),
        "the FIFO waiter queued behind the burst"
    );
    unlock(&mut c.clone(), "lw", got.lock_token).await.unwrap();
    let f = fifo.await.unwrap().unwrap();
    assert!(f.superseded_payloads.is_empty());
    assert!(f.fencing_token > got.fencing_token);
}

/// DEBOUNCE on a free lock: the burst's waiter is granted only once its
/// quiet period passed with no newer waiter; meanwhile the lock is not
/// free (a try-once is refused).
async fn debounce_waits_for_a_quiet_period(b: Backend) {
    let s = Server::start(b, &[]).await;
    let mut c = s.client().await;
    let a = spawn_lock(&c, turn_req("db", TurnPolicy::Debounce, 1000, "a"));
    wait_until_queued(&s, 1).await;
    let sent = Instant::now();
    let bb = spawn_lock(&c, turn_req("db", TurnPolicy::Debounce, 1000, "b"));
    superseded(a).await;
    assert_eq!(
        reason(lock(&mut c, "db", 5000, 0).await),
        (Code::FailedPrecondition, "LOCK_HELD".into()),
        "a debouncing waiter has the turn"
    );
    let got = bb.await.unwrap().unwrap();
    assert!(
        sent.elapsed() >= Duration::from_millis(1000),
        "granted {:?} after the newest waiter was sent",
        sent.elapsed()
    );
    assert_eq!(payloads(&got), ["a"]);
}

/// Item 7: the holder's lease runs out while the burst waits; the burst's
/// waiter is granted then, and the old holder has lost the lock.
async fn a_lapsed_lease_passes_the_turn_to_the_burst(b: Backend) {
    let s = Server::start(b, &[]).await;
    let mut c = s.client().await;
    let held = lock(&mut c, "lapse", 400, 0).await.unwrap();
    let a = spawn_lock(&c, turn_req("lapse", TurnPolicy::LatestWins, 0, "x"));
    wait_until_queued(&s, 1).await;
    let bb = spawn_lock(&c, turn_req("lapse", TurnPolicy::LatestWins, 0, "y"));
    superseded(a).await;
    let got = bb.await.unwrap().unwrap();
    assert_eq!(payloads(&got), ["x"]);
    assert!(got.fencing_token > held.fencing_token);
    let mut w = crate::support::set("lapse", &[("by", "old")]);
    w.lock_token = held.lock_token;
    assert_eq!(reason(c.update_session(w).await).1, "LOCK_LOST");
}

/// A burst's payloads end with its waiter when it leaves without the lock.
async fn a_waiter_that_gives_up_ends_its_burst(b: Backend) {
    let s = Server::start(b, &[]).await;
    let mut c = s.client().await;
    let held = lock(&mut c, "gone", 10_000, 0).await.unwrap();
    let mut short = turn_req("gone", TurnPolicy::LatestWins, 0, "lost");
    short.wait_ms = 200;
    assert_eq!(
        reason(c.lock_session(short).await),
        (Code::DeadlineExceeded, "LOCK_WAIT_TIMEOUT".into())
    );
    // Its leaving reaches the store after its answer (on Redis, a script
    // run in the background): wait until the store sees nobody queued.
    let mut admin = s.admin().await;
    for _ in 0..1000 {
        let seen = admin
            .inspect_session(InspectSessionRequest {
                namespace: String::new(),
                session_id: "gone".into(),
            })
            .await
            .unwrap()
            .into_inner();
        if seen.waiters == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let next = spawn_lock(&c, turn_req("gone", TurnPolicy::LatestWins, 0, "new"));
    wait_until_queued(&s, 1).await;
    unlock(&mut c, "gone", held.lock_token).await.unwrap();
    let got = next.await.unwrap().unwrap();
    assert!(got.superseded_payloads.is_empty(), "{:?}", payloads(&got));
}

/// The chain one grant carries is at most 16 payloads of the largest
/// size: the oldest are dropped first, and counted; a repeat of the
/// granted call under its idempotency key gets the same chain.
async fn the_payload_chain_is_bounded(b: Backend) {
    let s = Server::start(b, &["--max-turn-payload-bytes", "16"]).await;
    let mut c = s.client().await;
    let held = lock(&mut c, "chain", 30_000, 0).await.unwrap();
    let msg = |i: usize| format!("{i:016}");
    let mut prev = spawn_lock(&c, turn_req("chain", TurnPolicy::LatestWins, 0, &msg(0)));
    wait_until_queued(&s, 1).await;
    // The last waiter has an idempotency key (say, its message's id).
    let mut last = turn_req("chain", TurnPolicy::LatestWins, 0, &msg(19));
    last.idempotency_key = "msg-19".into();
    for i in 1..20 {
        let req = match i {
            19 => last.clone(),
            _ => turn_req("chain", TurnPolicy::LatestWins, 0, &msg(i)),
        };
        let next = spawn_lock(&c, req);
        superseded(prev).await;
        prev = next;
    }
    unlock(&mut c, "chain", held.lock_token).await.unwrap();
    let got = prev.await.unwrap().unwrap();
    let want: Vec<String> = (3..19).map(msg).collect();
    assert_eq!(payloads(&got), want);
    assert_eq!(got.superseded_dropped, 3);
    // Its repeat (a retry after a lost answer) is that grant again, with
    // the burst's payloads: they are not lost with the first answer.
    let again = c.lock_session(last).await.unwrap().into_inner();
    assert!(again.replayed);
    assert_eq!(again.lock_token, got.lock_token);
    assert_eq!(payloads(&again), want);
    assert_eq!(again.superseded_dropped, 3);
}

/// Bad policies, quiet periods and payloads: refused with their reasons,
/// and none of them queues or supersedes the waiter already queued.
async fn bad_turns_are_refused_and_queue_nothing(b: Backend) {
    let s = Server::start(
        b,
        &["--max-turn-payload-bytes", "4KiB", "--wait-max", "120s"],
    )
    .await;
    let mut c = s.client().await;
    let held = lock(&mut c, "bad", 30_000, 0).await.unwrap();
    let good = spawn_lock(&c, turn_req("bad", TurnPolicy::LatestWins, 0, "good"));
    wait_until_queued(&s, 1).await;
    let lw = |payload: &str| turn_req("bad", TurnPolicy::LatestWins, 0, payload);
    let mut unknown = lw("");
    unknown.policy = 7;
    let mut try_once = lw("p");
    try_once.wait_ms = 0;
    let fifo_payload = turn_req("bad", TurnPolicy::Fifo, 0, "p");
    let no_quiet = turn_req("bad", TurnPolicy::Debounce, 0, "p");
    let too_long = turn_req("bad", TurnPolicy::Debounce, 10_000, "p");
    let over_a_minute = LockSessionRequest {
        wait_ms: 100_000,
        ..turn_req("bad", TurnPolicy::Debounce, 60_001, "p")
    };
    let quiet_without_debounce = turn_req("bad", TurnPolicy::LatestWins, 5, "p");
    let cases = [
        (unknown, "INVALID_TURN_POLICY"),
        (try_once, "INVALID_TURN_POLICY"),
        (fifo_payload, "INVALID_TURN_POLICY"),
        (no_quiet, "INVALID_DEBOUNCE"),
        (too_long, "INVALID_DEBOUNCE"),
        (over_a_minute, "INVALID_DEBOUNCE"),
        (quiet_without_debounce, "INVALID_DEBOUNCE"),
    ];
    for (req, want) in cases {
        let (code, why) = reason(c.lock_session(req.clone()).await);
        assert_eq!(
            (code, why.as_str()),
            (Code::InvalidArgument, want),
            "{req:?}"
        );
    }
    let big = lw(&"x".repeat(4097));
    let (code, why, meta) = details(c.lock_session(big).await);
    assert_eq!(
        (code, why.as_str()),
        (Code::InvalidArgument, "LIMIT_EXCEEDED")
    );
    assert_eq!(meta["limit"], "max_turn_payload_bytes");
    assert!(!good.is_finished(), "nothing superseded the queued waiter");
    wait_until_waiting(&s, |n| n == 1).await;
    unlock(&mut c, "bad", held.lock_token).await.unwrap();
    let got = good.await.unwrap().unwrap();
    assert!(got.superseded_payloads.is_empty());
    // A payload of exactly the limit is taken, and carried on.
    let at_limit = spawn_lock(&c, lw(&"y".repeat(4096)));
    wait_until_queued(&s, 1).await;
    let last = spawn_lock(&c, lw("z"));
    superseded(at_limit).await;
    unlock(&mut c, "bad", got.lock_token).await.unwrap();
    let last = last.await.unwrap().unwrap();
    assert_eq!(last.superseded_payloads, [Bytes::from("y".repeat(4096))]);
}

on_every_backend!(
    latest_wins_supersedes_and_takes_the_older_place,
    debounce_waits_for_a_quiet_period,
    a_lapsed_lease_passes_the_turn_to_the_burst,
    a_waiter_that_gives_up_ends_its_burst,
    the_payload_chain_is_bounded,
    bad_turns_are_refused_and_queue_nothing,
);
