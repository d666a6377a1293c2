//! The one configuration struct: every flag is also a `SESSIOND_*` variable.
//! Parsed and validated once at start-up; nothing else reads the environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Parser, ValueEnum};

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
    /// The store actually used once `auto` is resolved.
    pub fn store_kind(&self) -> StoreKind {
        match (self.store, &self.redis_url) {
            (StoreKind::Auto, Some(_)) => StoreKind::Redis,
            (StoreKind::Auto, None) => StoreKind::Embedded,
            (kind, _) => kind,
        }
    }

    /// Reads and checks the tokens file, if authentication is on.
    pub fn auth(&self) -> Result<Option<crate::auth::Auth>, String> {
        let Some(path) = &self.auth_tokens_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--auth-tokens-file {}: {e}", path.display()))?;
        crate::auth::Auth::parse(&text)
            .map(Some)
            .map_err(|e| format!("--auth-tokens-file {}: {e}", path.display()))
    }

    /// The metrics address, if the endpoint is on.
    pub fn metrics_addr(&self) -> Result<Option<SocketAddr>, String> {
        match self.metrics_listen.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(a) => a.parse().map(Some).map_err(|_| {
                format!("--metrics-listen `{a}` is not an address: write it like 0.0.0.0:9090")
            }),
        }
    }

    /// Checks what clap cannot: relations between settings.
    pub fn validate(&self) -> Result<(), String> {
        self.metrics_addr()?;
        self.auth()?;
        if self.store_kind() == StoreKind::Redis && self.redis_url.is_none() {
            return Err("--store redis needs --redis-url (SESSIOND_REDIS_URL)".into());
        }
        if self.redis_pool_size == 0 {
            return Err("--redis-pool-size must be at least 1".into());
        }
        if self.lease_min.is_zero() || self.lease_min > self.lease_max {
            return Err(format!(
                "lease bounds are inverted or zero: --lease-min {:?} must be > 0 and <= --lease-max {:?}",
                self.lease_min, self.lease_max
            ));
        }
        if self.lease_default < self.lease_min || self.lease_default > self.lease_max {
            return Err(format!(
                "--lease-default {:?} must lie within --lease-min {:?} and --lease-max {:?}",
                self.lease_default, self.lease_min, self.lease_max
            ));
        }
        if self.lease_max.as_millis() > u32::MAX as u128
            || self.wait_max.as_millis() > u32::MAX as u128
        {
            return Err("--lease-max and --wait-max must be below 49 days".into());
        }
        if self.idle_ttl < Duration::from_secs(1) {
            return Err("--idle-ttl must be at least 1s".into());
        }
        if self.max_fields == 0 || self.max_field_bytes == 0 || self.max_session_bytes == 0 {
            return Err(
                "--max-fields, --max-field-bytes and --max-session-bytes must be above 0".into(),
            );
        }
        if self.max_concurrent_calls == 0 {
            return Err("--max-concurrent-calls must be at least 1".into());
        }
        if self.redis_key_prefix.is_empty() || self.redis_key_prefix.contains(['{', '}']) {
            return Err("--redis-key-prefix must be non-empty and contain no '{' or '}'".into());
        }
        Ok(())
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
        let c = Config::defaults();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.store_kind(), StoreKind::Embedded);
    }

    #[test]
    fn inverted_lease_bounds_are_refused() {
        let c = Config::parse_from(["sessiond", "--lease-min", "10s", "--lease-max", "1s"]);
        assert!(c.validate().unwrap_err().contains("--lease-min"));
    }
}
