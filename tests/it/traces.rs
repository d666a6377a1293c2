//! Traces: sessiond processes with `--otlp-endpoint` pointing at an OTLP
//! receiver in this test (`traces/receiver.rs`). A call made with a W3C
//! `traceparent` becomes a span of that trace, child of the caller's span,
//! with a child span for its store step and the lock wait as events on it;
//! log lines carry the trace id; the sampler follows the caller's decision;
//! and with no endpoint nothing is exported, whatever the environment says.

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use sessiond::pb::{Consistency, GetSessionRequest, LockSessionRequest};
use tonic_health::pb::health_client::HealthClient;

use crate::support::{Backend, Process, Redis, connect, free_port, lock, set, unlock};

mod receiver;

use receiver::{Receiver, attribute, events};

const SERVICE: &str = "sessiond.v1.SessionService";

/// A sessiond process and what it needs: its Redis or its file, and the
/// thread reading its stderr.
struct Sessiond {
    process: Process,
    log: std::thread::JoinHandle<String>,
    _redis: Option<Redis>,
    _dir: tempfile::TempDir,
}

impl Sessiond {
    fn start(backend: Backend, args: &[&str], env: &[(&str, &str)]) -> Sessiond {
        let dir = tempfile::tempdir().unwrap();
        let redis = (backend == Backend::Redis).then(Redis::start);
        let mut cmd = Process::command();
        cmd.args(args)
            .envs(env.iter().copied())
            .stderr(Stdio::piped());
        match &redis {
            Some(r) => cmd.args(["--redis-url", &r.url()]),
            None => cmd.arg("--db-path").arg(dir.path().join("s.redb")),
        };
        let mut process = Process::spawn(free_port(), cmd);
        let mut stderr = process.take_stderr().unwrap();
        let log = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Sessiond {
            process,
            log,
            _redis: redis,
            _dir: dir,
        }
    }

    /// SIGTERM; the drain must end well. Returns what it logged.
    fn stop(mut self) -> String {
        let status = self.process.terminate();
        let log = self.log.join().unwrap();
        assert!(status.success(), "{status}: {log}");
        log
    }
}

fn traced<T>(message: T, trace_id: &str, parent: &str, flags: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    let value = format!("00-{trace_id}-{parent}-{flags}");
    req.metadata_mut()
        .insert("traceparent", value.parse().unwrap());
    req.metadata_mut()
        .insert("tracestate", "vendor=opaque".parse().unwrap());
    req
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The one span of `trace_id` named `name`.
fn span<'a>(spans: &'a [Span], trace_id: &str, name: &str) -> &'a Span {
    let found: Vec<&Span> = spans
        .iter()
        .filter(|s| hex(&s.trace_id) == trace_id && s.name == name)
        .collect();
    assert_eq!(found.len(), 1, "{name} in trace {trace_id}: {spans:#?}");
    found[0]
}

async fn waiting_now(s: &Process) -> u64 {
    s.stats().await.locks.unwrap().waiting_now
}

/// An UpdateSession and a LockSession that waits, each with a
/// `traceparent`: their spans, their store steps and the wait's events.
async fn calls_become_child_spans(backend: Backend) {
    const T1: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const P1: &str = "00f067aa0ba902b7";
    const T2: &str = "0af7651916cd43dd8448eb211c80319c";
    const P2: &str = "b7ad6b7169203331";
    let receiver = Receiver::start().await;
    // Plain lines on one backend, JSON on the other: both carry the trace id.
    let format = match backend {
        Backend::Embedded => "plain",
        // Run on the two backends only (`on_both_backends!`): any other is
        // a Redis too.
        _ => "json",
    };
    let endpoint = receiver.endpoint();
    let args = [
        "--log-level",
        "warn,sessiond::server::observe=debug",
        "--log-format",
        format,
        "--otlp-endpoint",
        &endpoint,
    ];
    let sessiond = Sessiond::start(backend, &args, &[]);
    let s = &sessiond.process;
    let mut c = s.client().await;
    c.update_session(traced(set("t", &[("n", "1")]), T1, P1, "01"))
        .await
        .unwrap();

    let held = lock(&mut c, "t", 10_000, 0).await.unwrap();
    let mut c2 = s.client().await;
    let waiter = tokio::spawn(async move {
        let req = LockSessionRequest {
            session_id: "t".into(),
            lease_ms: 10_000,
            wait_ms: 10_000,
            rate_limit: None,
            ..Default::default()
        };
        c2.lock_session(traced(req, T2, P2, "01")).await
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while waiting_now(s).await != 1 {
        assert!(Instant::now() < deadline, "the waiter never queued");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    unlock(&mut c, "t", held.lock_token).await.unwrap();
    waiter.await.unwrap().unwrap();
    let log = sessiond.stop();
    let spans = receiver.spans();

    let (system, update_step, lock_step) = match backend {
        Backend::Embedded => ("redb", "redb update", "redb lock"),
        _ => ("redis", "redis update.lua", "redis lock.lua"),
    };
    let update = span(&spans, T1, &format!("{SERVICE}/UpdateSession"));
    assert_eq!(
        hex(&update.parent_span_id),
        P1,
        "the caller's span is its parent"
    );
    assert_eq!(update.kind, SpanKind::Server as i32);
    for (key, value) in [
        ("rpc.system", "grpc"),
        ("rpc.service", SERVICE),
        ("rpc.method", "UpdateSession"),
        ("rpc.grpc.status_code", "0"),
        ("sessiond.namespace", "default"),
    ] {
        assert_eq!(attribute(update, key).as_deref(), Some(value), "{key}");
    }
    let step = span(&spans, T1, update_step);
    assert_eq!(
        step.parent_span_id, update.span_id,
        "the store step is a child"
    );
    assert_eq!(attribute(step, "db.system").as_deref(), Some(system));

    let locked = span(&spans, T2, &format!("{SERVICE}/LockSession"));
    assert_eq!(hex(&locked.parent_span_id), P2);
    let step = span(&spans, T2, lock_step);
    assert_eq!(step.parent_span_id, locked.span_id);
    let wait = events(step);
    let expected: &[&str] = match backend {
        // The embedded store's actor answers the queued caller itself.
        Backend::Embedded => &["lock wait queued", "lock wait granted"],
        _ => &["lock wait queued", "lock wait woken", "lock wait granted"],
    };
    assert_eq!(wait, expected, "{step:#?}");

    // The caller's trace id is on the lines logged within its call.
    let line = log
        .lines()
        .find(|l| l.contains("call done") && l.contains(T1))
        .unwrap_or_else(|| panic!("no line of the call with its trace id: {log}"));
    match backend {
        Backend::Embedded => assert!(line.contains(&format!("trace_id={T1}")), "{line}"),
        _ => {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["span"]["trace_id"], T1, "{line}");
        }
    }
}

crate::on_both_backends!(calls_become_child_spans);

/// A ratio of 0 keeps no trace that starts here, and every trace whose
/// caller sampled it: the sampler is parent-based. Health checks are never
/// traced (probes would fill the traces), and a method sessiond does not
/// have does not name a span.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sampler_follows_the_callers_decision() {
    const SAMPLED: &str = "11111111111111111111111111111111";
    const NOT_SAMPLED: &str = "22222222222222222222222222222222";
    const HEALTH: &str = "44444444444444444444444444444444";
    const PARENT: &str = "1111111111111111";
    let receiver = Receiver::start().await;
    let endpoint = receiver.endpoint();
    let args = ["--otlp-endpoint", &endpoint, "--otlp-sample-ratio", "0"];
    let sessiond = Sessiond::start(Backend::Embedded, &args, &[]);
    let mut c = sessiond.process.client().await;
    c.update_session(set("r", &[("n", "1")])).await.unwrap();
    let get = || GetSessionRequest {
        session_id: "r".into(),
        consistency: Consistency::Strong as i32,
        min_version: 0,
    };
    c.get_session(traced(get(), SAMPLED, PARENT, "01"))
        .await
        .unwrap();
    c.get_session(traced(get(), NOT_SAMPLED, PARENT, "00"))
        .await
        .unwrap();
    let channel = connect(sessiond.process.addr).await;
    let check = tonic_health::pb::HealthCheckRequest {
        service: String::new(),
    };
    HealthClient::new(channel.clone())
        .check(traced(check, HEALTH, PARENT, "01"))
        .await
        .unwrap();
    // A path of the caller's making, in a sampled trace.
    let mut made_up = tonic::client::Grpc::new(channel);
    made_up.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/sessiond.v1.SessionService/CallerChosenName",
    );
    let codec = tonic_prost::ProstCodec::<GetSessionRequest, ()>::default();
    let answer = made_up
        .unary(traced(get(), SAMPLED, PARENT, "01"), path, codec)
        .await;
    assert_eq!(answer.unwrap_err().code(), tonic::Code::Unimplemented);
    sessiond.stop();
    let spans = receiver.spans();
    span(&spans, SAMPLED, &format!("{SERVICE}/GetSession"));
    span(&spans, SAMPLED, "redb read");
    span(&spans, SAMPLED, "unknown/unknown");
    assert!(!spans.iter().any(|s| s.name.contains("CallerChosenName")));
    let traces: Vec<String> = spans.iter().map(|s| hex(&s.trace_id)).collect();
    assert!(traces.iter().all(|t| t == SAMPLED), "{traces:?}");
}

/// Without `--otlp-endpoint` nothing is exported, even with the
/// OpenTelemetry SDK's own variables pointing at a receiver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_endpoint_nothing_is_exported() {
    let receiver = Receiver::start().await;
    let endpoint = receiver.endpoint();
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_TRACES_EXPORTER", "otlp"),
    ];
    let sessiond = Sessiond::start(Backend::Embedded, &[], &env);
    let mut c = sessiond.process.client().await;
    let trace = "33333333333333333333333333333333";
    c.update_session(traced(
        set("n", &[("n", "1")]),
        trace,
        "3333333333333333",
        "01",
    ))
    .await
    .unwrap();
    let log = sessiond.stop();
    assert_eq!(receiver.requests(), 0, "exported without an endpoint");
    assert!(!log.contains(trace), "{log}");
}
