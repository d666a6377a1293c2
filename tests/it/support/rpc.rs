//! The client side of the tests: connecting, the requests every test file
//! makes (built from a few arguments, answered with the message itself),
//! reading the ErrorInfo of a refusal, and waiting on GetStats figures.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sessiond::pb::admin_service_client::AdminServiceClient;
use sessiond::pb::session_service_client::SessionServiceClient;
use sessiond::pb::*;
use tonic::transport::Channel;
use tonic_types::StatusExt;

use super::Server;

pub type Client = SessionServiceClient<Channel>;

/// A channel to `addr`, retrying while the server comes up.
pub async fn connect(addr: SocketAddr) -> Channel {
    let endpoint = Channel::from_shared(format!("http://{addr}")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match endpoint.connect().await {
            Ok(c) => return c,
            Err(e) if Instant::now() > deadline => panic!("cannot connect to {addr}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// A SessionService client of the server on `addr`.
pub async fn client(addr: SocketAddr) -> Client {
    SessionServiceClient::new(connect(addr).await)
}

/// GetStats of the server on `addr`.
pub async fn stats(addr: SocketAddr) -> GetStatsResponse {
    AdminServiceClient::new(connect(addr).await)
        .get_stats(GetStatsRequest {})
        .await
        .unwrap()
        .into_inner()
}

pub fn fields(pairs: &[(&str, &str)]) -> HashMap<String, Bytes> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Bytes::from(v.to_string())))
        .collect()
}

/// An UpdateSession that sets `pairs`, unguarded; tests add guards to it.
pub fn set(id: &str, pairs: &[(&str, &str)]) -> UpdateSessionRequest {
    UpdateSessionRequest {
        session_id: id.into(),
        set_fields: fields(pairs),
        ..Default::default()
    }
}

pub async fn get(
    c: &mut Client,
    id: &str,
    consistency: Consistency,
) -> Result<GetSessionResponse, tonic::Status> {
    c.get_session(GetSessionRequest {
        session_id: id.into(),
        consistency: consistency as i32,
        min_version: 0,
    })
    .await
    .map(|r| r.into_inner())
}

pub async fn lock(
    c: &mut Client,
    id: &str,
    lease_ms: u32,
    wait_ms: u32,
) -> Result<LockSessionResponse, tonic::Status> {
    c.lock_session(LockSessionRequest {
        session_id: id.into(),
        lease_ms,
        wait_ms,
        rate_limit: None,
        ..Default::default()
    })
    .await
    .map(|r| r.into_inner())
}

pub async fn unlock(
    c: &mut Client,
    id: &str,
    lock_token: String,
) -> Result<UnlockSessionResponse, tonic::Status> {
    c.unlock_session(UnlockSessionRequest {
        session_id: id.into(),
        lock_token,
    })
    .await
    .map(|r| r.into_inner())
}

/// The counter the increment tests keep in field `n` (0 before the first
/// write).
pub fn counter_of(session: Option<&Session>) -> u64 {
    session.map_or(0, |s| {
        std::str::from_utf8(&s.fields["n"])
            .unwrap()
            .parse()
            .unwrap()
    })
}

/// The status code and ErrorInfo reason of a failed call.
pub fn reason<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> (tonic::Code, String) {
    let status = r.expect_err("the call should have failed");
    let info = status
        .get_details_error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    assert_eq!(info.domain, "sessiond");
    (status.code(), info.reason)
}

/// Code, reason and ErrorInfo metadata of a failed call.
pub fn details<T: std::fmt::Debug>(
    r: Result<T, tonic::Status>,
) -> (
    tonic::Code,
    String,
    std::collections::HashMap<String, String>,
) {
    let status = r.expect_err("the call should have failed");
    let info = status
        .get_details_error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    (status.code(), info.reason, info.metadata)
}

/// Waits until the server reports at least `n` callers queued.
pub async fn wait_until_queued(s: &Server, n: u64) {
    wait_until_waiting(s, |w| w >= n).await
}

/// Waits until the number of queued callers satisfies `ok`.
pub async fn wait_until_waiting(s: &Server, ok: impl Fn(u64) -> bool) {
    let mut admin = s.admin().await;
    let mut last = 0;
    for _ in 0..1000 {
        let st = admin
            .get_stats(GetStatsRequest {})
            .await
            .unwrap()
            .into_inner();
        last = st.locks.unwrap().waiting_now;
        if ok(last) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the number of waiters stayed at {last}");
}

/// GETs `/metrics` on `port` with a bare HTTP/1.1 request, waiting for the
/// endpoint to come up; the body of its 200 answer.
pub async fn scrape_metrics(port: u16) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut s = loop {
        match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            Ok(s) => break s,
            Err(e) => assert!(Instant::now() < deadline, "no metrics endpoint: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let (_, body) = response.split_once("\r\n\r\n").unwrap();
    body.to_owned()
}
