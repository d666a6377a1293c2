//! Prometheus metrics on a separate HTTP port (`/metrics`, text format
//! 0.0.4): the usual gRPC server names (`grpc_server_started_total`,
//! `grpc_server_handled_total`, `grpc_server_handling_seconds`) and sessiond's
//! own figures, read from the same counters as GetStats.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use axum::Router;
use axum::extract::State as Extract;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::error::Error;
use crate::state::State;
use crate::stats::{Histogram, Method};

/// Histogram bounds, in seconds.
const LATENCY_BOUNDS_S: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];
const WAIT_BOUNDS_S: [f64; 10] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0];

const CODES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// Binds `addr` and serves `/metrics` in the background.
pub async fn serve(
    addr: SocketAddr,
    state: Arc<State>,
) -> Result<tokio::task::JoinHandle<()>, Error> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Internal(format!("cannot listen for metrics on {addr}: {e}")))?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(state);
    tracing::info!(%addr, "metrics on /metrics");
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics endpoint failed");
        }
    }))
}

async fn metrics(Extract(state): Extract<Arc<State>>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        render(&state),
    )
}

/// The exposition text.
pub fn render(state: &State) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let s = &state.stats;
    let labels = |m: Method| {
        let service = if m == Method::GetStats {
            "sessiond.v1.AdminService"
        } else {
            "sessiond.v1.SessionService"
        };
        format!(
            "grpc_service=\"{service}\",grpc_method=\"{}\",grpc_type=\"unary\"",
            m.name()
        )
    };

    header(
        &mut out,
        "grpc_server_started_total",
        "counter",
        "RPCs started on the server.",
    );
    for m in Method::ALL {
        let _ = writeln!(
            out,
            "grpc_server_started_total{{{}}} {}",
            labels(m),
            s.rpc(m).started.load(Relaxed)
        );
    }
    header(
        &mut out,
        "grpc_server_handled_total",
        "counter",
        "RPCs completed on the server, by status code.",
    );
    for m in Method::ALL {
        for (code, n) in CODES.iter().zip(&s.rpc(m).codes) {
            let n = n.load(Relaxed);
            if n > 0 || *code == "OK" {
                let _ = writeln!(
                    out,
                    "grpc_server_handled_total{{{},grpc_code=\"{code}\"}} {n}",
                    labels(m)
                );
            }
        }
    }
    header(
        &mut out,
        "grpc_server_handling_seconds",
        "histogram",
        "Time to handle an RPC.",
    );
    for m in Method::ALL {
        histogram(
            &mut out,
            "grpc_server_handling_seconds",
            &labels(m),
            &s.rpc(m).latency_us,
            1e-6,
            &LATENCY_BOUNDS_S,
        );
    }

    let (entries, bytes) = state.cache.size();
    let counters: [(&str, &str, u64); 14] = [
        (
            "sessiond_cache_hits_total",
            "CACHED reads answered from the cache.",
            s.cache_hits.load(Relaxed),
        ),
        (
            "sessiond_cache_misses_total",
            "CACHED reads that went to the store.",
            s.cache_misses.load(Relaxed),
        ),
        (
            "sessiond_cache_evictions_total",
            "Cache entries evicted by size or age.",
            s.cache_evictions.load(Relaxed),
        ),
        (
            "sessiond_cache_invalidations_total",
            "Invalidations received from other instances.",
            s.cache_invalidations.load(Relaxed),
        ),
        (
            "sessiond_cache_bypasses_total",
            "CACHED reads sent to the store while the cache was not trusted.",
            s.cache_bypasses.load(Relaxed),
        ),
        (
            "sessiond_cache_feed_losses_total",
            "Times the invalidation feed was lost.",
            s.cache_feed_losses.load(Relaxed),
        ),
        (
            "sessiond_lock_acquisitions_total",
            "Locks granted.",
            s.lock_acquisitions.load(Relaxed),
        ),
        (
            "sessiond_lock_contended_total",
            "LockSession calls that found the lock held.",
            s.lock_contended.load(Relaxed),
        ),
        (
            "sessiond_lock_waits_granted_total",
            "Queued callers that got the lock.",
            s.lock_waits_granted.load(Relaxed),
        ),
        (
            "sessiond_lock_waits_abandoned_total",
            "Queued callers that gave up.",
            s.lock_waits_abandoned.load(Relaxed),
        ),
        (
            "sessiond_lock_lease_expiries_total",
            "Leases that ran out before release.",
            s.lock_lease_expiries.load(Relaxed),
        ),
        (
            "sessiond_lock_stale_token_total",
            "Calls refused with LOCK_LOST.",
            s.lock_stale_token.load(Relaxed),
        ),
        (
            "sessiond_lock_held_rejections_total",
            "Writes refused with LOCK_HELD.",
            s.lock_held_rejections.load(Relaxed),
        ),
        (
            "sessiond_store_errors_total",
            "Store operations that failed.",
            s.store_errors.load(Relaxed),
        ),
    ];
    for (name, help, value) in counters {
        header(&mut out, name, "counter", help);
        let _ = writeln!(out, "{name} {value}");
    }
    let (pool_size, pool_idle) = state.store.pool_status();
    let gauges: [(&str, &str, u64); 6] = [
        ("sessiond_cache_entries", "Sessions cached now.", entries),
        ("sessiond_cache_bytes", "Weighted bytes cached now.", bytes),
        (
            "sessiond_lock_waiting",
            "Callers queued for a lock on this instance now.",
            s.lock_waiting_now.load(Relaxed),
        ),
        (
            "sessiond_store_up",
            "1 when the last store operation succeeded.",
            u64::from(s.store_healthy.load(Relaxed)),
        ),
        (
            "sessiond_store_pool_connections",
            "Open Redis connections.",
            pool_size,
        ),
        (
            "sessiond_store_pool_idle",
            "Open Redis connections no call is using.",
            pool_idle,
        ),
    ];
    for (name, help, value) in gauges {
        header(&mut out, name, "gauge", help);
        let _ = writeln!(out, "{name} {value}");
    }
    header(
        &mut out,
        "sessiond_lock_wait_seconds",
        "histogram",
        "Time granted waiters spent queued.",
    );
    histogram(
        &mut out,
        "sessiond_lock_wait_seconds",
        "",
        &s.lock_wait_ms,
        1e-3,
        &WAIT_BOUNDS_S,
    );
    out
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Writes a histogram whose values were recorded in units of `unit` seconds.
fn histogram(
    out: &mut String,
    name: &str,
    labels: &str,
    h: &Histogram,
    unit: f64,
    bounds_s: &[f64],
) {
    let raw: Vec<u64> = bounds_s.iter().map(|b| (b / unit).round() as u64).collect();
    let (cumulative, count) = h.cumulative(&raw);
    let sep = if labels.is_empty() { "" } else { "," };
    for (bound, n) in bounds_s.iter().zip(cumulative) {
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
    let braces = if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    };
    let _ = writeln!(out, "{name}_sum{braces} {}", h.sum() as f64 * unit);
    let _ = writeln!(out, "{name}_count{braces} {count}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Cache;
    use crate::config::Config;
    use crate::session::Limits;
    use crate::stats::Stats;
    use crate::store::Store;

    /// A `State` on a fresh embedded store whose counters all hold distinct
    /// values, so a figure read from the wrong counter shows.
    async fn state(dir: &std::path::Path) -> State {
        let mut config = Config::defaults();
        config.db_path = dir.join("metrics.redb");
        let stats = Arc::new(Stats::default());
        let (store, _) = Store::open(&config, stats.clone()).await.unwrap();
        let cache = Cache::new(config.cache_max_bytes, config.cache_max_age, stats.clone());
        let state = State::new(store, cache, Limits::from_config(&config), stats, false);
        let s = &state.stats;
        for (i, m) in Method::ALL.into_iter().enumerate() {
            let i = i as u64;
            let rpc = s.rpc(m);
            rpc.started.store(10 + i, Relaxed);
            rpc.codes[0].store(7 + i, Relaxed);
            rpc.codes[(i as usize * 3) % 17].fetch_add(2, Relaxed);
            rpc.codes[16 - i as usize].fetch_add(1, Relaxed);
            for us in [300, 900 * (i + 1), 40_000 * i, 2_000_000 + i] {
                rpc.latency_us.record(us);
            }
        }
        let counters = [
            &s.cache_hits,
            &s.cache_misses,
            &s.cache_evictions,
            &s.cache_invalidations,
            &s.cache_bypasses,
            &s.cache_feed_losses,
            &s.lock_acquisitions,
            &s.lock_contended,
            &s.lock_waits_granted,
            &s.lock_waits_abandoned,
            &s.lock_waiting_now,
            &s.lock_lease_expiries,
            &s.lock_stale_token,
            &s.lock_held_rejections,
            &s.store_errors,
        ];
        for (i, c) in counters.into_iter().enumerate() {
            c.store(101 + i as u64 * 3, Relaxed);
        }
        s.store_healthy.store(true, Relaxed);
        for ms in [2, 7, 40, 900, 4_000, 70_000] {
            s.lock_wait_ms.record(ms);
        }
        state
    }

    /// Today's exposition text, byte for byte: names, labels, HELP and TYPE
    /// lines, order and number formatting are what scrapers and dashboards
    /// depend on. The cache and pool gauges read zero here (an empty cache,
    /// the embedded store); `metrics_move_with_calls` in the integration
    /// tests reads the cache figures of a live server.
    #[tokio::test]
    async fn render_is_the_golden_text() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(dir.path()).await;
        let golden = include_str!("../tests/it/golden/metrics.prom");
        let text = render(&state);
        for (i, (got, want)) in text.lines().zip(golden.lines()).enumerate() {
            assert_eq!(got, want, "line {}", i + 1);
        }
        assert_eq!(text, golden);
    }
}
