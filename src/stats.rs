//! Counters and latency histograms of one instance, lock-free: every hot path
//! adds to them with relaxed atomics; GetStats (and /metrics) read them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use parking_lot::RwLock;

use crate::session::Quota;

/// Everything GetStats reports that is not read from the cache or the pool.
#[derive(Debug, Default)]
pub struct Stats {
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    pub cache_evictions: AtomicU64,
    pub cache_invalidations: AtomicU64,
    pub cache_bypasses: AtomicU64,
    pub cache_feed_losses: AtomicU64,

    pub lock_acquisitions: AtomicU64,
    pub lock_contended: AtomicU64,
    pub lock_waits_granted: AtomicU64,
    pub lock_waits_abandoned: AtomicU64,
    pub lock_waiting_now: AtomicU64,
    pub lock_lease_expiries: AtomicU64,
    pub lock_stale_token: AtomicU64,
    pub lock_held_rejections: AtomicU64,
    /// Locks released by ForceUnlock or PurgeSessions.
    pub lock_forced_releases: AtomicU64,
    /// Queued LockSession callers ended SUPERSEDED by a newer waiter.
    pub lock_superseded: AtomicU64,
    /// LockSession calls answered from an earlier grant's idempotency key.
    pub lock_replayed: AtomicU64,
    pub lock_wait_ms: Histogram,

    pub store_errors: AtomicU64,
    pub store_healthy: AtomicBool,
    /// Writes and grants Redis ran but could not confirm durable in time.
    /// Times the store was found to have lost its data (see `redis/loss.rs`).
    pub store_data_losses: AtomicU64,
    pub durability_failures: AtomicU64,
    /// What the Redis server's settings make of a write, as last read; the
    /// embedded store reports [`Durability::embedded`] instead.
    pub durability: RwLock<Durability>,

    pub rpcs: [RpcStats; Method::ALL.len()],

    /// WatchSession streams open on this instance now.
    pub watchers: AtomicU64,
    /// Events sent to watchers (snapshots included).
    pub watch_events: AtomicU64,
    /// Watchers ended with WATCH_LAGGED.
    pub watch_lagged: AtomicU64,

    /// Writes refused with QUOTA_EXCEEDED, by quota (`Quota::ALL`'s order).
    pub quota_refusals: [AtomicU64; Quota::ALL.len()],
}

/// The RPCs counted, one slot each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    GetSession,
    LockSession,
    UpdateSession,
    UnlockSession,
    RefreshLock,
    DeleteSession,
    GetStats,
    InspectSession,
    ForceUnlock,
    ListSessions,
    PurgeSessions,
    CheckRate,
    /// Counted until its stream begins (a refusal, or the stream's
    /// headers); how streams end is in `watch_lagged` and the watcher gauge.
    WatchSession,
}

impl Method {
    pub const ALL: [Method; 13] = [
        Method::GetSession,
        Method::LockSession,
        Method::UpdateSession,
        Method::UnlockSession,
        Method::RefreshLock,
        Method::DeleteSession,
        Method::GetStats,
        Method::InspectSession,
        Method::ForceUnlock,
        Method::ListSessions,
        Method::PurgeSessions,
        // Last: the figures of the methods before them keep their places.
        Method::CheckRate,
        Method::WatchSession,
    ];

    /// The gRPC service the method belongs to.
    pub fn service(self) -> &'static str {
        match self {
            Method::GetStats
            | Method::InspectSession
            | Method::ForceUnlock
            | Method::ListSessions
            | Method::PurgeSessions => "sessiond.v1.AdminService",
            _ => "sessiond.v1.SessionService",
        }
    }

    /// The gRPC method type, as Prometheus's gRPC metrics label it.
    pub fn kind(self) -> &'static str {
        match self {
            Method::WatchSession => "server_stream",
            _ => "unary",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Method::GetSession => "GetSession",
            Method::LockSession => "LockSession",
            Method::UpdateSession => "UpdateSession",
            Method::UnlockSession => "UnlockSession",
            Method::RefreshLock => "RefreshLock",
            Method::DeleteSession => "DeleteSession",
            Method::GetStats => "GetStats",
            Method::InspectSession => "InspectSession",
            Method::ForceUnlock => "ForceUnlock",
            Method::ListSessions => "ListSessions",
            Method::PurgeSessions => "PurgeSessions",
            Method::CheckRate => "CheckRate",
            Method::WatchSession => "WatchSession",
        }
    }
}

#[derive(Debug, Default)]
pub struct RpcStats {
    pub started: AtomicU64,
    pub calls: AtomicU64,
    pub errors: AtomicU64,
    /// Finished calls by gRPC status code (0..=16).
    pub codes: [AtomicU64; 17],
    pub latency_us: Histogram,
}

impl RpcStats {
    /// Records a finished call.
    pub fn finished(&self, code: i32, took: Duration) {
        self.calls.fetch_add(1, Relaxed);
        if code != 0 {
            self.errors.fetch_add(1, Relaxed);
        }
        if let Some(c) = usize::try_from(code).ok().and_then(|c| self.codes.get(c)) {
            c.fetch_add(1, Relaxed);
        }
        self.latency_us.record_duration_us(took);
    }
}

impl Stats {
    pub fn quota_refused(&self, quota: Quota) {
        self.quota_counter(quota).fetch_add(1, Relaxed);
    }

    pub fn quota_refusals(&self, quota: Quota) -> u64 {
        self.quota_counter(quota).load(Relaxed)
    }

    fn quota_counter(&self, quota: Quota) -> &AtomicU64 {
        let [sessions, bytes] = &self.quota_refusals;
        match quota {
            Quota::Sessions => sessions,
            Quota::Bytes => bytes,
        }
    }

    pub fn rpc(&self, m: Method) -> &RpcStats {
        #[allow(clippy::indexing_slicing)] // reason: one slot per `Method`, by its discriminant
        &self.rpcs[m as usize]
    }

    /// Records the store's answer: healthy or not.
    pub fn store_ok(&self) {
        self.store_healthy.store(true, Relaxed);
    }

    pub fn store_failed(&self) {
        self.store_errors.fetch_add(1, Relaxed);
        self.store_healthy.store(false, Relaxed);
    }
}

/// What an acknowledged write survives, and what could lose it or evict it,
/// as the store's settings were last read. A lock, not atomics: it changes
/// once a minute at most and is read by GetStats and `/metrics` only.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Durability {
    /// The server's persistence: `aof-always`, `aof-everysec`, `aof-no`,
    /// `none` (no AOF), `unknown` (not readable, or not read yet), or
    /// `fsync` on the embedded store.
    pub setting: &'static str,
    /// What a write waits for before it is acknowledged (`--redis-durability`).
    pub wait: String,
    /// Each risk found, with the sentence logged and shown for it.
    pub risks: Vec<(Risk, String)>,
}

impl Durability {
    /// The embedded store: a batch is acknowledged once its redb commit is
    /// fsynced, and nothing is ever evicted.
    pub fn embedded() -> Durability {
        Durability {
            setting: "fsync",
            wait: "fsync".into(),
            risks: Vec::new(),
        }
    }

    pub fn has(&self, risk: Risk) -> bool {
        self.risks.iter().any(|(r, _)| *r == risk)
    }
}

/// A way the store's settings can lose an acknowledged write or a session,
/// one `/metrics` sample each (1 while present), so an alert can name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Risk {
    /// `appendonly no`: a restart loses what the last snapshot lacks.
    NoAof,
    /// AOF on, `appendfsync` not `always`, and writes do not wait for the
    /// fsync: a crash of the host loses the last second or more.
    Fsync,
    /// `maxmemory-policy` other than `noeviction`: sessions can be evicted.
    Eviction,
    /// Fewer replicas connected than `--redis-durability replicas:N` needs:
    /// writes fail until they are back.
    Replicas,
    /// The server cannot do what `--redis-durability` asks (found after
    /// start: a failover, a changed setting): writes fail.
    Unsupported,
    /// The settings could not be read (CONFIG renamed, or denied by ACL).
    Unknown,
}

impl Risk {
    pub const ALL: [Risk; 6] = [
        Risk::NoAof,
        Risk::Fsync,
        Risk::Eviction,
        Risk::Replicas,
        Risk::Unsupported,
        Risk::Unknown,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Risk::NoAof => "no_aof",
            Risk::Fsync => "fsync",
            Risk::Eviction => "eviction",
            Risk::Replicas => "replicas",
            Risk::Unsupported => "unsupported",
            Risk::Unknown => "unknown",
        }
    }
}

/// Buckets grow by 2^(1/8) (about 9%), so a percentile is within ~5% of the
/// true value; 8 buckets per power of two cover 1 .. 2^40.
const SUB: u32 = 8;
const BUCKETS: usize = 41 * SUB as usize;

/// A log-bucketed histogram of non-negative integers (µs or ms).
#[derive(Debug)]
pub struct Histogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum: AtomicU64,
    max: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            max: AtomicU64::new(0),
        }
    }
}

/// Percentiles read from a [`Histogram`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Summary {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Histogram {
    pub fn record(&self, v: u64) {
        if let Some(bucket) = self.buckets.get(bucket_of(v)) {
            bucket.fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum.fetch_add(v, Relaxed);
        self.max.fetch_max(v, Relaxed);
    }

    pub fn record_duration_us(&self, d: Duration) {
        self.record(d.as_micros().min(u64::MAX as u128) as u64);
    }

    pub fn summary(&self) -> Summary {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        Summary {
            count: counts.iter().sum(),
            p50: quantile_of(&counts, 0.50, self.max.load(Relaxed)),
            p90: quantile_of(&counts, 0.90, self.max.load(Relaxed)),
            p99: quantile_of(&counts, 0.99, self.max.load(Relaxed)),
            max: self.max.load(Relaxed) as f64,
        }
    }

    /// The value below which a fraction `q` of the recorded values lie
    /// (bucket upper bound; 0 when empty).
    pub fn quantile(&self, q: f64) -> f64 {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        quantile_of(&counts, q, self.max.load(Relaxed))
    }

    /// Sum of the recorded values.
    pub fn sum(&self) -> u64 {
        self.sum.load(Relaxed)
    }

    /// Cumulative counts at the given upper bounds, for Prometheus buckets
    /// (a bucket counts when its whole range lies below the bound), and the
    /// total count.
    pub fn cumulative(&self, bounds: &[u64]) -> (Vec<u64>, u64) {
        let mut out = vec![0; bounds.len()];
        for (i, b) in self.buckets.iter().enumerate() {
            let n = b.load(Relaxed);
            let ub = upper_bound(i);
            for (total, bound) in out.iter_mut().zip(bounds) {
                if ub <= *bound as f64 {
                    *total += n;
                }
            }
        }
        (out, self.count.load(Relaxed))
    }
}

fn quantile_of(counts: &[u64], q: f64, max: u64) -> f64 {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let rank = ((q * total as f64).ceil() as u64).max(1);
    let mut seen = 0;
    for (i, c) in counts.iter().enumerate() {
        seen += c;
        if seen >= rank {
            return upper_bound(i).min(max as f64);
        }
    }
    max as f64
}

fn bucket_of(v: u64) -> usize {
    if v < SUB as u64 {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros(); // >= 3
    let mantissa = ((v >> (exp - 3)) & (SUB as u64 - 1)) as u32;
    (((exp - 2) * SUB + mantissa) as usize).min(BUCKETS - 1)
}

/// The largest value that lands in bucket `i`.
fn upper_bound(i: usize) -> f64 {
    let i = i as u32;
    if i < SUB {
        return i as f64;
    }
    let exp = i / SUB + 2;
    let mantissa = (i % SUB) as u64;
    (((SUB as u64 + mantissa + 1) << (exp - 3)) - 1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for v in [0u64, 1, 7, 8, 9, 15, 16, 100, 1000, 12345, 1 << 30] {
            let b = bucket_of(v);
            assert!(b >= last, "bucket of {v} went back");
            last = b;
            let ub = upper_bound(b);
            assert!(ub >= v as f64 && ub <= v as f64 * 1.13 + 1.0, "{v} -> {ub}");
        }
    }

    #[test]
    fn percentiles_of_a_uniform_run() {
        let h = Histogram::default();
        for v in 1..=1000 {
            h.record(v);
        }
        let s = h.summary();
        assert_eq!(s.count, 1000);
        assert!((500.0..=550.0).contains(&s.p50), "{s:?}");
        assert!((990.0..=1000.0).contains(&s.p99), "{s:?}");
        assert_eq!(s.max, 1000.0);
    }
}
