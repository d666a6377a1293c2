use bytes::Bytes;

use super::*;
use crate::config::{Config, Settings};

fn limits() -> Limits {
    Settings::new(Config::defaults()).unwrap().limits
}

#[test]
fn mutation_limits_name_the_limit() {
    let l = limits();
    let big = Mutation {
        set: vec![("a".into(), Bytes::from(vec![0u8; 64 * 1024 + 1]))],
        ..Default::default()
    };
    match l.check_mutation(&big) {
        Err(Error::LimitExceeded { limit, .. }) => assert_eq!(limit, "max_field_bytes"),
        other => panic!("unexpected {other:?}"),
    }
    let both = Mutation {
        set: vec![("a".into(), Bytes::new())],
        delete: vec!["a".into()],
        ..Default::default()
    };
    assert!(l.check_mutation(&both).is_err());
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

#[test]
fn counts_are_checked_before_names() {
    let l = limits();
    // More deletes than a session can hold fields: refused on the count,
    // even though a name is malformed and another is also set.
    let mut delete = names("d", l.max_fields + 1);
    delete.push(String::new());
    let m = Mutation {
        set: vec![("d0".into(), Bytes::new())],
        delete,
        ..Default::default()
    };
    match l.check_mutation(&m) {
        Err(Error::LimitExceeded { limit, message }) => {
            assert_eq!(limit, "max_fields");
            assert!(message.contains("delete_fields"), "{message}");
        }
        other => panic!("unexpected {other:?}"),
    }
    let m = Mutation {
        set: names("s", l.max_fields + 1)
            .into_iter()
            .map(|n| (n, Bytes::new()))
            .collect(),
        ..Default::default()
    };
    assert!(matches!(
        l.check_mutation(&m),
        Err(Error::LimitExceeded {
            limit: "max_fields",
            ..
        })
    ));
    // Exactly max_fields of each is fine.
    let m = Mutation {
        set: names("s", l.max_fields)
            .into_iter()
            .map(|n| (n, Bytes::new()))
            .collect(),
        delete: names("d", l.max_fields),
        ..Default::default()
    };
    assert!(l.check_mutation(&m).is_ok());
}

#[test]
fn overlap_is_found_wherever_it_is() {
    let mut l = limits();
    l.max_fields = 100_000;
    let set: Vec<(String, Bytes)> = names("s", 60_000)
        .into_iter()
        .map(|n| (n, Bytes::new()))
        .collect();
    let mut delete = names("d", 89_999);
    delete.push("s59999".into());
    let m = Mutation {
        set,
        delete,
        ..Default::default()
    };
    let started = std::time::Instant::now();
    match l.check_mutation(&m) {
        Err(Error::InvalidArgument { reason, message }) => {
            assert_eq!(reason, InvalidReason::Field);
            assert!(message.contains("s59999"), "{message}");
        }
        other => panic!("unexpected {other:?}"),
    }
    // Quadratic, this was 5.4e9 comparisons (seconds); linear, a few ms.
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
}

#[test]
fn the_request_limit_leaves_room_for_a_full_update() {
    let l = limits();
    assert_eq!(l.max_request_bytes(), (1 << 20) + 256 * 288 + 4096);
    // An UpdateSession at every limit at once fits.
    use prost::Message;
    let value_len = (l.max_session_bytes as usize / l.max_fields) - 256;
    let set_fields = (0..l.max_fields)
        .map(|i| (format!("{i:0>256}"), Bytes::from(vec![7u8; value_len])))
        .collect();
    let req = crate::pb::UpdateSessionRequest {
        session_id: "i".repeat(256),
        set_fields,
        delete_fields: (0..l.max_fields).map(|i| format!("{i:x>256}")).collect(),
        replace: true,
        lock_token: "t".repeat(64),
        expected_version: Some(u64::MAX),
        release_lock: true,
        ops: vec![],
        idempotency_key: "k".repeat(256),
    };
    let len = req.encoded_len();
    assert!(len <= l.max_request_bytes(), "{len}");
    assert!(len > l.max_session_bytes as usize);
    // So does one whose fields are all appends (the op with the most
    // framing), with the largest keep_last.
    let ops: Vec<crate::pb::FieldOp> = req
        .set_fields
        .iter()
        .map(|(name, value)| crate::pb::FieldOp {
            field: name.clone(),
            op: Some(crate::pb::field_op::Op::Append(crate::pb::AppendOp {
                value: value.clone(),
                keep_last: u32::MAX,
            })),
        })
        .collect();
    let req = crate::pb::UpdateSessionRequest {
        set_fields: Default::default(),
        ops,
        ..req
    };
    let len = req.encoded_len();
    assert!(len <= l.max_request_bytes(), "{len}");
}

fn append(field: &str, keep_last: u32) -> crate::session::FieldOp {
    crate::session::FieldOp {
        field: field.into(),
        kind: OpKind::Append {
            value: Bytes::from_static(b"m"),
            keep_last,
        },
    }
}

#[test]
fn ops_are_checked_with_the_rest() {
    let l = limits();
    let reason = |m: &Mutation| match l.check_mutation(m) {
        Err(Error::InvalidArgument { reason, .. }) => Some(reason),
        Err(Error::LimitExceeded { limit, .. }) => {
            assert_eq!(limit, "max_fields");
            None
        }
        other => panic!("unexpected {other:?}"),
    };
    let ok = Mutation {
        set: vec![("a".into(), Bytes::new())],
        delete: vec!["b".into()],
        ops: vec![append("h", 3), append("i", 1)],
        ..Default::default()
    };
    assert!(l.check_mutation(&ok).is_ok());
    let twice = Mutation {
        ops: vec![append("h", 3), append("h", 3)],
        ..Default::default()
    };
    assert_eq!(reason(&twice), Some(InvalidReason::Field));
    for clash in [
        Mutation {
            set: vec![("h".into(), Bytes::new())],
            ops: vec![append("h", 3)],
            ..Default::default()
        },
        Mutation {
            delete: vec!["h".into()],
            ops: vec![append("h", 3)],
            ..Default::default()
        },
    ] {
        assert_eq!(reason(&clash), Some(InvalidReason::Field));
    }
    let zero = Mutation {
        ops: vec![append("h", 0)],
        ..Default::default()
    };
    assert_eq!(reason(&zero), Some(InvalidReason::FieldOp));
    let unnamed = Mutation {
        ops: vec![append("", 1)],
        ..Default::default()
    };
    assert_eq!(reason(&unnamed), Some(InvalidReason::Field));
    // Sets and ops together are at most max_fields, counted before
    // anything else (a malformed name among them included).
    let mut ops: Vec<_> = names("o", l.max_fields)
        .iter()
        .map(|n| append(n, 1))
        .collect();
    ops.push(append("", 0));
    let many = Mutation {
        set: vec![("s".into(), Bytes::new())],
        ops,
        ..Default::default()
    };
    assert_eq!(reason(&many), None);
}

#[test]
fn leases_and_waits_are_bounded() {
    let l = limits();
    assert_eq!(l.lease(0).unwrap(), l.lease_default);
    assert!(l.lease(1).is_err());
    assert!(l.lease(u32::MAX).is_err());
    assert!(l.wait(0).is_ok());
    assert!(l.wait(u32::MAX).is_err());
}
