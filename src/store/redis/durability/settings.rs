//! The server's settings that decide what an acknowledged write survives,
//! read with CONFIG GET (and INFO for the replicas), and the risks they
//! carry under each `--redis-durability`: a pure function of what was read,
//! so every combination is tested without a server.

use redis::Value;

use super::super::Inner;
use super::super::fault::Fault;
use crate::config::RedisDurability;
use crate::stats::{Durability, Risk};

/// The server's settings that decide what survives, as read; `None` where
/// the server did not say.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct ServerSettings {
    pub(super) appendonly: Option<String>,
    pub(super) appendfsync: Option<String>,
    pub(super) maxmemory_policy: Option<String>,
    pub(super) maxmemory: Option<u64>,
    /// Replicas connected, read only for `replicas:N`.
    pub(super) replicas: Option<u32>,
}

/// What a check found: the settings, or why they could not be read.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Found {
    Settings(ServerSettings),
    Refused(String),
}

/// The risks of `found` under `mode`; `honour` is the verdict of the probe
/// of the wait command (`Err`: why this server cannot do what `mode` asks).
pub(super) fn assess(
    found: &Found,
    mode: RedisDurability,
    honour: &Result<(), String>,
) -> Durability {
    let mut risks = Vec::new();
    if let Err(why) = honour {
        risks.push((
            Risk::Unsupported,
            format!("{why}: every write and grant fails with UNAVAILABLE"),
        ));
    }
    let setting = match found {
        Found::Refused(why) => {
            risks.push((
                Risk::Unknown,
                format!(
                    "cannot read Redis's persistence settings ({why}): durability unknown; \
                     allow CONFIG GET, or check appendonly, appendfsync and maxmemory-policy by hand"
                ),
            ));
            "unknown"
        }
        Found::Settings(s) => {
            let setting = match (s.appendonly.as_deref(), s.appendfsync.as_deref()) {
                (Some("no"), _) => "none",
                (Some("yes"), Some("always")) => "aof-always",
                (Some("yes"), Some("everysec")) => "aof-everysec",
                (Some("yes"), Some("no")) => "aof-no",
                _ => "unknown",
            };
            settings_risks(s, setting, mode, &mut risks);
            setting
        }
    };
    Durability {
        setting,
        wait: mode.to_string(),
        risks,
    }
}

fn settings_risks(
    s: &ServerSettings,
    setting: &str,
    mode: RedisDurability,
    risks: &mut Vec<(Risk, String)>,
) {
    if setting == "none" {
        risks.push((
            Risk::NoAof,
            "appendonly no: a restart of Redis loses every acknowledged write made since its \
             last snapshot (all of them without snapshots), and a master restarting empty \
             empties its replicas too; set appendonly yes with appendfsync always"
                .into(),
        ));
    }
    // AOF on says the operator wants writes on disk; unless each write waits
    // for its fsync (`aof`) or rests on replicas, `always` alone gives that.
    let lag = match setting {
        "aof-everysec" => Some("up to about a second"),
        "aof-no" => Some("up to about 30 seconds (the kernel decides)"),
        _ => None,
    };
    if let (Some(lag), RedisDurability::None) = (lag, mode) {
        risks.push((
            Risk::Fsync,
            format!(
                "appendfsync {}: a crash of the Redis host (not only of the process) loses {lag} \
                 of acknowledged writes; set appendfsync always, or --redis-durability aof",
                s.appendfsync.as_deref().unwrap_or("?")
            ),
        ));
    }
    match s.maxmemory_policy.as_deref() {
        Some("noeviction") | None => {}
        Some(policy) => {
            let now = if s.maxmemory == Some(0) {
                " (maxmemory is 0: nothing is evicted until a limit is set)"
            } else {
                ""
            };
            risks.push((
                Risk::Eviction,
                format!(
                    "maxmemory-policy {policy}: at maxmemory Redis evicts session keys \
                     (volatile-* policies too: session data carries a TTL), losing acknowledged \
                     writes{now}; set maxmemory-policy noeviction"
                ),
            ));
        }
    }
    if let (RedisDurability::Replicas(n), Some(k)) = (mode, s.replicas)
        && k < n
    {
        risks.push((
            Risk::Replicas,
            format!(
                "{k} replica(s) connected, --redis-durability replicas:{n} needs {n}: \
                 writes and grants fail with UNAVAILABLE until they are back"
            ),
        ));
    }
}

/// The server's refusal (an error reply), as text; `None` for a fault of
/// the connection.
pub(in crate::store::redis) fn refused(fault: &Fault) -> Option<String> {
    match fault {
        Fault::Redis(e)
            if matches!(
                e.kind(),
                redis::ErrorKind::Server(_) | redis::ErrorKind::Extension
            ) =>
        {
            Some(e.to_string())
        }
        _ => None,
    }
}

/// The value of `name` in a CONFIG GET answer (a flat array, or a map).
fn config_value(answer: &Value, name: &str) -> Option<String> {
    let text = |v: &Value| match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    match answer {
        Value::Array(items) => items
            .chunks(2)
            .find(|pair| pair.first().and_then(text).as_deref() == Some(name))
            .and_then(|pair| pair.get(1))
            .and_then(text),
        Value::Map(pairs) => match pairs.iter().find(|(k, _)| text(k).as_deref() == Some(name)) {
            Some((_, v)) => text(v),
            // Redis Cluster: one answer per node, by address; the first
            // node's stands for all (a cluster's nodes share their settings).
            None => pairs.iter().find_map(|(_, v)| match v {
                Value::Array(_) | Value::Map(_) => config_value(v, name),
                _ => None,
            }),
        },
        _ => None,
    }
}

/// The fewest replicas any master has, from an INFO replication answer:
/// one text, or on Redis Cluster one per node by address.
fn fewest_replicas(answer: &Value) -> Option<u32> {
    let count = |v: &Value| match v {
        Value::BulkString(b) => std::str::from_utf8(b)
            .ok()
            .filter(|info| info_field(info, "role").as_deref() != Some("slave"))
            .and_then(|info| info_field(info, "connected_slaves")?.parse().ok()),
        Value::VerbatimString { text, .. } => info_field(text, "connected_slaves")?.parse().ok(),
        _ => None,
    };
    match answer {
        Value::Map(nodes) => nodes.iter().filter_map(|(_, v)| count(v)).min(),
        other => count(other),
    }
}

/// `field:value` lines of an INFO answer.
pub(in crate::store::redis) fn info_field(info: &str, field: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .map(|v| v.trim().to_owned())
}

impl Inner {
    /// Reads the server's settings. A refusal (CONFIG renamed or denied) is
    /// `Found::Refused`; only a fault of the connection is an error.
    pub(super) async fn read_settings(&self) -> Result<Found, Fault> {
        let mut s = ServerSettings::default();
        // One parameter per CONFIG GET: servers before 7.0 take only one.
        for name in ["appendonly", "appendfsync", "maxmemory-policy", "maxmemory"] {
            let answer = match self
                .ask::<Value>(redis::cmd("CONFIG").arg("GET").arg(name))
                .await
            {
                Ok(v) => v,
                Err(f) => match refused(&f) {
                    Some(why) => return Ok(Found::Refused(format!("CONFIG GET: {why}"))),
                    None => return Err(f),
                },
            };
            let value = config_value(&answer, name);
            match name {
                "appendonly" => s.appendonly = value,
                "appendfsync" => s.appendfsync = value,
                "maxmemory-policy" => s.maxmemory_policy = value,
                _ => s.maxmemory = value.and_then(|v| v.parse().ok()),
            }
        }
        if let RedisDurability::Replicas(_) = self.durability.mode {
            match self
                .ask::<Value>(redis::cmd("INFO").arg("replication"))
                .await
            {
                Ok(info) => s.replicas = fewest_replicas(&info),
                Err(f) if refused(&f).is_some() => {}
                Err(f) => return Err(f),
            }
        }
        Ok(Found::Settings(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(aof: &str, fsync: &str, policy: &str, maxmemory: u64) -> Found {
        Found::Settings(ServerSettings {
            appendonly: Some(aof.into()),
            appendfsync: Some(fsync.into()),
            maxmemory_policy: Some(policy.into()),
            maxmemory: Some(maxmemory),
            replicas: None,
        })
    }

    fn risks(d: &Durability) -> Vec<Risk> {
        d.risks.iter().map(|(r, _)| *r).collect()
    }

    #[test]
    fn a_clusters_answers_are_read_per_node() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let per_node = Value::Map(vec![
            (
                bulk("10.0.0.1:7000"),
                bulk("role:master\r\nconnected_slaves:2\r\n"),
            ),
            (
                bulk("10.0.0.2:7000"),
                bulk("role:master\r\nconnected_slaves:1\r\n"),
            ),
            (
                bulk("10.0.0.3:7000"),
                bulk("role:slave\r\nconnected_slaves:0\r\n"),
            ),
        ]);
        assert_eq!(fewest_replicas(&per_node), Some(1));
        assert_eq!(fewest_replicas(&bulk("connected_slaves:3\r\n")), Some(3));
        let config = Value::Map(vec![(
            bulk("10.0.0.1:7000"),
            Value::Array(vec![bulk("appendonly"), bulk("yes")]),
        )]);
        assert_eq!(config_value(&config, "appendonly").as_deref(), Some("yes"));
    }

    #[test]
    fn settings_are_named_and_their_risks_found() {
        use RedisDurability::*;
        let ok = Ok(());
        let safe = assess(&settings("yes", "always", "noeviction", 0), None, &ok);
        assert_eq!(
            (safe.setting, safe.wait.as_str(), risks(&safe)),
            ("aof-always", "none", vec![])
        );

        let d = assess(&settings("no", "everysec", "noeviction", 0), None, &ok);
        assert_eq!((d.setting, risks(&d)), ("none", vec![Risk::NoAof]));

        // everysec is a risk only when writes do not wait for the fsync.
        let d = assess(&settings("yes", "everysec", "noeviction", 0), None, &ok);
        assert_eq!((d.setting, risks(&d)), ("aof-everysec", vec![Risk::Fsync]));
        assert!(
            d.risks[0].1.starts_with("appendfsync everysec: "),
            "{:?}",
            d.risks
        );
        let d = assess(&settings("yes", "everysec", "noeviction", 0), Aof, &ok);
        assert_eq!(risks(&d), vec![]);
        let d = assess(&settings("yes", "no", "noeviction", 0), None, &ok);
        assert_eq!((d.setting, risks(&d)), ("aof-no", vec![Risk::Fsync]));

        for policy in ["volatile-lru", "volatile-ttl", "allkeys-lru"] {
            let d = assess(&settings("yes", "always", policy, 1 << 30), None, &ok);
            assert_eq!(risks(&d), vec![Risk::Eviction], "{policy}");
            assert!(
                d.risks[0]
                    .1
                    .starts_with(&format!("maxmemory-policy {policy}: "))
            );
            assert!(!d.risks[0].1.contains("maxmemory is 0"));
        }
        let d = assess(&settings("yes", "always", "allkeys-lru", 0), None, &ok);
        assert!(d.risks[0].1.contains("maxmemory is 0"), "{:?}", d.risks);

        let mut s = ServerSettings {
            appendonly: Some("yes".into()),
            appendfsync: Some("always".into()),
            maxmemory_policy: Some("noeviction".into()),
            maxmemory: Some(0),
            replicas: Some(0),
        };
        let d = assess(&Found::Settings(s.clone()), Replicas(1), &ok);
        assert_eq!(
            (d.wait.as_str(), risks(&d)),
            ("replicas:1", vec![Risk::Replicas])
        );
        s.replicas = Some(1);
        assert_eq!(
            risks(&assess(&Found::Settings(s), Replicas(1), &ok)),
            vec![]
        );
    }

    #[test]
    fn a_refused_read_is_unknown_and_an_unusable_wait_a_risk() {
        let d = assess(
            &Found::Refused("CONFIG GET: NOPERM".into()),
            RedisDurability::None,
            &Ok(()),
        );
        assert_eq!((d.setting, risks(&d)), ("unknown", vec![Risk::Unknown]));
        let d = assess(
            &settings("yes", "always", "noeviction", 0),
            RedisDurability::Aof,
            &Err("Redis 7.0.15 has no WAITAOF".into()),
        );
        assert_eq!(risks(&d), vec![Risk::Unsupported]);
        assert!(
            d.risks[0]
                .1
                .ends_with("every write and grant fails with UNAVAILABLE")
        );
    }

    #[test]
    fn answers_are_read_in_either_protocol() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let flat = Value::Array(vec![bulk("appendonly"), bulk("yes")]);
        assert_eq!(config_value(&flat, "appendonly").as_deref(), Some("yes"));
        assert_eq!(config_value(&flat, "appendfsync"), None);
        let map = Value::Map(vec![(bulk("maxmemory"), bulk("100"))]);
        assert_eq!(config_value(&map, "maxmemory").as_deref(), Some("100"));
        let info = "# Replication\r\nrole:master\r\nconnected_slaves:2\r\nslave0:ip=x\r\n";
        assert_eq!(info_field(info, "connected_slaves").as_deref(), Some("2"));
        assert_eq!(info_field(info, "redis_version"), None);
    }
}
