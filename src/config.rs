//! The one configuration struct: every flag is also a `SESSIOND_*` variable.
//! Parsed and validated once at start-up; nothing else reads the environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::auth::Auth;
use crate::session::Limits;

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

    /// How often the embedded store sweeps idle sessions from its file (tests
    /// shorten it).
    #[arg(long, env = "SESSIOND_SWEEP_EVERY", value_parser = parse_duration, default_value = "30s", hide = true)]
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

    /// Turns authentication on: a file of `<token> <namespace>[,...]` lines.
    /// Calls must then send `authorization: Bearer <token>`.
    #[arg(long, env = "SESSIOND_AUTH_TOKENS_FILE")]
    pub auth_tokens_file: Option<PathBuf>,

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
    /// The `/metrics` endpoint's address, if it is on.
    pub metrics_addr: Option<SocketAddr>,
    pub cache_max_bytes: u64,
    pub cache_max_age: Duration,
    pub max_concurrent_calls: usize,
    pub shutdown_grace: Duration,
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
}

impl Settings {
    /// Validates `c`; `Err` is one line that says what to fix.
    pub fn new(c: Config) -> Result<Settings, String> {
        let metrics_addr = match c.metrics_listen.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(a) => Some(a.parse().map_err(|_| {
                format!("--metrics-listen `{a}` is not an address: write it like 0.0.0.0:9090")
            })?),
        };
        let auth = match &c.auth_tokens_file {
            None => None,
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("--auth-tokens-file {}: {e}", path.display()))?;
                let auth = Auth::parse(&text)
                    .map_err(|e| format!("--auth-tokens-file {}: {e}", path.display()))?;
                Some(auth)
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
        let store = match (c.store, c.redis_url) {
            (StoreKind::Redis | StoreKind::Auto, Some(url)) => {
                StoreSettings::Redis(RedisSettings {
                    url,
                    password: c.redis_password,
                    pool_size: c.redis_pool_size,
                    key_prefix: c.redis_key_prefix,
                    timeout: c.redis_timeout,
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
            metrics_addr,
            cache_max_bytes: c.cache_max_bytes,
            cache_max_age: c.cache_max_age,
            max_concurrent_calls: c.max_concurrent_calls,
            shutdown_grace: c.shutdown_grace,
        })
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
    fn inverted_lease_bounds_are_refused() {
        let c = Config::parse_from(["sessiond", "--lease-min", "10s", "--lease-max", "1s"]);
        assert!(c.validate().unwrap_err().contains("--lease-min"));
    }
}
