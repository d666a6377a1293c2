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
use futures::future::Either;

use crate::admin::durability_of;
use crate::session::Quota;
use crate::state::State;
use crate::stats::{Histogram, Method, Risk, RpcStats};
use crate::tls::Tls;

/// gRPC status codes by number, as the `grpc_code` label spells them.
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

/// Binds `addr`; the future it returns serves `/metrics` until dropped,
/// over TLS if `tls` is given (`--metrics-tls`).
pub async fn bind(
    addr: SocketAddr,
    state: Arc<State>,
    tls: Option<(Arc<Tls>, crate::conn::Connections)>,
) -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(state);
    tracing::info!(%addr, tls = tls.is_some(), "metrics on /metrics");
    let listener = match tls {
        None => Either::Left(listener),
        Some((tls, conns)) => Either::Right(crate::tls::Listener::new(listener, tls, conns)?),
    };
    Ok(async move {
        let served = match listener {
            Either::Left(plain) => axum::serve(plain, app).await,
            Either::Right(tls) => axum::serve(tls, app).await,
        };
        if let Err(e) = served {
            tracing::error!(error = %e, "metrics endpoint failed");
        }
    })
}

async fn metrics(Extract(state): Extract<Arc<State>>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        render(&state),
    )
}

/// The exposition text: every family of [`FAMILIES`], in order.
pub fn render(state: &State) -> String {
    let mut out = String::with_capacity(16 * 1024);
    for family in FAMILIES {
        family.render(&mut out, state);
    }
    out
}

/// One metric family: its `# HELP` and `# TYPE` lines and where its
/// samples come from. Adding a figure to `/metrics` is one row of
/// [`FAMILIES`].
struct Family {
    name: &'static str,
    help: &'static str,
    samples: Samples,
}

/// Where a family's samples are read, which also fixes its type.
enum Samples {
    /// A counter with one sample and no labels.
    Counter(fn(&State) -> u64),
    /// A gauge with one sample and no labels.
    Gauge(fn(&State) -> u64),
    /// A gauge with one sample per value of its one label.
    GaugeByLabel(&'static str, fn(&State) -> Vec<(&'static str, u64)>),
    /// A counter with one sample per value of its one label.
    CounterByLabel(&'static str, fn(&State) -> Vec<(&'static str, u64)>),
    /// A counter with one sample per RPC method.
    CounterPerMethod(fn(&RpcStats) -> u64),
    /// A counter per RPC method and status code; codes never seen are left
    /// out, except OK.
    CodesPerMethod,
    /// A histogram with no labels.
    Histogram(fn(&State) -> &Histogram, Scale),
    /// A histogram per RPC method.
    HistogramPerMethod(fn(&RpcStats) -> &Histogram, Scale),
}

/// How a [`Histogram`]'s raw values become seconds, and the bucket bounds
/// shown.
struct Scale {
    /// Seconds per recorded unit (1e-6 for µs).
    unit: f64,
    bounds_s: &'static [f64],
}

/// RPC latencies, recorded in µs.
const LATENCY: Scale = Scale {
    unit: 1e-6,
    bounds_s: &[
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
    ],
};
/// Lock waits, recorded in ms.
const WAIT: Scale = Scale {
    unit: 1e-3,
    bounds_s: &[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0],
};

/// Every family on `/metrics`, in the order they are written.
const FAMILIES: &[Family] = &[
    Family {
        name: "grpc_server_started_total",
        help: "RPCs started on the server.",
        samples: Samples::CounterPerMethod(|r| r.started.load(Relaxed)),
    },
    Family {
        name: "grpc_server_handled_total",
        help: "RPCs completed on the server, by status code.",
        samples: Samples::CodesPerMethod,
    },
    Family {
        name: "grpc_server_handling_seconds",
        help: "Time to handle an RPC.",
        samples: Samples::HistogramPerMethod(|r| &r.latency_us, LATENCY),
    },
    Family {
        name: "sessiond_cache_hits_total",
        help: "CACHED reads answered from the cache.",
        samples: Samples::Counter(|s| s.stats.cache_hits.load(Relaxed)),
    },
    Family {
        name: "sessiond_cache_misses_total",
        help: "CACHED reads that went to the store.",
        samples: Samples::Counter(|s| s.stats.cache_misses.load(Relaxed)),
    },
    Family {
        name: "sessiond_cache_evictions_total",
        help: "Cache entries evicted by size or age.",
        samples: Samples::Counter(|s| s.stats.cache_evictions.load(Relaxed)),
    },
    Family {
        name: "sessiond_cache_invalidations_total",
        help: "Invalidations received from other instances.",
        samples: Samples::Counter(|s| s.stats.cache_invalidations.load(Relaxed)),
    },
    Family {
        name: "sessiond_cache_bypasses_total",
        help: "CACHED reads sent to the store while the cache was not trusted.",
        samples: Samples::Counter(|s| s.stats.cache_bypasses.load(Relaxed)),
    },
    Family {
        name: "sessiond_cache_feed_losses_total",
        help: "Times the invalidation feed was lost.",
        samples: Samples::Counter(|s| s.stats.cache_feed_losses.load(Relaxed)),
    },
    Family {
        name: "sessiond_lock_acquisitions_total",
        help: "Locks granted.",
        samples: Samples::Counter(|s| s.stats.lock_acquisitions.load(Relaxed)),
    },
    Family {
        name: "sessiond_lock_contended_total",
        help: "LockSession calls that found the lock held.",
        samples: Samples::Counter(|s| s.stats.lock_contended.load(Relaxed)),
    },
    Family {
        name: "sessiond_lock_waits_granted_total",
        help: "Queued callers that got the lock.",
        samples: Samples::Counter(|s| s.stats.lock_waits_granted.load(Relaxed)),
    },
    Family {
        name: "sessiond_lock_waits_abandoned_total",
        help: "Queued callers that gave up.",
        samples: Samples::Counter(|s| s.stats.lock_waits_abandoned.load(Relaxed)),
    },
    Family {
        name: "sessiond_lock_lease_expiries_total",
        help: "Leases that ran out before release.",
        samples: Samples::Counter(|s| s.stats.lock_lease_expiries.load(Relaxed)),
    },
    Family {
        name: "sessiond_lock_stale_token_total",
        help: "Calls refused with LOCK_LOST.",
        samples: Samples::Counter(|s| s.stats.lock_stale_token.load(Relaxed)),
    },
    Family {
        name: "sessiond_lock_held_rejections_total",
        help: "Writes refused with LOCK_HELD.",
        samples: Samples::Counter(|s| s.stats.lock_held_rejections.load(Relaxed)),
    },
    // Per-namespace usage would make a label set as large as the tenants:
    // only the refusals are counted, by quota.
    Family {
        name: "sessiond_quota_refusals_total",
        help: "Writes refused with QUOTA_EXCEEDED, by the namespace quota that refused them.",
        samples: Samples::CounterByLabel("quota", |s| {
            Quota::ALL
                .iter()
                .map(|&q| (q.name(), s.stats.quota_refusals(q)))
                .collect()
        }),
    },
    Family {
        name: "sessiond_lock_forced_releases_total",
        help: "Locks released by ForceUnlock or PurgeSessions.",
        samples: Samples::Counter(|s| s.stats.lock_forced_releases.load(Relaxed)),
    },
    Family {
        name: "sessiond_lock_superseded_total",
        help: "Queued LockSession callers ended SUPERSEDED by a newer waiter of their burst.",
        samples: Samples::Counter(|s| s.stats.lock_superseded.load(Relaxed)),
    },
    Family {
        name: "sessiond_lock_replayed_total",
        help: "LockSession calls answered from an earlier grant's idempotency key.",
        samples: Samples::Counter(|s| s.stats.lock_replayed.load(Relaxed)),
    },
    Family {
        name: "sessiond_store_errors_total",
        help: "Store operations that failed.",
        samples: Samples::Counter(|s| s.stats.store_errors.load(Relaxed)),
    },
    Family {
        name: "sessiond_store_data_losses_total",
        help: "Times the store was found to have lost its data (sessions and versions gone; fencing tokens stay safe).",
        samples: Samples::Counter(|s| s.stats.store_data_losses.load(Relaxed)),
    },
    Family {
        name: "sessiond_store_durability_failures_total",
        help: "Writes and grants Redis ran but could not confirm durable in time.",
        samples: Samples::Counter(|s| s.stats.durability_failures.load(Relaxed)),
    },
    Family {
        name: "sessiond_cache_entries",
        help: "Sessions cached now.",
        samples: Samples::Gauge(|s| s.sessions.cache().size().0),
    },
    Family {
        name: "sessiond_cache_feed_up",
        help: "1 while CACHED reads may use the cache (a shared store's invalidation feed is up), else 0.",
        samples: Samples::Gauge(|s| u64::from(s.sessions.feed_healthy())),
    },
    Family {
        name: "sessiond_cache_bytes",
        help: "Weighted bytes cached now.",
        samples: Samples::Gauge(|s| s.sessions.cache().size().1),
    },
    Family {
        name: "sessiond_lock_waiting",
        help: "Callers queued for a lock on this instance now.",
        samples: Samples::Gauge(|s| s.stats.lock_waiting_now.load(Relaxed)),
    },
    Family {
        name: "sessiond_store_up",
        help: "1 when the last store operation succeeded.",
        samples: Samples::Gauge(|s| u64::from(s.stats.store_healthy.load(Relaxed))),
    },
    Family {
        name: "sessiond_store_pool_connections",
        help: "Open Redis connections.",
        samples: Samples::Gauge(|s| s.sessions.store().pool_status().0),
    },
    Family {
        name: "sessiond_store_pool_idle",
        help: "Open Redis connections no call is using.",
        samples: Samples::Gauge(|s| s.sessions.store().pool_status().1),
    },
    Family {
        name: "sessiond_store_durability",
        help: "What an acknowledged write survives, from the store's settings as last read (1 on the current one).",
        samples: Samples::GaugeByLabel("setting", |s| vec![(durability_of(s).setting, 1)]),
    },
    Family {
        name: "sessiond_store_durability_risk",
        help: "1 while the store's settings can lose acknowledged writes or evict sessions this way.",
        samples: Samples::GaugeByLabel("risk", |s| {
            let d = durability_of(s);
            Risk::ALL
                .iter()
                .map(|r| (r.name(), u64::from(d.has(*r))))
                .collect()
        }),
    },
    Family {
        name: "sessiond_lock_wait_seconds",
        help: "Time granted waiters spent queued.",
        samples: Samples::Histogram(|s| &s.stats.lock_wait_ms, WAIT),
    },
    Family {
        name: "sessiond_watchers",
        help: "WatchSession streams open on this instance now.",
        samples: Samples::Gauge(|s| s.stats.watchers.load(Relaxed)),
    },
    Family {
        name: "sessiond_watch_events_total",
        help: "Events sent to watchers, snapshots included.",
        samples: Samples::Counter(|s| s.stats.watch_events.load(Relaxed)),
    },
    Family {
        name: "sessiond_watch_lagged_total",
        help: "Watchers ended with WATCH_LAGGED for not keeping up.",
        samples: Samples::Counter(|s| s.stats.watch_lagged.load(Relaxed)),
    },
];

impl Family {
    fn kind(&self) -> &'static str {
        match self.samples {
            Samples::Counter(_)
            | Samples::CounterByLabel(..)
            | Samples::CounterPerMethod(_)
            | Samples::CodesPerMethod => "counter",
            Samples::Gauge(_) | Samples::GaugeByLabel(..) => "gauge",
            Samples::Histogram(..) | Samples::HistogramPerMethod(..) => "histogram",
        }
    }

    fn render(&self, out: &mut String, state: &State) {
        let name = self.name;
        let _ = writeln!(
            out,
            "# HELP {name} {}\n# TYPE {name} {}",
            self.help,
            self.kind()
        );
        let stats = &state.stats;
        match &self.samples {
            Samples::Counter(read) | Samples::Gauge(read) => {
                let _ = writeln!(out, "{name} {}", read(state));
            }
            Samples::GaugeByLabel(label, read) | Samples::CounterByLabel(label, read) => {
                for (value, n) in read(state) {
                    let _ = writeln!(out, "{name}{{{label}=\"{value}\"}} {n}");
                }
            }
            Samples::CounterPerMethod(read) => {
                for m in Method::ALL {
                    let value = read(stats.rpc(m));
                    let _ = writeln!(out, "{name}{{{}}} {value}", labels(m));
                }
            }
            Samples::CodesPerMethod => {
                for m in Method::ALL {
                    for (code, n) in CODES.iter().zip(&stats.rpc(m).codes) {
                        let n = n.load(Relaxed);
                        if n > 0 || *code == "OK" {
                            let _ =
                                writeln!(out, "{name}{{{},grpc_code=\"{code}\"}} {n}", labels(m));
                        }
                    }
                }
            }
            Samples::Histogram(read, scale) => histogram(out, name, "", read(state), scale),
            Samples::HistogramPerMethod(read, scale) => {
                for m in Method::ALL {
                    histogram(out, name, &labels(m), read(stats.rpc(m)), scale);
                }
            }
        }
    }
}

/// The standard gRPC labels of a method's samples.
fn labels(m: Method) -> String {
    let service = m.service();
    format!(
        "grpc_service=\"{service}\",grpc_method=\"{}\",grpc_type=\"{}\"",
        m.name(),
        m.kind()
    )
}

/// Writes the samples of one histogram (buckets, sum, count).
fn histogram(out: &mut String, name: &str, labels: &str, h: &Histogram, scale: &Scale) {
    let Scale { unit, bounds_s } = *scale;
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
mod tests;
