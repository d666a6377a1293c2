//! `/metrics` over TLS with the gRPC port's certificates (`--metrics-tls`).

use std::net::SocketAddr;
use std::time::Duration;

use super::{Ca, Files, wait_up};
use crate::support::{Backend, Server};

/// `GET /metrics` over TLS trusting `ca`: the whole answer, or why not.
async fn https_metrics(addr: SocketAddr, ca: &Ca) -> Result<String, String> {
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
    use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto};

    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    // What HTTP/1.1 scrapers offer.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    tls.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    // A server may close without close_notify once the answer is complete.
    let read = tls.read_to_end(&mut answer).await;
    if answer.is_empty() {
        read.map_err(|e| e.to_string())?;
    }
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_use_the_same_certificates() {
    let ca = Ca::new("server CA");
    let files = Files::new(&ca, &ca);
    let metrics: SocketAddr = format!("127.0.0.1:{}", crate::support::free_port())
        .parse()
        .unwrap();
    let metrics_listen = metrics.to_string();
    let mut args = files.args(false);
    args.extend(["--metrics-listen", &metrics_listen, "--metrics-tls"]);
    let s = Server::start(Backend::Embedded, &args).await;
    wait_up(s.addr, &ca, None).await;

    let answer = https_metrics(metrics, &ca).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("grpc_server_started_total"), "{answer}");
    // Not to a client that does not trust the CA, nor in plain HTTP.
    assert!(
        https_metrics(metrics, &Ca::new("another CA"))
            .await
            .is_err()
    );
    let plain = async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(metrics).await.unwrap();
        tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let _ = tcp.read_to_end(&mut answer).await;
        answer
    };
    let answer = tokio::time::timeout(Duration::from_secs(15), plain)
        .await
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&answer).contains("grpc_server"),
        "metrics answered in plain HTTP"
    );
}
