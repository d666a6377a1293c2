//! Many instances, one truth: three sessiond processes on one redis-server.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sessiond::pb::*;

mod turns;

use crate::support::{
    Client, Process, Redis, client, counter_of, free_port, get, lock, set, unlock,
};

/// A sessiond process on `redis`, killed (SIGKILL) on drop.
fn instance(redis: &Redis) -> Process {
    Process::start(
        free_port(),
        &["--redis-url", &redis.url(), "--lease-min", "20ms"],
    )
}

async fn three(redis: &Redis) -> [Process; 3] {
    let all = [instance(redis), instance(redis), instance(redis)];
    for i in &all {
        wait_feed_up(i, 0).await;
    }
    all
}

/// Waits until the instance's invalidation feed is up, after at least
/// `losses` losses.
async fn wait_feed_up(i: &Process, losses: u64) {
    for _ in 0..1000 {
        let c = i.stats().await.cache.unwrap();
        if c.feed_healthy && c.feed_losses >= losses {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the invalidation feed never came up");
}

async fn cached(c: &mut Client, id: &str, min_version: u64) -> (u64, bool) {
    let r = c
        .get_session(GetSessionRequest {
            session_id: id.into(),
            consistency: 0,
            min_version,
        })
        .await
        .unwrap();
    let r = r.into_inner();
    (r.session.unwrap().version, r.from_cache)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_invalidate_other_instances_caches() {
    let redis = Redis::start();
    let [a, b, c] = three(&redis).await;
    let (mut ca, mut cb, mut cc) = (a.client().await, b.client().await, c.client().await);
    let ids: Vec<String> = (0..100).map(|i| format!("coherent-{i}")).collect();
    for id in &ids {
        ca.update_session(set(id, &[("n", "0")])).await.unwrap();
        cached(&mut cb, id, 0).await;
        cached(&mut cc, id, 0).await;
    }
    let mut worst = Duration::ZERO;
    let mut stale_with_min_version = 0;
    for round in 1..=10 {
        for id in &ids {
            let v = ca
                .update_session(set(id, &[("n", &round.to_string())]))
                .await
                .unwrap()
                .into_inner()
                .version;
            // Read-your-writes on B: min_version never returns an older copy.
            if cached(&mut cb, id, v).await.0 < v {
                stale_with_min_version += 1;
            }
            // Plain CACHED reads on C: how long until the new version shows.
            let started = Instant::now();
            loop {
                if cached(&mut cc, id, 0).await.0 >= v {
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(5),
                    "C never saw version {v} of {id}"
                );
            }
            worst = worst.max(started.elapsed());
        }
    }
    println!(
        "coherence: 1000 writes on A; slowest CACHED read on C to see the new version: {worst:?}"
    );
    assert_eq!(stale_with_min_version, 0);
    // C's cache is in use: with no new write, reads are served from it.
    for id in &ids {
        assert!(cached(&mut cc, id, 0).await.1, "{id} cached on C");
    }
    let st = c.stats().await.cache.unwrap();
    assert!(
        st.invalidations_received >= 1000 && st.bypasses == 0,
        "{st:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_feed_drops_the_cache() {
    let redis = Redis::start();
    let [a, b, _c] = three(&redis).await;
    let (mut ca, mut cb) = (a.client().await, b.client().await);
    for i in 0..20 {
        let id = format!("feed-{i}");
        ca.update_session(set(&id, &[("n", "1")])).await.unwrap();
        cached(&mut cb, &id, 0).await;
        assert!(cached(&mut cb, &id, 0).await.1, "warm");
    }
    // Cut every subscription; write while B cannot hear about it.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(killed >= 3, "every instance had a subscription");
    let mut last = Vec::new();
    for i in 0..20 {
        let id = format!("feed-{i}");
        last.push(
            ca.update_session(set(&id, &[("n", "2")]))
                .await
                .unwrap()
                .into_inner()
                .version,
        );
    }
    wait_feed_up(&b, 1).await;
    for (i, v) in last.iter().enumerate() {
        let (got, _) = cached(&mut cb, &format!("feed-{i}"), 0).await;
        assert!(
            got >= *v,
            "feed-{i}: read version {got} after version {v} was acknowledged"
        );
    }
}

/// 48 clients over 3 instances, locked increments on 8 sessions; with
/// `kill_one`, instance C is SIGKILLed mid-run.
async fn increments_across_instances(kill_one: bool) {
    let redis = Redis::start();
    let [a, b, mut c] = three(&redis).await;
    let addrs = [a.addr, b.addr, c.addr];
    let acked = Arc::new(AtomicU64::new(0));
    let in_doubt = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..48usize {
        let mut client = client(addrs[i % 3]).await;
        let (acked, in_doubt) = (acked.clone(), in_doubt.clone());
        tasks.push(tokio::spawn(async move {
            let id = format!("total-{}", i % 8);
            for _ in 0..105 {
                let Ok(l) = lock(&mut client, &id, 1000, 30_000).await else {
                    return;
                };
                let n = counter_of(l.session.as_ref());
                let mut w = set(&id, &[("n", &(n + 1).to_string())]);
                w.lock_token = l.lock_token;
                w.release_lock = true;
                match client.update_session(w).await {
                    Ok(_) => acked.fetch_add(1, Ordering::Relaxed),
                    Err(e) if e.code() == tonic::Code::FailedPrecondition => {
                        panic!("lost a lock mid-run: {e}")
                    }
                    // The instance died under this call: it may or may not have landed.
                    Err(_) => {
                        in_doubt.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                };
            }
        }));
    }
    if kill_one {
        while acked.load(Ordering::Relaxed) < 1500 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        c.kill();
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut reader = a.client().await;
    let mut total = 0;
    for s in 0..8 {
        let r = get(&mut reader, &format!("total-{s}"), Consistency::Strong)
            .await
            .unwrap();
        total += counter_of(Some(&r.session.unwrap()));
    }
    let (acked, in_doubt) = (
        acked.load(Ordering::Relaxed),
        in_doubt.load(Ordering::Relaxed),
    );
    println!("increments: acknowledged {acked}, in doubt {in_doubt}, counted {total}");
    assert!(
        total >= acked && total <= acked + in_doubt,
        "acknowledged {acked}, in doubt {in_doubt}, counted {total}"
    );
    if kill_one {
        assert!(acked >= 32 * 105, "the clients of A and B all finished");
    } else {
        assert_eq!((total, acked), (48 * 105, 48 * 105));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_lost_updates_across_instances() {
    increments_across_instances(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_lost_updates_when_an_instance_dies() {
    increments_across_instances(true).await
}

async fn queued_total(all: &[&Process]) -> u64 {
    let mut n = 0;
    for i in all {
        n += i.stats().await.locks.unwrap().waiting_now;
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_across_instances_and_dead_waiters() {
    let redis = Redis::start();
    let [a, b, mut c] = three(&redis).await;
    let mut ca = a.client().await;
    let held = lock(&mut ca, "fifo-x", 30_000, 0).await.unwrap();
    let order = Arc::new(tokio::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..9u64 {
        let inst = [&a, &b, &c][i as usize % 3];
        let mut client = inst.client().await;
        let order = order.clone();
        tasks.push(tokio::spawn(async move {
            let l = lock(&mut client, "fifo-x", 30_000, 30_000).await.unwrap();
            order.lock().await.push(i);
            unlock(&mut client, "fifo-x", l.lock_token).await.unwrap();
        }));
        while queued_total(&[&a, &b, &c]).await < i + 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    unlock(&mut ca, "fifo-x", held.lock_token).await.unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        *order.lock().await,
        (0..9).collect::<Vec<_>>(),
        "arrival order across A, B, C"
    );

    // A waiter whose instance dies stalls the queue only for a bounded time.
    let held = lock(&mut ca, "fifo-y", 30_000, 0).await.unwrap();
    let mut cc = c.client().await;
    let doomed = tokio::spawn(async move { lock(&mut cc, "fifo-y", 30_000, 30_000).await });
    while queued_total(&[&c]).await < 1 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut cb = b.client().await;
    let next = tokio::spawn(async move { lock(&mut cb, "fifo-y", 30_000, 30_000).await });
    while queued_total(&[&b]).await < 1 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    c.kill();
    let _ = doomed.await;
    let released = Instant::now();
    unlock(&mut ca, "fifo-y", held.lock_token).await.unwrap();
    let granted = next
        .await
        .unwrap()
        .expect("the waiter behind the dead one gets the lock");
    println!(
        "dead waiter: the next waiter got the lock {:?} after the release",
        released.elapsed()
    );
    assert!(granted.fencing_token > held.fencing_token);
    assert!(
        released.elapsed() < Duration::from_secs(10),
        "bounded stall"
    );
}

/// 64 callers spread over three instances increment one counter with field
/// operations, no lock: every increment is applied once (each value is seen
/// by exactly one caller) and the counter ends at the total.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_op_increments_across_instances_lose_nothing() {
    const CALLERS: usize = 64;
    const EACH: usize = 15;
    let redis = Redis::start();
    let all = three(&redis).await;
    let mut tasks = Vec::new();
    for i in 0..CALLERS {
        let mut c = client(all[i % 3].addr).await;
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..EACH {
                let req = UpdateSessionRequest {
                    session_id: "ops-3".into(),
                    ops: vec![FieldOp {
                        field: "n".into(),
                        op: Some(field_op::Op::Increment(1)),
                    }],
                    ..Default::default()
                };
                let w = c.update_session(req).await.unwrap().into_inner();
                let v: u64 = std::str::from_utf8(&w.op_values[0])
                    .unwrap()
                    .parse()
                    .unwrap();
                seen.push(v);
            }
            seen
        }));
    }
    let mut seen = Vec::new();
    for t in tasks {
        seen.extend(t.await.unwrap());
    }
    seen.sort_unstable();
    assert_eq!(seen, (1..=(CALLERS * EACH) as u64).collect::<Vec<_>>());
    let mut c = all[1].client().await;
    let s = get(&mut c, "ops-3", Consistency::Strong)
        .await
        .unwrap()
        .session;
    assert_eq!(counter_of(s.as_ref()), (CALLERS * EACH) as u64);
}

/// A repeat of a write under an idempotency key on another instance gets
/// the first instance's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_hold_across_instances() {
    let redis = Redis::start();
    let all = three(&redis).await;
    let mut w = set("idem-3", &[("a", "1")]);
    w.idempotency_key = "evt-9".into();
    let mut answers = Vec::new();
    for i in &all {
        let mut c = i.client().await;
        answers.push(c.update_session(w.clone()).await.unwrap().into_inner());
    }
    assert_eq!(answers[0].version, 1);
    assert!(answers.iter().all(|a| *a == answers[0]));
}

/// An operator on B frees the lock of a holder whose instance A died: B
/// tells which instance granted it and who waits, the waiter on C gets the
/// lock at once (not when the minute-long lease would have run out), and
/// the dead holder's token is refused everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_unlock_frees_a_dead_instances_lock() {
    let redis = Redis::start();
    let [mut a, b, c] = three(&redis).await;
    let mut ca = a.client().await;
    ca.update_session(set("stuck", &[("n", "1")]))
        .await
        .unwrap();
    let held = lock(&mut ca, "stuck", 60_000, 0).await.unwrap();
    let a_id = a.stats().await.instance_id;
    a.kill();

    let mut cc = c.client().await;
    let waiter = tokio::spawn(async move { lock(&mut cc, "stuck", 10_000, 20_000).await });
    let mut admin = sessiond::pb::admin_service_client::AdminServiceClient::new(
        crate::support::connect(b.addr).await,
    );
    let ask = || InspectSessionRequest {
        namespace: String::new(),
        session_id: "stuck".into(),
    };
    let mut seen = admin.inspect_session(ask()).await.unwrap().into_inner();
    for _ in 0..500 {
        if seen.waiters == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        seen = admin.inspect_session(ask()).await.unwrap().into_inner();
    }
    assert_eq!(seen.waiters, 1, "the waiter on C is seen from B");
    let holder = seen.lock.unwrap();
    assert_eq!(holder.fencing_token, held.fencing_token);
    assert!(a_id.starts_with(&holder.instance), "{a_id} {holder:?}");

    let started = Instant::now();
    let forced = admin
        .force_unlock(ForceUnlockRequest {
            namespace: String::new(),
            session_id: "stuck".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(forced.released);
    assert_eq!(forced.released_fencing_token, held.fencing_token);
    let next = waiter.await.unwrap().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "granted by the release, not by the lease running out"
    );
    assert!(next.fencing_token > held.fencing_token);

    let mut cb = b.client().await;
    let mut late = set("stuck", &[("n", "late")]);
    late.lock_token = held.lock_token;
    let refused = cb.update_session(late).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    let mut w = set("stuck", &[("n", "2")]);
    w.lock_token = next.lock_token;
    w.release_lock = true;
    assert_eq!(cb.update_session(w).await.unwrap().into_inner().version, 2);
    assert_eq!(b.stats().await.locks.unwrap().forced_releases, 1);
}

/// One limit of 5 a second (a burst of 1) checked by 24 callers spread over
/// three instances for 3 s, each coming back when told to: GCRA on the
/// Redis clock admits at most 1 + 5 × the span of the checks, and callers
/// who always come back at their retry time leave it no idle unit, so the
/// count is 15 give or take what the span's ends (the callers' start and
/// stop on a shared host) add or cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_holds_across_instances() {
    const CALLERS: usize = 24;
    let redis = Redis::start();
    let all = three(&redis).await;
    let admitted = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs(3);
    let mut tasks = Vec::new();
    for i in 0..CALLERS {
        let mut c = client(all[i % 3].addr).await;
        let (admitted, refused) = (admitted.clone(), refused.clone());
        tasks.push(tokio::spawn(async move {
            let req = CheckRateRequest {
                session_id: "rate-3".into(),
                name: "replies".into(),
                per_second: Some(5.0),
                burst: Some(1),
                ..Default::default()
            };
            while Instant::now() < end {
                match c.check_rate(req.clone()).await {
                    Ok(_) => {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(status) => {
                        let info = tonic_types::StatusExt::get_details_error_info(&status)
                            .unwrap_or_else(|| panic!("{status:?}"));
                        assert_eq!(info.reason, "RATE_LIMITED");
                        refused.fetch_add(1, Ordering::Relaxed);
                        let after: u64 = info.metadata["retry_after_ms"].parse().unwrap();
                        tokio::time::sleep(Duration::from_millis(after)).await;
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (admitted, refused) = (
        admitted.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
    );
    assert!(
        (12..=18).contains(&admitted),
        "{admitted} admitted in 3 s at 5 a second ({refused} refused)"
    );
    assert!(
        refused > admitted,
        "the callers asked for more than the rate"
    );
}
