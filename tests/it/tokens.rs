//! Tokens an operator can change under a running server: the tokens file is
//! read again when it changes and on SIGHUP, a revoked token stops working at
//! its next call, a new one (with a namespace never seen before) works, and
//! a broken file keeps the tokens in force.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sessiond::pb::*;
use tempfile::TempDir;
use tonic::Code;

use crate::support::{Backend, Client, Server, client, free_port, set};

const OLD: &str = "token-that-gets-revoked-soon";
const NEW: &str = "token-added-while-serving";
const STAYS: &str = "token-that-stays-all-along";

fn bearer<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    req
}

/// Writes `text` to `path` at once (a new file renamed over the old, as the
/// kubelet updates a Secret).
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn tokens_file(text: &str) -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens");
    replace(&path, text);
    (dir, path)
}

/// A write of session `id` with `token`: Ok, or the refusal's code.
async fn write(c: &mut Client, token: &str, id: &str) -> Result<(), Code> {
    c.update_session(bearer(set(id, &[("k", token)]), token))
        .await
        .map(drop)
        .map_err(|s| s.code())
}

/// The value `token`'s namespace holds for session `id`.
async fn read(c: &mut Client, token: &str, id: &str) -> Option<String> {
    let req = GetSessionRequest {
        session_id: id.into(),
        consistency: Consistency::Strong as i32,
        min_version: 0,
    };
    let got = c
        .get_session(bearer(req, token))
        .await
        .unwrap()
        .into_inner();
    got.session.and_then(|s| {
        s.fields
            .get("k")
            .map(|v| String::from_utf8_lossy(v).into_owned())
    })
}

/// Waits until `token` is accepted.
async fn until_accepted(c: &mut Client, token: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while write(c, token, "probe").await.is_err() {
        assert!(Instant::now() < deadline, "{token} never became valid");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The file's new tokens, the revocation and a broken file, seen by calls on
/// a connection opened before any of it.
async fn check_rotation(c: &mut Client, path: &Path) {
    write(c, OLD, "s").await.unwrap();
    write(c, STAYS, "s").await.unwrap();
    assert_eq!(write(c, NEW, "s").await, Err(Code::Unauthenticated));

    replace(path, &format!("{STAYS} alpha\n{NEW} brand-new-ns\n"));
    until_accepted(c, NEW).await;
    // Revoked for the very next call, on the same connection.
    assert_eq!(write(c, OLD, "s").await, Err(Code::Unauthenticated));
    write(c, STAYS, "s").await.unwrap();
    // The new namespace is a namespace of its own.
    write(c, NEW, "s").await.unwrap();
    assert_eq!(read(c, NEW, "s").await.as_deref(), Some(NEW));
    assert_eq!(read(c, STAYS, "s").await.as_deref(), Some(STAYS));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_tokens_file_takes_effect_without_restart() {
    let (_dir, path) = tokens_file(&format!("{OLD} alpha\n{STAYS} alpha\n"));
    let s = Server::start(
        Backend::Embedded,
        &[
            "--auth-tokens-file",
            path.to_str().unwrap(),
            "--reload-interval",
            "50ms",
        ],
    )
    .await;
    let mut c = s.client().await;
    check_rotation(&mut c, &path).await;

    // A broken file (a bad namespace; then no file at all) keeps the set.
    replace(&path, &format!("{OLD} alpha\n{NEW} not/a/namespace\n"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(write(&mut c, OLD, "s").await, Err(Code::Unauthenticated));
    write(&mut c, NEW, "s").await.unwrap();
    std::fs::remove_file(&path).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    write(&mut c, NEW, "s").await.unwrap();
    write(&mut c, STAYS, "s").await.unwrap();
}

/// The binary, killed on drop.
struct Sessiond(Child);

impl Drop for Sessiond {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_tokens_file_at_once() {
    let (dir, path) = tokens_file(&format!("{OLD} alpha\n{STAYS} alpha\n"));
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_sessiond"))
        .args(["--listen", &listen, "--log-level", "warn"])
        .args(["--db-path", dir.path().join("db").to_str().unwrap()])
        .args(["--auth-tokens-file", path.to_str().unwrap()])
        // Polled too rarely to matter here: only SIGHUP can reload in time.
        .args(["--reload-interval", "1h"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let process = Sessiond(child);
    let mut c = client(listen.parse().unwrap()).await;

    let hangup = || {
        let status = Command::new("kill")
            .args(["-HUP", &process.0.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    write(&mut c, OLD, "s").await.unwrap();
    replace(&path, &format!("{STAYS} alpha\n{NEW} brand-new-ns\n"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        write(&mut c, NEW, "s").await,
        Err(Code::Unauthenticated),
        "reloaded without a SIGHUP"
    );
    hangup();
    until_accepted(&mut c, NEW).await;
    assert_eq!(write(&mut c, OLD, "s").await, Err(Code::Unauthenticated));
    write(&mut c, STAYS, "s").await.unwrap();

    // A broken file and a SIGHUP: the process lives on with the same set.
    replace(&path, "too-short alpha\n");
    hangup();
    tokio::time::sleep(Duration::from_millis(200)).await;
    write(&mut c, NEW, "s").await.unwrap();
    assert_eq!(write(&mut c, OLD, "s").await, Err(Code::Unauthenticated));
}
