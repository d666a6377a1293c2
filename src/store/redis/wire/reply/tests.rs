//! The replies' parsers, on replies shaped as the scripts send them, and on
//! the shapes no script sends.

use std::time::Duration;

use redis::Value;

use super::*;
use crate::session::{LockGrant, Session};

fn s(text: &str) -> Value {
    Value::BulkString(text.as_bytes().to_vec())
}

fn i(n: i64) -> Value {
    Value::Int(n)
}

fn arr(items: Vec<Value>) -> Value {
    Value::Array(items)
}

/// `{status, a, b, expired, rest...}`
fn reply(status: &str, a: Value, b: Value, expired: i64, rest: Vec<Value>) -> Value {
    let mut items = vec![s(status), a, b, i(expired)];
    items.extend(rest);
    arr(items)
}

/// A data hash as HGETALL returns it: field `a` = `1`, version 3.
fn hash() -> Vec<Value> {
    vec![s("f:a"), s("1"), s("v"), s("3"), s("e"), s("99")]
}

fn check_hash(session: &Option<Session>) {
    let session = session.as_ref().expect("a session");
    assert_eq!(session.version, 3);
    assert_eq!(session.expires_ms, 99);
    assert_eq!(session.fields.get("a").map(|v| &v[..]), Some(&b"1"[..]));
}

/// The outcome of a reply that parses, whatever its expiry flag.
fn outcome<T>(r: Result<Reply<T>, Fault>) -> T {
    r.unwrap().outcome
}

/// The message of a protocol fault; fails on anything else.
fn protocol<T: std::fmt::Debug>(r: Result<Reply<T>, Fault>) -> String {
    match r {
        Err(Fault::Protocol(m)) => m,
        Err(other) => panic!("not a protocol fault: {other:?}"),
        Ok(reply) => panic!("parsed: {:?}", reply.outcome),
    }
}

#[test]
fn lock_grants_refuses_and_queues() {
    let mut data = hash();
    data.insert(0, arr(vec![i(2), s("m7"), s("m8")]));
    let r = lock(&reply("GRANTED", i(7), i(1000), 1, data.clone())).unwrap();
    assert!(r.expired);
    let LockReply::Granted {
        fence,
        lease_expires_ms,
        session,
        superseded,
    } = r.outcome
    else {
        panic!("{:?}", r.outcome)
    };
    assert_eq!((fence, lease_expires_ms), (7, 1000));
    assert_eq!(superseded.dropped, 2);
    assert_eq!(superseded.payloads, ["m7", "m8"].map(bytes::Bytes::from));
    check_hash(&session);
    data.clear();
    data.push(arr(vec![i(0)]));
    let r = lock(&reply("GRANTED", i(8), i(1000), 0, data)).unwrap();
    assert!(!r.expired);
    assert!(matches!(
        r.outcome,
        LockReply::Granted { session: None, .. }
    ));

    let r = lock(&reply("LOCK_HELD", i(0), i(0), 0, vec![])).unwrap();
    assert!(matches!(r.outcome, LockReply::Held));
    let r = lock(&reply("SUPERSEDED", i(0), i(0), 0, vec![])).unwrap();
    assert!(matches!(r.outcome, LockReply::Superseded));

    let free_in = |pttl| match outcome(lock(&reply("QUEUED", i(pttl), i(0), 0, vec![]))) {
        LockReply::Queued { free_in } => free_in,
        other => panic!("{other:?}"),
    };
    // One ms past the lease, so the retry finds it over.
    assert_eq!(free_in(250), Some(Duration::from_millis(251)));
    // PTTL -2: no lock (free now); -1: no TTL.
    assert_eq!(free_in(-2), None);
    assert_eq!(free_in(-1), None);
    assert_eq!(free_in(0), None);
}

#[test]
fn writes_written_refused_and_over_limits() {
    let r = write(&reply("OK", i(4), i(99), 0, vec![Value::Nil])).unwrap();
    let WriteReply::Written { written, handover } = r.outcome else {
        panic!("{:?}", r.outcome)
    };
    assert_eq!((written.version, written.expires_ms), (4, 99));
    assert!(matches!(handover, Handover::Nobody));

    let over =
        |name: &str, n| match outcome(write(&reply("LIMIT_EXCEEDED", s(name), i(n), 0, vec![]))) {
            WriteReply::LimitExceeded { limit, value } => (limit, value),
            other => panic!("{other:?}"),
        };
    assert_eq!(over("max_fields", 11), (Limit::MaxFields, 11));
    assert_eq!(
        over("max_session_bytes", 2000),
        (Limit::MaxSessionBytes, 2000)
    );

    let quota =
        |name: &str, n| match outcome(write(&reply("QUOTA_EXCEEDED", s(name), i(n), 0, vec![]))) {
            WriteReply::QuotaExceeded { quota, usage } => (quota, usage),
            other => panic!("{other:?}"),
        };
    assert_eq!(quota("sessions", 100), (Quota::Sessions, 100));
    assert_eq!(quota("bytes", 4096), (Quota::Bytes, 4096));

    let refused = |status: &str, a| match outcome(write(&reply(status, i(a), i(0), 0, vec![]))) {
        WriteReply::Refused(r) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!(refused("LOCK_LOST", 0), Refusal::LockLost);
    assert_eq!(refused("LOCK_HELD", 0), Refusal::LockHeld);
    assert_eq!(
        refused("VERSION_MISMATCH", 5),
        Refusal::VersionMismatch { current: 5 }
    );
}

#[test]
fn writes_carry_their_ops_values_and_refusals() {
    let values = arr(vec![s("7"), s("")]);
    let r = write(&reply("OK", i(4), i(99), 0, vec![Value::Nil, values])).unwrap();
    let WriteReply::Written { written, handover } = r.outcome else {
        panic!("{:?}", r.outcome)
    };
    assert_eq!(written.op_values, [Bytes::from("7"), Bytes::new()]);
    assert!(matches!(handover, Handover::Nobody));
    // A handover before the values is still read.
    let handed = arr(vec![s("tok")]);
    let r = write(&reply("OK", i(4), i(99), 0, vec![handed, arr(vec![])])).unwrap();
    let WriteReply::Written { handover, .. } = r.outcome else {
        panic!("{:?}", r.outcome)
    };
    assert!(matches!(handover, Handover::Woke { token } if token == "tok"));
    let over = outcome(write(&reply(
        "LIMIT_EXCEEDED",
        s("max_field_bytes"),
        i(70000),
        0,
        vec![i(2)],
    )));
    assert!(matches!(
        over,
        WriteReply::LimitExceeded {
            limit: Limit::MaxFieldBytes { op: 2 },
            value: 70000
        }
    ));
    for (status, want) in [
        ("FIELD_NOT_INTEGER", OpRefusal::NotInteger),
        ("INTEGER_OVERFLOW", OpRefusal::Overflow),
        ("FIELD_NOT_LIST", OpRefusal::NotList),
    ] {
        match outcome(write(&reply(status, i(1), i(0), 0, vec![]))) {
            WriteReply::OpRefused { refusal, op } => assert_eq!((refusal, op), (want, 1)),
            other => panic!("{other:?}"),
        }
    }
    // Shapes no script sends are faults, never a panic.
    assert!(write(&reply("FIELD_NOT_LIST", s("x"), i(0), 0, vec![])).is_err());
    assert!(
        write(&reply(
            "LIMIT_EXCEEDED",
            s("max_field_bytes"),
            i(1),
            0,
            vec![]
        ))
        .is_err()
    );
    assert!(write(&reply("OK", i(4), i(99), 0, vec![Value::Nil, i(3)])).is_err());
    assert!(
        write(&reply(
            "OK",
            i(4),
            i(99),
            0,
            vec![Value::Nil, arr(vec![i(3)])]
        ))
        .is_err()
    );
}

#[test]
fn deletes_unlocks_refreshes_and_abandons() {
    let deleted = |v| match outcome(delete(&reply("OK", i(v), i(0), 0, vec![Value::Nil]))) {
        DeleteReply::Deleted {
            version,
            handover: Handover::Nobody,
        } => version,
        other => panic!("{other:?}"),
    };
    assert_eq!(deleted(0), None);
    assert_eq!(deleted(5), Some(5));
    let r = delete(&reply("VERSION_MISMATCH", i(2), i(0), 0, vec![])).unwrap();
    assert!(matches!(
        r.outcome,
        DeleteReply::Refused(Refusal::VersionMismatch { current: 2 })
    ));

    let r = unlock(&reply("OK", i(0), i(0), 1, vec![arr(vec![s("t2")])])).unwrap();
    assert!(r.expired);
    assert!(
        matches!(r.outcome, UnlockReply::Released(Handover::Woke { ref token }) if token == "t2")
    );
    let r = unlock(&reply("LOCK_LOST", i(0), i(0), 0, vec![])).unwrap();
    assert!(matches!(r.outcome, UnlockReply::LockLost));

    let r = refresh(&reply("OK", i(5000), i(0), 0, vec![])).unwrap();
    assert!(matches!(
        r.outcome,
        RefreshReply::Extended {
            lease_expires_ms: 5000
        }
    ));
    let r = refresh(&reply("LOCK_LOST", i(0), i(0), 0, vec![])).unwrap();
    assert!(matches!(r.outcome, RefreshReply::LockLost));

    // Not holding the lock: no 5th element at all.
    let r = abandon(&reply("OK", i(0), i(0), 0, vec![])).unwrap();
    assert!(matches!(r.outcome, Handover::Nobody));
}

#[test]
fn handovers_name_the_waiter_and_carry_its_grant() {
    let mut handed = vec![s("t3"), i(9), i(4000)];
    handed.extend(hash());
    let r = abandon(&reply("OK", i(1), i(0), 0, vec![arr(handed)])).unwrap();
    let Handover::Handed(LockGrant {
        token,
        fence,
        lease_expires_ms,
        session,
        ..
    }) = r.outcome
    else {
        panic!("{:?}", r.outcome)
    };
    assert_eq!((token.as_str(), fence, lease_expires_ms), ("t3", 9, 4000));
    check_hash(&session);
    // Handed with no data: the session does not exist.
    let r = unlock(&reply(
        "OK",
        i(0),
        i(0),
        0,
        vec![arr(vec![s("t4"), i(10), i(4000)])],
    ))
    .unwrap();
    assert!(matches!(
        r.outcome,
        UnlockReply::Released(Handover::Handed(LockGrant { session: None, .. }))
    ));
    // RESP3 gives Lua's false as a boolean.
    let r = unlock(&reply("OK", i(0), i(0), 0, vec![Value::Boolean(false)])).unwrap();
    assert!(matches!(r.outcome, UnlockReply::Released(Handover::Nobody)));
}

/// Each fault's message is `want`, or starts with it when `want` ends
/// with a space (the rest is the offending value).
fn check_faults(cases: &[(String, &str)]) {
    for (got, want) in cases {
        let ok = if want.ends_with(' ') {
            got.starts_with(want)
        } else {
            got == want
        };
        assert!(ok, "{got:?}, expected {want:?}");
    }
}

#[test]
fn malformed_replies_are_protocol_faults() {
    let none = Vec::new;
    check_faults(&[
        (
            protocol(lock(&Value::Okay)),
            "malformed lock script reply: not an array",
        ),
        (
            protocol(write(&arr(vec![s("OK"), i(1), i(2)]))),
            "malformed update script reply: fewer than 4 elements",
        ),
        (
            protocol(delete(&arr(vec![i(1), i(1), i(2), i(0)]))),
            "malformed delete script reply: the status is not a string",
        ),
        (
            protocol(refresh(&reply("OK", i(1), i(0), 2, none()))),
            "malformed refresh script reply: the expiry flag is not 0 or 1",
        ),
        // Statuses no script of that family answers.
        (
            protocol(lock(&reply("OK", i(0), i(0), 0, none()))),
            "lock script answered OK",
        ),
        (
            protocol(write(&reply("NOPE", i(0), i(0), 0, none()))),
            "update script answered NOPE",
        ),
        (
            protocol(refresh(&reply("LOCK_HELD", i(0), i(0), 0, none()))),
            "refresh script answered LOCK_HELD",
        ),
        (
            protocol(unlock(&reply("VERSION_MISMATCH", i(3), i(0), 0, none()))),
            "unlock script answered VERSION_MISMATCH",
        ),
        (
            protocol(abandon(&reply("LOCK_LOST", i(0), i(0), 0, none()))),
            "abandon script answered LOCK_LOST",
        ),
        // Numbers that are not numbers, or out of range: never a silent 0.
        (
            protocol(write(&reply("OK", s("4"), i(99), 0, none()))),
            "malformed update script reply: the new version is ",
        ),
        (
            protocol(write(&reply("OK", i(-1), i(99), 0, none()))),
            "malformed update script reply: the new version is -1",
        ),
        (
            protocol(lock(&reply("GRANTED", i(1), Value::Nil, 0, none()))),
            "malformed lock script reply: the lease's end is ",
        ),
        (
            protocol(write(&reply(
                "LIMIT_EXCEEDED",
                s("max_keys"),
                i(3),
                0,
                none(),
            ))),
            "malformed update script reply: the limit is ",
        ),
        (
            protocol(write(&reply(
                "QUOTA_EXCEEDED",
                s("fields"),
                i(3),
                0,
                none(),
            ))),
            "malformed update script reply: the quota is ",
        ),
        (
            protocol(write(&reply(
                "QUOTA_EXCEEDED",
                s("bytes"),
                i(-1),
                0,
                none(),
            ))),
            "malformed update script reply: the namespace's usage is -1",
        ),
        (
            protocol(delete(&reply("VERSION_MISMATCH", i(-5), i(0), 0, none()))),
            "malformed delete script reply: the current version is -5",
        ),
        // A session hash with a name and no value.
        (
            protocol(lock(&reply(
                "GRANTED",
                i(1),
                i(2),
                0,
                vec![arr(vec![i(0)]), s("v")],
            ))),
            "malformed session hash",
        ),
        (
            protocol(lock(&reply("GRANTED", i(1), i(2), 0, vec![s("v")]))),
            "malformed lock script reply: no superseded payloads",
        ),
        (
            protocol(lock(&reply(
                "GRANTED",
                i(1),
                i(2),
                0,
                vec![arr(vec![i(0), i(5)])],
            ))),
            "malformed lock script reply: a payload is ",
        ),
    ]);
}

#[test]
fn an_unreadable_handover_does_not_fail_the_unlock_it_follows() {
    let r = unlock(&reply("OK", i(0), i(0), 0, vec![arr(vec![])])).unwrap();
    let UnlockReply::Released(Handover::Unreadable(fault)) = r.outcome else {
        panic!("{:?}", r.outcome);
    };
    assert!(matches!(fault, Fault::Protocol(_)), "{fault:?}");
}

#[test]
fn malformed_handovers_are_protocol_faults() {
    let unlocked = |rest: Vec<Value>| protocol(abandon(&reply("OK", i(1), i(0), 0, rest)));
    let shape = "malformed abandon script reply: the handover is not false or an array";
    check_faults(&[
        (unlocked(vec![i(1)]), shape),
        (unlocked(vec![Value::Nil, Value::Nil]), shape),
        (
            unlocked(vec![arr(vec![])]),
            "malformed abandon script reply: the handover has 0 elements",
        ),
        (
            unlocked(vec![arr(vec![s("t"), i(1)])]),
            "malformed abandon script reply: the handover has 2 elements",
        ),
        (
            unlocked(vec![arr(vec![i(7)])]),
            "malformed abandon script reply: the woken token is ",
        ),
        (
            unlocked(vec![arr(vec![s("t"), s("x"), i(1)])]),
            "malformed abandon script reply: the handed fencing token is ",
        ),
        (
            unlocked(vec![arr(vec![Value::Nil, i(1), i(1)])]),
            "malformed abandon script reply: the handed token is ",
        ),
        (
            unlocked(vec![arr(vec![s("t"), i(1), i(1), s("v")])]),
            "malformed session hash",
        ),
    ]);
}
