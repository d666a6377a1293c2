//! Idempotency keys: a write sent again with the key of an earlier one (a
//! chat platform delivering the same event twice) gets the first write's
//! result instead of being applied again. The store keeps, per session and
//! key, a digest of what the first request asked and its result, recorded
//! in the same atomic step as the write, for `--idempotency-window`.
//!
//! The digest covers what the request writes (the mutation, or that it is a
//! delete), not its guards: a replay usually comes from a second attempt of
//! the same handler, with a lock token or an expected version of its own.

use ring::digest::{Context, SHA256};

use std::time::Duration;

use super::{Mutation, OpKind, Turn, TurnPolicy, check_name, printable};
use crate::error::{Error, InvalidReason, Result};

/// The idempotency key of a write (or a lock) and the digest of what it
/// asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    pub key: String,
    pub digest: [u8; 32],
    /// A LockSession's key: its records are apart from the writes', so a
    /// bot may lock and write under one event id.
    pub lock: bool,
}

impl Idempotency {
    /// The key of an UpdateSession (`None` for an empty key).
    pub fn of_update(key: &str, m: &Mutation) -> Result<Option<Idempotency>> {
        if key.is_empty() {
            return Ok(None);
        }
        check_key(key)?;
        let mut d = Digest::new(b"update");
        let mut set: Vec<_> = m.set.iter().collect();
        set.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        d.u64(set.len() as u64);
        for (name, value) in set {
            d.bytes(name.as_bytes());
            d.bytes(value);
        }
        // Deletes arrive sorted and deduplicated (SessionApi).
        d.u64(m.delete.len() as u64);
        for name in &m.delete {
            d.bytes(name.as_bytes());
        }
        d.u64(u64::from(m.replace));
        d.u64(m.ops.len() as u64);
        for op in &m.ops {
            d.bytes(op.field.as_bytes());
            match &op.kind {
                OpKind::Increment(n) => {
                    d.bytes(b"i");
                    d.u64(*n as u64);
                }
                OpKind::Append { value, keep_last } => {
                    d.bytes(b"a");
                    d.bytes(value);
                    d.u64(u64::from(*keep_last));
                }
                OpKind::SetIfAbsent(value) => {
                    d.bytes(b"s");
                    d.bytes(value);
                }
            }
        }
        Ok(Some(Idempotency {
            key: key.to_owned(),
            digest: d.finish(),
            lock: false,
        }))
    }

    /// The key of a LockSession (`None` for an empty key): its digest
    /// covers the lease and the turn (policy, quiet period, payload), not
    /// the wait or the rate limit, which a retry may shorten or drop.
    pub fn of_lock(key: &str, lease: Duration, turn: &Turn) -> Result<Option<Idempotency>> {
        if key.is_empty() {
            return Ok(None);
        }
        check_key(key)?;
        let mut d = Digest::new(b"lock");
        d.u64(lease.as_millis() as u64);
        let policy: u64 = match turn.policy {
            TurnPolicy::Fifo => 0,
            TurnPolicy::LatestWins => 1,
            TurnPolicy::Debounce(_) => 2,
        };
        d.u64(policy);
        d.u64(turn.debounce().as_millis() as u64);
        d.bytes(&turn.payload);
        Ok(Some(Idempotency {
            key: key.to_owned(),
            digest: d.finish(),
            lock: true,
        }))
    }

    /// The key of a DeleteSession (`None` for an empty key).
    pub fn of_delete(key: &str) -> Result<Option<Idempotency>> {
        if key.is_empty() {
            return Ok(None);
        }
        check_key(key)?;
        Ok(Some(Idempotency {
            key: key.to_owned(),
            digest: Digest::new(b"delete").finish(),
            lock: false,
        }))
    }

    /// The digest in hex (as the Redis scripts compare it).
    pub fn digest_hex(&self) -> String {
        hex(&self.digest)
    }

    /// The first 16 bytes of the key's SHA-256, in hex: the key's name in
    /// the store, whatever bytes the key holds.
    pub fn key_hex(&self) -> String {
        let d = ring::digest::digest(&SHA256, self.key.as_bytes());
        hex(d.as_ref().get(..16).unwrap_or_default())
    }

    /// The error of a key sent again with another request.
    pub fn reused(&self) -> Error {
        Error::invalid(
            InvalidReason::IdempotencyKeyReused,
            format!(
                "idempotency_key `{}` was used for another request on this session within the window; use a new key for a new request",
                printable(&self.key)
            ),
        )
    }
}

fn check_key(key: &str) -> Result<()> {
    check_name(key).map_err(|why| {
        Error::invalid(
            InvalidReason::IdempotencyKey,
            format!("idempotency_key `{}` {why}", printable(key)),
        )
    })
}

fn hex(b: &[u8]) -> String {
    use std::fmt::Write;
    b.iter()
        .fold(String::with_capacity(b.len() * 2), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
}

/// SHA-256 over length-prefixed parts: no two requests share an input.
struct Digest(Context);

impl Digest {
    fn new(kind: &[u8]) -> Digest {
        let mut d = Digest(Context::new(&SHA256));
        d.bytes(kind);
        d
    }

    fn u64(&mut self, n: u64) {
        self.0.update(&n.to_be_bytes());
    }

    fn bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        self.0.update(b);
    }

    fn finish(self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.0.finish().as_ref());
        out
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn m(set: &[(&str, &str)]) -> Mutation {
        Mutation {
            set: set
                .iter()
                .map(|(n, v)| (n.to_string(), Bytes::from(v.to_string())))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn digests_tell_requests_apart_but_not_the_order_of_a_map() {
        let d = |m: &Mutation| Idempotency::of_update("k", m).unwrap().unwrap().digest;
        assert_eq!(
            d(&m(&[("a", "1"), ("b", "2")])),
            d(&m(&[("b", "2"), ("a", "1")]))
        );
        assert_ne!(d(&m(&[("a", "1")])), d(&m(&[("a", "2")])));
        // Length prefixes: moving a byte between name and value changes it.
        assert_ne!(d(&m(&[("ab", "c")])), d(&m(&[("a", "bc")])));
        let mut replace = m(&[("a", "1")]);
        replace.replace = true;
        assert_ne!(d(&m(&[("a", "1")])), d(&replace));
        let delete = Idempotency::of_delete("k").unwrap().unwrap().digest;
        assert_ne!(delete, d(&Mutation::default()));
    }

    #[test]
    fn keys_are_checked_and_named_by_a_digest() {
        assert_eq!(
            Idempotency::of_update("", &Mutation::default()).unwrap(),
            None
        );
        for bad in ["a\nb", &"x".repeat(257)] {
            match Idempotency::of_delete(bad) {
                Err(Error::InvalidArgument { reason, .. }) => {
                    assert_eq!(reason, InvalidReason::IdempotencyKey)
                }
                other => panic!("{other:?}"),
            }
        }
        let k = Idempotency::of_delete("slack:Ev01:{x}").unwrap().unwrap();
        assert_eq!(k.key_hex().len(), 32);
        assert!(k.key_hex().bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(k.digest_hex().len(), 64);
    }
}
