//! Accepted connections, as the HTTP/2 layer sees them.
//!
//! h2 copies a DATA frame into its write buffer, where it joins the other
//! frames ready to go, only if the payload is small; a larger payload is
//! chained behind the buffer and the buffer must be written out before any
//! further frame is queued. The limit is 256 bytes when the socket claims
//! vectored writes and 1 KiB when it does not. A session answer is usually a
//! few hundred bytes, so with a plain `TcpStream` nearly every answer cost a
//! `writev` of its own, and its trailers a second one: 1.86 writes per
//! GetSession against 0.9 per empty call, and on loopback each write also
//! pays for the receiving side's TCP processing. [`Conn`] hides vectored
//! writes, so answers up to 1 KiB are batched with the rest of the
//! connection's frames.
//!
//! It is also where a connection's limits live: the cap on open
//! connections (in the accept loop), the preface deadline, the idle timeout
//! and the hard end of `--max-connection-age` (tonic only sends the GOAWAY).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tonic::codegen::http;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Limits on the connections a listener keeps open, and the HTTP/2 settings
/// each gets: what one peer may hold of the server, however it behaves.
#[derive(Debug, Clone)]
pub struct ConnSettings {
    /// Connections open at once; beyond it a new one is closed as soon as
    /// it is accepted.
    pub max_connections: usize,
    /// SETTINGS_MAX_CONCURRENT_STREAMS: streams beyond it are refused
    /// (REFUSED_STREAM) before any work is spent on them.
    pub max_streams: u32,
    /// SETTINGS_MAX_HEADER_LIST_SIZE: a larger header block is refused.
    pub max_header_list_bytes: u32,
    /// HTTP/2 PINGs after this long without a frame from the peer.
    pub keepalive_interval: Option<Duration>,
    /// A PING unanswered for this long closes the connection.
    pub keepalive_timeout: Duration,
    /// At this age a connection gets a GOAWAY (its calls finish, new ones
    /// go to a new connection, so load spreads over new instances).
    pub max_age: Option<Duration>,
    /// After `max_age`, how long its calls get before it is closed.
    pub max_age_grace: Duration,
    /// A connection without a call in flight for this long is closed.
    pub idle_timeout: Option<Duration>,
    /// A connection whose client preface has not arrived within this long
    /// is closed (a peer that connects and says nothing, or dribbles).
    pub handshake_timeout: Duration,
}

/// Streams the peer opened and reset before the server accepted them, past
/// which the connection gets GOAWAY: the HTTP/2 rapid-reset attack
/// (CVE-2023-44487). h2's own default.
pub const MAX_PENDING_ACCEPT_RESETS: usize = 20;

/// Streams the server reset because of the peer's errors, past which the
/// connection gets GOAWAY ENHANCE_YOUR_CALM: "made you reset"
/// (CVE-2025-8671). A well-behaved client causes none.
pub const MAX_LOCAL_ERROR_RESETS: usize = 256;

/// The client connection preface: `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`.
const PREFACE_LEN: u64 = 24;

/// The open connections of one listener: the cap, and what each is doing,
/// found by the peer's address (what tonic gives every request).
#[derive(Clone)]
pub struct Connections(Arc<Shared>);

struct Shared {
    settings: ConnSettings,
    slots: Arc<Semaphore>,
    open: Mutex<HashMap<SocketAddr, Arc<Activity>>>,
}

/// Calls in flight on one connection, and since when it has had none.
struct Activity {
    calls: AtomicUsize,
    idle_since: Mutex<Instant>,
}

impl ConnSettings {
    /// For a listener that serves no calls (`/metrics` over TLS): the
    /// connection cap and the preface deadline of `self`, no age or idle
    /// limit (its HTTP/1.1 connections carry no calls for the layer to count).
    pub fn without_calls(&self) -> ConnSettings {
        ConnSettings {
            max_age: None,
            idle_timeout: None,
            ..self.clone()
        }
    }
}

impl Connections {
    pub fn new(settings: ConnSettings) -> Connections {
        let slots = Arc::new(Semaphore::new(
            settings.max_connections.min(Semaphore::MAX_PERMITS),
        ));
        Connections(Arc::new(Shared {
            settings,
            slots,
            open: Mutex::new(HashMap::new()),
        }))
    }

    /// `tcp` as a [`Conn`], or `None` (and `tcp` closed) when
    /// `max_connections` are open already.
    pub fn admit(&self, tcp: TcpStream) -> Option<Conn> {
        let Ok(slot) = self.0.slots.clone().try_acquire_owned() else {
            tracing::debug!(peer = ?tcp.peer_addr().ok(), "connection refused: --max-connections reached");
            return None;
        };
        let now = Instant::now();
        let activity = Arc::new(Activity {
            calls: AtomicUsize::new(0),
            idle_since: Mutex::new(now),
        });
        let peer = tcp.peer_addr().ok();
        if let Some(peer) = peer {
            self.0.open.lock().insert(peer, activity.clone());
        }
        Some(Conn {
            tcp,
            peer,
            opened: now,
            preface: 0,
            activity,
            shared: self.0.clone(),
            _slot: slot,
            timer: Box::pin(tokio::time::sleep_until(now)),
        })
    }

    /// The layer that tells each connection when it has calls in flight,
    /// so `idle_timeout` never closes one that is serving.
    pub fn layer(&self) -> CallsLayer {
        CallsLayer(self.0.clone())
    }
}

/// An accepted TCP connection: it does not offer vectored writes (see the
/// module's comment), holds one of the listener's slots, and ends itself (a
/// read or a write it waits on fails with `TimedOut`) when its preface is
/// late, when it has been idle too long, or once it is older than `max_age`
/// + grace.
pub struct Conn {
    tcp: TcpStream,
    peer: Option<SocketAddr>,
    opened: Instant,
    /// Bytes read, counted up to the preface's length.
    preface: u64,
    activity: Arc<Activity>,
    shared: Arc<Shared>,
    _slot: OwnedSemaphorePermit,
    /// Wakes the connection at its next deadline.
    timer: Pin<Box<Sleep>>,
}

impl Conn {
    /// When this connection is next due to be checked, and whether it is
    /// over a limit already (`Err`: why it is closed).
    fn deadline(&self, now: Instant) -> Result<Instant, &'static str> {
        let s = &self.shared.settings;
        let mut due = now + Duration::from_secs(3600);
        if self.preface < PREFACE_LEN {
            let late = self.opened + s.handshake_timeout;
            if now >= late {
                return Err("no client preface within --handshake-timeout");
            }
            due = due.min(late);
        }
        if let Some(age) = s.max_age {
            let end = self.opened + age + s.max_age_grace;
            if now >= end {
                return Err("older than --max-connection-age and its grace");
            }
            due = due.min(end);
        }
        if let Some(idle) = s.idle_timeout {
            if self.activity.calls.load(Relaxed) == 0 {
                let end = *self.activity.idle_since.lock() + idle;
                if now >= end {
                    return Err("idle for --connection-idle-timeout");
                }
                due = due.min(end);
            } else {
                // Looked at again later: the call may end any time.
                due = due.min(now + idle);
            }
        }
        Ok(due)
    }
}

impl Conn {
    /// The peer's address, if the socket knew it.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(peer) = self.peer {
            let mut open = self.shared.open.lock();
            if open
                .get(&peer)
                .is_some_and(|a| Arc::ptr_eq(a, &self.activity))
            {
                open.remove(&peer);
            }
        }
    }
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.tcp.connect_info()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        if let Poll::Ready(r) = Pin::new(&mut this.tcp).poll_read(cx, buf) {
            let read = buf.filled().len().saturating_sub(before);
            this.preface = this.preface.saturating_add(read as u64);
            return Poll::Ready(r);
        }
        // Nothing to read: the deadlines decide whether to wait for more.
        this.overdue(cx).map(Err)
    }
}

impl Conn {
    /// `Ready` with the error that ends the connection once a deadline has
    /// passed; `Pending` with the timer's waker registered until then.
    /// Checked wherever the connection would wait: on reads, and on writes
    /// to a peer that does not read (h2 stops reading while it cannot write).
    fn overdue(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        while self.timer.as_mut().poll(cx).is_ready() {
            match self.deadline(Instant::now()) {
                Ok(due) => self.timer.as_mut().reset(due),
                Err(why) => {
                    tracing::debug!(peer = ?self.peer, why, "connection closed");
                    return Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, why));
                }
            }
        }
        Poll::Pending
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.tcp).poll_write(cx, buf) {
            Poll::Pending => self.overdue(cx).map(Err),
            done => done,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.tcp).poll_flush(cx) {
            Poll::Pending => self.overdue(cx).map(Err),
            done => done,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }

    // `is_write_vectored` keeps its default, `false`: the point of this type.
}

/// Counts each connection's calls in flight (see [`Connections::layer`]).
#[derive(Clone)]
pub struct CallsLayer(Arc<Shared>);

impl<S> tower::Layer<S> for CallsLayer {
    type Service = Calls<S>;

    fn layer(&self, inner: S) -> Calls<S> {
        Calls {
            inner,
            shared: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Calls<S> {
    inner: S,
    shared: Arc<Shared>,
}

/// One call in flight on a connection; the last to end starts its idle time.
pub(crate) struct InFlight(Arc<Activity>);

/// Put on each call's request: a call whose answer outlives its response
/// future (a WatchSession stream) takes [`OpenCall::hold`] into its stream,
/// so that its connection is not idle, nor closed as such, while it runs.
#[derive(Clone)]
pub(crate) struct OpenCall(Arc<Activity>);

impl OpenCall {
    pub(crate) fn hold(&self) -> InFlight {
        self.0.calls.fetch_add(1, Relaxed);
        InFlight(self.0.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // The time is set before the count drops, so a connection seen
        // with no calls never has an idle time older than its last call.
        *self.0.idle_since.lock() = Instant::now();
        self.0.calls.fetch_sub(1, Relaxed);
    }
}

impl<S, B> tower::Service<http::Request<B>> for Calls<S>
where
    S: tower::Service<http::Request<B>> + Send,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let peer = req
            .extensions()
            .get::<TcpConnectInfo>()
            .and_then(TcpConnectInfo::remote_addr);
        let in_flight = peer
            .and_then(|p| self.shared.open.lock().get(&p).cloned())
            .map(|activity| {
                activity.calls.fetch_add(1, Relaxed);
                InFlight(activity)
            });
        if let Some(InFlight(activity)) = &in_flight {
            req.extensions_mut().insert(OpenCall(activity.clone()));
        }
        let call = self.inner.call(req);
        Box::pin(async move {
            let answer = call.await;
            drop(in_flight);
            answer
        })
    }
}
