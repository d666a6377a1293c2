//! `Settings`: a `Config` validated, resolved and built once: the tokens
//! file read, `Limits` and the connection settings made, `auto` resolved,
//! and every value that could overflow where it is used refused.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{Config, RedisDurability, StoreKind};
use crate::auth::Auth;
use crate::conn::ConnSettings;
use crate::session::{Limits, Quotas};
use crate::tls::{Tls, TlsFiles};

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
    /// The caps on WatchSession streams (0: none).
    pub watch: crate::watch::WatchLimits,
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
    /// Where the Redis is, and how it is found.
    pub target: RedisTarget,
    /// The data nodes' ACL user and password.
    pub username: Option<String>,
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

/// How sessiond finds its Redis (`--redis-url`, `--redis-sentinel` or
/// `--redis-cluster`, exclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One server at a fixed URL.
    Url(String),
    /// The master the sentinels at `sentinels` (URLs) know as `master`.
    Sentinel {
        sentinels: Vec<String>,
        master: String,
    },
    /// A Redis Cluster, found through these of its nodes (URLs).
    Cluster { nodes: Vec<String> },
}

/// `host:port` or URL entries of a list flag, as URLs, each checked.
fn addresses(flag: &str, list: &[String]) -> Result<Vec<String>, String> {
    list.iter()
        .map(|a| a.trim())
        .filter(|a| !a.is_empty())
        .map(|a| {
            let url = if a.contains("://") {
                a.to_owned()
            } else {
                format!("redis://{a}")
            };
            redis::IntoConnectionInfo::into_connection_info(url.as_str())
                .map(|_| url)
                .map_err(|e| format!("{flag} `{a}` is not an address: {e}"))
        })
        .collect()
}

/// The Redis target the flags name, if any; `Err` when they contradict.
fn redis_target(c: &mut Config) -> Result<Option<RedisTarget>, String> {
    let sentinels = addresses("--redis-sentinel", &c.redis_sentinel)?;
    let nodes = addresses("--redis-cluster", &c.redis_cluster)?;
    let master = c
        .redis_sentinel_master
        .take()
        .filter(|m| !m.trim().is_empty());
    let url = c.redis_url.take().filter(|u| !u.trim().is_empty());
    let given = [url.is_some(), !sentinels.is_empty(), !nodes.is_empty()];
    if given.iter().filter(|g| **g).count() > 1 {
        return Err(
            "--redis-url, --redis-sentinel and --redis-cluster are exclusive: give the one \
             that says how your Redis runs (with Sentinel or Cluster, sessiond finds the \
             servers itself)"
                .into(),
        );
    }
    if master.is_some() && sentinels.is_empty() {
        return Err(
            "--redis-sentinel-master needs --redis-sentinel (the sentinels' addresses)".into(),
        );
    }
    if let Some(url) = url {
        return Ok(Some(RedisTarget::Url(url)));
    }
    if !nodes.is_empty() {
        return Ok(Some(RedisTarget::Cluster { nodes }));
    }
    if sentinels.is_empty() {
        return Ok(None);
    }
    let Some(master) = master else {
        return Err(
            "--redis-sentinel needs --redis-sentinel-master (the name the sentinels monitor \
             the master under)"
                .into(),
        );
    };
    Ok(Some(RedisTarget::Sentinel { sentinels, master }))
}

impl Settings {
    /// Whether a per-namespace quota is set. The Redis store counts usage
    /// in keys of the namespace (`<prefix>:q:<ns>:*`), which scripts touch
    /// beside the session's own keys: in another Cluster slot. Quotas need
    /// the embedded store or a single Redis, so `new` refuses them with a
    /// Redis Cluster.
    pub fn quotas_on(&self) -> bool {
        self.limits.quotas.is_on()
    }

    /// Validates `c`; `Err` is one line that says what to fix.
    pub fn new(mut c: Config) -> Result<Settings, String> {
        check_bounds(&c)?;
        OtlpSettings::new(&c)?;
        let target = redis_target(&mut c)?;
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
        let store = match (c.store, target) {
            (StoreKind::Redis | StoreKind::Auto, Some(target)) => {
                StoreSettings::Redis(RedisSettings {
                    target,
                    username: c.redis_username,
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
                return Err(
                    "--store redis needs --redis-url (SESSIOND_REDIS_URL), --redis-sentinel or --redis-cluster"
                        .into(),
                );
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
        if c.idempotency_window < Duration::from_secs(1) {
            return Err("--idempotency-window must be at least 1s".into());
        }
        crate::session::check_rate(
            c.rate_limit_default_per_second,
            c.rate_limit_default_burst,
        )
        .map_err(|why| {
            format!(
                "--rate-limit-default-per-second and --rate-limit-default-burst make no limit: {}",
                why.replace("per_second", "the rate")
            )
        })?;
        if c.max_fields == 0 || c.max_field_bytes == 0 || c.max_session_bytes == 0 {
            return Err(
                "--max-fields, --max-field-bytes and --max-session-bytes must be above 0".into(),
            );
        }
        if c.max_concurrent_calls == 0 {
            return Err("--max-concurrent-calls must be at least 1".into());
        }
        let settings = Settings {
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
                quotas: Quotas {
                    max_sessions: c.max_sessions_per_namespace,
                    max_bytes: c.max_bytes_per_namespace,
                },
                idempotency_window: c.idempotency_window,
                rate_default: (c.rate_limit_default_per_second, c.rate_limit_default_burst),
                max_turn_payload_bytes: c.max_turn_payload_bytes,
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
            watch: crate::watch::WatchLimits {
                watchers: c.max_watchers,
                per_namespace: c.max_watchers_per_namespace,
            },
            connections,
        };
        let cluster = matches!(
            &settings.store,
            StoreSettings::Redis(RedisSettings {
                target: RedisTarget::Cluster { .. },
                ..
            })
        );
        if cluster && settings.quotas_on() {
            return Err(
                "--max-sessions-per-namespace and --max-bytes-per-namespace need the \
                 embedded store or a single Redis (--redis-url or --redis-sentinel): their \
                 counters live in another Cluster slot than the sessions"
                    .into(),
            );
        }
        Ok(settings)
    }
}

/// Longest duration a setting may have: beyond it, times in milliseconds
/// since the epoch (expiry times, Redis PEXPIRE) overflow or come close.
const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Most fields a session may be allowed.
const MAX_FIELDS: usize = 1_000_000;

/// Largest session a setting may allow: the decoding limit derived from it
/// (`Limits::max_request_bytes`) stays below 2 GiB.
const MAX_SESSION_BYTES: u64 = 1 << 30;
/// The largest `--max-turn-payload-bytes`.
const MAX_TURN_PAYLOAD_BYTES: u64 = 64 << 10;

/// Largest quota a setting may have (see `check_bounds`).
const MAX_QUOTA: u64 = 1 << 53;

/// Refuses durations and sizes that would overflow where they are used.
fn check_bounds(c: &Config) -> Result<(), String> {
    for (flag, d) in [
        ("--idle-ttl", c.idle_ttl),
        ("--idempotency-window", c.idempotency_window),
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
    // A grant carries up to 16 of them, beside the session, in one answer.
    if c.max_turn_payload_bytes > MAX_TURN_PAYLOAD_BYTES {
        return Err("--max-turn-payload-bytes must be at most 64KiB".into());
    }
    // The Redis scripts count usage in Lua numbers (doubles): exact up to
    // 2^53, far beyond any real quota.
    if c.max_sessions_per_namespace > MAX_QUOTA || c.max_bytes_per_namespace > MAX_QUOTA {
        return Err(format!(
            "--max-sessions-per-namespace and --max-bytes-per-namespace must be at most {MAX_QUOTA}"
        ));
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

/// Where spans go, when `--otlp-endpoint` is set (`telemetry::init` reads
/// it before the rest is validated, so that start-up is traced and logged).
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpSettings {
    pub endpoint: String,
    /// Of the traces that start here; 0..=1.
    pub sample_ratio: f64,
    pub service_name: String,
}

impl OtlpSettings {
    /// `None` when tracing is off; `Err` says what to fix.
    pub fn new(c: &Config) -> Result<Option<OtlpSettings>, String> {
        let ratio = c.otlp_sample_ratio;
        if !(0.0..=1.0).contains(&ratio) {
            return Err(format!(
                "--otlp-sample-ratio must lie within 0 and 1, not {ratio}"
            ));
        }
        if c.otlp_service_name.trim().is_empty() {
            return Err("--otlp-service-name must not be empty".into());
        }
        let endpoint = match c.otlp_endpoint.as_deref().map(str::trim) {
            None | Some("") => return Ok(None),
            Some(e) => e,
        };
        let uri: tonic::codegen::http::Uri = endpoint.parse().map_err(|_| {
            format!(
                "--otlp-endpoint `{endpoint}` is not a URL: write it like http://collector:4317"
            )
        })?;
        // Plaintext only: spans go to a collector beside sessiond (an agent
        // or sidecar), which forwards them over TLS if it must.
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(format!(
                "--otlp-endpoint `{endpoint}` must be an http:// URL with a host (a collector beside sessiond)"
            ));
        }
        Ok(Some(OtlpSettings {
            endpoint: endpoint.to_owned(),
            sample_ratio: ratio,
            service_name: c.otlp_service_name.clone(),
        }))
    }
}
