//! The flags, their validation and the settings they make.

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
fn sentinels_or_a_cluster_name_the_redis_and_exclude_a_url() {
    let target = |args: &[&str]| {
        let mut all = vec!["sessiond"];
        all.extend_from_slice(args);
        Settings::new(Config::parse_from(all)).map(|s| match s.store {
            StoreSettings::Redis(r) => Some(r.target),
            StoreSettings::Embedded { .. } => None,
        })
    };
    assert_eq!(
        target(&[
            "--redis-sentinel",
            "10.0.0.1:26379, rediss://u:p@10.0.0.2:26379",
            "--redis-sentinel-master",
            "main",
        ]),
        Ok(Some(RedisTarget::Sentinel {
            sentinels: vec![
                "redis://10.0.0.1:26379".into(),
                "rediss://u:p@10.0.0.2:26379".into()
            ],
            master: "main".into(),
        }))
    );
    let both = target(&[
        "--redis-url",
        "redis://x:6379",
        "--redis-sentinel",
        "10.0.0.1:26379",
        "--redis-sentinel-master",
        "main",
    ]);
    assert!(both.unwrap_err().contains("exclusive"));
    let no_name = target(&["--redis-sentinel", "10.0.0.1:26379"]);
    assert!(no_name.unwrap_err().contains("--redis-sentinel-master"));
    let no_sentinels = target(&["--redis-sentinel-master", "main"]);
    assert!(no_sentinels.unwrap_err().contains("needs --redis-sentinel"));
    assert_eq!(
        target(&["--redis-cluster", "10.0.0.1:7000,10.0.0.2:7000"]),
        Ok(Some(RedisTarget::Cluster {
            nodes: vec![
                "redis://10.0.0.1:7000".into(),
                "redis://10.0.0.2:7000".into()
            ],
        }))
    );
    let both = target(&[
        "--redis-url",
        "redis://x",
        "--redis-cluster",
        "10.0.0.1:7000",
    ]);
    assert!(both.unwrap_err().contains("exclusive"));
    let both = target(&[
        "--redis-cluster",
        "10.0.0.1:7000",
        "--redis-sentinel",
        "10.0.0.1:26379",
        "--redis-sentinel-master",
        "m",
    ]);
    assert!(both.unwrap_err().contains("exclusive"));
    let bad = target(&[
        "--redis-sentinel",
        "http://x",
        "--redis-sentinel-master",
        "m",
    ]);
    assert!(bad.unwrap_err().contains("not an address"));
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
    let durability = |extra: &[&str]| match Settings::new(redis(extra).unwrap()).unwrap().store {
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
        ("--max-sessions-per-namespace", "9007199254740993"),
        ("--max-bytes-per-namespace", "8388609GiB"),
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
        ("--max-sessions-per-namespace", "9007199254740992"),
        ("--max-bytes-per-namespace", "8388608GiB"),
    ] {
        let c = Config::parse_from(["sessiond", flag, value]);
        assert!(c.validate().is_ok(), "{flag} {value}");
    }
}

#[test]
fn quotas_are_off_by_default_and_on_when_either_is_set() {
    let s = Settings::new(Config::defaults()).unwrap();
    assert!(!s.quotas_on());
    for (flag, value) in [
        ("--max-sessions-per-namespace", "10"),
        ("--max-bytes-per-namespace", "64MiB"),
    ] {
        let s = Settings::new(Config::parse_from(["sessiond", flag, value])).unwrap();
        assert!(s.quotas_on(), "{flag}");
    }
    let c = Config::parse_from(["sessiond", "--max-bytes-per-namespace", "1KiB"]);
    assert_eq!(Settings::new(c).unwrap().limits.quotas.max_bytes, 1024);
}

#[test]
fn quotas_are_refused_on_a_redis_cluster_only() {
    let with = |target: &[&str], quota: &[&str]| {
        let args = [&["sessiond"][..], target, quota].concat();
        Settings::new(Config::parse_from(args))
    };
    let cluster = ["--redis-cluster", "10.0.0.1:7000"];
    let quota = ["--max-sessions-per-namespace", "10"];
    let e = with(&cluster, &quota).unwrap_err();
    assert!(
        e.contains("--max-sessions-per-namespace") && e.contains("Cluster"),
        "{e}"
    );
    assert!(with(&cluster, &[]).is_ok());
    assert!(with(&["--redis-url", "redis://127.0.0.1:6379"], &quota).is_ok());
    let sentinel = [
        "--redis-sentinel",
        "10.0.0.1:26379",
        "--redis-sentinel-master",
        "m",
    ];
    assert!(with(&sentinel, &quota).is_ok());
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

#[test]
fn tracing_is_off_without_an_endpoint_and_checked_with_one() {
    let otlp = |args: &[&str]| {
        let c = Config::parse_from(std::iter::once("sessiond").chain(args.iter().copied()));
        OtlpSettings::new(&c)
    };
    assert_eq!(otlp(&[]), Ok(None));
    assert_eq!(otlp(&["--otlp-endpoint", " "]), Ok(None));
    let on = otlp(&[
        "--otlp-endpoint",
        "http://collector:4317",
        "--otlp-sample-ratio",
        "0.25",
    ])
    .unwrap()
    .unwrap();
    assert_eq!(on.endpoint, "http://collector:4317");
    assert_eq!(on.sample_ratio, 0.25);
    assert_eq!(on.service_name, "sessiond");
    for bad in [
        &["--otlp-sample-ratio", "1.01"][..],
        &["--otlp-sample-ratio=-0.5"],
        &["--otlp-sample-ratio", "NaN"],
        &["--otlp-endpoint", "collector:4317"],
        &["--otlp-endpoint", "https://collector:4317"],
        &["--otlp-endpoint", "http://"],
        &["--otlp-service-name", ""],
    ] {
        let err = otlp(bad).unwrap_err();
        assert!(err.starts_with("--otlp-"), "{bad:?}: {err}");
        let c = Config::parse_from(std::iter::once("sessiond").chain(bad.iter().copied()));
        assert!(Settings::new(c).is_err(), "{bad:?}");
    }
}
