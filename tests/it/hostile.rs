//! Hostile callers: requests built to cost the server as much as possible,
//! callers without credentials, namespaces that flood, and malformed input.
//! Each test checks both that the attacker is refused (quickly, with the
//! contract's status) and that a well-behaved caller is unharmed. Raw
//! HTTP/2 (`raw.rs`) sends what a gRPC client will not.

mod admission;
mod cost;
mod edges;
mod raw;
mod shares;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use sessiond::pb::*;
use tempfile::TempDir;

use crate::support::{Backend, Client, Server, get};

/// The token of namespace `flood` (the attacker in these tests).
pub const FLOOD: &str = "token-of-the-flooding-namespace";
/// The token of namespace `calm` (the well-behaved caller).
pub const CALM: &str = "token-of-the-calm-namespace";
/// A token that grants two namespaces, `slack` (its first) and `line`.
pub const TWO: &str = "token-of-the-slack-and-line-bots";

/// A tokens file granting `flood`, `calm` and `slack,line`.
pub struct Tokens {
    _dir: TempDir,
    pub path: PathBuf,
}

impl Tokens {
    pub fn new() -> Tokens {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(
            &path,
            format!("{FLOOD} flood\n{CALM} calm\n{TWO} slack,line\n"),
        )
        .unwrap();
        Tokens { _dir: dir, path }
    }

    /// A server with authentication on and `extra` flags.
    pub async fn server(&self, b: Backend, extra: &[&str]) -> Server {
        let mut args = vec!["--auth-tokens-file", self.path.to_str().unwrap()];
        args.extend_from_slice(extra);
        Server::start(b, &args).await
    }
}

/// `msg` with `authorization: Bearer <token>`.
pub fn bearer<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    req
}

pub fn strong(id: &str) -> GetSessionRequest {
    GetSessionRequest {
        session_id: id.into(),
        consistency: Consistency::Strong as i32,
        min_version: 0,
    }
}

/// The canary: a write and a STRONG read of its own session, as a
/// well-behaved caller makes them. Returns how long the pair took; fails if
/// either call fails or the pair takes more than 2 s (far above any normal
/// figure, even on a loaded 2-core machine in a debug build).
pub async fn canary(c: &mut Client, token: Option<&str>) -> Duration {
    let started = Instant::now();
    let mut w = UpdateSessionRequest {
        session_id: "canary".into(),
        ..Default::default()
    };
    w.set_fields.insert("beat".into(), "1".into());
    match token {
        Some(t) => {
            c.update_session(bearer(w, t)).await.unwrap();
            c.get_session(bearer(strong("canary"), t)).await.unwrap();
        }
        None => {
            c.update_session(w).await.unwrap();
            get(c, "canary", Consistency::Strong).await.unwrap();
        }
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "the canary took {took:?}");
    took
}
