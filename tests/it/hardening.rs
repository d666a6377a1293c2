//! Connection and HTTP/2 hardening: what one peer may hold of the server
//! (streams, resets, half-sent prefaces and bodies, idle sockets), each
//! attack run beside a canary that writes and reads STRONG every 100 ms and
//! must see no error. The attacker speaks raw HTTP/2 frames written by hand
//! (`Wire`), as no client library would send them.

// The hostile tests' HTTP/2 client, private to them: loaded here again
// rather than made public there (only part of it is used here).
#[allow(dead_code, clippy::duplicate_mod)]
#[path = "hostile/raw.rs"]
mod raw;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::hostile::canary;
use crate::support::{Backend, Server};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const GOAWAY: u8 = 7;
const END_HEADERS: u8 = 0x4;
const CANCEL: u32 = 8;
const REFUSED_STREAM: u32 = 7;

/// A canary calling every 100 ms until stopped; `stop` returns its p99.
struct Canary {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<Duration>>,
}

impl Canary {
    async fn start(s: &Server) -> Canary {
        let mut c = s.client().await;
        canary(&mut c, None).await;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut took = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                took.push(canary(&mut c, None).await);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            took
        });
        Canary { stop, task }
    }

    /// Stops the canary (a failed call has failed the test already) and
    /// checks its p99 against a bound far above any normal figure.
    /// The canary keeps going a second after the attack.
    async fn stop(self, attack: &str) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        self.stop.store(true, Ordering::Relaxed);
        let mut took = self.task.await.expect("the canary saw no error");
        took.sort();
        let p99 = took[(took.len() * 99 / 100).min(took.len() - 1)];
        println!("{attack}: canary p99 {p99:?} over {} pairs", took.len());
        assert!(took.len() >= 5, "the canary made {} pairs", took.len());
        assert!(p99 < Duration::from_secs(1), "{attack}: canary p99 {p99:?}");
    }
}

/// HTTP/2 frames written by hand on a TCP connection.
struct Wire {
    tcp: TcpStream,
    host: String,
}

impl Wire {
    /// Connects and sends the preface and an empty SETTINGS frame.
    async fn open(s: &Server) -> Wire {
        let mut tcp = TcpStream::connect(s.addr).await.unwrap();
        let mut b = BytesMut::from(PREFACE);
        frame(&mut b, SETTINGS, 0, 0, &[]);
        tcp.write_all(&b).await.unwrap();
        Wire {
            tcp,
            host: s.addr.to_string(),
        }
    }

    /// A GetSession HEADERS frame on `stream` that leaves the body to come
    /// (no END_STREAM).
    fn headers(&self, b: &mut BytesMut, stream: u32) {
        let mut block = BytesMut::new();
        block.put_u8(0x83); // :method POST (static table)
        block.put_u8(0x86); // :scheme http
        literal(&mut block, 4, b"/sessiond.v1.SessionService/GetSession"); // :path
        literal(&mut block, 1, self.host.as_bytes()); // :authority
        literal(&mut block, 31, b"application/grpc"); // content-type
        block.put_u8(0);
        block.put_u8(2);
        block.put_slice(b"te");
        block.put_u8(8);
        block.put_slice(b"trailers");
        frame(b, HEADERS, END_HEADERS, stream, &block);
    }

    /// Reads frames until the server's GOAWAY (its error code), the end of
    /// the connection or `within` (`None`); counts RST_STREAM(REFUSED_STREAM).
    async fn until_goaway(&mut self, within: Duration) -> (Option<u32>, usize) {
        let deadline = Instant::now() + within;
        let mut refused = 0;
        let mut buf = BytesMut::new();
        loop {
            while buf.len() >= 9 {
                let len = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]) as usize;
                if buf.len() < 9 + len {
                    break;
                }
                let frame = buf.split_to(9 + len);
                let code = |at: usize| u32::from_be_bytes(frame[at..at + 4].try_into().unwrap());
                match frame[3] {
                    GOAWAY => return (Some(code(13)), refused),
                    RST_STREAM if code(9) == REFUSED_STREAM => refused += 1,
                    _ => {}
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.tcp.read_buf(&mut buf)).await {
                Ok(Ok(0) | Err(_)) | Err(_) => return (None, refused),
                Ok(Ok(_)) => {}
            }
        }
    }
}

fn frame(b: &mut BytesMut, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    b.put_uint(payload.len() as u64, 3);
    b.put_u8(kind);
    b.put_u8(flags);
    b.put_u32(stream);
    b.put_slice(payload);
}

/// An HPACK literal without indexing, its name from the static table
/// (`index` < 15), its value short and not Huffman-coded.
fn literal(b: &mut BytesMut, index: u8, value: &[u8]) {
    if index < 15 {
        b.put_u8(index);
    } else {
        b.put_u8(15);
        b.put_u8(index - 15);
    }
    b.put_u8(value.len() as u8);
    b.put_slice(value);
}

/// Waits until the server closes `tcp`; how long that took.
async fn closed_within(tcp: &mut TcpStream, within: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(within, tcp.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("the connection is still open after {within:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_headers_only_streams_are_refused_beyond_the_limit() {
    let s = Server::start(Backend::Embedded, &["--max-streams-per-connection", "100"]).await;
    let watch = Canary::start(&s).await;
    // Ten connections, 300 streams each whose bodies never come: 3,000
    // streams against a limit of 100 per connection.
    let mut attackers = Vec::new();
    for _ in 0..10 {
        let mut w = Wire::open(&s).await;
        let mut b = BytesMut::new();
        for i in 0..300u32 {
            w.headers(&mut b, 2 * i + 1);
        }
        w.tcp.write_all(&b).await.unwrap();
        attackers.push(tokio::spawn(async move {
            w.until_goaway(Duration::from_secs(2)).await
        }));
    }
    let mut refused = 0;
    for a in attackers {
        let (goaway, n) = a.await.unwrap();
        // Each stream past the limit is refused, until the refusals count
        // as the peer's errors and the connection gets GOAWAY.
        assert!(
            n >= 200 || goaway.is_some(),
            "{n} streams refused, GOAWAY {goaway:?}"
        );
        refused += n;
    }
    println!("headers-only: {refused} streams refused");
    watch.stop("headers-only streams").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_gets_goaway() {
    let s = Server::start(Backend::Embedded, &[]).await;
    let watch = Canary::start(&s).await;
    let mut w = Wire::open(&s).await;
    // 5,000 streams opened and cancelled at once, as in CVE-2023-44487.
    let mut b = BytesMut::new();
    for i in 0..5_000u32 {
        let stream = 2 * i + 1;
        w.headers(&mut b, stream);
        frame(&mut b, RST_STREAM, 0, stream, &CANCEL.to_be_bytes());
    }
    // The server may close the connection before it has read all of it.
    let _ = w.tcp.write_all(&b).await;
    let (goaway, _) = w.until_goaway(Duration::from_secs(5)).await;
    assert!(goaway.is_some(), "rapid reset got no GOAWAY");
    println!("rapid reset: GOAWAY with error code {goaway:?}");
    watch.stop("rapid reset").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preface_dribbled_or_never_sent_is_cut_off() {
    let s = Server::start(Backend::Embedded, &["--handshake-timeout", "500ms"]).await;
    let watch = Canary::start(&s).await;
    // One byte of the preface every 100 ms: it would take 2.4 s.
    let mut dribble = TcpStream::connect(s.addr).await.unwrap();
    let mut silent = TcpStream::connect(s.addr).await.unwrap();
    let addr = s.addr;
    let writer = tokio::spawn(async move {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        for byte in PREFACE {
            if tcp.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the whole preface was accepted at a byte per 100 ms");
    });
    let took = closed_within(&mut silent, Duration::from_secs(3)).await;
    assert!(took >= Duration::from_millis(300), "closed after {took:?}");
    closed_within(&mut dribble, Duration::from_secs(3)).await;
    writer.await.unwrap();
    watch.stop("slow preface").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_comes_ends_with_the_connection_age() {
    let s = Server::start(
        Backend::Embedded,
        &[
            "--max-connection-age",
            "1s",
            "--max-connection-age-grace",
            "1s",
        ],
    )
    .await;
    let mut w = Wire::open(&s).await;
    let mut b = BytesMut::new();
    w.headers(&mut b, 1);
    w.tcp.write_all(&b).await.unwrap();
    // GOAWAY (NO_ERROR) at 1 s, then the connection is cut at 2 s though
    // its call still waits for its body.
    let started = Instant::now();
    let (goaway, _) = w.until_goaway(Duration::from_secs(3)).await;
    assert_eq!(goaway, Some(0), "a graceful GOAWAY at the connection's age");
    closed_within(&mut w.tcp, Duration::from_secs(3)).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(4),
        "closed after {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_but_not_those_with_a_call() {
    let s = Server::start(Backend::Embedded, &["--connection-idle-timeout", "1s"]).await;
    let mut idle = Wire::open(&s).await;
    let mut busy = raw::Raw::connect(s.addr).await;
    let waiting = busy.open("GetSession", &[]).await;
    let took = closed_within(&mut idle.tcp, Duration::from_secs(4)).await;
    assert!(took >= Duration::from_millis(800), "closed after {took:?}");
    // The connection whose call still waits for its body is still served.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let answer = busy.call("GetSession", &[], &sessiond_get("someone")).await;
    assert_eq!(answer.code, tonic::Code::NotFound);
    drop(waiting);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_beyond_the_cap_are_closed_at_once() {
    let s = Server::start(
        Backend::Embedded,
        &["--max-connections", "100", "--handshake-timeout", "1s"],
    )
    .await;
    let watch = Canary::start(&s).await;
    // 2,000 sockets that never say anything.
    let mut sockets = Vec::new();
    for _ in 0..2_000 {
        sockets.push(TcpStream::connect(s.addr).await.unwrap());
    }
    let started = Instant::now();
    let mut closed = tokio::task::JoinSet::new();
    for mut tcp in sockets {
        closed.spawn(async move { closed_within(&mut tcp, Duration::from_secs(4)).await });
    }
    let mut at_once = 0;
    while let Some(took) = closed.join_next().await {
        if took.unwrap() < Duration::from_millis(500) {
            at_once += 1;
        }
    }
    // The canary's connection holds one of the 100 slots.
    assert!(at_once >= 1_901, "{at_once} closed at once");
    assert!(started.elapsed() < Duration::from_secs(4));
    watch.stop("idle sockets").await;
    // Their slots are free again.
    let mut c = s.client().await;
    canary(&mut c, None).await;
}

/// A GetSessionRequest for `id`, encoded.
fn sessiond_get(id: &str) -> Vec<u8> {
    use prost::Message;
    sessiond::pb::GetSessionRequest {
        session_id: id.into(),
        consistency: sessiond::pb::Consistency::Strong as i32,
        min_version: 0,
    }
    .encode_to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_block_beyond_the_limit_is_refused() {
    let s = Server::start(Backend::Embedded, &["--max-header-list-bytes", "4KiB"]).await;
    let watch = Canary::start(&s).await;
    let mut w = Wire::open(&s).await;
    // GetSession headers plus `x-big` of 12,000 bytes (one frame, under the
    // default frame size; a literal with a new name and a multi-byte length).
    let mut b = BytesMut::new();
    w.headers(&mut b, 1);
    let mut block = b.split_off(9);
    let value = 12_000usize - 127;
    block.put_slice(&[0x00, 5]);
    block.put_slice(b"x-big");
    block.put_slice(&[0x7f, 0x80 | (value & 0x7f) as u8, (value >> 7) as u8]);
    block.put_slice(&[b'a'; 12_000]);
    let mut out = BytesMut::new();
    frame(&mut out, HEADERS, END_HEADERS, 1, &block);
    w.tcp.write_all(&out).await.unwrap();
    // The answer on stream 1: a reset, or a 431 before the call is served.
    let mut buf = BytesMut::new();
    let refused = loop {
        if buf.len() >= 9 {
            let len = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]) as usize;
            if buf.len() >= 9 + len {
                let f = buf.split_to(9 + len);
                let stream = u32::from_be_bytes(f[5..9].try_into().unwrap());
                match f[3] {
                    RST_STREAM if stream == 1 => break "RST_STREAM".to_owned(),
                    GOAWAY => break "GOAWAY".to_owned(),
                    HEADERS if stream == 1 => {
                        // `:status: 431` as h2 encodes it: a literal of
                        // static name 8, Huffman-coded "431".
                        assert!(
                            f[9..].starts_with(&[0x48, 0x83, 0x69, 0x90, 0xff]),
                            "stream 1 was answered: {:?}",
                            &f[9..]
                        );
                        break "431".to_owned();
                    }
                    _ => continue,
                }
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(3), w.tcp.read_buf(&mut buf))
            .await
            .expect("an answer to the oversized header block")
            .unwrap();
        assert!(n > 0, "closed without an answer");
    };
    println!("oversized header block: {refused}");
    watch.stop("oversized headers").await;
}

/// The live fuzzer's short run (the full one is in TESTING.md): a few
/// thousand generated requests, every answer a clean status, the canary
/// unharmed.
async fn fuzz_short_run(b: Backend) {
    let s = Server::start(b, &[]).await;
    let target = s.addr.to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_sessiond-fuzz"))
            .args(["--target", &target, "--requests", "3000", "--seed", "12"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    println!("{report}");
    assert!(
        out.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["failures"], 0);
    assert_eq!(report["canary_errors"], 0);
    // The run reached past validation: some calls succeeded.
    assert!(report["codes"]["Ok"].as_u64().unwrap() > 100, "{report}");
}

crate::on_both_backends!(fuzz_short_run);
