//! Live fuzzer: sends generated SessionService requests to a running
//! sessiond over real gRPC streams (the message bytes are ours: protobuf
//! built with every field at and beyond its limits, the same mutated, and
//! random bytes), while a canary writes and reads STRONG every 100 ms. It
//! prints one JSON object (answers by code and reason, failures, the
//! canary's p99) and exits 1 if any answer was INTERNAL, UNKNOWN,
//! UNAVAILABLE or no gRPC status at all, or if the canary saw an error.
//!
//!   sessiond-fuzz --target 127.0.0.1:50051 --requests 1000000 --seed 7

// No unwrap, expect, panic, unreachable or unchecked indexing: a failure is
// counted and reported, not a crash of the fuzzer.
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
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use parking_lot::Mutex;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

mod codec;
mod generate;

use codec::RawCodec;
use generate::{Rng, request};

#[derive(Debug, Parser)]
#[command(
    name = "sessiond-fuzz",
    about = "Sends generated requests to a running sessiond"
)]
struct Args {
    /// The sessiond to fuzz.
    #[arg(long, default_value = "127.0.0.1:50051")]
    target: SocketAddr,
    /// Requests to send in all.
    #[arg(long, default_value_t = 10_000)]
    requests: u64,
    /// Callers at once.
    #[arg(long, default_value_t = 16)]
    concurrency: u64,
    /// HTTP/2 connections the callers share.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Seed of the generator (a run is repeatable up to scheduling).
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// What the run saw.
#[derive(Default)]
struct Tally {
    codes: BTreeMap<String, u64>,
    reasons: BTreeMap<String, u64>,
    failures: u64,
    samples: Vec<String>,
}

impl Tally {
    fn record(&mut self, method: &str, mode: &str, body: &[u8], status: Option<&tonic::Status>) {
        let code = status.map_or(Code::Ok, tonic::Status::code);
        *self.codes.entry(format!("{code:?}")).or_default() += 1;
        if let Some(info) = status.and_then(|s| s.get_details_error_info()) {
            *self.reasons.entry(info.reason).or_default() += 1;
        }
        if matches!(code, Code::Internal | Code::Unknown | Code::Unavailable) {
            self.failures += 1;
            if self.samples.len() < 10 {
                let head: Vec<String> = body.iter().take(48).map(|b| format!("{b:02x}")).collect();
                let message = status.map(tonic::Status::message).unwrap_or_default();
                self.samples.push(format!(
                    "{method} ({mode}): {code:?} {message:?} for {}",
                    head.concat()
                ));
            }
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let endpoint = Channel::from_shared(format!("http://{}", args.target))?;
    let mut channels = Vec::new();
    for _ in 0..args.connections.max(1) {
        channels.push(endpoint.connect().await?);
    }
    let canary_log = Arc::new(Mutex::new(CanaryLog::default()));
    let canary = tokio::spawn(canary(endpoint.connect().await?, canary_log.clone()));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let sent = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..args.concurrency.max(1) {
        let Some(channel) = channels.get(w as usize % channels.len()).cloned() else {
            continue;
        };
        let (tally, sent) = (tally.clone(), sent.clone());
        let mut rng = Rng::new(args.seed.wrapping_mul(1_000_003).wrapping_add(w));
        let total = args.requests;
        workers.spawn(async move {
            let mut grpc = tonic::client::Grpc::new(channel);
            while sent.fetch_add(1, Relaxed) < total {
                let r = request(&mut rng);
                let status = call(&mut grpc, r.method, r.body.clone()).await.err();
                tally
                    .lock()
                    .record(r.method, r.mode, &r.body, status.as_ref());
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done?;
    }
    let elapsed = started.elapsed();
    canary.abort();
    let canary = canary_log.lock().clone();
    let t = tally.lock();
    let mut took = canary.took.clone();
    took.sort();
    let p99 = took
        .get((took.len() * 99 / 100).min(took.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default();
    let report = object(&[
        ("requests", args.requests.to_string()),
        ("seed", args.seed.to_string()),
        ("seconds", format!("{:.1}", elapsed.as_secs_f64())),
        ("codes", map(&t.codes)),
        ("reasons", map(&t.reasons)),
        ("failures", t.failures.to_string()),
        ("samples", list(&t.samples)),
        ("canary_pairs", took.len().to_string()),
        ("canary_errors", canary.errors.len().to_string()),
        ("canary_first_errors", list(&canary.errors)),
        ("canary_p99_ms", format!("{:.1}", p99.as_secs_f64() * 1e3)),
    ]);
    println!("{report}");
    if t.failures > 0 || !canary.errors.is_empty() || took.is_empty() {
        std::process::exit(1);
    }
    Ok(())
}

/// One unary call with `body` as its message; DEADLINE_EXCEEDED after 2 s
/// (a lock wait the fuzzer asked for), a hang after 10 s is UNAVAILABLE.
async fn call(
    grpc: &mut tonic::client::Grpc<Channel>,
    method: &'static str,
    body: Bytes,
) -> Result<(), tonic::Status> {
    let path = format!("/sessiond.v1.SessionService/{method}");
    let path = path
        .parse()
        .map_err(|_| tonic::Status::unknown("bad path"))?;
    let mut req = tonic::Request::new(body);
    req.set_timeout(Duration::from_secs(2));
    let go = async {
        grpc.ready()
            .await
            .map_err(|e| tonic::Status::unavailable(format!("not ready: {e}")))?;
        grpc.unary(req, path, RawCodec).await.map(drop)
    };
    match tokio::time::timeout(Duration::from_secs(10), go).await {
        Ok(r) => r,
        Err(_) => Err(tonic::Status::unavailable("no answer within 10 s")),
    }
}

#[derive(Clone, Default)]
struct CanaryLog {
    took: Vec<Duration>,
    errors: Vec<String>,
}

/// A well-behaved caller: sets `beat` and reads it back STRONG every 100 ms.
async fn canary(channel: Channel, log: Arc<Mutex<CanaryLog>>) {
    use sessiond::pb::session_service_client::SessionServiceClient;
    use sessiond::pb::{Consistency, GetSessionRequest, UpdateSessionRequest};
    let mut c = SessionServiceClient::new(channel);
    for beat in 0u64.. {
        let started = Instant::now();
        let mut w = UpdateSessionRequest {
            session_id: "fuzz-canary".into(),
            ..Default::default()
        };
        w.set_fields
            .insert("beat".into(), Bytes::from(beat.to_string()));
        let read = GetSessionRequest {
            session_id: "fuzz-canary".into(),
            consistency: Consistency::Strong as i32,
            min_version: 0,
        };
        let outcome = match c.update_session(w).await {
            Err(e) => Err(format!("update: {e:?}")),
            Ok(_) => match c.get_session(read).await {
                Err(e) => Err(format!("read: {e:?}")),
                Ok(r) => {
                    let seen = r
                        .into_inner()
                        .session
                        .and_then(|s| s.fields.get("beat").cloned());
                    if seen == Some(Bytes::from(beat.to_string())) {
                        Ok(())
                    } else {
                        Err(format!("read {seen:?} after writing {beat}"))
                    }
                }
            },
        };
        {
            let mut log = log.lock();
            match outcome {
                Ok(()) => log.took.push(started.elapsed()),
                Err(e) if log.errors.len() < 10 => log.errors.push(e),
                Err(_) => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn map(m: &BTreeMap<String, u64>) -> String {
    let items: Vec<String> = m.iter().map(|(k, v)| format!("{}: {v}", json(k))).collect();
    format!("{{{}}}", items.join(", "))
}

fn list(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|s| json(s)).collect();
    format!("[{}]", items.join(", "))
}

/// A JSON object of already-encoded values.
fn object(fields: &[(&str, String)]) -> String {
    let items: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}: {v}", json(k)))
        .collect();
    format!("{{{}}}", items.join(", "))
}

/// `s` as a JSON string.
fn json(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
