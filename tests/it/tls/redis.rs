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

/// A CA, and in a directory of their own its certificate (`ca.crt`) and a
/// server's (`redis.crt`, `redis.key`) and a client's (`client.crt`,
/// `client.key`) it issued for localhost.
struct Certs {
    dir: tempfile::TempDir,
}

impl Certs {
    fn new() -> Certs {
        let ca = Ca::new("Redis CA");
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, pem: &str| std::fs::write(dir.path().join(name), pem).unwrap();
        let (cert, key) = ca.issue(ExtendedKeyUsagePurpose::ServerAuth);
        write("redis.crt", &cert);
        write("redis.key", &key);
        let (cert, key) = ca.issue(ExtendedKeyUsagePurpose::ClientAuth);
        write("client.crt", &cert);
        write("client.key", &key);
        write("ca.crt", &ca.pem);
        write("other-ca.crt", &Ca::new("another CA").pem);
        Certs { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_owned()
    }

    /// A Redis server's settings for TLS on `tls_port` alone: its
    /// certificate, and the client one it presents to other servers (the
    /// cluster bus, a sentinel's master); clients need none.
    fn redis_tls(&self, tls_port: u16) -> Vec<(&'static str, String)> {
        vec![
            ("port", "0".into()),
            ("tls-port", tls_port.to_string()),
            ("tls-cert-file", self.path("redis.crt")),
            ("tls-key-file", self.path("redis.key")),
            ("tls-ca-cert-file", self.path("ca.crt")),
            ("tls-client-cert-file", self.path("client.crt")),
            ("tls-client-key-file", self.path("client.key")),
            ("tls-auth-clients", "no".into()),
        ]
    }
}

/// `--name value` arguments.
fn flags(settings: &[(&str, String)]) -> Vec<String> {
    settings
        .iter()
        .flat_map(|(k, v)| [format!("--{k}"), v.clone()])
        .collect()
}

/// Only the ACL user `sessiond` gets in.
const ACL: [&str; 10] = [
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
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_over_tls_with_an_acl_user() {
    let certs = Certs::new();
    let tls_port = crate::support::free_port();
    // Only the ACL user `sessiond` can get in, and only over TLS.
    let mut args = flags(&certs.redis_tls(tls_port));
    args.extend(ACL.map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let _redis = crate::support::Redis::start_on(tls_port, &args);
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
    let _trusting = Sessiond::start(port, Path::new(&certs.path("ca.crt")), &args);
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
    let _doubting = Sessiond::start(port, Path::new(&certs.path("other-ca.crt")), &args);
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
    let certs = Certs::new();
    let redis_ca = certs.path("ca.crt");
    let ports: Vec<u16> = (0..3).map(|_| free_cluster_port()).collect();
    let _nodes: Vec<crate::support::Redis> = ports
        .iter()
        .map(|p| {
            let mut settings = certs.redis_tls(*p);
            settings.extend([
                ("tls-cluster", "yes".into()),
                ("cluster-enabled", "yes".into()),
                // CLUSTER MEET takes addresses; the nodes then name
                // themselves `localhost` to clients, which their
                // certificate is for.
                ("cluster-announce-hostname", "localhost".into()),
                ("cluster-preferred-endpoint-type", "hostname".into()),
            ]);
            let mut args = flags(&settings);
            args.extend(ACL.map(String::from));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            crate::support::Redis::start_on(*p, &args)
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
    let _sessiond = Sessiond::start(port, Path::new(&redis_ca), &args);
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
    let certs = Certs::new();
    // The sentinel reaches the master over TLS as a client.
    let master_port = crate::support::free_port();
    let mut master_args = flags(&certs.redis_tls(master_port));
    master_args.extend(ACL.map(String::from));
    let master_args: Vec<&str> = master_args.iter().map(String::as_str).collect();
    let _master = crate::support::Redis::start_on(master_port, &master_args);

    let sentinel_port = crate::support::free_port();
    let sentinel_dir = tempfile::tempdir().unwrap();
    let mut conf = format!(
        "bind 127.0.0.1\ndir {}\ntls-replication yes\n",
        sentinel_dir.path().display()
    );
    for (k, v) in certs.redis_tls(sentinel_port) {
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
    let without = Sessiond::start(port, Path::new(&certs.path("ca.crt")), &args);
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
    let _with = Sessiond::start(port, Path::new(&certs.path("ca.crt")), &args);
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
