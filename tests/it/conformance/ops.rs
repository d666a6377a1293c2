//! Field operations on UpdateSession (increment, append to a bounded list,
//! set_if_absent): their values, their encodings byte for byte, their
//! refusals (which write nothing), the guards they keep, and no increment
//! lost among many concurrent callers.

use bytes::Bytes;
use prost::Message;
use sessiond::pb::*;
use tonic::Code;

use crate::on_every_backend;
use crate::support::{Backend, Client, Server, details, get, lock, reason, set};

fn inc(field: &str, n: i64) -> FieldOp {
    FieldOp {
        field: field.into(),
        op: Some(field_op::Op::Increment(n)),
    }
}

fn append(field: &str, value: &str, keep_last: u32) -> FieldOp {
    FieldOp {
        field: field.into(),
        op: Some(field_op::Op::Append(AppendOp {
            value: Bytes::from(value.to_owned()),
            keep_last,
        })),
    }
}

fn if_absent(field: &str, value: &str) -> FieldOp {
    FieldOp {
        field: field.into(),
        op: Some(field_op::Op::SetIfAbsent(Bytes::from(value.to_owned()))),
    }
}

fn ops(id: &str, ops: Vec<FieldOp>) -> UpdateSessionRequest {
    UpdateSessionRequest {
        session_id: id.into(),
        ops,
        ..Default::default()
    }
}

async fn update(c: &mut Client, r: UpdateSessionRequest) -> UpdateSessionResponse {
    c.update_session(r).await.unwrap().into_inner()
}

async fn stored(c: &mut Client, id: &str) -> Session {
    get(c, id, Consistency::Strong)
        .await
        .unwrap()
        .session
        .unwrap()
}

fn list(entries: &[&str]) -> Bytes {
    FieldList {
        entries: entries.iter().map(|e| Bytes::from(e.to_string())).collect(),
    }
    .encode_to_vec()
    .into()
}

async fn increments_add_exactly_across_the_whole_range(b: Backend) {
    let s = Server::start(b, &[]).await;
    let mut c = s.client().await;
    // From absent (0), in one step with a set; values come back in order.
    let mut r = set("inc", &[("a", "x")]);
    r.ops = vec![inc("n", 5), inc("m", -3)];
    let w = update(&mut c, r).await;
    assert_eq!(
        (w.version, w.op_values),
        (1, vec![Bytes::from("5"), "-3".into()])
    );
    // Values stored as text the way they would be written by hand; the sum
    // is written without leading zeros or a negative zero.
    let cases: &[(&str, i64, &str)] = &[
        ("007", 0, "7"),
        ("-0", 0, "0"),
        ("-5", 3, "-2"),
        ("-1000000000", 1, "-999999999"),
        ("1000000000", -1, "999999999"),
        ("999999999", 1, "1000000000"),
        ("-999999999", -1, "-1000000000"),
        ("1999999999", -2999999999, "-1000000000"),
        ("9223372036854775806", 1, "9223372036854775807"),
        ("-9223372036854775807", -1, "-9223372036854775808"),
        ("-9223372036854775808", i64::MAX, "-1"),
        ("9223372036854775807", i64::MIN, "-1"),
        (
            "4611686018427387904",
            4611686018427387903,
            "9223372036854775807",
        ),
        (
            "123456789012345678",
            876543210987654321,
            "999999999999999999",
        ),
    ];
    for &(start, delta, want) in cases {
        update(&mut c, set("edge", &[("n", start)])).await;
        let w = update(&mut c, ops("edge", vec![inc("n", delta)])).await;
        assert_eq!(w.op_values, [Bytes::from(want)], "{start} + {delta}");
        assert_eq!(stored(&mut c, "edge").await.fields["n"], want);
    }
    // Past either end: refused, named, and nothing written.
    for (start, delta) in [
        ("9223372036854775807", 1),
        ("-9223372036854775808", -1),
        ("-2", i64::MIN),
        ("4611686018427387904", 4611686018427387904),
    ] {
        let before = update(&mut c, set("edge", &[("n", start)])).await.version;
        let (code, why, md) = details(c.update_session(ops("edge", vec![inc("n", delta)])).await);
        assert_eq!(
            (code, why.as_str()),
            (Code::InvalidArgument, "INTEGER_OVERFLOW")
        );
        assert_eq!(md["field"], "n");
        let now = stored(&mut c, "edge").await;
        assert_eq!(
            (now.version, &now.fields["n"][..]),
            (before, start.as_bytes())
        );
    }
}

async fn only_integers_are_incremented(b: Backend) {
    let s = Server::start(b, &[]).await;
    let mut c = s.client().await;
    for bad in [
        "",
        "hello",
        "+1",
        " 1",
        "1 ",
        "1.5",
        "1e3",
        "0x10",
        "-",
        "--1",
        "9223372036854775808",
        "-9223372036854775809",
        "00000000000000000001",
    ] {
        let before = update(&mut c, set("ni", &[("n", bad), ("k", "v")]))
            .await
            .version;
        let mut r = ops("ni", vec![inc("ok", 1), inc("n", 1)]);
        r.set_fields = [("k".to_owned(), Bytes::from("changed"))].into();
        let (code, why, md) = details(c.update_session(r).await);
        assert_eq!(
            (code, why.as_str()),
            (Code::InvalidArgument, "FIELD_NOT_INTEGER"),
            "{bad:?}"
        );
        assert_eq!(md["field"], "n");
        let now = stored(&mut c, "ni").await;
        assert_eq!(now.version, before, "{bad:?}: nothing written");
        assert_eq!(now.fields["k"], "v");
        assert!(!now.fields.contains_key("ok"));
    }
}

async fn appends_keep_the_last_entries_as_a_field_list(b: Backend) {
    let s = Server::start(b, &["--max-field-bytes", "1000"]).await;
    let mut c = s.client().await;
    let words = ["a", "bb", "", "héllo", "e"];
    for (i, w) in words.iter().enumerate() {
        let r = update(&mut c, ops("hist", vec![append("h", w, 3)])).await;
        let want: Vec<&str> = words[i.saturating_sub(2)..=i].to_vec();
        // Byte for byte what protobuf encodes, so any client reads it.
        assert_eq!(r.op_values, [list(&want)], "after {w:?}");
        assert_eq!(stored(&mut c, "hist").await.fields["h"], list(&want));
    }
    // Entries longer than 127 bytes take a two-byte length.
    let long = "x".repeat(300);
    let r = update(&mut c, ops("hist", vec![append("h", &long, 2)])).await;
    assert_eq!(r.op_values, [list(&["e", &long])]);
    let r = update(&mut c, ops("hist", vec![append("h", "y", 1)])).await;
    assert_eq!(r.op_values, [list(&["y"])]);
    // A list written by a client's own encoder is appended to.
    update(&mut c, set("hist", &[("p", "")])).await;
    let mut r = ops("hist", vec![append("q", "3", 10)]);
    r.set_fields = [("q".to_owned(), list(&["1", "2"]))].into();
    let (code, why) = reason(c.update_session(r).await);
    assert_eq!(
        (code, why.as_str()),
        (Code::InvalidArgument, "INVALID_FIELD")
    );
    c.update_session(UpdateSessionRequest {
        session_id: "hist".into(),
        set_fields: [("q".to_owned(), list(&["1", "2"]))].into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let r = update(
        &mut c,
        ops("hist", vec![append("q", "3", 10), append("p", "z", 10)]),
    )
    .await;
    assert_eq!(r.op_values, [list(&["1", "2", "3"]), list(&["z"])]);
    // What is not a list is refused, and nothing is written.
    for bad in [&b"hello"[..], b"\x0a", b"\x0a\x05ab", b"\x0a\x01a\x12\x00"] {
        c.update_session(UpdateSessionRequest {
            session_id: "hist".into(),
            set_fields: [("bad".to_owned(), Bytes::copy_from_slice(bad))].into(),
            ..Default::default()
        })
        .await
        .unwrap();
        let before = stored(&mut c, "hist").await.version;
        let (code, why, md) = details(
            c.update_session(ops(
                "hist",
                vec![append("ok", "1", 5), append("bad", "1", 5)],
            ))
            .await,
        );
        assert_eq!(
            (code, why.as_str()),
            (Code::InvalidArgument, "FIELD_NOT_LIST"),
            "{bad:?}"
        );
        assert_eq!(md["field"], "bad");
        let now = stored(&mut c, "hist").await;
        assert_eq!(now.version, before);
        assert!(!now.fields.contains_key("ok"));
    }
    // A list may not outgrow max_field_bytes: keep fewer entries.
    let half = "z".repeat(600);
    update(&mut c, ops("big", vec![append("h", &half, 5)])).await;
    let (code, why, md) = details(
        c.update_session(ops("big", vec![append("h", &half, 5)]))
            .await,
    );
    assert_eq!(
        (code, why.as_str(), md["limit"].as_str()),
        (Code::InvalidArgument, "LIMIT_EXCEEDED", "max_field_bytes")
    );
    let r = update(&mut c, ops("big", vec![append("h", &half, 1)])).await;
    assert_eq!(r.op_values, [list(&[&half])]);
}

async fn set_if_absent_and_replace(b: Backend) {
    let s = Server::start(b, &[]).await;
    let mut c = s.client().await;
    let r = update(&mut c, ops("sia", vec![if_absent("greeted", "1")])).await;
    assert_eq!(r.op_values, [Bytes::from("1")]);
    let r = update(
        &mut c,
        ops("sia", vec![if_absent("greeted", "2"), inc("n", 1)]),
    )
    .await;
    assert_eq!(
        (r.version, r.op_values),
        (2, vec![Bytes::from("1"), "1".into()])
    );
    assert_eq!(stored(&mut c, "sia").await.fields["greeted"], "1");
    // With replace, ops start from absent fields, and the rest go.
    let mut r = ops("sia", vec![inc("n", 10), if_absent("greeted", "3")]);
    r.replace = true;
    r.set_fields = [("k".to_owned(), Bytes::from("v"))].into();
    let r = update(&mut c, r).await;
    assert_eq!(r.op_values, [Bytes::from("10"), "3".into()]);
    let now = stored(&mut c, "sia").await;
    let mut names: Vec<_> = now.fields.keys().cloned().collect();
    names.sort();
    assert_eq!(names, ["greeted", "k", "n"]);
}

async fn ops_keep_the_guards_and_are_checked_first(b: Backend) {
    let s = Server::start(b, &[]).await;
    let mut c = s.client().await;
    update(&mut c, ops("g", vec![inc("n", 1)])).await;
    let held = lock(&mut c, "g", 5_000, 0).await.unwrap();
    let (code, why) = reason(c.update_session(ops("g", vec![inc("n", 1)])).await);
    assert_eq!(
        (code, why.as_str()),
        (Code::FailedPrecondition, "LOCK_HELD")
    );
    let mut r = ops("g", vec![inc("n", 1)]);
    r.lock_token = held.lock_token.clone();
    r.expected_version = Some(7);
    assert_eq!(
        reason(c.update_session(r.clone()).await).1,
        "VERSION_MISMATCH"
    );
    r.expected_version = Some(1);
    r.release_lock = true;
    let w = update(&mut c, r).await;
    assert_eq!((w.version, w.op_values), (2, vec![Bytes::from("2")]));
    // Malformed ops are refused at the edge with their own reason.
    let cases = vec![
        (
            ops(
                "g",
                vec![FieldOp {
                    field: "n".into(),
                    op: None,
                }],
            ),
            "INVALID_FIELD_OP",
        ),
        (ops("g", vec![append("h", "x", 0)]), "INVALID_FIELD_OP"),
        (
            ops("g", vec![inc("n", 1), append("n", "x", 1)]),
            "INVALID_FIELD",
        ),
        (ops("g", vec![inc("", 1)]), "INVALID_FIELD"),
        (
            UpdateSessionRequest {
                delete_fields: vec!["n".into()],
                ..ops("g", vec![inc("n", 1)])
            },
            "INVALID_FIELD",
        ),
    ];
    for (r, want) in cases {
        let (code, why) = reason(c.update_session(r).await);
        assert_eq!((code, why.as_str()), (Code::InvalidArgument, want));
    }
    assert_eq!(stored(&mut c, "g").await.version, 2);
}

/// 64 callers increment one counter with no lock: every acknowledged
/// increment is in the final value, and each saw a distinct value.
async fn concurrent_increments_lose_nothing(b: Backend) {
    let s = Server::start(b, &[]).await;
    const CALLERS: usize = 64;
    const EACH: usize = 20;
    let mut tasks = Vec::new();
    for i in 0..CALLERS {
        let mut c = s.client().await;
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..EACH {
                let w = update(
                    &mut c,
                    ops("race", vec![inc("n", 1), append("who", &i.to_string(), 8)]),
                )
                .await;
                seen.push(
                    std::str::from_utf8(&w.op_values[0])
                        .unwrap()
                        .parse::<u64>()
                        .unwrap(),
                );
            }
            seen
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    let want: Vec<u64> = (1..=(CALLERS * EACH) as u64).collect();
    assert_eq!(
        all, want,
        "every increment applied once, each value seen once"
    );
    let mut c = s.client().await;
    let now = stored(&mut c, "race").await;
    assert_eq!(now.fields["n"], (CALLERS * EACH).to_string());
    assert_eq!(now.version, (CALLERS * EACH) as u64);
    let hist = FieldList::decode(now.fields["who"].clone()).unwrap();
    assert_eq!(hist.entries.len(), 8);
}

on_every_backend!(
    increments_add_exactly_across_the_whole_range,
    only_integers_are_incremented,
    appends_keep_the_last_entries_as_a_field_list,
    set_if_absent_and_replace,
    ops_keep_the_guards_and_are_checked_first,
    concurrent_increments_lose_nothing,
);
