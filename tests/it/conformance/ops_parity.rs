//! The two backends run field operations with one rule: the same random
//! sequence of writes (ops on integers near both ends of the range, lists
//! kept short, values that look like integers or lists and are not) sent to
//! an embedded and a Redis sessiond gets the same answers, refusals
//! included, and leaves the same sessions.

use bytes::Bytes;
use sessiond::pb::*;
use tonic_types::StatusExt;

use crate::support::{Backend, Client, Server, get};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize].clone()
    }
}

const FIELDS: &[&str] = &["a", "b", "c", "d"];

fn stored_value(rng: &mut Rng) -> Bytes {
    let list_of_two = FieldList {
        entries: vec![Bytes::from("x"), Bytes::from(vec![7u8; 200])],
    };
    let texts: &[&[u8]] = &[
        b"",
        b"0",
        b"-0",
        b"007",
        b"-1",
        b"+1",
        b" 1",
        b"1.5",
        b"abc",
        b"9223372036854775807",
        b"-9223372036854775808",
        b"9223372036854775808",
        b"999999999",
        b"1000000000",
        b"-999999999",
        b"\x0a",
        b"\x0a\x01z",
        b"\x0a\x05ab",
        b"\x0a\x01a\x12\x00",
        b"00000000000000000001",
    ];
    match rng.below(4) {
        0 => Bytes::from(prost::Message::encode_to_vec(&list_of_two)),
        _ => Bytes::copy_from_slice(rng.pick(texts)),
    }
}

fn delta(rng: &mut Rng) -> i64 {
    match rng.below(6) {
        0 => rng.pick(&[i64::MAX, i64::MIN, i64::MAX - 1, i64::MIN + 1]),
        1 => rng.next() as i64,
        2 => (rng.next() % 2_000_000_001) as i64 - 1_000_000_000,
        _ => rng.below(7) as i64 - 3,
    }
}

fn request(rng: &mut Rng, id: &str) -> UpdateSessionRequest {
    let mut names: Vec<&str> = FIELDS.to_vec();
    let mut r = UpdateSessionRequest {
        session_id: id.into(),
        replace: rng.below(20) == 0,
        ..Default::default()
    };
    if rng.below(4) == 0 {
        let n = names.remove(rng.below(names.len() as u64) as usize);
        r.set_fields.insert(n.to_owned(), stored_value(rng));
    }
    for _ in 0..1 + rng.below(3) {
        if names.is_empty() {
            break;
        }
        let field = names
            .remove(rng.below(names.len() as u64) as usize)
            .to_owned();
        let op = match rng.below(3) {
            0 => field_op::Op::Increment(delta(rng)),
            1 => field_op::Op::Append(AppendOp {
                value: Bytes::from(vec![b'e'; rng.below(150) as usize]),
                keep_last: 1 + rng.below(4) as u32,
            }),
            _ => field_op::Op::SetIfAbsent(stored_value(rng)),
        };
        r.ops.push(FieldOp {
            field,
            op: Some(op),
        });
    }
    r
}

/// The answer as a client sees it: values, or code and reason.
async fn answer(
    c: &mut Client,
    r: UpdateSessionRequest,
) -> Result<(u64, Vec<Bytes>), (tonic::Code, String)> {
    match c.update_session(r).await {
        Ok(w) => {
            let w = w.into_inner();
            Ok((w.version, w.op_values))
        }
        Err(s) => {
            let reason = s
                .get_details_error_info()
                .map(|i| i.reason)
                .unwrap_or_default();
            Err((s.code(), reason))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_backends_give_the_same_answers() {
    let embedded = Server::start(Backend::Embedded, &["--max-field-bytes", "600"]).await;
    let redis = Server::start(Backend::Redis, &["--max-field-bytes", "600"]).await;
    let (mut e, mut r) = (embedded.client().await, redis.client().await);
    let mut rng = Rng(0x0005_EED0_F0B5);
    let (mut refused, mut done) = (0, 0);
    for i in 0..1500 {
        let id = format!("parity-{}", i % 7);
        let req = request(&mut rng, &id);
        let a = answer(&mut e, req.clone()).await;
        let b = answer(&mut r, req.clone()).await;
        assert_eq!(a, b, "request {i}: {req:?}");
        if a.is_ok() { done += 1 } else { refused += 1 }
    }
    // Both outcomes were exercised, and the sessions ended alike.
    assert!(
        done > 300 && refused > 100,
        "done {done}, refused {refused}"
    );
    for i in 0..7 {
        let id = format!("parity-{i}");
        let a = get(&mut e, &id, Consistency::Strong)
            .await
            .unwrap()
            .session
            .unwrap();
        let b = get(&mut r, &id, Consistency::Strong)
            .await
            .unwrap()
            .session
            .unwrap();
        assert_eq!((a.version, a.fields), (b.version, b.fields), "{id}");
    }
}
