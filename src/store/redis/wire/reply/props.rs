//! The parsers on arbitrary `redis::Value` trees: a reply no script sends
//! is a `Fault`, never a panic.

use proptest::prelude::*;
use redis::Value;

use super::*;

/// Words the parsers look for, so trees often get past the status.
const WORDS: &[&str] = &[
    "OK",
    "GRANTED",
    "QUEUED",
    "LOCK_HELD",
    "LOCK_LOST",
    "VERSION_MISMATCH",
    "LIMIT_EXCEEDED",
    "max_fields",
    "max_session_bytes",
    "v",
    "",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Nil),
        Just(Value::Okay),
        prop_oneof![Just(0i64), Just(1), Just(-1), Just(2), any::<i64>()].prop_map(Value::Int),
        prop::sample::select(WORDS).prop_map(|w| Value::BulkString(w.as_bytes().to_vec())),
        prop::sample::select(WORDS).prop_map(|w| Value::SimpleString(w.to_owned())),
        prop::collection::vec(any::<u8>(), 0..12).prop_map(Value::BulkString),
        "-?[0-9]{1,20}".prop_map(|n| Value::BulkString(n.into_bytes())),
        any::<f64>().prop_map(Value::Double),
        any::<bool>().prop_map(Value::Boolean),
    ]
}

/// A reply of up to four levels, arrays mostly, maps and sets too.
pub fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            4 => prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            1 => prop::collection::vec((inner.clone(), inner.clone()), 0..4).prop_map(Value::Map),
            1 => prop::collection::vec(inner, 0..4).prop_map(Value::Set),
        ]
    })
}

/// `{status, a, b, expired, rest...}` as the scripts shape it, with
/// arbitrary parts.
fn shaped() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(WORDS),
        value(),
        value(),
        prop_oneof![Just(0i64), Just(1), any::<i64>()],
        prop::collection::vec(value(), 0..6),
    )
        .prop_map(|(status, a, b, expired, rest)| {
            let mut items = vec![
                Value::BulkString(status.as_bytes().to_vec()),
                a,
                b,
                Value::Int(expired),
            ];
            items.extend(rest);
            Value::Array(items)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn parsers_never_panic(v in prop_oneof![value(), shaped()]) {
        let _ = lock(&v);
        let _ = write(&v);
        let _ = delete(&v);
        let _ = unlock(&v);
        let _ = refresh(&v);
        let _ = abandon(&v);
    }
}
