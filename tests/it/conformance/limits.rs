//! Refusals that write nothing: the configured size limits and malformed
//! arguments, each with its own reason so a client can tell what to fix.

use sessiond::pb::*;
use tonic::Code;

use crate::on_every_backend;
use crate::support::{Backend, Server, details, fields, get, lock, reason, set};

async fn limits_refuse_and_write_nothing(b: Backend) {
    let s = Server::start(
        b,
        &[
            "--max-fields",
            "3",
            "--max-field-bytes",
            "100",
            "--max-session-bytes",
            "250",
        ],
    )
    .await;
    let mut c = s.client().await;
    c.update_session(set("lim", &[("a", "1"), ("b", "2")]))
        .await
        .unwrap();
    let cases: Vec<(UpdateSessionRequest, &str)> = vec![
        (set("lim", &[("c", "3"), ("d", "4")]), "max_fields"),
        (set("lim", &[("big", &"x".repeat(101))]), "max_field_bytes"),
        (
            set("lim", &[("c", &"x".repeat(100)), ("d", &"x".repeat(0))]),
            "max_fields",
        ),
        (
            set(
                "lim",
                &[
                    ("a", &"x".repeat(100)),
                    ("b", &"x".repeat(100)),
                    ("c", &"x".repeat(60)),
                ],
            ),
            "max_session_bytes",
        ),
    ];
    for (req, limit) in cases {
        let (code, why, md) = details(c.update_session(req).await);
        assert_eq!(
            (code, why.as_str()),
            (Code::InvalidArgument, "LIMIT_EXCEEDED")
        );
        assert_eq!(md["limit"], limit);
    }
    let got = get(&mut c, "lim", Consistency::Strong)
        .await
        .unwrap()
        .session
        .unwrap();
    assert_eq!(
        (got.version, got.fields),
        (1, fields(&[("a", "1"), ("b", "2")])),
        "nothing was written"
    );
    // Replacing frees the room of the fields it drops; deleting makes room too.
    let mut rep = set("lim", &[("x", "1"), ("y", "2"), ("z", "3")]);
    rep.replace = true;
    c.update_session(rep).await.unwrap();
    let mut swap = set("lim", &[("w", "4")]);
    swap.delete_fields = vec!["x".into()];
    c.update_session(swap).await.unwrap();
    let got = get(&mut c, "lim", Consistency::Strong)
        .await
        .unwrap()
        .session
        .unwrap();
    assert_eq!(got.fields.len(), 3);
}

async fn bad_arguments_are_named(b: Backend) {
    let s = Server::start(b, &[]).await;
    let mut c = s.client().await;
    let long = "x".repeat(257);
    for id in ["", "a\nb", "tab\there", long.as_str()] {
        let r = get(&mut c, id, Consistency::Cached).await;
        assert_eq!(
            reason(r),
            (Code::InvalidArgument, "INVALID_SESSION_ID".into()),
            "id {id:?}"
        );
        assert_eq!(
            reason(c.update_session(set(id, &[("a", "1")])).await).1,
            "INVALID_SESSION_ID"
        );
        assert_eq!(reason(lock(&mut c, id, 0, 0).await).1, "INVALID_SESSION_ID");
    }
    assert_eq!(
        reason(lock(&mut c, "ok", 1, 0).await),
        (Code::InvalidArgument, "INVALID_LEASE".into())
    );
    assert_eq!(
        reason(lock(&mut c, "ok", u32::MAX, 0).await).1,
        "INVALID_LEASE"
    );
    assert_eq!(
        reason(lock(&mut c, "ok", 0, u32::MAX).await),
        (Code::InvalidArgument, "INVALID_WAIT".into())
    );
    let mut w = set("ok", &[("a", "1")]);
    w.lock_token = "not a token!".into();
    assert_eq!(
        reason(c.update_session(w).await),
        (Code::InvalidArgument, "INVALID_LOCK_TOKEN".into())
    );
    let mut w = set("ok", &[("a", "1")]);
    w.release_lock = true;
    assert_eq!(reason(c.update_session(w).await).1, "INVALID_LOCK_TOKEN");
    let unlock = UnlockSessionRequest {
        session_id: "ok".into(),
        lock_token: String::new(),
    };
    assert_eq!(
        reason(c.unlock_session(unlock).await).1,
        "INVALID_LOCK_TOKEN"
    );
    let mut w = set("ok", &[("a", "1")]);
    w.delete_fields = vec!["a".into()];
    assert_eq!(
        reason(c.update_session(w).await),
        (Code::InvalidArgument, "INVALID_FIELD".into())
    );
    for name in ["", "bad\u{0}name"] {
        let w = set("ok", &[(name, "1")]);
        assert_eq!(reason(c.update_session(w).await).1, "INVALID_FIELD");
    }
    assert_eq!(
        reason(get(&mut c, "ok", Consistency::Strong).await).1,
        "SESSION_NOT_FOUND",
        "nothing was written"
    );
}

on_every_backend!(limits_refuse_and_write_nothing, bad_arguments_are_named);
