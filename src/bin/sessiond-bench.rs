//! Load generator: drives a running sessiond with N concurrent callers over M
//! HTTP/2 connections for a set time, and the same load against an empty
//! unary RPC (a baseline server it starts itself, same tonic settings), then
//! prints one JSON object per workload with throughput, latency percentiles,
//! errors by code, the ratio to the baseline (run before and after each
//! workload) and, for the write workloads, a check that no acknowledged
//! update was lost.
//!
//!   sessiond-bench --target 127.0.0.1:50051 --workloads read-cached,rmw,hot
//!
//! Workloads: read-cached, read-strong, rmw (LockSession then UpdateSession
//! with release), cas (GetSession STRONG then UpdateSession with
//! expected_version, retried), hot (rmw, every caller on one session),
//! bot-mix (70% cached reads, 25% locked rmw, 5% new sessions), health (the
//! empty RPC through sessiond's own stack: its health service), empty (the
//! baseline alone).

// Nothing on a request path panics: no unwrap, expect, panic, unreachable or
// unchecked indexing outside tests; a local `allow` names its reason.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::unreachable,
        clippy::indexing_slicing
    )
)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use sessiond::pb::session_service_client::SessionServiceClient;
use sessiond::pb::*;
use sessiond::stats::Histogram;
use tonic::transport::{Channel, Server};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

#[derive(Debug, Parser)]
#[command(name = "sessiond-bench", about = "Load generator for sessiond")]
struct Args {
    /// sessiond to drive.
    #[arg(long, default_value = "127.0.0.1:50051")]
    target: SocketAddr,
    /// Comma-separated workloads.
    #[arg(
        long,
        default_value = "read-cached,read-strong,rmw,cas,hot,bot-mix",
        value_delimiter = ','
    )]
    workloads: Vec<String>,
    /// Concurrent callers.
    #[arg(long, default_value_t = 64)]
    callers: usize,
    /// HTTP/2 connections the callers share.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// How long each workload runs.
    #[arg(long, value_parser = sessiond::config::parse_duration, default_value = "10s")]
    duration: Duration,
    /// Distinct sessions the read and rmw workloads spread over.
    #[arg(long, default_value_t = 1000)]
    sessions: usize,
    /// Bytes of data per session.
    #[arg(long, default_value_t = 256)]
    value_bytes: usize,
    /// sessiond's process id: each report then adds its resident memory.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Serve the empty baseline RPC on this address and do nothing else
    /// (used by the bench itself, in a process of its own).
    #[arg(long, hide = true)]
    serve_baseline: Option<SocketAddr>,
}

/// The empty unary RPC: a health check that answers at once.
struct Empty;

#[tonic::async_trait]
impl Health for Empty {
    async fn check(
        &self,
        _: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<HealthCheckResponse>, tonic::Status> {
        Ok(tonic::Response::new(HealthCheckResponse { status: 1 }))
    }
    type WatchStream = futures::stream::Empty<Result<HealthCheckResponse, tonic::Status>>;
    async fn watch(
        &self,
        _: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<Self::WatchStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("no watch"))
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if let Some(addr) = args.serve_baseline {
        // The same transport settings sessiond's server uses.
        return rt.block_on(async move {
            Server::builder()
                .tcp_nodelay(true)
                .http2_keepalive_interval(Some(Duration::from_secs(30)))
                .add_service(HealthServer::new(Empty))
                .serve(addr)
                .await
                .map_err(Into::into)
        });
    }
    rt.block_on(bench(args))
}

async fn bench(args: Args) -> anyhow::Result<()> {
    // The baseline runs in a process of its own, as sessiond does.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let baseline_addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let mut baseline = std::process::Command::new(std::env::current_exe()?)
        .args(["--serve-baseline", &baseline_addr.to_string()])
        .spawn()?;
    let result = async {
        // The machine's speed drifts (it is shared): the baseline runs before
        // and after every workload, and each workload is compared with the
        // mean of the two runs around it.
        let empty_chans = channels(baseline_addr, args.connections).await?;
        let mut before = run(&args, "empty", &empty_chans).await?;
        print_json(&before, None, None);
        let chans = channels(args.target, args.connections).await?;
        for w in args.workloads.iter().filter(|w| *w != "empty") {
            let r = run(&args, w, &chans).await?;
            let after = run(&args, "empty", &empty_chans).await?;
            print_json(&r, Some(Baseline::around(&before, &after)), args.server_pid);
            print_json(&after, None, None);
            before = after;
        }
        anyhow::Ok(())
    }
    .await;
    let _ = baseline.kill();
    let _ = baseline.wait();
    result
}

async fn channels(addr: SocketAddr, n: usize) -> anyhow::Result<Vec<Channel>> {
    let mut out = Vec::new();
    for _ in 0..n {
        let endpoint = Channel::from_shared(format!("http://{addr}"))?.tcp_nodelay(true);
        let started = Instant::now();
        out.push(loop {
            match endpoint.connect().await {
                Ok(c) => break c,
                Err(e) if started.elapsed() > Duration::from_secs(10) => return Err(e.into()),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        });
    }
    Ok(out)
}

struct Report {
    workload: String,
    callers: usize,
    connections: usize,
    seconds: f64,
    ops: u64,
    latency: Histogram,
    errors: BTreeMap<String, u64>,
    check: Option<String>,
}

/// Shared by the callers of one workload.
struct Run {
    stop: AtomicBool,
    ops: AtomicU64,
    latency: Histogram,
    errors: parking_lot::Mutex<BTreeMap<String, u64>>,
    /// Acknowledged increments, per session index.
    acked: Vec<AtomicU64>,
    prefix: String,
    value: Bytes,
    sessions: usize,
    created: AtomicU64,
}

impl Run {
    fn error(&self, s: &tonic::Status) {
        *self
            .errors
            .lock()
            .entry(format!("{:?}", s.code()))
            .or_default() += 1;
    }

    fn id(&self, i: usize) -> String {
        format!("{}-{i}", self.prefix)
    }

    /// Counts an acknowledged increment of session `k`.
    fn ack(&self, k: usize) {
        if let Some(n) = self.acked.get(k) {
            n.fetch_add(1, Relaxed);
        }
    }
}

async fn run(args: &Args, workload: &str, chans: &[Channel]) -> anyhow::Result<Report> {
    let sessions = if workload == "hot" { 1 } else { args.sessions };
    let run = Arc::new(Run {
        stop: AtomicBool::new(false),
        ops: AtomicU64::new(0),
        latency: Histogram::default(),
        errors: Default::default(),
        acked: (0..sessions).map(|_| AtomicU64::new(0)).collect(),
        prefix: format!("bench-{workload}-{}", uuid::Uuid::new_v4().simple()),
        value: Bytes::from(vec![b'x'; args.value_bytes]),
        sessions,
        created: AtomicU64::new(0),
    });
    let first = chans
        .first()
        .ok_or_else(|| anyhow::anyhow!("no connection to drive"))?;
    if workload != "empty" && workload != "health" {
        prepare(&run, first).await?;
    }
    let started = Instant::now();
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
    let seconds = started.elapsed().as_secs_f64();
    let check = match workload {
        "rmw" | "cas" | "hot" | "bot-mix" => Some(check(&run, first).await?),
        _ => None,
    };
    let run = Arc::try_unwrap(run).map_err(|_| anyhow::anyhow!("callers still running"))?;
    Ok(Report {
        workload: workload.to_owned(),
        callers: args.callers,
        connections: chans.len(),
        seconds,
        ops: run.ops.load(Relaxed),
        latency: run.latency,
        errors: run.errors.into_inner(),
        check,
    })
}

/// Creates the sessions the workload reads and increments, at counter 0, 64
/// at a time, and reads each once so that it is cached.
async fn prepare(run: &Arc<Run>, chan: &Channel) -> anyhow::Result<()> {
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
async fn check(run: &Run, chan: &Channel) -> anyhow::Result<String> {
    let mut c = SessionServiceClient::new(chan.clone());
    let (mut counted, mut acked) = (0u64, 0u64);
    for (i, n) in run.acked.iter().enumerate() {
        let s = strong_read(&mut c, run.id(i)).await?;
        counted += counter(&s);
        acked += n.load(Relaxed);
    }
    let verdict = if counted == acked {
        "ok"
    } else {
        "LOST UPDATES"
    };
    Ok(format!(
        "{verdict}: counted {counted}, acknowledged {acked}"
    ))
}

/// A STRONG read; an absent session reads as empty.
async fn strong_read(
    c: &mut SessionServiceClient<Channel>,
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
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

async fn caller(i: usize, workload: &str, chan: Channel, run: &Run) -> anyhow::Result<()> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (i as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D));
    let mut health = HealthClient::new(chan.clone());
    let mut c = SessionServiceClient::new(chan);
    while !run.stop.load(Relaxed) {
        let started = Instant::now();
        let k = rng.below(run.sessions);
        let ok = match workload {
            "empty" | "health" => health.check(HealthCheckRequest::default()).await.map(drop),
            "read-cached" => read(&mut c, run, k, Consistency::Cached).await,
            "read-strong" => read(&mut c, run, k, Consistency::Strong).await,
            "rmw" | "hot" => rmw(&mut c, run, k).await,
            "cas" => cas(&mut c, run, k).await,
            "bot-mix" => match rng.below(100) {
                0..70 => read(&mut c, run, k, Consistency::Cached).await,
                70..95 => rmw(&mut c, run, k).await,
                _ => create(&mut c, run).await,
            },
            other => anyhow::bail!("unknown workload {other}"),
        };
        match ok {
            Ok(()) => {
                run.latency.record_duration_us(started.elapsed());
                run.ops.fetch_add(1, Relaxed);
            }
            Err(s) => run.error(&s),
        }
    }
    Ok(())
}

async fn read(
    c: &mut SessionServiceClient<Channel>,
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

async fn rmw(
    c: &mut SessionServiceClient<Channel>,
    run: &Run,
    k: usize,
) -> Result<(), tonic::Status> {
    let id = run.id(k);
    let l = c
        .lock_session(LockSessionRequest {
            session_id: id.clone(),
            lease_ms: 5000,
            wait_ms: 30_000,
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

async fn cas(
    c: &mut SessionServiceClient<Channel>,
    run: &Run,
    k: usize,
) -> Result<(), tonic::Status> {
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

async fn create(c: &mut SessionServiceClient<Channel>, run: &Run) -> Result<(), tonic::Status> {
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

/// Resident memory of a process, in MiB (Linux).
fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// The empty RPC's figures a workload is compared with.
struct Baseline {
    throughput: f64,
    p99: f64,
}

impl Baseline {
    /// The mean of the runs just before and just after a workload.
    fn around(before: &Report, after: &Report) -> Baseline {
        let throughput = |r: &Report| r.ops as f64 / r.seconds;
        Baseline {
            throughput: (throughput(before) + throughput(after)) / 2.0,
            p99: (before.latency.summary().p99 + after.latency.summary().p99) / 2.0,
        }
    }
}

fn print_json(r: &Report, baseline: Option<Baseline>, server_pid: Option<u32>) {
    let s = r.latency.summary();
    let p95 = r.latency.quantile(0.95);
    let throughput = r.ops as f64 / r.seconds;
    let mut json = format!(
        "{{\"workload\":\"{}\",\"callers\":{},\"connections\":{},\"seconds\":{:.2},\"ops\":{},\"throughput\":{:.1},\
         \"latency_us\":{{\"p50\":{},\"p95\":{},\"p99\":{},\"max\":{}}}",
        r.workload,
        r.callers,
        r.connections,
        r.seconds,
        r.ops,
        throughput,
        s.p50,
        p95,
        s.p99,
        s.max
    );
    let errors: Vec<String> = r
        .errors
        .iter()
        .map(|(k, v)| format!("\"{k}\":{v}"))
        .collect();
    json.push_str(&format!(",\"errors\":{{{}}}", errors.join(",")));
    if let Some(b) = baseline {
        json.push_str(&format!(
            ",\"vs_empty\":{{\"throughput\":{:.3},\"p99\":{:.3}}}",
            throughput / b.throughput,
            if b.p99 > 0.0 { s.p99 / b.p99 } else { 0.0 }
        ));
    }
    if s.p50 > 0.0 {
        json.push_str(&format!(",\"p99_over_p50\":{:.2}", s.p99 / s.p50));
    }
    if let Some(rss) = server_pid.and_then(rss_mib) {
        json.push_str(&format!(",\"server_rss_mib\":{rss:.1}"));
    }
    if let Some(c) = &r.check {
        json.push_str(&format!(",\"check\":\"{c}\""));
    }
    json.push('}');
    println!("{json}");
}
