//! The one configuration struct: every flag is also a `SESSIOND_*` variable.
//! Parsed and validated once at start-up; nothing else reads the environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::auth::Auth;
use crate::conn::ConnSettings;
use crate::session::Limits;
use crate::tls::{Tls, TlsFiles};

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

    /// Which store keeps the sessions: `auto` is `redis` when a Redis URL is
    /// set and `embedded` otherwise.
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

    /// Bytes of session data the cache may hold.
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

    /// Most fields one session may have.
    #[arg(long, env = "SESSIOND_MAX_FIELDS", default_value_t = 256)]
    pub max_fields: usize,

    /// Largest value of one field.
    #[arg(long, env = "SESSIOND_MAX_FIELD_BYTES", value_parser = parse_size, default_value = "64KiB")]
    pub max_field_bytes: u64,

    /// Largest session: the sum of its field names and values.
    #[arg(long, env = "SESSIOND_MAX_SESSION_BYTES", value_parser = parse_size, default_value = "1MiB")]
    pub max_session_bytes: u64,

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

/// A `Config` once validated: every setting parsed, resolved and checked
/// against the others, built once at start-up (the tokens file is read
/// here and nowhere else; `auto` does not survive it).
#[derive(Debug)]
pub struct Settings {
    pub listen: SocketAddr,
    pub store: StoreSettings,
    pub limits: Limits,
    /// `None` while authentication is off.
    pub auth: Option<Auth>,
    /// `None` while TLS is off.
    pub tls: Option<Tls>,
    /// `/metrics` over TLS (only with `tls`).
    pub metrics_tls: bool,
    /// The plaintext health-only listener's address, if it is on.
    pub health_addr: Option<SocketAddr>,
    /// The `/metrics` endpoint's address, if it is on.
    pub metrics_addr: Option<SocketAddr>,
    pub cache_max_bytes: u64,
    pub cache_max_age: Duration,
    pub max_concurrent_calls: usize,
    pub shutdown_grace: Duration,
    /// `usize::MAX` when unset.
    pub max_calls_per_namespace: usize,
    /// 0 when unset: waiters hold their call slot.
    pub max_waiters_per_namespace: usize,
    /// 0 when unset: no cap.
    pub max_waiters_per_session: usize,
    pub connections: ConnSettings,
}

/// The store a configuration chose.
#[derive(Debug, Clone)]
pub enum StoreSettings {
    Embedded {
        path: PathBuf,
        sweep_every: Duration,
    },
    Redis(RedisSettings),
}

#[derive(Debug, Clone)]
pub struct RedisSettings {
    pub url: String,
    pub password: Option<String>,
    pub pool_size: usize,
    pub key_prefix: String,
    pub timeout: Duration,
    pub durability: RedisDurability,
    /// How long a write waits to become durable (unused with `None`).
    pub durability_timeout: Duration,
    /// How often the server's persistence settings are read again.
    pub check_interval: Duration,
}

impl Settings {
    /// Validates `c`; `Err` is one line that says what to fix.
    pub fn new(c: Config) -> Result<Settings, String> {
        check_bounds(&c)?;
        if c.reload_interval < Duration::from_millis(10) {
            return Err("--reload-interval must be at least 10ms".into());
        }
        let connections = connection_settings(&c)?;
        let metrics_addr = match c.metrics_listen.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(a) => Some(a.parse().map_err(|_| {
                format!("--metrics-listen `{a}` is not an address: write it like 0.0.0.0:9090")
            })?),
        };
        let auth = match &c.auth_tokens_file {
            None => None,
            Some(path) => Some(
                Auth::load(path.clone(), c.reload_interval)
                    .map_err(|e| format!("--auth-tokens-file {}: {e}", path.display()))?,
            ),
        };
        let health_addr = match c.health_listen.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(a) => Some(a.parse().map_err(|_| {
                format!("--health-listen `{a}` is not an address: write it like 0.0.0.0:50052")
            })?),
        };
        let tls = match (c.tls_cert, c.tls_key) {
            (Some(cert), Some(key)) => Some(Tls::load(
                TlsFiles {
                    cert,
                    key,
                    client_ca: c.tls_client_ca,
                },
                c.reload_interval,
            )?),
            (None, None) if c.tls_client_ca.is_none() => None,
            _ => {
                return Err(
                    "TLS needs both --tls-cert and --tls-key (and they with --tls-client-ca)"
                        .into(),
                );
            }
        };
        // Checked whichever store is chosen, so a setting that is wrong
        // today does not surprise its deployment the day it moves to Redis.
        if c.redis_pool_size == 0 {
            return Err("--redis-pool-size must be at least 1".into());
        }
        if c.redis_key_prefix.is_empty() || c.redis_key_prefix.contains(['{', '}']) {
            return Err("--redis-key-prefix must be non-empty and contain no '{' or '}'".into());
        }
        // WAIT and WAITAOF take whole milliseconds, and 0 means forever.
        if c.redis_durability_timeout < Duration::from_millis(1)
            || c.redis_durability_timeout.as_millis() > u128::from(u32::MAX)
        {
            return Err("--redis-durability-timeout must be at least 1ms and below 49 days".into());
        }
        if c.redis_check_interval < Duration::from_millis(100) {
            return Err("--redis-check-interval must be at least 100ms".into());
        }
        let store = match (c.store, c.redis_url) {
            (StoreKind::Redis | StoreKind::Auto, Some(url)) => {
                StoreSettings::Redis(RedisSettings {
                    url,
                    password: c.redis_password,
                    pool_size: c.redis_pool_size,
                    key_prefix: c.redis_key_prefix,
                    timeout: c.redis_timeout,
                    durability: c.redis_durability,
                    durability_timeout: c.redis_durability_timeout,
                    check_interval: c.redis_check_interval,
                })
            }
            (StoreKind::Redis, None) => {
                return Err("--store redis needs --redis-url (SESSIOND_REDIS_URL)".into());
            }
            (StoreKind::Embedded | StoreKind::Auto, _) => StoreSettings::Embedded {
                path: c.db_path,
                sweep_every: c.sweep_every,
            },
        };
        if c.lease_min.is_zero() || c.lease_min > c.lease_max {
            return Err(format!(
                "lease bounds are inverted or zero: --lease-min {:?} must be > 0 and <= --lease-max {:?}",
                c.lease_min, c.lease_max
            ));
        }
        if c.lease_default < c.lease_min || c.lease_default > c.lease_max {
            return Err(format!(
                "--lease-default {:?} must lie within --lease-min {:?} and --lease-max {:?}",
                c.lease_default, c.lease_min, c.lease_max
            ));
        }
        if c.lease_max.as_millis() > u128::from(u32::MAX)
            || c.wait_max.as_millis() > u128::from(u32::MAX)
        {
            return Err("--lease-max and --wait-max must be below 49 days".into());
        }
        if c.idle_ttl < Duration::from_secs(1) {
            return Err("--idle-ttl must be at least 1s".into());
        }
        if c.max_fields == 0 || c.max_field_bytes == 0 || c.max_session_bytes == 0 {
            return Err(
                "--max-fields, --max-field-bytes and --max-session-bytes must be above 0".into(),
            );
        }
        if c.max_concurrent_calls == 0 {
            return Err("--max-concurrent-calls must be at least 1".into());
        }
        Ok(Settings {
            listen: c.listen,
            store,
            limits: Limits {
                max_fields: c.max_fields,
                max_field_bytes: c.max_field_bytes,
                max_session_bytes: c.max_session_bytes,
                lease_default: c.lease_default,
                lease_min: c.lease_min,
                lease_max: c.lease_max,
                wait_max: c.wait_max,
                idle_ttl: c.idle_ttl,
            },
            auth,
            tls,
            metrics_tls: c.metrics_tls,
            health_addr,
            metrics_addr,
            cache_max_bytes: c.cache_max_bytes,
            cache_max_age: c.cache_max_age,
            max_concurrent_calls: c.max_concurrent_calls,
            shutdown_grace: c.shutdown_grace,
            max_calls_per_namespace: match c.max_calls_per_namespace {
                0 => usize::MAX,
                n => n,
            },
            max_waiters_per_namespace: c.max_waiters_per_namespace,
            max_waiters_per_session: c.max_waiters_per_session,
            connections,
        })
    }
}

/// Longest duration a setting may have: beyond it, times in milliseconds
/// since the epoch (expiry times, Redis PEXPIRE) overflow or come close,
/// and moka refuses a time to live with a panic.
const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Most fields a session may be allowed.
const MAX_FIELDS: usize = 1_000_000;

/// Largest session a setting may allow: the decoding limit derived from it
/// (`Limits::max_request_bytes`) stays below 2 GiB.
const MAX_SESSION_BYTES: u64 = 1 << 30;

/// Refuses durations and sizes that would overflow where they are used.
fn check_bounds(c: &Config) -> Result<(), String> {
    for (flag, d) in [
        ("--idle-ttl", c.idle_ttl),
        ("--cache-max-age", c.cache_max_age),
        ("--redis-timeout", c.redis_timeout),
        ("--shutdown-grace", c.shutdown_grace),
        ("--http2-keepalive-interval", c.http2_keepalive_interval),
        ("--http2-keepalive-timeout", c.http2_keepalive_timeout),
        ("--max-connection-age", c.max_connection_age),
        ("--max-connection-age-grace", c.max_connection_age_grace),
        ("--connection-idle-timeout", c.connection_idle_timeout),
        ("--handshake-timeout", c.handshake_timeout),
    ] {
        if d > MAX_DURATION {
            return Err(format!("{flag} must be at most 100 years (36500d)"));
        }
    }
    if c.max_fields > MAX_FIELDS {
        return Err(format!("--max-fields must be at most {MAX_FIELDS}"));
    }
    if c.max_session_bytes > MAX_SESSION_BYTES || c.max_field_bytes > MAX_SESSION_BYTES {
        return Err("--max-session-bytes and --max-field-bytes must be at most 1GiB".into());
    }
    Ok(())
}

/// The connection flags, checked: every limit above 0, and 0 for "off"
/// only where a setting can be off.
fn connection_settings(c: &Config) -> Result<ConnSettings, String> {
    let off_if_zero = |d: Duration| (!d.is_zero()).then_some(d);
    if c.max_connections == 0 || c.max_streams_per_connection == 0 {
        return Err("--max-connections and --max-streams-per-connection must be at least 1".into());
    }
    let max_header_list_bytes = u32::try_from(c.max_header_list_bytes)
        .ok()
        .filter(|n| *n >= 1024)
        .ok_or("--max-header-list-bytes must lie within 1KiB and 4GiB")?;
    if c.http2_keepalive_timeout.is_zero() || c.handshake_timeout.is_zero() {
        return Err("--http2-keepalive-timeout and --handshake-timeout must be above 0".into());
    }
    Ok(ConnSettings {
        max_connections: c.max_connections,
        max_streams: c.max_streams_per_connection,
        max_header_list_bytes,
        keepalive_interval: off_if_zero(c.http2_keepalive_interval),
        keepalive_timeout: c.http2_keepalive_timeout,
        max_age: off_if_zero(c.max_connection_age),
        max_age_grace: c.max_connection_age_grace,
        idle_timeout: off_if_zero(c.connection_idle_timeout),
        handshake_timeout: c.handshake_timeout,
    })
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
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("2MB"), Ok(2_000_000));
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("MiB").is_err());
    }

    #[test]
    fn defaults_are_valid_and_embedded() {
        let s = Settings::new(Config::defaults()).unwrap();
        assert!(matches!(s.store, StoreSettings::Embedded { .. }));
        assert!(s.auth.is_none() && s.metrics_addr.is_none());
    }

    #[test]
    fn auto_picks_redis_when_a_url_is_set() {
        let c = Config::parse_from(["sessiond", "--redis-url", "redis://127.0.0.1:1/0"]);
        assert!(matches!(
            Settings::new(c).unwrap().store,
            StoreSettings::Redis(_)
        ));
        let c = Config::parse_from(["sessiond", "--store", "redis"]);
        assert!(Settings::new(c).unwrap_err().contains("--redis-url"));
        let c = Config::parse_from([
            "sessiond",
            "--store",
            "embedded",
            "--redis-url",
            "redis://x",
        ]);
        assert!(matches!(
            Settings::new(c).unwrap().store,
            StoreSettings::Embedded { .. }
        ));
    }

    #[test]
    fn the_tokens_file_is_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, "AAAAAAAAAAAAAAAAAAAA telegram\n").unwrap();
        let c = Config::parse_from(["sessiond", "--auth-tokens-file", path.to_str().unwrap()]);
        assert!(Settings::new(c).unwrap().auth.is_some());
        std::fs::write(&path, "short telegram\n").unwrap();
        let c = Config::parse_from(["sessiond", "--auth-tokens-file", path.to_str().unwrap()]);
        assert!(Settings::new(c).unwrap_err().contains("line 1"));
    }

    #[test]
    fn redis_durability_parses_and_is_checked() {
        let redis = |extra: &[&str]| {
            let mut args = vec!["sessiond", "--redis-url", "redis://127.0.0.1:1/0"];
            args.extend_from_slice(extra);
            Config::try_parse_from(args).map_err(|e| e.to_string())
        };
        let durability = |extra: &[&str]| match Settings::new(redis(extra).unwrap()).unwrap().store
        {
            StoreSettings::Redis(r) => (r.durability, r.durability_timeout),
            StoreSettings::Embedded { .. } => panic!("redis expected"),
        };
        assert_eq!(
            durability(&[]),
            (RedisDurability::None, Duration::from_secs(1))
        );
        assert_eq!(
            durability(&["--redis-durability", "aof"]).0,
            RedisDurability::Aof
        );
        assert_eq!(
            durability(&[
                "--redis-durability",
                "replicas:2",
                "--redis-durability-timeout",
                "250ms"
            ]),
            (RedisDurability::Replicas(2), Duration::from_millis(250))
        );
        for bad in ["replicas:0", "replicas:", "replicas:-1", "always", "AOF"] {
            let e = redis(&["--redis-durability", bad]).unwrap_err();
            assert!(e.contains("none, aof or replicas:N"), "{bad}: {e}");
        }
        let c = redis(&["--redis-durability-timeout", "0s"]).unwrap();
        assert!(
            c.validate()
                .unwrap_err()
                .contains("--redis-durability-timeout")
        );
        let c = redis(&["--redis-check-interval", "10ms"]).unwrap();
        assert!(c.validate().unwrap_err().contains("--redis-check-interval"));
        for d in [
            RedisDurability::None,
            RedisDurability::Aof,
            RedisDurability::Replicas(3),
        ] {
            assert_eq!(d.to_string().parse::<RedisDurability>(), Ok(d));
        }
    }

    #[test]
    fn settings_that_would_overflow_are_refused() {
        for (flag, value) in [
            ("--idle-ttl", "300000000years"),
            ("--idle-ttl", "101years"),
            ("--cache-max-age", "2000years"),
            ("--redis-timeout", "1000000years"),
            ("--shutdown-grace", "1000000years"),
            ("--max-session-bytes", "2GiB"),
            ("--max-field-bytes", "1000000GiB"),
            ("--max-fields", "1000001"),
        ] {
            let c = Config::parse_from(["sessiond", flag, value]);
            let err = c.validate().unwrap_err();
            assert!(err.contains(flag), "{flag} {value}: {err}");
        }
        for (flag, value) in [
            ("--idle-ttl", "36500d"),
            ("--cache-max-age", "36500d"),
            ("--max-session-bytes", "1GiB"),
            ("--max-fields", "1000000"),
        ] {
            let c = Config::parse_from(["sessiond", flag, value]);
            assert!(c.validate().is_ok(), "{flag} {value}");
        }
    }

    #[test]
    fn shares_default_to_no_limit_of_their_own() {
        let s = Settings::new(Config::defaults()).unwrap();
        assert_eq!(s.max_calls_per_namespace, usize::MAX);
        assert_eq!(
            (s.max_waiters_per_namespace, s.max_waiters_per_session),
            (0, 0)
        );
        let c = Config::parse_from(["sessiond", "--max-calls-per-namespace", "8"]);
        assert_eq!(Settings::new(c).unwrap().max_calls_per_namespace, 8);
    }

    #[test]
    fn connection_limits_are_checked_and_zero_turns_off_what_can_be_off() {
        for (flag, value) in [
            ("--max-connections", "0"),
            ("--max-streams-per-connection", "0"),
            ("--max-header-list-bytes", "512"),
            ("--max-header-list-bytes", "5GiB"),
            ("--http2-keepalive-timeout", "0s"),
            ("--handshake-timeout", "0s"),
            ("--max-connection-age", "101years"),
        ] {
            let c = Config::parse_from(["sessiond", flag, value]);
            let err = c.validate().unwrap_err();
            assert!(err.contains(flag), "{flag} {value}: {err}");
        }
        let s = Settings::new(Config::defaults()).unwrap().connections;
        assert_eq!((s.max_connections, s.max_streams), (4096, 256));
        assert_eq!(s.max_header_list_bytes, 16 * 1024);
        assert_eq!(s.max_age, Some(Duration::from_secs(1800)));
        assert!(s.max_age_grace > Config::defaults().wait_max);
        let c = Config::parse_from([
            "sessiond",
            "--max-connection-age",
            "0s",
            "--connection-idle-timeout",
            "0s",
            "--http2-keepalive-interval",
            "0s",
        ]);
        let s = Settings::new(c).unwrap().connections;
        assert_eq!(
            (s.max_age, s.idle_timeout, s.keepalive_interval),
            (None, None, None)
        );
    }

    #[test]
    fn inverted_lease_bounds_are_refused() {
        let c = Config::parse_from(["sessiond", "--lease-min", "10s", "--lease-max", "1s"]);
        assert!(c.validate().unwrap_err().contains("--lease-min"));
    }
}
