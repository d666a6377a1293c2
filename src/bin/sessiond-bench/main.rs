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
//! ops (the turn as field operations: UpdateSession incrementing the counter
//! and appending to a list, no lock), ops-hot (ops, every caller on one
//! session), bot-mix (70% cached reads, 25% locked rmw, 5% new sessions),
//! burst (a chat's burst: 5 LockSessions at once on one session with
//! LATEST_WINS, each carrying its message; a grant answers its own and the
//! ones it carries, and every message sent must be answered once),
//! burst-debounce (the same with DEBOUNCE, a 20 ms quiet period),
//! health (the empty RPC through sessiond's own stack: its health service),
//! empty (the baseline alone); and the locked turn against sessiond's peers,
//! in the same run: etcd-rmw, etcd-hot, redis-lock-rmw, redis-lock-hot
//! (`peers.rs`); watch (increments while `--watchers` WatchSession
//! streams watch the sessions: the fan-out latency from a write's
//! acknowledgement to each watcher's receipt, `watch.rs`).
//!
//! With `--memory`, it measures what cached sessions cost the server
//! (`memory.rs`) instead.
//!
//! With `--rate`, sessiond's workloads run open-loop (`openloop.rs`):
//! requests on a fixed schedule, latency from the time each was due.
//!
//! `--target` takes several addresses (instances on one Redis): the
//! connections are spread over them in turn.

// No unwrap, expect, panic, unreachable or unchecked indexing: a failed call
// is counted by its code, anything else ends the run with an error.
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
use std::time::{Duration, Instant};

use clap::Parser;
use sessiond::stats::Histogram;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Server};
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

mod memory;
mod openloop;
mod peers;
mod watch;
mod workloads;

use workloads::run;

#[derive(Debug, Parser)]
#[command(name = "sessiond-bench", about = "Load generator for sessiond")]
struct Args {
    /// sessiond to drive: one address, or several (comma-separated) instances
    /// of one store, the connections spread over them in turn.
    #[arg(long, default_value = "127.0.0.1:50051", value_delimiter = ',')]
    target: Vec<SocketAddr>,
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
    /// Requests per second, sent on a schedule whether or not earlier ones
    /// finished (open loop; latency counts from the scheduled time). 0: each
    /// caller sends its next request when its last one is answered.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Open loop: the nice value of the thread that keeps the schedule
    /// (e.g. -20, as root), so that other work on the machine does not
    /// make it late.
    #[arg(long, allow_hyphen_values = true)]
    sender_nice: Option<i32>,
    /// Talk TLS to sessiond, trusting this CA's certificate (PEM).
    #[arg(long)]
    tls_ca: Option<std::path::PathBuf>,
    /// With `--tls-ca`: the name sessiond's certificate is checked for.
    #[arg(long, default_value = "localhost")]
    tls_domain: String,
    /// Send `authorization: Bearer <token>` with every call to sessiond.
    #[arg(long)]
    token: Option<String>,
    /// etcd's client address, for the etcd-* workloads.
    #[arg(long)]
    etcd: Option<SocketAddr>,
    /// A Redis URL, for the redis-lock-* workloads.
    #[arg(long)]
    redis_lock: Option<String>,
    /// How long a redis-lock-* caller waits before it tries a taken lock again.
    #[arg(long, value_parser = sessiond::config::parse_duration, default_value = "1ms")]
    redis_lock_retry: Duration,
    /// WatchSession streams of the watch workload.
    #[arg(long, default_value_t = 100)]
    watchers: usize,
    /// sessiond's process id: each report then adds its resident memory.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Measure what cached sessions cost the server instead (`memory.rs`):
    /// fill `--sessions`, read its resident memory (needs `--server-pid`),
    /// then CACHED reads over all of them and over 1,000, in turn.
    #[arg(long)]
    memory: bool,
    /// With `--memory`: how many times each of the two read runs is made.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
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
    if args.memory {
        let chans = reach(&args.target, args.connections, &Reach::of(&args)?).await?;
        return memory::measure(&args, &chans).await;
    }
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
        let empty_chans = reach(&[baseline_addr], args.connections, &Reach::default()).await?;
        let mut before = run(&args, "empty", &empty_chans).await?;
        print_json(&before, None, None);
        let chans = reach(&args.target, args.connections, &Reach::of(&args)?).await?;
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

/// A connection to sessiond (or the baseline) that adds the bearer token
/// to every call when there is one.
pub(crate) type Chan = InterceptedService<Channel, Bearer>;

/// `authorization: Bearer <token>` (`--token`), or nothing.
#[derive(Clone, Default)]
pub(crate) struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// How the bench reaches sessiond: TLS or not, a token or not.
#[derive(Clone, Default)]
pub(crate) struct Reach {
    tls: Option<ClientTlsConfig>,
    bearer: Bearer,
}

impl Reach {
    fn of(args: &Args) -> anyhow::Result<Reach> {
        let tls = match &args.tls_ca {
            Some(ca) => Some(
                ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(std::fs::read(ca)?))
                    .domain_name(args.tls_domain.clone()),
            ),
            None => None,
        };
        let bearer = match &args.token {
            Some(t) => Bearer(Some(format!("Bearer {t}").parse()?)),
            None => Bearer(None),
        };
        Ok(Reach { tls, bearer })
    }
}

/// `n` plaintext connections (at least one per address), spread over
/// `addrs` in turn.
pub(crate) async fn channels(addrs: &[SocketAddr], n: usize) -> anyhow::Result<Vec<Channel>> {
    connect(addrs, n, None).await
}

/// As [`channels`], reached as `how` says.
async fn reach(addrs: &[SocketAddr], n: usize, how: &Reach) -> anyhow::Result<Vec<Chan>> {
    let chans = connect(addrs, n, how.tls.as_ref()).await?;
    Ok(chans
        .into_iter()
        .map(|c| InterceptedService::new(c, how.bearer.clone()))
        .collect())
}

/// `n` connections (at least one per address), spread over `addrs` in turn,
/// over TLS if `tls` is given.
async fn connect(
    addrs: &[SocketAddr],
    n: usize,
    tls: Option<&ClientTlsConfig>,
) -> anyhow::Result<Vec<Channel>> {
    let mut out = Vec::new();
    for addr in addrs.iter().cycle().take(n.max(addrs.len())) {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut endpoint = Channel::from_shared(format!("{scheme}://{addr}"))?.tcp_nodelay(true);
        if let Some(tls) = tls {
            endpoint = endpoint.tls_config(tls.clone())?;
        }
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
    /// The open loop's requests per second; 0 for a closed loop.
    rate: f64,
    callers: usize,
    connections: usize,
    seconds: f64,
    ops: u64,
    latency: Histogram,
    /// Open loop only: how late requests went out (included in `latency`).
    lag: Histogram,
    /// Open loop only: how late the schedule's thread handed requests over
    /// (the part of `lag` before the runtime ran them).
    handover: Histogram,
    errors: BTreeMap<String, u64>,
    check: Option<String>,
    /// More JSON members of the workload's own (the watch workload's).
    extra: String,
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
    let p999 = r.latency.quantile(0.999);
    let throughput = r.ops as f64 / r.seconds;
    let mut json = format!(
        "{{\"workload\":\"{}\",\"callers\":{},\"connections\":{},\"seconds\":{:.2},\"ops\":{},\"throughput\":{:.1},\
         \"latency_us\":{{\"p50\":{},\"p95\":{},\"p99\":{},\"p999\":{},\"max\":{}}}",
        r.workload,
        r.callers,
        r.connections,
        r.seconds,
        r.ops,
        throughput,
        s.p50,
        p95,
        s.p99,
        p999,
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
    if r.rate > 0.0 {
        let (lag, handover) = (r.lag.summary(), r.handover.summary());
        json.push_str(&format!(
            ",\"rate\":{:.0},\"send_lag_us\":{{\"p50\":{},\"p99\":{},\"max\":{}}},\
             \"handover_lag_us\":{{\"p50\":{},\"p99\":{},\"max\":{}}}",
            r.rate, lag.p50, lag.p99, lag.max, handover.p50, handover.p99, handover.max
        ));
    }
    if let Some(c) = &r.check {
        json.push_str(&format!(",\"check\":\"{c}\""));
    }
    if !r.extra.is_empty() {
        json.push(',');
        json.push_str(&r.extra);
    }
    json.push('}');
    println!("{json}");
}
