use bytes::Bytes;
use prost::Message;

use super::*;

fn op(field: &str, kind: OpKind) -> FieldOp {
    FieldOp {
        field: field.into(),
        kind,
    }
}

fn append_op(field: &str, value: &str, keep_last: u32) -> FieldOp {
    op(
        field,
        OpKind::Append {
            value: Bytes::from(value.to_owned()),
            keep_last,
        },
    )
}

#[test]
fn integers_are_digits_within_i64() {
    for (text, n) in [
        ("0", 0),
        ("-0", 0),
        ("007", 7),
        ("-12", -12),
        ("9223372036854775807", i64::MAX),
        ("-9223372036854775808", i64::MIN),
    ] {
        assert_eq!(parse_int(text.as_bytes()), Some(n), "{text}");
    }
    for bad in [
        "",
        "-",
        "+1",
        " 1",
        "1 ",
        "1.0",
        "0x10",
        "9223372036854775808",
        "-9223372036854775809",
        "00000000000000000001",
        "١",
    ] {
        assert_eq!(parse_int(bad.as_bytes()), None, "{bad:?}");
    }
}

#[test]
fn increments_add_and_refuse_overflow_and_non_integers() {
    let mut f = Fields::default();
    let v = apply_ops(&mut f, &[op("n", OpKind::Increment(5))]).unwrap();
    assert_eq!(v, [Bytes::from("5")]);
    let v = apply_ops(&mut f, &[op("n", OpKind::Increment(-7))]).unwrap();
    assert_eq!(v, [Bytes::from("-2")]);
    f.insert("n".into(), Bytes::from("9223372036854775806"));
    assert_eq!(
        apply_ops(&mut f, &[op("n", OpKind::Increment(1))]).unwrap(),
        [Bytes::from("9223372036854775807")]
    );
    assert_eq!(
        apply_ops(&mut f, &[op("n", OpKind::Increment(1))]),
        Err((OpRefusal::Overflow, 0))
    );
    f.insert("n".into(), Bytes::from("-9223372036854775808"));
    assert_eq!(
        apply_ops(&mut f, &[op("n", OpKind::Increment(-1))]),
        Err((OpRefusal::Overflow, 0))
    );
    f.insert("s".into(), Bytes::from("hello"));
    assert_eq!(
        apply_ops(
            &mut f,
            &[op("x", OpKind::Increment(1)), op("s", OpKind::Increment(1))]
        ),
        Err((OpRefusal::NotInteger, 1))
    );
}

#[test]
fn lists_are_field_list_messages_keeping_the_last_n() {
    let mut f = Fields::default();
    for (i, word) in ["a", "bb", "", "dddd"].into_iter().enumerate() {
        apply_ops(&mut f, &[append_op("h", word, 3)]).unwrap();
        let list = f.get("h").unwrap().clone();
        // What every client decodes with its generated FieldList.
        let decoded = crate::pb::FieldList::decode(list.clone()).unwrap();
        let all = ["a", "bb", "", "dddd"];
        let want: Vec<&str> = all[..=i].iter().rev().take(3).rev().copied().collect();
        let got: Vec<String> = decoded
            .entries
            .iter()
            .map(|e| String::from_utf8(e.to_vec()).unwrap())
            .collect();
        assert_eq!(got, want);
        let ours: Vec<&[u8]> = list_entries(&list).unwrap();
        assert_eq!(ours.len(), want.len());
    }
    // keep_last 1 keeps only the new entry.
    apply_ops(&mut f, &[append_op("h", "z", 1)]).unwrap();
    let decoded = crate::pb::FieldList::decode(f.get("h").unwrap().clone()).unwrap();
    assert_eq!(decoded.entries, [Bytes::from("z")]);
    // Long entries take multi-byte varints.
    let big = "x".repeat(300);
    apply_ops(&mut f, &[append_op("h", &big, 5)]).unwrap();
    let decoded = crate::pb::FieldList::decode(f.get("h").unwrap().clone()).unwrap();
    assert_eq!(decoded.entries.len(), 2);
    assert_eq!(decoded.entries[1].len(), 300);
    // What prost encodes, append reads.
    let encoded = crate::pb::FieldList {
        entries: vec![Bytes::from("p"), Bytes::from("q")],
    }
    .encode_to_vec();
    f.insert("l".into(), Bytes::from(encoded));
    apply_ops(&mut f, &[append_op("l", "r", 10)]).unwrap();
    let decoded = crate::pb::FieldList::decode(f.get("l").unwrap().clone()).unwrap();
    assert_eq!(
        decoded.entries,
        [Bytes::from("p"), Bytes::from("q"), Bytes::from("r")]
    );
}

#[test]
fn appends_to_what_is_not_a_list_are_refused() {
    for bad in [
        &b"hello"[..],
        b"\x0a",
        b"\x0a\x05ab",
        b"\x0a\x01a\x12\x00",
        b"\x0a\xff\xff\xff\xff\xff\x01",
    ] {
        let mut f = Fields::default();
        f.insert("h".into(), Bytes::copy_from_slice(bad));
        assert_eq!(
            apply_ops(&mut f, &[append_op("h", "x", 3)]),
            Err((OpRefusal::NotList, 0)),
            "{bad:?}"
        );
    }
}

#[test]
fn set_if_absent_keeps_what_is_there() {
    let mut f = Fields::default();
    let v = apply_ops(&mut f, &[op("flag", OpKind::SetIfAbsent(Bytes::from("1")))]).unwrap();
    assert_eq!(v, [Bytes::from("1")]);
    let v = apply_ops(&mut f, &[op("flag", OpKind::SetIfAbsent(Bytes::from("2")))]).unwrap();
    assert_eq!(v, [Bytes::from("1")]);
    assert_eq!(f.get("flag"), Some(&Bytes::from("1")));
}
