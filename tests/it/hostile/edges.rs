//! Small sharp edges: malformed messages, malformed or repeated namespace
//! metadata, the bearer scheme's case, ids that hide what they are, and
//! settings that would overflow.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sessiond::pb::*;
use tonic::Code;

use super::raw::{Answer, Raw};
use super::{CALM, TWO, Tokens, bearer, canary, strong};
use crate::on_both_backends;
use crate::support::{Backend, Server, free_port, get, lock, reason, set};

/// Bytes that are no GetSessionRequest: a length running past the end, a
/// string that is not UTF-8, and a wire type protobuf does not have.
const MALFORMED: &[&[u8]] = &[
    &[0x0a, 0x7f, b'a'],
    &[0x0a, 0x02, 0xff, 0xfe],
    &[0x0f, 0x01],
];

fn answer(code: Code, reason: &str) -> (Code, String) {
    (code, reason.to_owned())
}

fn pair(a: Answer) -> (Code, String) {
    (a.code, a.reason)
}

async fn malformed_messages_are_invalid_argument(b: Backend) {
    let s = Server::start(b, &[]).await;
    let mut raw = Raw::connect(s.addr).await;
    for payload in MALFORMED {
        assert_eq!(
            pair(raw.call("GetSession", &[], payload).await),
            answer(Code::InvalidArgument, "MALFORMED_REQUEST"),
            "{payload:?}"
        );
    }
    let open = raw.open("UpdateSession", &[]).await;
    let mut body = open.body;
    body.send_data(bytes::Bytes::new(), true).unwrap(); // admitted: it waits for this
    assert_eq!(
        pair(super::raw::answer_of(open.response).await),
        answer(Code::InvalidArgument, "MALFORMED_REQUEST"),
        "no message at all"
    );
    canary(&mut s.client().await, None).await;
}

/// The same refusals are not logged as server errors: at the default
/// level, the log stays silent about them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_not_logged_as_errors() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sessiond"))
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--log-level",
            "info",
        ])
        .arg("--db-path")
        .arg(dir.path().join("s.redb"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut c = crate::support::client(addr).await;
    let mut raw = Raw::connect(addr).await;
    for payload in MALFORMED.iter().cycle().take(30) {
        assert_eq!(
            raw.call("GetSession", &[], payload).await.code,
            Code::InvalidArgument
        );
    }
    canary(&mut c, None).await;
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("sessiond serving"), "{log}");
    assert!(!log.contains("ERROR"), "{log}");
    assert!(!log.contains("call failed"), "{log}");
}

async fn the_namespace_header_is_one_ascii_name(b: Backend) {
    let tokens = Tokens::new();
    let s = tokens.server(b, &[]).await;
    let mut c = s.client().await;
    let mut twice = bearer(strong("x"), TWO);
    twice
        .metadata_mut()
        .append("sessiond-namespace", "slack".parse().unwrap());
    twice
        .metadata_mut()
        .append("sessiond-namespace", "line".parse().unwrap());
    assert_eq!(
        reason(c.get_session(twice).await),
        answer(Code::InvalidArgument, "INVALID_NAMESPACE")
    );
    let mut raw = Raw::connect(s.addr).await;
    let auth = format!("Bearer {TWO}");
    let message = prost::Message::encode_to_vec(&strong("x"));
    for value in [&b"l\xefne"[..], "l\u{ef}ne".as_bytes(), b"line/x", b""] {
        let headers = [
            ("authorization", auth.as_bytes()),
            ("sessiond-namespace", value),
        ];
        assert_eq!(
            pair(raw.call("GetSession", &headers, &message).await),
            answer(Code::InvalidArgument, "INVALID_NAMESPACE"),
            "{value:?}"
        );
    }
    // Without authentication too: a malformed namespace is refused, not
    // ignored.
    let open = Server::start(b, &[]).await;
    let mut raw = Raw::connect(open.addr).await;
    let headers = [
        ("sessiond-namespace", &b"a"[..]),
        ("sessiond-namespace", b"b"),
    ];
    assert_eq!(
        pair(raw.call("GetSession", &headers, &message).await),
        answer(Code::InvalidArgument, "INVALID_NAMESPACE")
    );
    // One well-formed namespace still works as before.
    let mut one = bearer(strong("x"), TWO);
    one.metadata_mut()
        .insert("sessiond-namespace", "line".parse().unwrap());
    assert_eq!(c.get_session(one).await.unwrap_err().code(), Code::NotFound);
}

async fn the_bearer_scheme_is_matched_in_any_case(b: Backend) {
    let tokens = Tokens::new();
    let s = tokens.server(b, &[]).await;
    let mut c = s.client().await;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let mut req = tonic::Request::new(set("case", &[("a", "1")]));
        req.metadata_mut()
            .insert("authorization", format!("{scheme} {CALM}").parse().unwrap());
        c.update_session(req).await.unwrap();
    }
    let got = c.get_session(bearer(strong("case"), CALM)).await.unwrap();
    assert_eq!(got.into_inner().session.unwrap().version, 4);
    let mut basic = tonic::Request::new(strong("case"));
    basic
        .metadata_mut()
        .insert("authorization", format!("Basic {CALM}").parse().unwrap());
    assert_eq!(
        reason(c.get_session(basic).await),
        answer(Code::Unauthenticated, "UNAUTHENTICATED")
    );
}

async fn ids_that_hide_what_they_are_are_refused(b: Backend) {
    let s = Server::start(b, &[]).await;
    let mut c = s.client().await;
    for id in [
        "user\u{200B}42",
        "user\u{200D}42",
        "\u{FEFF}user42",
        "user\u{202E}24",
        "user\u{2067}42\u{2069}",
        "user\u{200F}42",
        "user\u{2028}42",
        "user\u{2029}42",
    ] {
        let invalid = answer(Code::InvalidArgument, "INVALID_SESSION_ID");
        assert_eq!(
            reason(get(&mut c, id, Consistency::Strong).await),
            invalid,
            "{id:?}"
        );
        assert_eq!(
            reason(c.update_session(set(id, &[("a", "1")])).await),
            invalid
        );
        assert_eq!(reason(lock(&mut c, id, 0, 0).await), invalid);
    }
    // Visible text of any script is fine.
    for id in ["user42", "ユーザー", "مستخدم", "משתמש", "👍"] {
        c.update_session(set(id, &[("a", "1")])).await.unwrap();
    }
}

/// Redis's own words (here its refusal of a user without the right to run
/// scripts, which names the user and the command) never reach a caller: the
/// answer says what kind of fault it was, and the log has the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_error_text_never_reaches_callers() {
    let s = Server::start(Backend::Redis, &[]).await;
    let mut c = s.client().await;
    c.update_session(set("a", &[("n", "1")])).await.unwrap();
    let url = s.redis.as_ref().expect("a Redis server").url();
    let mut conn = ::redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = ::redis::cmd("ACL")
        .arg(&["SETUSER", "default", "-fcall"])
        .query_async(&mut conn)
        .await
        .unwrap();
    for attempt in [set("a", &[("n", "2")]), set("b", &[("n", "1")])] {
        let status = c.update_session(attempt).await.unwrap_err();
        assert_eq!(
            reason(Err::<(), _>(status.clone())),
            answer(Code::Unavailable, "STORE_UNAVAILABLE")
        );
        let message = status.message();
        assert!(
            message.contains("Redis refused the command") && message.contains("retry with backoff"),
            "{message}"
        );
        for word in ["NOPERM", "permission", "fcall", "default", "user"] {
            assert!(!message.contains(word), "{word:?} in {message:?}");
        }
    }
}

/// Settings that would overflow where they are used stop the start with
/// exit 64, before anything listens.
#[test]
fn settings_that_would_overflow_exit_64() {
    for args in [
        &["--idle-ttl", "300000000years"][..],
        &["--idle-ttl", "200years"],
        &["--cache-max-age", "2000years"],
        &["--shutdown-grace", "1000000years"],
        &["--max-session-bytes", "4GiB"],
        &["--max-fields", "100000000"],
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_sessiond"))
            .args(["--listen", "127.0.0.1:0", "--db-path"])
            .arg(dir.path().join("s.redb"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{args:?}: sessiond started instead of refusing the setting");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {stderr}");
        assert!(stderr.contains(args[0]), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    }
}

on_both_backends!(
    malformed_messages_are_invalid_argument,
    the_namespace_header_is_one_ascii_name,
    the_bearer_scheme_is_matched_in_any_case,
    ids_that_hide_what_they_are_are_refused,
);
