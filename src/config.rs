//! The one configuration struct: every flag is also a `SESSIOND_*` variable.
//! Parsed and validated once at start-up; nothing else reads the environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Parser, ValueEnum};

mod settings;

pub use settings::{OtlpSettings, RedisSettings, RedisTarget, Settings, StoreSettings};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "sessiond",
    version,
    about = "Per-user session state for chat bots over gRPC"
)]
pub struct Config {
    /// Address the gRPC server listens on.
    #[arg(long, env = "SESSIOND_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,

    /// Which store keeps the sessions: `auto` is `redis` when a Redis URL
    /// (or sentinels) is set and `embedded` otherwise.
    #[arg(long, env = "SESSIOND_STORE", value_enum, default_value_t = StoreKind::Auto)]
    pub store: StoreKind,

    /// File of the embedded store (created if missing). One instance only.
    #[arg(long, env = "SESSIOND_DB_PATH", default_value = "sessiond.redb")]
    pub db_path: PathBuf,

    /// How often the embedded store sweeps idle sessions (and the records of
    /// ids locked but never written) from its file.
    #[arg(long, env = "SESSIOND_SWEEP_EVERY", value_parser = parse_duration, default_value = "30s")]
    pub sweep_every: Duration,

    /// Redis URL, e.g. `redis://127.0.0.1:6379/0`.
    #[arg(long, env = "SESSIOND_REDIS_URL")]
    pub redis_url: Option<String>,

    /// Redis Sentinel instead of one Redis URL: the sentinels' addresses,
    /// `host:port[,host:port...]` (`redis://` or `rediss://` URLs also do,
    /// to give the sentinels' own user and password or TLS). sessiond asks
    /// them for the master of `--redis-sentinel-master` and follows its
    /// failovers. Exclusive with `--redis-url`.
    #[arg(long, env = "SESSIOND_REDIS_SENTINEL", value_delimiter = ',')]
    pub redis_sentinel: Vec<String>,

    /// The name the sentinels monitor the master under (with
    /// `--redis-sentinel`).
    #[arg(long, env = "SESSIOND_REDIS_SENTINEL_MASTER")]
    pub redis_sentinel_master: Option<String>,

    /// Redis Cluster instead of one Redis URL: some of its nodes,
    /// `host:port[,host:port...]` (`redis://` or `rediss://` URLs also do,
    /// for a user or TLS); sessiond learns the others and the slots from
    /// them. Exclusive with `--redis-url` and `--redis-sentinel`.
    #[arg(long, env = "SESSIOND_REDIS_CLUSTER", value_delimiter = ',')]
    pub redis_cluster: Vec<String>,

    /// The ACL user sessiond logs in to the Redis data nodes as, with
    /// `--redis-password`, on every topology (a `--redis-url` or a cluster
    /// node's URL may name it instead; this wins). Sentinels take theirs
    /// from their own URLs.
    #[arg(long, env = "SESSIOND_REDIS_USERNAME")]
    pub redis_username: Option<String>,

    /// Redis password, kept out of the URL (e.g. from a Kubernetes Secret).
    #[arg(long, env = "SESSIOND_REDIS_PASSWORD", hide_env_values = true)]
    pub redis_password: Option<String>,

    /// Redis connections all calls share; each pipelines the commands in
    /// flight on it. One keeps up with a few cores; raise it on larger hosts.
    #[arg(long, env = "SESSIOND_REDIS_POOL_SIZE", default_value_t = 1)]
    pub redis_pool_size: usize,

    /// Prefix of every Redis key, so several deployments can share a server.
    #[arg(long, env = "SESSIOND_REDIS_KEY_PREFIX", default_value = "sd")]
    pub redis_key_prefix: String,

    /// How long one Redis command may take before the call fails with
    /// UNAVAILABLE.
    #[arg(long, env = "SESSIOND_REDIS_TIMEOUT", value_parser = parse_duration, default_value = "2s")]
    pub redis_timeout: Duration,

    /// What a write or a lock grant waits for before it is acknowledged:
    /// `none` (Redis ran it; its own persistence settings decide the rest),
    /// `aof` (`WAITAOF`: fsynced to the master's AOF; Redis >= 7.2 with
    /// appendonly yes) or `replicas:N` (`WAIT`: N replicas have it).
    #[arg(long, env = "SESSIOND_REDIS_DURABILITY", default_value = "none")]
    pub redis_durability: RedisDurability,

    /// Longest a write waits to become durable under `--redis-durability`;
    /// past it the call fails with UNAVAILABLE (the write may have been
    /// applied). Commands sharing a connection may queue behind the wait, so
    /// each Redis command gets `--redis-timeout` plus this.
    #[arg(long, env = "SESSIOND_REDIS_DURABILITY_TIMEOUT", value_parser = parse_duration, default_value = "1s")]
    pub redis_durability_timeout: Duration,

    /// How often Redis's persistence and eviction settings are read again
    /// (also after every reconnect), to report risks to acknowledged writes.
    #[arg(long, env = "SESSIOND_REDIS_CHECK_INTERVAL", value_parser = parse_duration, default_value = "60s")]
    pub redis_check_interval: Duration,

    /// Turns authentication on: a file of `<token> <namespace>[,...]` lines.
    /// Calls must then send `authorization: Bearer <token>`. Read again on
    /// SIGHUP and when it changes; a file that does not parse is logged and
    /// the tokens in force stay.
    #[arg(long, env = "SESSIOND_AUTH_TOKENS_FILE")]
    pub auth_tokens_file: Option<PathBuf>,

    // TLS, mTLS and the files followed while serving (see tls.rs, auth.rs).
    /// Turns TLS on: the server's certificate chain (PEM). Plaintext clients
    /// are then refused. Reloaded when the file changes.
    #[arg(long, env = "SESSIOND_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key of `--tls-cert` (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "SESSIOND_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Turns mTLS on: clients must present a certificate issued by one of
    /// these CAs (PEM). Needs `--tls-cert`.
    #[arg(long, env = "SESSIOND_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,

    /// Serve `/metrics` over TLS too, with the certificate (and client CA)
    /// of `--tls-cert` (`--tls-client-ca`): scrapers then need the CA, and a
    /// client certificate under mTLS.
    #[arg(long, env = "SESSIOND_METRICS_TLS", requires = "tls_cert")]
    pub metrics_tls: bool,

    /// Address of a plaintext listener serving only `grpc.health.v1`, e.g.
    /// `0.0.0.0:50052`, for probes that cannot speak TLS (the kubelet's gRPC
    /// probes); it carries no session data. Unset or empty: none.
    #[arg(long, env = "SESSIOND_HEALTH_LISTEN")]
    pub health_listen: Option<String>,

    /// How often the TLS files and the tokens file are read again; a change
    /// is loaded without a restart (SIGHUP reloads the tokens file at once).
    #[arg(long, env = "SESSIOND_RELOAD_INTERVAL", value_parser = parse_duration, default_value = "5s")]
    pub reload_interval: Duration,

    /// Address of the Prometheus `/metrics` HTTP endpoint, e.g. `0.0.0.0:9090`;
    /// unset or empty: no endpoint.
    #[arg(long, env = "SESSIOND_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,

    /// Memory the cache may hold: each cached session is charged its names
    /// and values, its id and what holds them (about 300 bytes more).
    #[arg(long, env = "SESSIOND_CACHE_MAX_BYTES", value_parser = parse_size, default_value = "256MiB")]
    pub cache_max_bytes: u64,

    /// Longest a cached copy is served after it was read from the store; the
    /// bound on staleness of CACHED reads if invalidations are lost. 0 turns
    /// the cache off.
    #[arg(long, env = "SESSIOND_CACHE_MAX_AGE", value_parser = parse_duration, default_value = "30s")]
    pub cache_max_age: Duration,

    /// Lease given when LockSession asks for none.
    #[arg(long, env = "SESSIOND_LEASE_DEFAULT", value_parser = parse_duration, default_value = "10s")]
    pub lease_default: Duration,

    /// Shortest lease a caller may ask for.
    #[arg(long, env = "SESSIOND_LEASE_MIN", value_parser = parse_duration, default_value = "100ms")]
    pub lease_min: Duration,

    /// Longest lease a caller may ask for.
    #[arg(long, env = "SESSIOND_LEASE_MAX", value_parser = parse_duration, default_value = "5m")]
    pub lease_max: Duration,

    /// Longest a caller may wait for a lock.
    #[arg(long, env = "SESSIOND_WAIT_MAX", value_parser = parse_duration, default_value = "60s")]
    pub wait_max: Duration,

    /// A session expires after this long without a write.
    #[arg(long, env = "SESSIOND_IDLE_TTL", value_parser = parse_duration, default_value = "24h")]
    pub idle_ttl: Duration,

    /// How long the result of a write sent with an idempotency key is kept:
    /// a repeat with the same key within it gets that result, not a second
    /// write.
    #[arg(long, env = "SESSIOND_IDEMPOTENCY_WINDOW", value_parser = parse_duration, default_value = "10m")]
    pub idempotency_window: Duration,

    /// The rate (units a second) of a CheckRate that gives none.
    #[arg(
        long,
        env = "SESSIOND_RATE_LIMIT_DEFAULT_PER_SECOND",
        default_value_t = 10.0
    )]
    pub rate_limit_default_per_second: f64,

    /// The burst (units admitted at once after an idle spell) of a
    /// CheckRate that gives none.
    #[arg(long, env = "SESSIOND_RATE_LIMIT_DEFAULT_BURST", default_value_t = 10)]
    pub rate_limit_default_burst: u64,

    /// Most fields one session may have.
    #[arg(long, env = "SESSIOND_MAX_FIELDS", default_value_t = 256)]
    pub max_fields: usize,

    /// Largest value of one field.
    #[arg(long, env = "SESSIOND_MAX_FIELD_BYTES", value_parser = parse_size, default_value = "64KiB")]
    pub max_field_bytes: u64,

    /// Largest session: the sum of its field names and values.
    #[arg(long, env = "SESSIOND_MAX_SESSION_BYTES", value_parser = parse_size, default_value = "1MiB")]
    pub max_session_bytes: u64,

    /// Largest payload a LockSession with policy LATEST_WINS or DEBOUNCE
    /// may attach to its wait; a grant carries at most 16 times this of
    /// the payloads of the waiters it superseded. 0: payloads refused.
    #[arg(long, env = "SESSIOND_MAX_TURN_PAYLOAD_BYTES", value_parser = parse_size, default_value = "4KiB")]
    pub max_turn_payload_bytes: u64,

    /// Sessions one namespace may store; a write that would create one
    /// more is refused with RESOURCE_EXHAUSTED / QUOTA_EXCEEDED. 0: no quota.
    /// Quotas need the embedded store or a standalone Redis (README,
    /// "Limits").
    #[arg(long, env = "SESSIOND_MAX_SESSIONS_PER_NAMESPACE", default_value_t = 0)]
    pub max_sessions_per_namespace: u64,

    /// Bytes one namespace may store (the sum of its sessions' sizes, as
    /// --max-session-bytes counts them); a write that would grow it beyond
    /// is refused with RESOURCE_EXHAUSTED / QUOTA_EXCEEDED. 0: no quota.
    #[arg(long, env = "SESSIOND_MAX_BYTES_PER_NAMESPACE", value_parser = parse_size, default_value = "0")]
    pub max_bytes_per_namespace: u64,

    /// Calls handled at once; beyond it calls are refused at once with
    /// RESOURCE_EXHAUSTED / OVERLOADED instead of queueing.
    #[arg(long, env = "SESSIOND_MAX_CONCURRENT_CALLS", default_value_t = 4096)]
    pub max_concurrent_calls: usize,

    // Fair shares among namespaces (see server/shares.rs). The defaults
    // change nothing for a single tenant.
    /// SessionService calls of one namespace handled at once, refused beyond
    /// it with RESOURCE_EXHAUSTED / OVERLOADED. 0: only
    /// --max-concurrent-calls bounds them. To keep namespaces from crowding
    /// each other out, make the namespaces' limits add up to no more than
    /// --max-concurrent-calls.
    #[arg(long, env = "SESSIOND_MAX_CALLS_PER_NAMESPACE", default_value_t = 0)]
    pub max_calls_per_namespace: usize,

    /// LockSession callers of one namespace queued for locks at once, beyond
    /// which they are refused with RESOURCE_EXHAUSTED / OVERLOADED. Set, a
    /// queued caller holds one of these slots instead of a call slot while
    /// it waits; 0: queued callers hold their call slot like any call.
    #[arg(long, env = "SESSIOND_MAX_WAITERS_PER_NAMESPACE", default_value_t = 0)]
    pub max_waiters_per_namespace: usize,

    /// LockSession callers queued for one session's lock on this instance,
    /// beyond which they are refused with RESOURCE_EXHAUSTED / OVERLOADED.
    /// 0: no cap.
    #[arg(long, env = "SESSIOND_MAX_WAITERS_PER_SESSION", default_value_t = 0)]
    pub max_waiters_per_session: usize,

    /// WatchSession streams open on this instance at once, beyond which a
    /// new one is refused with RESOURCE_EXHAUSTED / OVERLOADED (metadata
    /// `limit`: max_watchers). 0: no cap. A watch holds no call slot once
    /// its stream has begun: this is what bounds them.
    #[arg(long, env = "SESSIOND_MAX_WATCHERS", default_value_t = 10_000)]
    pub max_watchers: usize,

    /// WatchSession streams of one namespace open on this instance at once
    /// (OVERLOADED beyond it, metadata `limit`:
    /// max_watchers_per_namespace). 0: only --max-watchers bounds them.
    #[arg(long, env = "SESSIOND_MAX_WATCHERS_PER_NAMESPACE", default_value_t = 0)]
    pub max_watchers_per_namespace: usize,

    // Connections and HTTP/2 (see conn.rs): what one peer may hold of the
    // server however it behaves. 0 turns a duration off.
    /// Connections open at once; beyond it new ones are closed on accept.
    #[arg(long, env = "SESSIOND_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,

    /// Streams one connection may have open at once (HTTP/2
    /// SETTINGS_MAX_CONCURRENT_STREAMS); more are refused with REFUSED_STREAM.
    #[arg(
        long,
        env = "SESSIOND_MAX_STREAMS_PER_CONNECTION",
        default_value_t = 256
    )]
    pub max_streams_per_connection: u32,

    /// Largest header block of a call (HTTP/2 SETTINGS_MAX_HEADER_LIST_SIZE).
    #[arg(long, env = "SESSIOND_MAX_HEADER_LIST_BYTES", value_parser = parse_size, default_value = "16KiB")]
    pub max_header_list_bytes: u64,

    /// HTTP/2 PING after this long without a frame from the peer; 0: none.
    #[arg(long, env = "SESSIOND_HTTP2_KEEPALIVE_INTERVAL", value_parser = parse_duration, default_value = "30s")]
    pub http2_keepalive_interval: Duration,

    /// A PING unanswered for this long closes the connection.
    #[arg(long, env = "SESSIOND_HTTP2_KEEPALIVE_TIMEOUT", value_parser = parse_duration, default_value = "10s")]
    pub http2_keepalive_timeout: Duration,

    /// A connection this old gets GOAWAY: its calls finish, clients
    /// reconnect (and spread over new instances); 0: no limit.
    #[arg(long, env = "SESSIOND_MAX_CONNECTION_AGE", value_parser = parse_duration, default_value = "30m")]
    pub max_connection_age: Duration,

    /// How long calls get after --max-connection-age before the connection
    /// is closed; longer than --wait-max, so lock waits can finish.
    #[arg(long, env = "SESSIOND_MAX_CONNECTION_AGE_GRACE", value_parser = parse_duration, default_value = "90s")]
    pub max_connection_age_grace: Duration,

    /// A connection with no call in flight for this long is closed; 0: never.
    #[arg(long, env = "SESSIOND_CONNECTION_IDLE_TIMEOUT", value_parser = parse_duration, default_value = "5m")]
    pub connection_idle_timeout: Duration,

    /// A connection that has not sent the HTTP/2 client preface this long
    /// after it was accepted is closed.
    #[arg(long, env = "SESSIOND_HANDSHAKE_TIMEOUT", value_parser = parse_duration, default_value = "10s")]
    pub handshake_timeout: Duration,

    /// On SIGTERM/SIGINT, how long in-flight calls get to finish.
    #[arg(long, env = "SESSIOND_SHUTDOWN_GRACE", value_parser = parse_duration, default_value = "10s")]
    pub shutdown_grace: Duration,

    /// Log filter, e.g. `info` or `sessiond=debug,info`.
    #[arg(long, env = "SESSIOND_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Log line format.
    #[arg(long, env = "SESSIOND_LOG_FORMAT", value_enum, default_value_t = LogFormat::Plain)]
    pub log_format: LogFormat,

    /// OTLP/gRPC collector that receives a span per call (with a child span
    /// for its store step), e.g. `http://otel-collector:4317`. Unset: no
    /// tracing, at no cost per call.
    #[arg(long, env = "SESSIOND_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,

    /// Share of traces started here that are exported, 0 to 1; a call whose
    /// `traceparent` says sampled (or not) follows its caller's decision.
    #[arg(long, env = "SESSIOND_OTLP_SAMPLE_RATIO", default_value_t = 1.0)]
    pub otlp_sample_ratio: f64,

    /// `service.name` of the exported spans.
    #[arg(long, env = "SESSIOND_OTLP_SERVICE_NAME", default_value = "sessiond")]
    pub otlp_service_name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    Auto,
    Embedded,
    Redis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Plain,
    Json,
}

/// What a Redis write or lock grant waits for before sessiond acknowledges
/// it (`--redis-durability`). Whatever the choice, Redis has applied the
/// write when the wait begins: a wait that fails leaves its fate unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisDurability {
    /// Nothing beyond Redis running the script.
    None,
    /// `WAITAOF 1 0`: the master fsynced it to its append-only file.
    Aof,
    /// `WAIT N`: N replicas acknowledged it (in memory).
    Replicas(u32),
}

impl FromStr for RedisDurability {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a durability: write none, aof or replicas:N (N >= 1)");
        match s.trim() {
            "none" => Ok(RedisDurability::None),
            "aof" => Ok(RedisDurability::Aof),
            other => match other.strip_prefix("replicas:").map(u32::from_str) {
                Some(Ok(n)) if n >= 1 => Ok(RedisDurability::Replicas(n)),
                _ => Err(bad()),
            },
        }
    }
}

impl std::fmt::Display for RedisDurability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RedisDurability::None => f.write_str("none"),
            RedisDurability::Aof => f.write_str("aof"),
            RedisDurability::Replicas(n) => write!(f, "replicas:{n}"),
        }
    }
}

impl Config {
    /// Checks the configuration without keeping what it builds (for callers
    /// that only validate; `Settings::new` is the one that serves).
    pub fn validate(&self) -> Result<(), String> {
        Settings::new(self.clone()).map(drop)
    }

    /// A configuration with the defaults, as tests and tools start from.
    pub fn defaults() -> Config {
        Config::parse_from(["sessiond"])
    }
}

/// `250ms`, `10s`, `5m`, `24h`, ... (humantime).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (write it like 250ms, 10s, 5m or 24h)"))
}

/// A byte size: `1048576`, `64KiB`, `256MiB`, `1GiB` (also kB/MB/GB as powers of 1000).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n = u64::from_str(digits)
        .map_err(|_| format!("`{s}` is not a size: write it like 65536, 64KiB or 256MiB"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown size unit `{other}`: use B, KiB, MiB or GiB"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size `{s}` is too large"))
}

#[cfg(test)]
mod tests;
