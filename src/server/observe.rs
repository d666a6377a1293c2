//! Every call, whatever its service: a request id (the caller's
//! `x-request-id` if it sent a sane one, else a fresh uuid) on a debug span
//! and on the answer, per-RPC counts and latency, and a log line for a
//! failed call. While traces are exported (`--otlp-endpoint`) the span is
//! the call's OpenTelemetry span instead (`telemetry::otlp::rpc_span`), a
//! child of the caller's `traceparent`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tonic::codegen::http;
use tracing::Instrument;

use crate::stats::{Method, Stats};
use crate::telemetry::{self, otlp};

type Resp = http::Response<tonic::body::Body>;

/// Health checks are not traced: probes would fill the traces with roots.
const HEALTH: &str = "/grpc.health.v1.Health/";
/// The span name of a call to a method sessiond does not have.
const UNKNOWN_PATH: &str = "/unknown/unknown";

pub fn layer(stats: Arc<Stats>) -> ObserveLayer {
    ObserveLayer { stats }
}

#[derive(Clone)]
pub struct ObserveLayer {
    stats: Arc<Stats>,
}

impl<S> tower::Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            stats: self.stats.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    stats: Arc<Stats>,
}

impl<S, B> tower::Service<http::Request<B>> for Observe<S>
where
    S: tower::Service<http::Request<B>, Response = Resp> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Resp;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Resp, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        // The clone that was polled ready serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let stats = self.stats.clone();
        let path = req.uri().path();
        let method = method_of(path);
        let request_id = request_id(&req);
        let name: std::borrow::Cow<'static, str> = match method {
            Some(m) => m.name().into(),
            None => path.to_owned().into(),
        };
        // A debug span: an enabled span costs every call a few per cent of
        // its CPU (allocated, formatted, entered on every poll), so at the
        // default level only the lines `log_call` writes name the call. The
        // exported span is paid for only while traces are exported.
        let traced = telemetry::exporting() && !path.starts_with(HEALTH);
        let span = if traced {
            // A caller's made-up path does not name a span: span names are
            // a closed set.
            let known = method.is_some() || path.starts_with("/grpc.reflection.");
            let span_path = if known { path } else { UNKNOWN_PATH };
            otlp::rpc_span(span_path, &request_id, req.headers())
        } else {
            tracing::debug_span!("rpc", method = %name, request_id = %request_id)
        };
        if let Some(m) = method {
            stats.rpc(m).started.fetch_add(1, Relaxed);
        }
        Box::pin(
            async move {
                let started = Instant::now();
                let mut resp = inner.call(req).await?;
                let code = resp
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok()?.parse::<i32>().ok())
                    .unwrap_or(0);
                if let Some(m) = method {
                    stats.rpc(m).finished(code, started.elapsed());
                }
                if traced {
                    otlp::record_status(&tracing::Span::current(), code);
                }
                log_call(code, started.elapsed(), &name, &request_id);
                if let Ok(mut v) = http::HeaderValue::from_str(&request_id) {
                    // Never indexed: a value used once would only churn both
                    // ends' HPACK tables.
                    v.set_sensitive(true);
                    resp.headers_mut().insert("x-request-id", v);
                }
                Ok(resp)
            }
            .instrument(span),
        )
    }
}

/// One line per call: an error for internal failures, a warning for
/// UNAVAILABLE, otherwise debug. The line names the call itself, as the
/// `rpc` span is debug only. DATA_LOSS (VERSION_LOST) stays at debug: any
/// caller can ask for a `min_version` the store never had, and a real loss
/// of Redis's data is logged once, as an error, where it is noticed.
fn log_call(code: i32, took: Duration, method: &str, request_id: &str) {
    let code = tonic::Code::from_i32(code);
    match code {
        tonic::Code::Internal | tonic::Code::Unknown => {
            tracing::error!(method, request_id, ?code, ?took, "call failed")
        }
        tonic::Code::Unavailable => {
            tracing::warn!(method, request_id, ?code, ?took, "call failed")
        }
        _ => tracing::debug!(?code, ?took, "call done"),
    }
}

fn method_of(path: &str) -> Option<Method> {
    let (service, name) = path.strip_prefix('/')?.split_once('/')?;
    Method::ALL
        .into_iter()
        .find(|m| m.name() == name && m.service() == service)
}

/// The caller's `x-request-id` when it is 1..=64 of `[A-Za-z0-9._-]` (safe
/// to log and to send back), else a fresh uuid.
fn request_id<B>(req: &http::Request<B>) -> String {
    let given = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok());
    match given {
        Some(id)
            if !id.is_empty()
                && id.len() <= 64
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) =>
        {
            id.to_owned()
        }
        _ => uuid::Uuid::new_v4().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id_for(given: Option<&str>) -> String {
        let mut req = http::Request::new(());
        if let Some(v) = given {
            let v = http::HeaderValue::from_bytes(v.as_bytes()).unwrap();
            req.headers_mut().insert("x-request-id", v);
        }
        request_id(&req)
    }

    fn is_uuid(s: &str) -> bool {
        uuid::Uuid::parse_str(s).is_ok()
    }

    #[test]
    fn sane_request_ids_are_kept() {
        for id in ["abc", "req-42_x.y", &"a".repeat(64)] {
            assert_eq!(id_for(Some(id)), id);
        }
    }

    #[test]
    fn other_request_ids_are_replaced() {
        let long = "a".repeat(65);
        for id in [
            "",
            "has space",
            "semi;colon",
            "ünï",
            "a\"b",
            "{}",
            long.as_str(),
        ] {
            let got = id_for(Some(id));
            assert!(is_uuid(&got), "{id:?} gave {got:?}");
        }
        assert!(is_uuid(&id_for(None)));
        assert_ne!(id_for(None), id_for(None), "fresh every time");
    }

    #[test]
    fn methods_are_known_by_path() {
        assert_eq!(
            method_of("/sessiond.v1.SessionService/GetSession"),
            Some(Method::GetSession)
        );
        assert_eq!(
            method_of("/sessiond.v1.AdminService/GetStats"),
            Some(Method::GetStats)
        );
        assert_eq!(method_of("/sessiond.v1.SessionService/Nope"), None);
        assert_eq!(method_of("/grpc.health.v1.Health/Check"), None);
    }
}
