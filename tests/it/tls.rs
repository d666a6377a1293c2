//! TLS and mTLS against a real server: the tests make their own CAs and
//! certificates (rcgen), write them to files, and connect with tonic's
//! rustls client.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use sessiond::pb::session_service_client::SessionServiceClient;
use sessiond::pb::*;
use tempfile::TempDir;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::support::{Backend, Server, set};

mod metrics;
mod redis;

/// A CA that can issue server and client certificates.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let pem = params.self_signed(&key).unwrap().pem();
        Ca {
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate and its key (PEM) for `purpose`, valid for localhost.
    fn issue(&self, purpose: ExtendedKeyUsagePurpose) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params.extended_key_usages = vec![purpose];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// The server's files, in a directory of their own.
struct Files {
    _dir: TempDir,
    cert: PathBuf,
    key: PathBuf,
    client_ca: PathBuf,
}

impl Files {
    fn new(server_ca: &Ca, client_ca: &Ca) -> Files {
        let dir = tempfile::tempdir().unwrap();
        let files = Files {
            cert: dir.path().join("tls.crt"),
            key: dir.path().join("tls.key"),
            client_ca: dir.path().join("ca.crt"),
            _dir: dir,
        };
        files.rotate(server_ca);
        replace(&files.client_ca, &client_ca.pem);
        files
    }

    /// A new server certificate from `ca`, each file replaced at once as
    /// cert-manager and the kubelet do.
    fn rotate(&self, ca: &Ca) {
        let (cert, key) = ca.issue(ExtendedKeyUsagePurpose::ServerAuth);
        replace(&self.cert, &cert);
        replace(&self.key, &key);
    }

    fn args(&self, mtls: bool) -> Vec<&str> {
        let mut args = vec![
            "--tls-cert",
            self.cert.to_str().unwrap(),
            "--tls-key",
            self.key.to_str().unwrap(),
            "--reload-interval",
            "50ms",
        ];
        if mtls {
            args.extend(["--tls-client-ca", self.client_ca.to_str().unwrap()]);
        }
        args
    }
}

fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A TLS channel to `addr` trusting `ca`, with a client certificate if
/// `identity` is given; `Err` if the connection or its first call fails.
async fn tls_channel(
    addr: SocketAddr,
    ca: &Ca,
    identity: Option<&(String, String)>,
) -> Result<Channel, String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&ca.pem))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let endpoint = Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_timeout(Duration::from_secs(5));
    endpoint.connect().await.map_err(|e| format!("{e:?}"))
}

/// One write and a read back on `channel`.
async fn call(channel: &Channel, id: &str) -> Result<(), tonic::Status> {
    let mut c = SessionServiceClient::new(channel.clone());
    c.update_session(set(id, &[("k", "v")])).await?;
    let got = c
        .get_session(GetSessionRequest {
            session_id: id.into(),
            consistency: Consistency::Strong as i32,
            min_version: 0,
        })
        .await?
        .into_inner();
    assert_eq!(got.session.unwrap().fields["k"], "v");
    Ok(())
}

/// Whether a client can connect with TLS and make a call.
async fn works(addr: SocketAddr, ca: &Ca, identity: Option<&(String, String)>) -> bool {
    match tls_channel(addr, ca, identity).await {
        Ok(ch) => call(&ch, "probe").await.is_ok(),
        Err(_) => false,
    }
}

/// Waits for the server to take calls over TLS (it starts in a task).
async fn wait_up(addr: SocketAddr, ca: &Ca, identity: Option<&(String, String)>) -> Channel {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(ch) = tls_channel(addr, ca, identity).await
            && call(&ch, "up").await.is_ok()
        {
            return ch;
        }
        assert!(Instant::now() < deadline, "the TLS server never came up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_clients_with_the_ca_work_and_plaintext_ones_are_refused() {
    let ca = Ca::new("server CA");
    let files = Files::new(&ca, &ca);
    let s = Server::start(Backend::Embedded, &files.args(false)).await;
    wait_up(s.addr, &ca, None).await;

    // Plaintext HTTP/2 never gets an answer.
    let plain = Channel::from_shared(format!("http://{}", s.addr))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5));
    let refused = match plain.connect().await {
        Err(_) => true,
        Ok(ch) => call(&ch, "plain").await.is_err(),
    };
    assert!(
        refused,
        "a plaintext client got an answer from a TLS server"
    );

    // A client that does not trust the server's CA fails its handshake.
    assert!(!works(s.addr, &Ca::new("another CA"), None).await);
    assert!(works(s.addr, &ca, None).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_requires_a_client_certificate_from_the_client_ca() {
    let server_ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    let files = Files::new(&server_ca, &client_ca);
    let s = Server::start(Backend::Embedded, &files.args(true)).await;
    let good = client_ca.issue(ExtendedKeyUsagePurpose::ClientAuth);
    wait_up(s.addr, &server_ca, Some(&good)).await;

    assert!(
        !works(s.addr, &server_ca, None).await,
        "a client without a certificate was served"
    );
    let stranger = Ca::new("stranger CA").issue(ExtendedKeyUsagePurpose::ClientAuth);
    assert!(
        !works(s.addr, &server_ca, Some(&stranger)).await,
        "a client certificate from another CA was accepted"
    );
    assert!(works(s.addr, &server_ca, Some(&good)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_is_served_and_open_connections_keep_working() {
    let old_ca = Ca::new("old CA");
    let files = Files::new(&old_ca, &old_ca);
    let s = Server::start(Backend::Embedded, &files.args(false)).await;
    let open = wait_up(s.addr, &old_ca, None).await;

    // The new certificate comes from another CA, so which one a handshake
    // got shows in whom the client must trust.
    let new_ca = Ca::new("new CA");
    files.rotate(&new_ca);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !works(s.addr, &new_ca, None).await {
        assert!(
            Instant::now() < deadline,
            "the rotated certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!works(s.addr, &old_ca, None).await);
    // The connection made with the old certificate still carries calls
    // (its client trusts only the old CA, so it could not have reconnected).
    call(&open, "open").await.unwrap();

    // Files that do not load leave the certificate in force.
    replace(&files.key, "not a key");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(works(s.addr, &new_ca, None).await);
    call(&open, "open").await.unwrap();
}

#[test]
fn bad_tls_settings_are_refused_at_start() {
    let ca = Ca::new("server CA");
    let files = Files::new(&ca, &ca);
    let cert = files.cert.to_str().unwrap();
    let key = files.key.to_str().unwrap();
    let bad = |args: &[&str]| {
        let mut all = vec!["sessiond"];
        all.extend_from_slice(args);
        match <sessiond::Config as clap::Parser>::try_parse_from(all) {
            Err(_) => true,
            Ok(c) => c.validate().is_err(),
        }
    };
    assert!(!bad(&["--tls-cert", cert, "--tls-key", key]));
    assert!(bad(&["--tls-cert", cert]));
    assert!(bad(&["--tls-key", key]));
    assert!(bad(&["--tls-client-ca", cert]));
    // The key of another certificate, and a key file that is not a key.
    let (_, other_key) = ca.issue(ExtendedKeyUsagePurpose::ServerAuth);
    let other = files.key.with_file_name("other.key");
    std::fs::write(&other, other_key).unwrap();
    assert!(bad(&[
        "--tls-cert",
        cert,
        "--tls-key",
        other.to_str().unwrap()
    ]));
    assert!(bad(&["--tls-cert", cert, "--tls-key", cert]));
    assert!(bad(&["--tls-cert", key, "--tls-key", key]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_that_cannot_speak_tls_use_the_health_only_listener() {
    let ca = Ca::new("server CA");
    let files = Files::new(&ca, &ca);
    let health_port = crate::support::free_port();
    let health_listen = format!("127.0.0.1:{health_port}");
    let mut args = files.args(true);
    args.extend(["--health-listen", &health_listen]);
    let s = Server::start(Backend::Embedded, &args).await;
    let good = ca.issue(ExtendedKeyUsagePurpose::ClientAuth);
    wait_up(s.addr, &ca, Some(&good)).await;

    let plain = crate::support::connect(health_listen.parse().unwrap()).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(plain.clone());
    for service in ["", "sessiond.v1.SessionService"] {
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service:?}"
        );
    }
    // Nothing but health answers there.
    let refused = call(&plain, "plain").await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unimplemented);
}
