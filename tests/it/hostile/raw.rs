//! Raw HTTP/2, for what a gRPC client will not send: a call whose body never
//! comes, bytes that are no protobuf, header values that are not ASCII.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use h2::client::{ResponseFuture, SendRequest};
use h2::{RecvStream, SendStream};
use tonic::codegen::http::{self, HeaderMap, HeaderName, HeaderValue};
use tonic_types::StatusExt;

/// One HTTP/2 connection to a server.
pub struct Raw {
    addr: SocketAddr,
    send: SendRequest<Bytes>,
    conn: tokio::task::JoinHandle<()>,
}

/// A call whose headers are sent and whose body is still open.
pub struct Open {
    pub response: ResponseFuture,
    pub body: SendStream<Bytes>,
}

/// How a call ended: its gRPC code and ErrorInfo reason ("" without one),
/// and the ErrorInfo's `limit`, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub code: tonic::Code,
    pub reason: String,
    pub limit: Option<String>,
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Raw {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (send, conn) = h2::client::handshake(tcp).await.unwrap();
        let conn = tokio::spawn(async move {
            let _ = conn.await;
        });
        Raw { addr, send, conn }
    }

    /// Sends the headers of a SessionService `method` call with `extra`
    /// headers, and nothing else: the stream stays open.
    pub async fn open(&mut self, method: &str, extra: &[(&str, &[u8])]) -> Open {
        let mut req = http::Request::builder()
            .method("POST")
            .uri(format!(
                "http://{}/sessiond.v1.SessionService/{method}",
                self.addr
            ))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap();
        for (name, value) in extra {
            req.headers_mut().append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(value).unwrap(),
            );
        }
        self.send = self.send.clone().ready().await.unwrap();
        let (response, body) = self.send.send_request(req, false).unwrap();
        Open { response, body }
    }

    /// A whole call: `payload` framed as one gRPC message (uncompressed).
    pub async fn call(&mut self, method: &str, extra: &[(&str, &[u8])], payload: &[u8]) -> Answer {
        let mut open = self.open(method, extra).await;
        // A call refused from its headers may be answered and closed before
        // its body is sent: then sending fails, and the answer is what counts.
        let _ = open.body.send_data(frame(payload), true);
        answer_of(open.response).await
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

/// `payload` behind the 5-byte gRPC message prefix.
pub fn frame(payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + payload.len());
    b.put_u8(0);
    b.put_u32(payload.len() as u32);
    b.put_slice(payload);
    b.freeze()
}

/// Waits for a call's answer: the status from its headers (trailers-only)
/// or its trailers.
pub async fn answer_of(response: ResponseFuture) -> Answer {
    let resp = response.await.expect("an HTTP answer");
    assert_eq!(resp.status(), http::StatusCode::OK);
    let (parts, mut body) = resp.into_parts();
    let headers = if parts.headers.contains_key("grpc-status") {
        parts.headers
    } else {
        trailers(&mut body).await
    };
    let status = tonic::Status::from_header_map(&headers).expect("a grpc-status");
    let info = status.get_details_error_info();
    Answer {
        code: status.code(),
        reason: info.as_ref().map(|i| i.reason.clone()).unwrap_or_default(),
        limit: info.and_then(|i| i.metadata.get("limit").cloned()),
    }
}

/// The answer, if it comes within `within` (`None`: still waiting).
pub async fn answer_within(response: ResponseFuture, within: Duration) -> Option<Answer> {
    tokio::time::timeout(within, answer_of(response)).await.ok()
}

async fn trailers(body: &mut RecvStream) -> HeaderMap {
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    body.trailers().await.unwrap().unwrap_or_default()
}
