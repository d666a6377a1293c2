//! The requests: well-formed protobuf with every field at and beyond its
//! limits (ids and names of 0, 256 and 257 bytes or with forbidden
//! characters, 256 and 257 fields, values of 64 KiB and one byte more,
//! leases and waits at their bounds), the same with bytes mutated, and
//! random bytes.

use bytes::Bytes;
use prost::Message;
use sessiond::pb::{
    AppendOp, DeleteSessionRequest, FieldOp, GetSessionRequest, LockSessionRequest,
    RefreshLockRequest, UnlockSessionRequest, UpdateSessionRequest, field_op,
};

/// xorshift64*: small, seeded, good enough to pick cases.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// 0..n (0 for n = 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next().checked_rem(n).unwrap_or(0)
    }

    /// True once in `n`.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }

    fn pick<T: Copy>(&mut self, items: &[T], or: T) -> T {
        items
            .get(self.below(items.len() as u64) as usize)
            .copied()
            .unwrap_or(or)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// One generated call.
pub struct Generated {
    pub method: &'static str,
    /// `valid`, `mutated` or `random`.
    pub mode: &'static str,
    pub body: Bytes,
}

const METHODS: &[&str] = &[
    "GetSession",
    "LockSession",
    "UpdateSession",
    "UnlockSession",
    "RefreshLock",
    "DeleteSession",
];

pub fn request(rng: &mut Rng) -> Generated {
    let method = rng.pick(METHODS, "GetSession");
    let message = message(rng, method);
    let (mode, body) = match rng.below(10) {
        0..=5 => ("valid", message),
        6..=8 => ("mutated", mutate(rng, message)),
        _ => ("random", random(rng)),
    };
    Generated {
        method,
        mode,
        body: Bytes::from(body),
    }
}

/// A message of `method` whose fields sit at or beyond their limits.
fn message(rng: &mut Rng, method: &str) -> Vec<u8> {
    match method {
        "GetSession" => GetSessionRequest {
            session_id: id(rng),
            consistency: rng.pick(&[0, 1, 2, 3, -1, i32::MAX], 0),
            min_version: rng.pick(&[0, 0, 1, 2, u64::MAX], 0),
        }
        .encode_to_vec(),
        "LockSession" => {
            let mut lock = LockSessionRequest {
                session_id: id(rng),
                lease_ms: lease(rng),
                wait_ms: rng.pick(&[0, 0, 1, 50, 60_000, 60_001, u32::MAX], 0),
                rate_limit: None,
                ..Default::default()
            };
            // One in four with a turn policy or an idempotency key at and
            // past their bounds: unknown policies, a debounce out of range or
            // without DEBOUNCE, a payload at and over
            // --max-turn-payload-bytes (4 KiB by default).
            if rng.one_in(4) {
                lock.policy = rng.pick(&[0, 1, 2, 3, -1, i32::MAX], 0);
                lock.debounce_ms = rng.pick(&[0, 1, 200, 60_000, 60_001, u32::MAX], 0);
                let n = rng.pick(&[0, 1, 4096, 4097, 70_000], 0);
                lock.payload = Bytes::from(rng.bytes(n));
                lock.idempotency_key = idempotency_key(rng);
            }
            lock.encode_to_vec()
        }
        "UpdateSession" => update(rng).encode_to_vec(),
        "UnlockSession" => UnlockSessionRequest {
            session_id: id(rng),
            lock_token: token(rng),
        }
        .encode_to_vec(),
        "RefreshLock" => RefreshLockRequest {
            session_id: id(rng),
            lock_token: token(rng),
            lease_ms: lease(rng),
        }
        .encode_to_vec(),
        _ => DeleteSessionRequest {
            session_id: id(rng),
            lock_token: token(rng),
            expected_version: version(rng),
            release_lock: rng.one_in(2),
            idempotency_key: idempotency_key(rng),
        }
        .encode_to_vec(),
    }
}

fn update(rng: &mut Rng) -> UpdateSessionRequest {
    let mut u = UpdateSessionRequest {
        session_id: id(rng),
        lock_token: token(rng),
        expected_version: version(rng),
        replace: rng.one_in(4),
        release_lock: rng.one_in(4),
        ..Default::default()
    };
    let (sets, deletes) = match rng.below(50) {
        0 => (256, 0),
        1 => (257, 0),
        2 => (0, 257),
        3 => (1, 256),
        _ => (rng.below(4), rng.below(3)),
    };
    // Now and then a request whose values together pass --max-session-bytes
    // (17 x 64 KiB) or the decoding limit (18 x 64 KiB).
    let big = match rng.below(400) {
        0 => 17,
        1 => 18,
        _ => 0,
    };
    for _ in 0..sets.max(big) {
        let value = match big {
            0 => value(rng),
            _ => vec![b'v'; 64 * 1024],
        };
        u.set_fields.insert(name(rng), value.into());
    }
    for _ in 0..deletes {
        u.delete_fields.push(name(rng));
    }
    // Field operations on names that may clash with the sets, deletes and
    // each other; some with no operation or keep_last 0.
    for _ in 0..rng.below(4) {
        let op = match rng.below(5) {
            0 => Some(field_op::Op::Increment(
                rng.pick(&[1, -1, i64::MAX, i64::MIN, 0], 1),
            )),
            1 => Some(field_op::Op::Append(AppendOp {
                value: value(rng).into(),
                keep_last: rng.pick(&[0, 1, 20, u32::MAX], 1),
            })),
            2 => Some(field_op::Op::SetIfAbsent(value(rng).into())),
            3 => None,
            _ => Some(field_op::Op::Increment(1)),
        };
        u.ops.push(FieldOp {
            field: name(rng),
            op,
        });
    }
    u.idempotency_key = idempotency_key(rng);
    if rng.one_in(20) {
        // A name both set and deleted.
        let n = name(rng);
        u.set_fields.insert(n.clone(), Bytes::from_static(b"x"));
        u.delete_fields.push(n);
    }
    u
}

/// Idempotency keys: mostly none, else from a small pool (so repeats meet
/// other requests) or malformed.
fn idempotency_key(rng: &mut Rng) -> String {
    match rng.below(10) {
        0 => format!("k{}", rng.below(20)),
        1 => rng
            .pick(&["a\u{0}", "k".repeat(257).as_str()], "")
            .to_owned(),
        _ => String::new(),
    }
}

/// Ids: mostly from a pool (so calls meet each other), else at and beyond
/// the limits or with what the id rule forbids.
fn id(rng: &mut Rng) -> String {
    match rng.below(20) {
        0 => String::new(),
        1 => "i".repeat(256),
        2 => "i".repeat(257),
        3 => "é".repeat(128),
        4 => "é".repeat(129),
        5 => rng
            .pick(
                &[
                    "a\u{0}b",
                    "a\u{7f}",
                    "a\u{202e}b",
                    "a\u{200b}b",
                    "a\u{2028}",
                    "a\u{feff}",
                    "\n",
                ],
                "a\u{0}",
            )
            .to_owned(),
        6 => "a}b{c:d/e%".into(),
        _ => format!("fz-{}", rng.below(2000)),
    }
}

/// Field names: like ids, from a smaller pool.
fn name(rng: &mut Rng) -> String {
    match rng.below(30) {
        0 => String::new(),
        1 => "n".repeat(256),
        2 => "n".repeat(257),
        3 => "a\u{1}".into(),
        _ => format!("f{}", rng.below(300)),
    }
}

fn value(rng: &mut Rng) -> Vec<u8> {
    match rng.below(200) {
        0 => vec![b'v'; 64 * 1024],
        1 => vec![b'v'; 64 * 1024 + 1],
        _ => {
            let n = rng.below(24) as usize;
            rng.bytes(n)
        }
    }
}

fn lease(rng: &mut Rng) -> u32 {
    rng.pick(&[0, 1, 19, 20, 100, 1000, 300_000, 300_001, u32::MAX], 0)
}

fn token(rng: &mut Rng) -> String {
    match rng.below(8) {
        0..=3 => String::new(),
        4 => "not-a-token".into(),
        5 => "t".repeat(300),
        _ => format!("{:032x}", rng.next()),
    }
}

fn version(rng: &mut Rng) -> Option<u64> {
    match rng.below(5) {
        0 => Some(0),
        1 => Some(rng.below(5)),
        2 => Some(u64::MAX),
        _ => None,
    }
}

/// 1 to 4 edits: a bit flipped, a byte set, inserted or removed, the tail
/// cut, a slice repeated, or a huge length claimed.
fn mutate(rng: &mut Rng, mut b: Vec<u8>) -> Vec<u8> {
    for _ in 0..=rng.below(4) {
        let at = rng.below(b.len() as u64 + 1) as usize;
        match rng.below(7) {
            0 => {
                let bit = 1u8 << rng.below(8);
                if let Some(x) = b.get_mut(at) {
                    *x ^= bit;
                }
            }
            1 => {
                let v = rng.next() as u8;
                if let Some(x) = b.get_mut(at) {
                    *x = v;
                }
            }
            2 => b.insert(at, rng.next() as u8),
            3 => {
                if at < b.len() {
                    b.remove(at);
                }
            }
            4 => b.truncate(at),
            5 => {
                let tail: Vec<u8> = b.iter().skip(at).take(16).copied().collect();
                b.extend_from_slice(&tail);
            }
            _ => {
                // A length-delimited field claiming 2 GiB.
                let claim = [0x0a, 0x80, 0x80, 0x80, 0x80, 0x08];
                let at = at.min(b.len());
                b.splice(at..at, claim);
            }
        }
    }
    b
}

fn random(rng: &mut Rng) -> Vec<u8> {
    let n = rng.below(64) as usize;
    rng.bytes(n)
}
