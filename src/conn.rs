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

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// A TCP connection that does not offer vectored writes.
pub struct Conn(pub TcpStream);

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.0.connect_info()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    // `is_write_vectored` keeps its default, `false`: the point of this type.
}
