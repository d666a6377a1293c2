//! Redis over TLS (`rediss://`), logging in as an ACL user.

use std::path::Path;
use std::time::{Duration, Instant};

use rcgen::ExtendedKeyUsagePurpose;
use sessiond::pb::Consistency;

use super::Ca;
use crate::support::set;

/// The binary on `port` with `args`, trusting the CAs of `ca_file` for
/// Redis (SSL_CERT_FILE), killed on drop.
struct Sessiond(std::process::Child);

impl Sessiond {
    fn start(port: u16, ca_file: &Path, args: &[&str]) -> Sessiond {
        let listen = format!("127.0.0.1:{port}");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_sessiond"))
            .args(["--listen", &listen, "--log-level", "warn"])
            .args(args)
            .env("SSL_CERT_FILE", ca_file)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        Sessiond(child)
    }
}

impl Drop for Sessiond {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_over_tls_with_an_acl_user() {
    let ca = Ca::new("Redis CA");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.issue(ExtendedKeyUsagePurpose::ServerAuth);
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    std::fs::write(path("redis.crt"), cert).unwrap();
    std::fs::write(path("redis.key"), key).unwrap();
    std::fs::write(path("ca.crt"), &ca.pem).unwrap();
    std::fs::write(path("other-ca.crt"), Ca::new("another CA").pem).unwrap();
    let tls_port = crate::support::free_port().to_string();
    let (redis_cert, redis_key, redis_ca) = (path("redis.crt"), path("redis.key"), path("ca.crt"));
    // Only the ACL user `sessiond` can get in, and only over TLS.
    let _redis = crate::support::Redis::start_with(&[
        "--tls-port",
        &tls_port,
        "--tls-cert-file",
        &redis_cert,
        "--tls-key-file",
        &redis_key,
        "--tls-ca-cert-file",
        &redis_ca,
        "--tls-auth-clients",
        "no",
        "--user",
        "default",
        "off",
        "--user",
        "sessiond",
        "on",
        ">password-of-sessiond",
        "~*",
        "&*",
        "+@all",
    ]);
    let url = format!("rediss://sessiond@localhost:{tls_port}/0");
    let args = [
        "--redis-url",
        &url,
        "--redis-password",
        "password-of-sessiond",
        "--redis-timeout",
        "1s",
    ];

    let port = crate::support::free_port();
    let _trusting = Sessiond::start(port, &dir.path().join("ca.crt"), &args);
    let mut c = crate::support::client(format!("127.0.0.1:{port}").parse().unwrap()).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.update_session(set("tls", &[("k", "v")])).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "no write ever went through rediss://"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = crate::support::get(&mut c, "tls", Consistency::Strong)
        .await
        .unwrap();
    assert_eq!(got.session.unwrap().fields["k"], "v");

    // A sessiond that does not trust Redis's CA writes nothing.
    let port = crate::support::free_port();
    let _doubting = Sessiond::start(port, &dir.path().join("other-ca.crt"), &args);
    let mut c = crate::support::client(format!("127.0.0.1:{port}").parse().unwrap()).await;
    let refused = c
        .update_session(set("tls", &[("k", "w")]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
}

/// A Redis Cluster reached only over TLS, as an ACL user: three masters
/// that speak TLS alone (clients and the cluster bus), name themselves
/// `localhost`, and let in only `sessiond`. Everything sessiond opens to
/// them (the shared cluster connections, each shard's subscriber) must
/// carry both, or nothing works: a write on every shard and the sharded
/// feed's trust prove they do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_over_tls_with_an_acl_user() {
    use crate::support::topology::free_cluster_port;
    let ca = Ca::new("Redis CA");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.issue(ExtendedKeyUsagePurpose::ServerAuth);
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    std::fs::write(path("redis.crt"), cert).unwrap();
    std::fs::write(path("redis.key"), key).unwrap();
    std::fs::write(path("ca.crt"), &ca.pem).unwrap();
    // The cluster bus is TLS too: a node connecting to another's presents
    // a client certificate.
    let (bus_cert, bus_key) = ca.issue(ExtendedKeyUsagePurpose::ClientAuth);
    std::fs::write(path("bus.crt"), bus_cert).unwrap();
    std::fs::write(path("bus.key"), bus_key).unwrap();
    let (redis_cert, redis_key, redis_ca) = (path("redis.crt"), path("redis.key"), path("ca.crt"));
    let (bus_cert, bus_key) = (path("bus.crt"), path("bus.key"));
    let ports: Vec<u16> = (0..3).map(|_| free_cluster_port()).collect();
    let _nodes: Vec<crate::support::Redis> = ports
        .iter()
        .map(|p| {
            crate::support::Redis::start_on(
                *p,
                &[
                    "--port",
                    "0",
                    "--tls-port",
                    &p.to_string(),
                    "--tls-cluster",
                    "yes",
                    "--tls-cert-file",
                    &redis_cert,
                    "--tls-key-file",
                    &redis_key,
                    "--tls-ca-cert-file",
                    &redis_ca,
                    "--tls-client-cert-file",
                    &bus_cert,
                    "--tls-client-key-file",
                    &bus_key,
                    "--tls-auth-clients",
                    "no",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-announce-hostname",
                    "localhost",
                    "--cluster-preferred-endpoint-type",
                    "hostname",
                    "--user",
                    "default",
                    "off",
                    "--user",
                    "sessiond",
                    "on",
                    ">password-of-sessiond",
                    "~*",
                    "&*",
                    "+@all",
                ],
            )
        })
        .collect();
    let tls_cli = |port: u16, args: &[&str]| -> String {
        let out = std::process::Command::new("redis-cli")
            .args(["--tls", "--cacert", &redis_ca, "-h", "localhost"])
            .args(["-p", &port.to_string()])
            .args(["--user", "sessiond", "--pass", "password-of-sessiond"])
            .arg("--no-auth-warning")
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    // CLUSTER MEET takes addresses; the nodes then name themselves
    // `localhost` to clients, which their certificate is for.
    let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let mut create = vec!["--cluster", "create"];
    create.extend(addrs.iter().map(String::as_str));
    create.push("--cluster-yes");
    tls_cli(ports[0], &create);
    for p in &ports {
        crate::support::topology::wait_for("the cluster ok", Duration::from_secs(30), || {
            tls_cli(*p, &["CLUSTER", "INFO"]).contains("cluster_state:ok")
        });
    }

    let nodes: Vec<String> = ports
        .iter()
        .map(|p| format!("rediss://sessiond@localhost:{p}"))
        .collect();
    let nodes = nodes.join(",");
    let args = [
        "--redis-cluster",
        &nodes,
        "--redis-password",
        "password-of-sessiond",
        "--redis-timeout",
        "1s",
    ];
    let port = crate::support::free_port();
    let _sessiond = Sessiond::start(port, &dir.path().join("ca.crt"), &args);
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut c = crate::support::client(addr).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !crate::support::stats(addr)
        .await
        .cache
        .is_some_and(|c| c.feed_healthy)
    {
        assert!(
            Instant::now() < deadline,
            "the shards' subscriptions never came up over TLS"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Ids on every master: each write goes over TLS to its slot's master.
    let mut masters = std::collections::HashSet::new();
    for i in 0..30 {
        let id = format!("tls-{i}");
        c.update_session(set(&id, &[("k", "v")])).await.unwrap();
        let got = crate::support::get(&mut c, &id, Consistency::Strong)
            .await
            .unwrap();
        assert_eq!(got.session.unwrap().fields["k"], "v");
        let key = format!("sd:{{default/{id}}}:d");
        let slot = tls_cli(ports[0], &["CLUSTER", "KEYSLOT", &key]);
        let owner = ports
            .iter()
            .find(|p| tls_cli(**p, &["CLUSTER", "COUNTKEYSINSLOT", &slot]) != "0")
            .copied();
        masters.insert(owner);
    }
    assert_eq!(
        masters.len(),
        3,
        "the ids did not reach every master: {masters:?}"
    );
}

/// A sentinel, from a config file of its own, killed on drop.
struct TlsSentinel {
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Drop for TlsSentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sentinel and its master both over TLS alone, each with its own ACL
/// user: the sentinels' in their URL, the data nodes' in
/// `--redis-username` and `--redis-password`. Without `--redis-username`
/// the master refuses the default user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_over_tls_with_acl_users() {
    let ca = Ca::new("Redis CA");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.issue(ExtendedKeyUsagePurpose::ServerAuth);
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    std::fs::write(path("redis.crt"), cert).unwrap();
    std::fs::write(path("redis.key"), key).unwrap();
    std::fs::write(path("ca.crt"), &ca.pem).unwrap();
    // The sentinel reaches the master over TLS as a client.
    let (client_cert, client_key) = ca.issue(ExtendedKeyUsagePurpose::ClientAuth);
    std::fs::write(path("client.crt"), client_cert).unwrap();
    std::fs::write(path("client.key"), client_key).unwrap();
    let tls = [
        ("tls-cert-file", path("redis.crt")),
        ("tls-key-file", path("redis.key")),
        ("tls-ca-cert-file", path("ca.crt")),
        ("tls-client-cert-file", path("client.crt")),
        ("tls-client-key-file", path("client.key")),
        ("tls-auth-clients", "no".to_owned()),
    ];
    let master_port = crate::support::free_port();
    let mut master_args = vec!["--port".to_owned(), "0".into(), "--tls-port".into()];
    master_args.push(master_port.to_string());
    for (k, v) in &tls {
        master_args.extend([format!("--{k}"), v.clone()]);
    }
    master_args.extend(
        [
            "--user",
            "default",
            "off",
            "--user",
            "sessiond",
            "on",
            ">password-of-sessiond",
            "~*",
            "&*",
            "+@all",
        ]
        .map(String::from),
    );
    let master_args: Vec<&str> = master_args.iter().map(String::as_str).collect();
    let _master = crate::support::Redis::start_on(master_port, &master_args);

    let sentinel_port = crate::support::free_port();
    let sentinel_dir = tempfile::tempdir().unwrap();
    let mut conf = format!(
        "port 0\ntls-port {sentinel_port}\nbind 127.0.0.1\ndir {}\ntls-replication yes\n",
        sentinel_dir.path().display()
    );
    for (k, v) in &tls {
        conf.push_str(&format!("{k} {v}\n"));
    }
    conf.push_str(&format!(
        "user default off\nuser watcher on >password-of-watcher +@all\n\
         sentinel monitor m1 127.0.0.1 {master_port} 1\n\
         sentinel auth-user m1 sessiond\nsentinel auth-pass m1 password-of-sessiond\n"
    ));
    let conf_path = sentinel_dir.path().join("sentinel.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let child = std::process::Command::new("redis-server")
        .arg(&conf_path)
        .arg("--sentinel")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _sentinel = TlsSentinel {
        child,
        _dir: sentinel_dir,
    };

    let sentinels = format!("rediss://watcher:password-of-watcher@localhost:{sentinel_port}");
    let mut args = vec![
        "--redis-sentinel",
        &sentinels,
        "--redis-sentinel-master",
        "m1",
        "--redis-password",
        "password-of-sessiond",
        "--redis-timeout",
        "1s",
    ];
    // The default user is off on the master: without the ACL user, nothing
    // gets through.
    let port = crate::support::free_port();
    let without = Sessiond::start(port, &dir.path().join("ca.crt"), &args);
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut c = crate::support::client(addr).await;
    let refused = c
        .update_session(set("sentinel-tls", &[("k", "v")]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    drop(without);

    args.extend(["--redis-username", "sessiond"]);
    let port = crate::support::free_port();
    let _with = Sessiond::start(port, &dir.path().join("ca.crt"), &args);
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut c = crate::support::client(addr).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while c
        .update_session(set("sentinel-tls", &[("k", "v")]))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "no write ever went through the sentinel's master over TLS"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = crate::support::get(&mut c, "sentinel-tls", Consistency::Strong)
        .await
        .unwrap();
    assert_eq!(got.session.unwrap().fields["k"], "v");
    // The feed subscribes on the master over TLS as the same user.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !crate::support::stats(addr)
        .await
        .cache
        .is_some_and(|c| c.feed_healthy)
    {
        assert!(Instant::now() < deadline, "the feed never came up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
