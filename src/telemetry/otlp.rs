//! Traces over OTLP/gRPC: the exporter and its sampler, the W3C trace
//! context taken from a call's headers, and the spans sessiond makes: `rpc`
//! (one per call, `server/observe.rs`), `store` (its step in the store,
//! `store.rs`) and the lock-wait events on it. None of this runs while
//! [`super::exporting`] is false.

use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tonic::codegen::http::HeaderMap;
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::registry::LookupSpan;

use crate::config::OtlpSettings;

/// The target of the lock-wait events: they become events of the span they
/// happen in, and reach the log only at debug level.
pub const LOCK_WAIT: &str = "sessiond::lock_wait";

/// The exporter (batches sent from a thread of its own; its connection is
/// made lazily on the current tokio runtime) and a parent-based ratio
/// sampler: a call whose `traceparent` carries a sampling decision follows
/// it, a trace that starts here is kept with `sample_ratio`.
pub fn provider(settings: &OtlpSettings) -> Result<SdkTracerProvider, String> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(settings.endpoint.clone())
        .build()
        .map_err(|e| format!("--otlp-endpoint {}: {e}", settings.endpoint))?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(settings.service_name.clone())
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            settings.sample_ratio,
        ))))
        .with_resource(resource)
        .build())
}

/// The layer that turns sessiond's `rpc` and `store` spans, and the
/// lock-wait events, into OpenTelemetry spans; nothing else is exported.
pub fn layer<S>(provider: &SdkTracerProvider) -> impl Layer<S> + Send + Sync + use<S>
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    let tracer = provider.tracer("sessiond");
    tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_tracked_inactivity(false)
        .with_filter(filter_fn(|meta| {
            if meta.is_span() {
                meta.target().starts_with("sessiond")
                    && matches!(meta.name(), "rpc" | "store")
                    && *meta.level() <= tracing::Level::INFO
            } else {
                meta.target() == LOCK_WAIT
            }
        }))
}

/// The span of one call: rpc.* attributes, the namespace (`default` until
/// `authenticate` knows better), the status code once it is known, and the
/// caller's trace context as its parent. Its `trace_id` field puts the trace
/// id on every line logged within the call.
pub fn rpc_span(path: &str, request_id: &str, headers: &HeaderMap) -> tracing::Span {
    let full = path.strip_prefix('/').unwrap_or(path);
    let (service, method) = full.split_once('/').unwrap_or((full, ""));
    // The target of the debug span it replaces, so that a log filter names
    // both alike.
    let span = tracing::info_span!(
        target: "sessiond::server::observe",
        "rpc",
        otel.name = full,
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = method,
        rpc.grpc.status_code = tracing::field::Empty,
        sessiond.namespace = crate::session::DEFAULT_NAMESPACE,
        request_id,
        trace_id = tracing::field::Empty,
    );
    let parent = TraceContextPropagator::new().extract(&Headers(headers));
    let _ = span.set_parent(parent);
    let trace_id = span.context().span().span_context().trace_id();
    if trace_id != opentelemetry::trace::TraceId::INVALID {
        span.record("trace_id", tracing::field::display(trace_id));
    }
    span
}

/// Records how the call ended on its span: the gRPC status code, and an
/// error status for the codes that mean the server failed (OpenTelemetry's
/// rule for gRPC servers).
pub fn record_status(span: &tracing::Span, code: i32) {
    span.record("rpc.grpc.status_code", code);
    // UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS.
    if matches!(code, 2 | 4 | 12 | 13 | 14 | 15) {
        span.record("otel.status_code", "error");
    }
}

/// The span of a call's step in the store, named after what ran there
/// (`redis update.lua`, `redb update`, ...).
pub fn store_span(name: &'static str, system: &'static str) -> tracing::Span {
    tracing::info_span!(target: "sessiond::store", "store", otel.name = name, db.system = system)
}

/// A step of a lock wait, as an event of the span it happens in.
#[derive(Debug, Clone, Copy)]
pub enum LockWait {
    /// The caller joined the lock's queue.
    Queued,
    /// Woken by a release (or its own retry timer) to try again.
    Woken,
    Granted,
    TimedOut,
}

pub fn lock_wait(step: LockWait) {
    match step {
        LockWait::Queued => tracing::debug!(target: LOCK_WAIT, "lock wait queued"),
        LockWait::Woken => tracing::debug!(target: LOCK_WAIT, "lock wait woken"),
        LockWait::Granted => tracing::debug!(target: LOCK_WAIT, "lock wait granted"),
        LockWait::TimedOut => tracing::debug!(target: LOCK_WAIT, "lock wait timed out"),
    }
}

/// A call's headers as the propagator reads them.
struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}
