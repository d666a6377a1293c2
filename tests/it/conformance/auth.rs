//! Credentials: a bearer token decides which namespaces a call may act in;
//! the same session id in two namespaces is two sessions, and operators'
//! calls need no token.

use sessiond::pb::*;
use tonic::Code;

use crate::on_every_backend;
use crate::support::{Backend, Server, fields, reason, set};

fn authed<T>(msg: T, token: Option<&str>, namespace: Option<&str>) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    if let Some(t) = token {
        req.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    if let Some(ns) = namespace {
        req.metadata_mut()
            .insert("sessiond-namespace", ns.parse().unwrap());
    }
    req
}

async fn namespaces_come_from_credentials(b: Backend) {
    const A: &str = "token-of-the-telegram-bot";
    const B: &str = "token-of-the-slack-and-line-bots";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens");
    std::fs::write(
        &file,
        format!("# token namespaces\n{A} telegram\n{B} slack,line\n"),
    )
    .unwrap();
    let s = Server::start(b, &["--auth-tokens-file", file.to_str().unwrap()]).await;
    let mut c = s.client().await;
    let get = |t: Option<&str>, ns: Option<&str>| {
        authed(
            GetSessionRequest {
                session_id: "user-1".into(),
                consistency: 2,
                min_version: 0,
            },
            t,
            ns,
        )
    };
    assert_eq!(
        reason(c.get_session(get(None, None)).await),
        (Code::Unauthenticated, "UNAUTHENTICATED".into())
    );
    let wrong = get(Some("not-a-token-anyone-was-given"), None);
    assert_eq!(
        reason(c.get_session(wrong).await),
        (Code::Unauthenticated, "UNAUTHENTICATED".into())
    );
    let denied = get(Some(B), Some("telegram"));
    assert_eq!(
        reason(c.get_session(denied).await),
        (Code::PermissionDenied, "NAMESPACE_DENIED".into())
    );
    // The same id in three namespaces: three sessions.
    for (token, ns, who) in [(A, None, "a"), (B, None, "b"), (B, Some("line"), "c")] {
        let l = c
            .lock_session(authed(
                LockSessionRequest {
                    session_id: "user-1".into(),
                    lease_ms: 5000,
                    wait_ms: 0,
                    rate_limit: None,
                    ..Default::default()
                },
                Some(token),
                ns,
            ))
            .await;
        let l = l.expect("each namespace has its own lock").into_inner();
        let mut w = set("user-1", &[("who", who)]);
        w.lock_token = l.lock_token;
        w.release_lock = true;
        assert_eq!(
            c.update_session(authed(w, Some(token), ns))
                .await
                .unwrap()
                .into_inner()
                .version,
            1
        );
    }
    for (token, ns, who) in [
        (A, None, "a"),
        (B, Some("slack"), "b"),
        (B, Some("line"), "c"),
    ] {
        let got = c
            .get_session(get(Some(token), ns))
            .await
            .unwrap()
            .into_inner()
            .session
            .unwrap();
        assert_eq!(got.fields, fields(&[("who", who)]));
    }
    // Operators' calls need no token.
    s.admin().await.get_stats(GetStatsRequest {}).await.unwrap();
}

on_every_backend!(namespaces_come_from_credentials);
