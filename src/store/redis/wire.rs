//! What crosses the wire to Redis: key encoding, the data hash, and (in
//! `wire/reply.rs`) the scripts' replies as typed outcomes.

use std::fmt::Write as _;

use bytes::Bytes;
use redis::Value;

use super::fault::Fault;
use crate::error::{Error, Result};
use crate::session::Session;

// `pub` items in a private module: `pub(super) use` below is what limits
// them to the store.
mod reply;

pub(super) use reply::{
    DeleteReply, Handover, Limit, LockReply, RefreshReply, Refusal, Reply, UnlockReply, WriteReply,
    abandon, delete, lock, refresh, unlock, write,
};
pub(super) use reply::{ForceReply, force_unlock, inspect, watch_begin, watch_read};

/// Inverse of [`encode_into`].
pub(super) fn decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next()?, bytes.next()?];
            out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

/// Parses a data hash as HGETALL returns it; `None` when empty.
pub fn parse_session(items: &[Value]) -> Result<Option<Session>> {
    session(items).map_err(Error::from)
}

/// [`parse_session`], for the replies that carry a data hash.
fn session(items: &[Value]) -> Result<Option<Session>, Fault> {
    if items.is_empty() {
        return Ok(None);
    }
    let mut s = Session::default();
    let mut fields = Vec::with_capacity(items.len() / 2);
    for pair in items.chunks(2) {
        let [Value::BulkString(name), Value::BulkString(value)] = pair else {
            return Err(Fault::Protocol("malformed session hash".into()));
        };
        let num = || {
            std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(0)
        };
        match name.as_slice() {
            [b'f', b':', field @ ..] => {
                let field = String::from_utf8(field.to_vec())
                    .map_err(|_| Fault::Protocol("field name is not UTF-8".into()))?;
                fields.push((field, Bytes::copy_from_slice(value)));
            }
            b"v" => s.version = num() as u64,
            b"c" => s.created_ms = num(),
            b"u" => s.updated_ms = num(),
            b"e" => s.expires_ms = num(),
            _ => {}
        }
    }
    s.fields = fields.into_iter().collect();
    Ok((s.version > 0).then_some(s))
}

/// Percent-encodes every byte outside `[A-Za-z0-9._~-]`: injective, and the
/// output never holds `{`, `}`, `:` or `/`.
pub fn encode_into(out: &mut String, s: &str) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(s: &str) -> String {
        let mut out = String::new();
        encode_into(&mut out, s);
        out
    }

    #[test]
    fn encoding_keeps_tags_closed_and_ids_apart() {
        assert_eq!(enc("user-42"), "user-42");
        assert_eq!(enc("a}b{c:d/e%"), "a%7Db%7Bc%3Ad%2Fe%25");
        assert_eq!(enc("é"), "%C3%A9");
        assert_eq!(decode(&enc("a}b{c:d/e%é")).as_deref(), Some("a}b{c:d/e%é"));
        // Injective on a set of look-alikes.
        let ids = ["a/b", "a%2Fb", "a:b", "a}b", "a{b}", "a", "a%", "%61"];
        let mut seen = std::collections::HashSet::new();
        for id in ids {
            let e = enc(id);
            assert!(!e.contains(['{', '}', ':', '/']), "{e}");
            assert!(seen.insert(e), "collision for {id}");
        }
    }
}

/// Key encoding over arbitrary strings: a round trip, injective, and never
/// a byte that means something in a key (`{`, `}`, `:`, `/`).
#[cfg(test)]
mod props {
    use proptest::prelude::*;

    use super::*;

    fn enc(s: &str) -> String {
        let mut out = String::new();
        encode_into(&mut out, s);
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        #[test]
        fn decode_inverts_encode(s in "\\PC{0,40}|.{0,40}|[%{}:/a]{0,12}") {
            let e = enc(&s);
            prop_assert!(
                e.bytes().all(|b| b.is_ascii_alphanumeric() || b"._~-%".contains(&b)),
                "{}", e
            );
            prop_assert_eq!(decode(&e), Some(s));
        }

        #[test]
        fn encoding_is_injective(a in "[%{}:/aA2F]{0,8}|\\PC{0,8}", b in "[%{}:/aA2F]{0,8}|\\PC{0,8}") {
            prop_assert_eq!(a == b, enc(&a) == enc(&b));
        }

        #[test]
        fn decode_never_panics(s in "[%0-9A-Fa-fg]{0,16}|.{0,16}") {
            // Whatever it answers must encode back to a string that decodes
            // to the same answer.
            if let Some(d) = decode(&s) {
                prop_assert_eq!(decode(&enc(&d)), Some(d));
            }
        }

        #[test]
        fn parse_session_never_panics(items in prop::collection::vec(reply::props::value(), 0..10)) {
            let _ = parse_session(&items);
        }
    }
}
