//! The workloads: each caller's loop, the calls it makes, and the check
//! that every acknowledged increment is in the store at the end.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use bytes::Bytes;
use sessiond::pb::session_service_client::SessionServiceClient;
use sessiond::pb::*;
use sessiond::stats::Histogram;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use super::peers::Peer;
use super::{Args, Chan, Report, openloop};

/// Shared by the callers of one workload.
pub(crate) struct Run {
    pub(crate) stop: AtomicBool,
    ops: AtomicU64,
    latency: Histogram,
    /// Open loop: how late each request went out after it was due (the
    /// bench's own timer and scheduling), part of its latency.
    lag: Histogram,
    /// Open loop: how late the schedule's thread handed each request over
    /// (the part of `lag` before the runtime started its task).
    handover: Histogram,
    errors: parking_lot::Mutex<BTreeMap<String, u64>>,
    /// Acknowledged increments, per session index.
    pub(crate) acked: Vec<AtomicU64>,
    pub(crate) prefix: String,
    value: Bytes,
    pub(crate) sessions: usize,
    created: AtomicU64,
    /// The burst workloads: messages sent, and answered by a grant (its own
    /// and the payloads it carried) whose write was acknowledged.
    sent: AtomicU64,
    answered: AtomicU64,
}

impl Run {
    pub(crate) fn error(&self, s: &tonic::Status) {
        self.error_named(&format!("{:?}", s.code()));
    }

    pub(crate) fn error_named(&self, name: &str) {
        *self.errors.lock().entry(name.to_owned()).or_default() += 1;
    }

    /// Records how late an open-loop request went out.
    pub(crate) fn sent_late(&self, lag: std::time::Duration) {
        self.lag.record_duration_us(lag);
    }

    /// Records how late the schedule handed an open-loop request over.
    pub(crate) fn handed_late(&self, lag: std::time::Duration) {
        self.handover.record_duration_us(lag);
    }

    /// Counts a call that succeeded, with its latency.
    pub(crate) fn done(&self, took: std::time::Duration) {
        self.latency.record_duration_us(took);
        self.ops.fetch_add(1, Relaxed);
    }

    pub(crate) fn id(&self, i: usize) -> String {
        format!("{}-{i}", self.prefix)
    }

    /// Counts an acknowledged increment of session `k`.
    pub(crate) fn ack(&self, k: usize) {
        if let Some(n) = self.acked.get(k) {
            n.fetch_add(1, Relaxed);
        }
    }
}

pub(crate) async fn run(args: &Args, workload: &str, chans: &[Chan]) -> anyhow::Result<Report> {
    let sessions = if workload.ends_with("hot") {
        1
    } else if workload == "watch" {
        args.sessions.clamp(1, super::watch::WATCHED_SESSIONS)
    } else {
        args.sessions
    };
    let prefix = format!("bench-{workload}-{}", uuid::Uuid::new_v4().simple());
    let run = Arc::new(Run::new(prefix, sessions, args.value_bytes));
    let first = chans
        .first()
        .ok_or_else(|| anyhow::anyhow!("no connection to drive"))?;
    let peer = Peer::of(workload, args).await?;
    match &peer {
        Some(peer) => peer.prepare(&run).await?,
        None if workload != "empty" && workload != "health" => prepare(&run, first).await?,
        None => {}
    }
    let started = Instant::now();
    let mut extra = String::new();
    if let Some(peer) = &peer {
        peer.drive(args, &run).await?;
    } else if workload == "watch" {
        extra = super::watch::drive(args, &run, chans).await?;
    } else if args.rate > 0.0 {
        openloop::drive(args, workload, chans, &run).await?;
    } else {
        closed_loop(args, workload, chans, &run).await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let check = match (&peer, workload) {
        (Some(peer), _) => Some(verdict(&run, peer.counters(&run).await?)),
        (None, "rmw" | "cas" | "hot" | "bot-mix" | "ops" | "ops-hot" | "watch") => {
            Some(check(&run, first).await?)
        }
        (None, "burst" | "burst-debounce") => Some(burst_check(&run, first).await?),
        _ => None,
    };
    let rate = if peer.is_none() { args.rate } else { 0.0 };
    let mut r = report(
        run,
        workload,
        rate,
        args.callers,
        chans.len(),
        seconds,
        check,
    )?;
    r.extra = extra;
    Ok(r)
}

impl Run {
    /// The run of a workload over `sessions` sessions named `<prefix>-<i>`,
    /// each written `value_bytes` of data by [`prepare`].
    pub(crate) fn new(prefix: String, sessions: usize, value_bytes: usize) -> Run {
        Run {
            stop: AtomicBool::new(false),
            ops: AtomicU64::new(0),
            latency: Histogram::default(),
            lag: Histogram::default(),
            handover: Histogram::default(),
            errors: Default::default(),
            acked: (0..sessions).map(|_| AtomicU64::new(0)).collect(),
            prefix,
            value: Bytes::from(vec![b'x'; value_bytes]),
            sessions,
            created: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            answered: AtomicU64::new(0),
        }
    }
}

/// `args.callers` callers, each sending its next request of `workload` when
/// its last one is answered, for `args.duration`.
pub(crate) async fn closed_loop(
    args: &Args,
    workload: &str,
    chans: &[Chan],
    run: &Arc<Run>,
) -> anyhow::Result<()> {
    let mut tasks = Vec::new();
    for (i, chan) in (0..args.callers).zip(chans.iter().cycle()) {
        let chan = chan.clone();
        let (run, workload) = (run.clone(), workload.to_owned());
        tasks.push(tokio::spawn(async move {
            caller(i, &workload, chan, &run).await
        }));
    }
    tokio::time::sleep(args.duration).await;
    run.stop.store(true, Relaxed);
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// The report of a finished run (its callers all returned).
pub(crate) fn report(
    run: Arc<Run>,
    workload: &str,
    rate: f64,
    callers: usize,
    connections: usize,
    seconds: f64,
    check: Option<String>,
) -> anyhow::Result<Report> {
    let run = Arc::try_unwrap(run).map_err(|_| anyhow::anyhow!("callers still running"))?;
    Ok(Report {
        workload: workload.to_owned(),
        rate,
        callers,
        connections,
        seconds,
        ops: run.ops.load(Relaxed),
        latency: run.latency,
        lag: run.lag,
        handover: run.handover,
        errors: run.errors.into_inner(),
        check,
        extra: String::new(),
    })
}

/// Creates the sessions the workload reads and increments, at counter 0, 64
/// at a time, and reads each once so that it is cached.
pub(crate) async fn prepare(run: &Arc<Run>, chan: &Chan) -> anyhow::Result<()> {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (run, next) = (run.clone(), next.clone());
        let mut c = SessionServiceClient::new(chan.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Relaxed) as usize;
                if i >= run.sessions {
                    return anyhow::Ok(());
                }
                let mut set = std::collections::HashMap::new();
                set.insert("n".to_owned(), Bytes::from_static(b"0"));
                set.insert("data".to_owned(), run.value.clone());
                let req = UpdateSessionRequest {
                    session_id: run.id(i),
                    set_fields: set,
                    ..Default::default()
                };
                c.update_session(req).await?;
                // Warm the cache, as a bot's first read would.
                c.get_session(GetSessionRequest {
                    session_id: run.id(i),
                    ..Default::default()
                })
                .await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// Sums the counters and compares with the acknowledged increments.
async fn check(run: &Run, chan: &Chan) -> anyhow::Result<String> {
    let mut c = SessionServiceClient::new(chan.clone());
    let mut counted = 0u64;
    for i in 0..run.sessions {
        counted += counter(&strong_read(&mut c, run.id(i)).await?);
    }
    Ok(verdict(run, counted))
}

/// Whether the counters hold every acknowledged increment.
fn verdict(run: &Run, counted: u64) -> String {
    let acked: u64 = run.acked.iter().map(|n| n.load(Relaxed)).sum();
    let verdict = if counted == acked {
        "ok"
    } else {
        "LOST UPDATES"
    };
    format!("{verdict}: counted {counted}, acknowledged {acked}")
}

/// A STRONG read; an absent session reads as empty.
async fn strong_read(
    c: &mut SessionServiceClient<Chan>,
    session_id: String,
) -> Result<Session, tonic::Status> {
    let req = GetSessionRequest {
        session_id,
        consistency: Consistency::Strong as i32,
        min_version: 0,
    };
    Ok(c.get_session(req)
        .await?
        .into_inner()
        .session
        .unwrap_or_default())
}

fn counter(s: &Session) -> u64 {
    s.fields
        .get("n")
        .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
        .unwrap_or(0)
}

/// A small xorshift: callers pick sessions without sharing an RNG.
pub(crate) struct Rng(u64);

impl Rng {
    /// The generator of caller (or request) `i`.
    pub(crate) fn of(i: u64) -> Rng {
        Rng(0x9E37_79B9_7F4A_7C15 ^ (i + 1).wrapping_mul(0x2545_F491_4F6C_DD1D))
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

async fn caller(i: usize, workload: &str, chan: Chan, run: &Run) -> anyhow::Result<()> {
    let mut rng = Rng::of(i as u64);
    let mut clients = Clients::new(chan);
    while !run.stop.load(Relaxed) {
        let started = Instant::now();
        match once(workload, &mut rng, &mut clients, run).await? {
            Ok(()) => run.done(started.elapsed()),
            Err(s) => run.error(&s),
        }
    }
    Ok(())
}

/// What a caller talks to.
#[derive(Clone)]
pub(crate) struct Clients {
    health: HealthClient<Chan>,
    sessions: SessionServiceClient<Chan>,
}

impl Clients {
    pub(crate) fn new(chan: Chan) -> Clients {
        Clients {
            health: HealthClient::new(chan.clone()),
            sessions: SessionServiceClient::new(chan),
        }
    }
}

/// One request of `workload` (one cycle for rmw, cas and hot); an unknown
/// workload ends the run.
pub(crate) async fn once(
    workload: &str,
    rng: &mut Rng,
    clients: &mut Clients,
    run: &Run,
) -> anyhow::Result<Result<(), tonic::Status>> {
    let c = &mut clients.sessions;
    let k = rng.below(run.sessions);
    Ok(match workload {
        "empty" | "health" => clients
            .health
            .check(HealthCheckRequest::default())
            .await
            .map(drop),
        "read-cached" => read(c, run, k, Consistency::Cached).await,
        "read-strong" => read(c, run, k, Consistency::Strong).await,
        "rmw" | "hot" => rmw(c, run, k).await,
        "cas" => cas(c, run, k).await,
        "ops" | "ops-hot" => ops(c, run, k).await,
        "burst" => burst(c, run, k, TurnPolicy::LatestWins, 0).await,
        "burst-debounce" => burst(c, run, k, TurnPolicy::Debounce, BURST_QUIET_MS).await,
        "bot-mix" => match rng.below(100) {
            0..70 => read(c, run, k, Consistency::Cached).await,
            70..95 => rmw(c, run, k).await,
            _ => create(c, run).await,
        },
        other => anyhow::bail!("unknown workload {other}"),
    })
}

async fn read(
    c: &mut SessionServiceClient<Chan>,
    run: &Run,
    k: usize,
    consistency: Consistency,
) -> Result<(), tonic::Status> {
    let req = GetSessionRequest {
        session_id: run.id(k),
        consistency: consistency as i32,
        min_version: 0,
    };
    c.get_session(req).await.map(drop)
}

async fn rmw(c: &mut SessionServiceClient<Chan>, run: &Run, k: usize) -> Result<(), tonic::Status> {
    let id = run.id(k);
    let l = c
        .lock_session(LockSessionRequest {
            session_id: id.clone(),
            lease_ms: 5000,
            wait_ms: 30_000,
            rate_limit: None,
            ..Default::default()
        })
        .await?
        .into_inner();
    let n = l.session.as_ref().map_or(0, counter);
    let mut set = std::collections::HashMap::new();
    set.insert("n".to_owned(), Bytes::from((n + 1).to_string()));
    let req = UpdateSessionRequest {
        session_id: id,
        set_fields: set,
        lock_token: l.lock_token,
        release_lock: true,
        ..Default::default()
    };
    c.update_session(req).await?;
    run.ack(k);
    Ok(())
}

/// A bot's turn as field operations, one call and no lock: count the
/// message and keep it among the last 20.
async fn ops(c: &mut SessionServiceClient<Chan>, run: &Run, k: usize) -> Result<(), tonic::Status> {
    let req = UpdateSessionRequest {
        session_id: run.id(k),
        ops: vec![
            FieldOp {
                field: "n".into(),
                op: Some(field_op::Op::Increment(1)),
            },
            FieldOp {
                field: "history".into(),
                op: Some(field_op::Op::Append(AppendOp {
                    value: run.value.clone(),
                    keep_last: 20,
                })),
            },
        ],
        ..Default::default()
    };
    c.update_session(req).await?;
    run.ack(k);
    Ok(())
}

/// Messages in a burst, and the quiet period of `burst-debounce`.
const BURST: usize = 5;
const BURST_QUIET_MS: u32 = 20;

/// A chat's burst: `BURST` messages for session `k` at once, each a
/// LockSession with `policy` carrying the message as its payload. A granted
/// caller answers its own message and the payloads it carries in one turn:
/// adds their number to the counter and releases. The others end
/// SUPERSEDED, their messages carried on by a newer one (expected: not
/// errors). Every message is answered once (`burst_check`).
async fn burst(
    c: &mut SessionServiceClient<Chan>,
    run: &Run,
    k: usize,
    policy: TurnPolicy,
    debounce_ms: u32,
) -> Result<(), tonic::Status> {
    let id = run.id(k);
    let calls = (0..BURST).map(|i| {
        let (mut c, id) = (c.clone(), id.clone());
        let req = LockSessionRequest {
            session_id: id.clone(),
            lease_ms: 5000,
            wait_ms: 30_000,
            policy: policy as i32,
            debounce_ms,
            payload: Bytes::from(format!("message {i}")),
            ..Default::default()
        };
        async move {
            let l = match c.lock_session(req).await {
                Ok(l) => l.into_inner(),
                Err(s) if s.code() == tonic::Code::Aborted => return Ok(0),
                Err(s) => return Err(s),
            };
            let answered = 1 + l.superseded_payloads.len() as u64 + u64::from(l.superseded_dropped);
            let n = l.session.as_ref().map_or(0, counter);
            let mut set = std::collections::HashMap::new();
            set.insert("n".to_owned(), Bytes::from((n + answered).to_string()));
            c.update_session(UpdateSessionRequest {
                session_id: id,
                set_fields: set,
                lock_token: l.lock_token,
                release_lock: true,
                ..Default::default()
            })
            .await?;
            Ok(answered)
        }
    });
    run.sent.fetch_add(BURST as u64, Relaxed);
    let mut first_error = None;
    for outcome in futures::future::join_all(calls).await {
        match outcome {
            Ok(answered) => {
                run.answered.fetch_add(answered, Relaxed);
                if let Some(n) = run.acked.get(k) {
                    n.fetch_add(answered, Relaxed);
                }
            }
            Err(s) => first_error = first_error.or(Some(s)),
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// The counters against the acknowledged answers, and every message sent
/// against those answered.
async fn burst_check(run: &Run, chan: &Chan) -> anyhow::Result<String> {
    let counted = check(run, chan).await?;
    let (sent, answered) = (run.sent.load(Relaxed), run.answered.load(Relaxed));
    Ok(if sent == answered {
        format!("{counted}; messages sent {sent}, answered {answered}")
    } else {
        format!("UNANSWERED MESSAGES: sent {sent}, answered {answered}; {counted}")
    })
}

async fn cas(c: &mut SessionServiceClient<Chan>, run: &Run, k: usize) -> Result<(), tonic::Status> {
    let id = run.id(k);
    loop {
        let s = strong_read(c, id.clone()).await?;
        let mut set = std::collections::HashMap::new();
        set.insert("n".to_owned(), Bytes::from((counter(&s) + 1).to_string()));
        let req = UpdateSessionRequest {
            session_id: id.clone(),
            set_fields: set,
            expected_version: Some(s.version),
            ..Default::default()
        };
        match c.update_session(req).await {
            Ok(_) => break,
            Err(e) if e.code() == tonic::Code::Aborted => continue,
            Err(e) => return Err(e),
        }
    }
    run.ack(k);
    Ok(())
}

async fn create(c: &mut SessionServiceClient<Chan>, run: &Run) -> Result<(), tonic::Status> {
    let n = run.created.fetch_add(1, Relaxed);
    let mut set = std::collections::HashMap::new();
    set.insert("data".to_owned(), run.value.clone());
    let req = UpdateSessionRequest {
        session_id: format!("{}-new-{n}", run.prefix),
        set_fields: set,
        expected_version: Some(0),
        ..Default::default()
    };
    c.update_session(req).await.map(drop)
}
