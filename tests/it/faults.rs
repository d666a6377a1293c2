//! Faults with real processes: sessiond killed while it holds locks and has
//! waiters, redis-server killed and restarted (with and without AOF) or
//! frozen past a lease, and hundreds of callers giving up mid-wait and
//! mid-write. Every run records each client's calls and results
//! (`support::History`) and ends with the invariants checked: acknowledged
//! writes == what the store holds (within the writes of unknown outcome), no
//! write accepted from a stale holder, fences strictly increasing, no lock
//! held by nobody past its lease, no waiter stuck.
//!
//! `SESSIOND_FAULT_SECONDS` lengthens each run's phases (a soak; see
//! TESTING.md).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::support::{
    Backend, Client, History, Process, Redis, Server, Turn, client, final_state, free_port, lock,
};

/// How long each phase of a run lasts.
pub(crate) fn phase() -> Duration {
    let secs = std::env::var("SESSIOND_FAULT_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(1.5);
    Duration::from_secs_f64(secs)
}

pub(crate) fn ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("fault-{i}")).collect()
}

/// Clients making turns and readers making STRONG reads until stopped.
pub(crate) struct Load {
    history: History,
    stop: Arc<AtomicBool>,
    tasks: JoinSet<()>,
}

impl Load {
    /// `clients` callers spread over `sessions` and over the instances at
    /// `addrs`; a caller whose lock call fails moves to the next instance.
    pub(crate) async fn start(
        addrs: &[SocketAddr],
        sessions: &[String],
        clients: usize,
        turn: Turn,
    ) -> Load {
        let history = History::default();
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = JoinSet::new();
        let mut conns: Vec<Client> = Vec::new();
        for a in addrs {
            conns.push(client(*a).await);
        }
        for i in 0..clients {
            let (h, stop, mut conns) = (history.clone(), stop.clone(), conns.clone());
            let id = sessions[i % sessions.len()].clone();
            let mut at = i % conns.len();
            tasks.spawn(async move {
                while !stop.load(Relaxed) {
                    if !h.turn(&mut conns[at], &id, turn).await {
                        at = (at + 1) % conns.len();
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            });
        }
        for (i, id) in sessions.iter().enumerate() {
            let (h, stop, id) = (history.clone(), stop.clone(), id.clone());
            let mut c = conns[i % conns.len()].clone();
            tasks.spawn(async move {
                while !stop.load(Relaxed) {
                    h.read(&mut c, &id).await;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
        }
        Load {
            history,
            stop,
            tasks,
        }
    }

    pub(crate) async fn stop(mut self) -> History {
        self.stop.store(true, Relaxed);
        while self.tasks.join_next().await.is_some() {}
        self.history
    }
}

/// Checks every session's history against its final state, and that each
/// session can be locked again within `lease` (plus the dead-waiter bound):
/// no lock is held by nobody past its lease, no waiter stuck ahead.
pub(crate) async fn check_all(h: &History, c: &mut Client, sessions: &[String], lease: Duration) {
    for id in sessions {
        let end = final_state(c, id, Duration::from_secs(20)).await;
        h.check(id, end.as_ref());
        let wait = lease + Duration::from_secs(3);
        let started = Instant::now();
        let l = lock(c, id, 1000, wait.as_millis() as u32).await;
        assert!(
            l.is_ok(),
            "{id}: not lockable within {wait:?} after the run: {l:?}"
        );
        let _ = crate::support::unlock(c, id, l.unwrap().lock_token).await;
        eprintln!("{id}: free after {:?}", started.elapsed());
    }
}

/// The highest fence granted before `t`, and the lowest after it.
fn fences_around(h: &History, id: &str, t: Instant) -> (Option<u64>, Option<u64>) {
    let grants = h.grants(id);
    let before = grants.iter().filter(|g| g.at < t).map(|g| g.fence).max();
    let after = grants.iter().filter(|g| g.at > t).map(|g| g.fence).min();
    (before, after)
}

pub(crate) fn assert_fences_go_on(h: &History, sessions: &[String], t: Instant) {
    for id in sessions {
        if let (Some(before), Some(after)) = fences_around(h, id, t) {
            assert!(
                after > before,
                "{id}: fence {after} after the fault, {before} before it"
            );
        }
    }
}

async fn waiting_now(p: &Process) -> u64 {
    p.stats().await.locks.map_or(0, |l| l.waiting_now)
}

pub(crate) const LEASE: Duration = Duration::from_millis(1000);

pub(crate) fn turn() -> Turn {
    Turn::new(LEASE.as_millis() as u32, 10_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_sigkill_with_holders_and_waiters_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.redb");
    let args = ["--db-path", db.to_str().unwrap(), "--lease-min", "20ms"];
    let port = free_port();
    let mut p = Process::start(port, &args);
    let sessions = ids(3);
    let load = Load::start(&[p.addr], &sessions, 12, turn()).await;
    tokio::time::sleep(phase()).await;
    assert!(waiting_now(&p).await > 0, "waiters are queued when it dies");
    p.kill();
    let killed = Instant::now();
    let p = Process::start(port, &args);
    tokio::time::sleep(phase()).await;
    let h = load.stop().await;
    let mut c = p.client().await;
    check_all(&h, &mut c, &sessions, LEASE).await;
    assert_fences_go_on(&h, &sessions, killed);
    assert_eq!(waiting_now(&p).await, 0, "no waiter stuck");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_three_instances_killed_the_others_carry_on() {
    let redis = Redis::start();
    let url = redis.url();
    let args = ["--redis-url", url.as_str(), "--lease-min", "20ms"];
    let mut ps: Vec<Process> = (0..3).map(|_| Process::start(free_port(), &args)).collect();
    let addrs: Vec<SocketAddr> = ps.iter().map(|p| p.addr).collect();
    let sessions = ids(3);
    let load = Load::start(&addrs, &sessions, 15, turn()).await;
    tokio::time::sleep(phase()).await;
    assert!(
        waiting_now(&ps[0]).await > 0,
        "the victim has waiters queued"
    );
    ps[0].kill();
    let killed = Instant::now();
    // Its holders' leases run out and its waiters are pruned: the others go
    // on within a lease plus the dead-waiter bound.
    tokio::time::sleep(phase() + LEASE + Duration::from_secs(3)).await;
    let h = load.stop().await;
    let mut c = ps[1].client().await;
    check_all(&h, &mut c, &sessions, LEASE).await;
    for id in &sessions {
        let late = h
            .grants(id)
            .iter()
            .filter(|g| g.at > killed + LEASE + Duration::from_secs(3))
            .count();
        assert!(late > 0, "{id}: no grant after the instance died");
    }
    for p in &ps[1..] {
        assert_eq!(waiting_now(p).await, 0, "no waiter stuck");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_with_aof_always_loses_no_acknowledged_write() {
    let mut redis = Redis::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let url = redis.url();
    let args = ["--redis-url", url.as_str(), "--lease-min", "20ms"];
    let p = Process::start(free_port(), &args);
    let sessions = ids(2);
    let load = Load::start(&[p.addr], &sessions, 8, turn()).await;
    tokio::time::sleep(phase()).await;
    redis.stop(); // SIGKILL
    let restarted = Instant::now();
    redis.restart();
    tokio::time::sleep(phase() + LEASE).await;
    let h = load.stop().await;
    let mut c = p.client().await;
    check_all(&h, &mut c, &sessions, LEASE).await;
    assert_fences_go_on(&h, &sessions, restarted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_without_persistence_fences_still_go_on() {
    let mut redis = Redis::start();
    let url = redis.url();
    let args = ["--redis-url", url.as_str(), "--lease-min", "20ms"];
    let p = Process::start(free_port(), &args);
    let sessions = ids(2);
    let load = Load::start(&[p.addr], &sessions, 8, turn()).await;
    tokio::time::sleep(phase()).await;
    redis.stop(); // SIGKILL, and nothing on disk
    let restarted = Instant::now();
    redis.restart();
    tokio::time::sleep(phase() + LEASE).await;
    let h = load.stop().await;
    let mut c = p.client().await;
    for id in &sessions {
        let end = final_state(&mut c, id, Duration::from_secs(20)).await;
        let (acked, _) = h.counts(id);
        // The loss is visible: fewer increments than were acknowledged.
        assert!(
            crate::support::counter_of(end.as_ref()) < acked,
            "{id}: a restart without persistence lost nothing?"
        );
        // A caller that saw a version the store no longer has is told so,
        // not handed the newer incarnation's older version as current.
        let seen = h.highest_acked_version(id);
        let read = c
            .get_session(sessiond::pb::GetSessionRequest {
                session_id: id.clone(),
                consistency: sessiond::pb::Consistency::Strong as i32,
                min_version: seen,
            })
            .await;
        let still_there = end.as_ref().is_some_and(|s| s.version >= seen);
        if !still_there {
            let (code, reason) = crate::support::reason(read);
            assert!(
                (code, reason.as_str()) == (tonic::Code::DataLoss, "VERSION_LOST")
                    || (code, reason.as_str()) == (tonic::Code::NotFound, "SESSION_NOT_FOUND"),
                "{id}: min_version {seen}: {code:?} {reason}"
            );
        }
    }
    // sessiond noticed, and says so.
    let deadline = Instant::now() + Duration::from_secs(10);
    while p.stats().await.store.map_or(0, |s| s.data_losses) == 0 {
        assert!(Instant::now() < deadline, "the loss was not reported");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Whatever Redis forgot, a fence is never handed out twice.
    assert_fences_go_on(&h, &sessions, restarted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_paused_past_a_lease_accepts_no_stale_holder() {
    let redis = Redis::start();
    let url = redis.url();
    // The Redis timeout outlasts the pause: calls wait through it, and
    // writes of holders whose lease ran out meanwhile reach the scripts.
    let args = [
        "--redis-url",
        url.as_str(),
        "--lease-min",
        "20ms",
        "--redis-timeout",
        "10s",
    ];
    let p = Process::start(free_port(), &args);
    let sessions = ids(2);
    let lease = Duration::from_millis(300);
    let turn = Turn::new(lease.as_millis() as u32, 10_000);
    let load = Load::start(&[p.addr], &sessions, 8, turn).await;
    tokio::time::sleep(phase()).await;
    redis.pause();
    tokio::time::sleep(lease * 4).await;
    redis.resume();
    tokio::time::sleep(phase()).await;
    let h = load.stop().await;
    h.check_leases(lease);
    let mut c = p.client().await;
    check_all(&h, &mut c, &sessions, lease).await;
}

/// Hundreds of callers, each giving up at a random point: while queued for
/// the lock, or with its write in flight.
async fn callers_giving_up(backend: Backend) {
    let s = Server::start(backend, &[]).await;
    let sessions = ids(4);
    let lease = Duration::from_millis(500);
    let history = History::default();
    let mut tasks = JoinSet::new();
    let started = Instant::now();
    for i in 0..200u64 {
        let (h, id) = (
            history.clone(),
            sessions[i as usize % sessions.len()].clone(),
        );
        let mut c = s.client().await;
        tasks.spawn(async move {
            let mut k = i;
            while started.elapsed() < phase() {
                k = k
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let turn = Turn {
                    lease_ms: lease.as_millis() as u32,
                    wait_ms: 2000,
                    cancel_lock_after: (k % 3 == 0).then(|| Duration::from_millis(k % 40)),
                    cancel_write_after: (k % 5 == 0).then(|| Duration::from_micros(k % 2000)),
                };
                h.turn(&mut c, &id, turn).await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let mut c = s.client().await;
    check_all(&history, &mut c, &sessions, lease).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting = s.stats().await.locks.map_or(0, |l| l.waiting_now);
        if waiting == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{waiting} waiters stuck");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (acked, unknown) = sessions.iter().fold((0, 0), |(a, u), id| {
        let (a2, u2) = history.counts(id);
        (a + a2, u + u2)
    });
    eprintln!("{backend:?}: {acked} turns acknowledged, {unknown} of unknown outcome");
    assert!(acked > 0 && unknown > 0, "the run exercised both");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_callers_giving_up_leave_no_lock_or_waiter_behind() {
    callers_giving_up(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_callers_giving_up_leave_no_lock_or_waiter_behind() {
    callers_giving_up(Backend::Redis).await;
}

/// `--redis-timeout` is the bound on a Redis call, not the client
/// library's own shorter default: a pause shorter than it only delays calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_pause_shorter_than_the_timeout_only_delays_calls() {
    let s = Server::start_with(Some(Redis::start()), &["--redis-timeout", "5s"]).await;
    let mut c = s.client().await;
    c.update_session(crate::support::set("paused", &[("n", "1")]))
        .await
        .unwrap();
    let redis = s.redis.as_ref().unwrap();
    redis.pause();
    let mut c2 = c.clone();
    let write = tokio::spawn(async move {
        c2.update_session(crate::support::set("paused", &[("n", "2")]))
            .await
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    redis.resume();
    let written = write
        .await
        .unwrap()
        .expect("the write waits through the pause");
    assert_eq!(written.into_inner().version, 2);
}
