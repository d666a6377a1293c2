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
