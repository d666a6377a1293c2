//! TLS and mTLS on the gRPC listener, with certificates that can be rotated
//! while the server runs.
//!
//! tonic's own `ServerTlsConfig` is fixed once the server starts, and
//! cert-manager rotates certificates under a running pod; so sessiond
//! terminates TLS itself (tokio-rustls) and hands tonic the decrypted
//! streams. Each handshake takes the [`ServerConfig`] current at that
//! moment: a reload swaps an `Arc`, so connections already open keep the
//! certificate they were made with and calls in flight are not dropped.
//!
//! The files (certificate chain, key, and the client CA with mTLS) are read
//! again every `--reload-interval`; when their bytes changed they are loaded
//! anew. Files that do not load (half-written, a key that does not match)
//! leave the current configuration in place and are logged, and tried again
//! at the next look. With TLS on, a plaintext client fails its handshake.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use parking_lot::RwLock;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig, crypto};
use tokio_rustls::server::TlsStream;
use tonic::transport::server::{Connected, TcpConnectInfo, TcpIncoming};

use crate::conn::Conn;

/// Longest a client may take over its TLS handshake before it is dropped, so
/// a client that never finishes one holds nothing for long.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes done and not yet taken by the server.
const READY_QUEUE: usize = 64;

/// Where the certificate files are (`--tls-cert`, `--tls-key`,
/// `--tls-client-ca`).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Set: client certificates are required and verified against it.
    pub client_ca: Option<PathBuf>,
}

/// The files' bytes as last loaded, to tell when they change.
#[derive(PartialEq, Eq)]
struct Contents {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

/// The TLS configuration in force, and where it comes from.
pub struct Tls {
    files: TlsFiles,
    reload_interval: Duration,
    current: RwLock<(Arc<Contents>, Configs)>,
}

/// The configuration of each kind of listener: they differ only in the
/// application protocol offered (rustls refuses a client that offers none
/// of the server's).
#[derive(Clone)]
struct Configs {
    grpc: Arc<ServerConfig>,
    http1: Arc<ServerConfig>,
}

/// What a TLS listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// gRPC: HTTP/2 (ALPN `h2`).
    Grpc,
    /// `/metrics`: HTTP/1.1 (ALPN `http/1.1`).
    Http1,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("files", &self.files)
            .field("reload_interval", &self.reload_interval)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Loads the files once; `Err` says which one is wrong and why.
    pub fn load(files: TlsFiles, reload_interval: Duration) -> Result<Tls, String> {
        let contents = read(&files)?;
        let config = build(&files, &contents)?;
        Ok(Tls {
            files,
            reload_interval,
            current: RwLock::new((Arc::new(contents), config)),
        })
    }

    /// The configuration a new handshake uses.
    fn config(&self, protocol: Protocol) -> Arc<ServerConfig> {
        let current = self.current.read();
        match protocol {
            Protocol::Grpc => current.1.grpc.clone(),
            Protocol::Http1 => current.1.http1.clone(),
        }
    }

    /// Reads the files and, if they changed, swaps in what they hold.
    /// `Ok(true)`: a new configuration is in force.
    fn reload(&self) -> Result<bool, String> {
        let contents = read(&self.files)?;
        if *self.current.read().0 == contents {
            return Ok(false);
        }
        let config = build(&self.files, &contents)?;
        *self.current.write() = (Arc::new(contents), config);
        Ok(true)
    }
}

fn read(files: &TlsFiles) -> Result<Contents, String> {
    let file = |flag: &str, path: &PathBuf| {
        std::fs::read(path).map_err(|e| format!("{flag} {}: {e}", path.display()))
    };
    Ok(Contents {
        cert: file("--tls-cert", &files.cert)?,
        key: file("--tls-key", &files.key)?,
        client_ca: match &files.client_ca {
            Some(path) => Some(file("--tls-client-ca", path)?),
            None => None,
        },
    })
}

fn build(files: &TlsFiles, contents: &Contents) -> Result<Configs, String> {
    let certs = certificates(&contents.cert)
        .map_err(|e| format!("--tls-cert {}: {e}", files.cert.display()))?;
    let key = PrivateKeyDer::from_pem_slice(&contents.key)
        .map_err(|e| format!("--tls-key {}: no PEM private key: {e}", files.key.display()))?;
    // ring explicitly: no process-wide default provider to depend on.
    let provider = Arc::new(crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = match (&files.client_ca, &contents.client_ca) {
        (Some(path), Some(pem)) => {
            let mut roots = RootCertStore::empty();
            let cas = certificates(pem)
                .map_err(|e| format!("--tls-client-ca {}: {e}", path.display()))?;
            for ca in cas {
                roots
                    .add(ca)
                    .map_err(|e| format!("--tls-client-ca {}: {e}", path.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("--tls-client-ca {}: {e}", path.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        format!(
            "--tls-cert {} and --tls-key {}: {e}",
            files.cert.display(),
            files.key.display()
        )
    })?;
    let mut http1 = config.clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    http1.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Configs {
        grpc: Arc::new(config),
        http1: Arc::new(http1),
    })
}

/// Every certificate of a PEM file; at least one.
fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not PEM certificates: {e}"))?;
    if certs.is_empty() {
        return Err("holds no PEM certificate".into());
    }
    Ok(certs)
}

/// Follows the files while the listener lives (while `tls` has another
/// owner).
async fn follow(tls: Weak<Tls>) {
    loop {
        let Some(every) = tls.upgrade().map(|t| t.reload_interval) else {
            return;
        };
        tokio::time::sleep(every).await;
        let Some(tls) = tls.upgrade() else {
            return;
        };
        match tls.reload() {
            Ok(true) => {
                tracing::info!(cert = %tls.files.cert.display(), "TLS certificates reloaded")
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(
                error = %e,
                "TLS certificates not reloaded; the ones in force stay"
            ),
        }
    }
}

/// The connections the server takes: `tcp` as it is without TLS, or each
/// connection once its TLS handshake is done. Handshakes run side by side
/// (a slow one delays no other) and are bounded by [`HANDSHAKE_TIMEOUT`];
/// failed ones are dropped and logged at debug.
pub fn incoming<S>(
    tcp: S,
    tls: Option<Arc<Tls>>,
    protocol: Protocol,
) -> BoxStream<'static, io::Result<Io>>
where
    S: Stream<Item = io::Result<Conn>> + Send + 'static,
{
    let Some(tls) = tls else {
        return tcp.map(|c| c.map(Io::Plain)).boxed();
    };
    // One follower per listener: each stops with its own listener.
    tokio::spawn(follow(Arc::downgrade(&tls)));
    let (ready, rx) = mpsc::channel(READY_QUEUE);
    tokio::spawn(accept(tcp, tls, protocol, ready));
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|conn| (conn, rx))
    })
    .boxed()
}

/// Takes connections from `tcp` until the server stops taking them.
async fn accept<S>(tcp: S, tls: Arc<Tls>, protocol: Protocol, ready: mpsc::Sender<io::Result<Io>>)
where
    S: Stream<Item = io::Result<Conn>> + Send + 'static,
{
    let mut tcp = std::pin::pin!(tcp);
    loop {
        let next = tokio::select! {
            next = tcp.next() => next,
            () = ready.closed() => return,
        };
        let conn = match next {
            None => return,
            Some(Err(e)) => {
                if ready.send(Err(e)).await.is_err() {
                    return;
                }
                continue;
            }
            Some(Ok(conn)) => conn,
        };
        let acceptor = TlsAcceptor::from(tls.config(protocol));
        let ready = ready.clone();
        tokio::spawn(async move {
            let peer = conn.peer_addr();
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(conn)).await {
                Ok(Ok(stream)) => {
                    let _ = ready.send(Ok(Io::Tls(Box::new(stream)))).await;
                }
                Ok(Err(e)) => tracing::debug!(?peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(?peer, "TLS handshake timed out"),
            }
        });
    }
}

/// `/metrics` connections over TLS, for axum.
pub struct Listener {
    conns: BoxStream<'static, io::Result<Io>>,
    local: SocketAddr,
}

impl Listener {
    /// TLS over `listener`'s connections, with `tls`'s HTTP/1.1
    /// configuration, each connection admitted by `connections`.
    pub fn new(
        listener: tokio::net::TcpListener,
        tls: Arc<Tls>,
        connections: crate::conn::Connections,
    ) -> io::Result<Listener> {
        let local = listener.local_addr()?;
        let tcp = TcpIncoming::from(listener)
            .try_filter_map(move |tcp| std::future::ready(Ok(connections.admit(tcp))));
        Ok(Listener {
            conns: incoming(tcp, Some(tls), Protocol::Http1),
            local,
        })
    }
}

impl axum::serve::Listener for Listener {
    type Io = Io;
    type Addr = Option<SocketAddr>;

    async fn accept(&mut self) -> (Io, Option<SocketAddr>) {
        loop {
            match self.conns.next().await {
                Some(Ok(io)) => {
                    let peer = io.connect_info().remote_addr();
                    return (io, peer);
                }
                // Out of file descriptors and the like: wait, as axum does.
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "metrics: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                None => std::future::pending::<()>().await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Option<SocketAddr>> {
        Ok(Some(self.local))
    }
}

/// A connection the server serves: plain TCP, or TLS over it.
pub enum Io {
    Plain(Conn),
    Tls(Box<TlsStream<Conn>>),
}

impl Connected for Io {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        match self {
            Io::Plain(c) => c.connect_info(),
            Io::Tls(s) => s.get_ref().0.connect_info(),
        }
    }
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(c) => Pin::new(c).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

/// Without vectored writes, as [`Conn`] and for the same reason: h2 then
/// batches small answers with the connection's other frames (here, into
/// fewer TLS records too).
impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(c) => Pin::new(c).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(c) => Pin::new(c).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(c) => Pin::new(c).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
