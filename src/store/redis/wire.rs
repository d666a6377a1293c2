//! What crosses the wire to Redis: key encoding, script replies and the data
//! hash.

use std::fmt::Write as _;

use bytes::Bytes;
use redis::Value;

use crate::error::{Error, Result};
use crate::session::{Guards, Session};

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

/// A script's answer: `{status, a, b, expired, rest...}`.
pub(super) struct Reply {
    pub(super) status: String,
    pub(super) a: i64,
    pub(super) raw_a: Vec<u8>,
    pub(super) b: i64,
    pub(super) expired: bool,
    pub(super) rest: Vec<Value>,
}

impl Reply {
    pub(super) fn parse(values: Vec<Value>) -> Result<Reply> {
        let mut it = values.into_iter();
        let mut next = || {
            it.next()
                .ok_or_else(|| Error::Internal("short script reply".into()))
        };
        let status = String::from_utf8_lossy(&bytes_of(next()?)).into_owned();
        let (a, raw_a) = match next()? {
            Value::Int(n) => (n, Vec::new()),
            other => (0, bytes_of(other)),
        };
        let b = int(&next()?);
        let expired = int(&next()?) == 1;
        Ok(Reply {
            status,
            a,
            raw_a,
            b,
            expired,
            rest: it.collect(),
        })
    }

    /// The guard refusals shared by every write script.
    pub(super) fn refusal(&self, g: &Guards) -> Error {
        match self.status.as_str() {
            "LOCK_LOST" => Error::LockLost,
            "LOCK_HELD" => Error::LockHeld,
            "VERSION_MISMATCH" => Error::VersionMismatch {
                expected: g.expected_version.unwrap_or_default(),
                current: self.a as u64,
            },
            other => Error::Internal(format!("script answered {other}")),
        }
    }
}

fn bytes_of(v: Value) -> Vec<u8> {
    match v {
        Value::BulkString(b) => b,
        Value::SimpleString(s) => s.into_bytes(),
        Value::Int(n) => n.to_string().into_bytes(),
        _ => Vec::new(),
    }
}

pub(super) fn int(v: &Value) -> i64 {
    match v {
        Value::Int(n) => *n,
        Value::BulkString(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        _ => 0,
    }
}

/// Parses a data hash as HGETALL returns it; `None` when empty.
pub fn parse_session(items: &[Value]) -> Result<Option<Session>> {
    if items.is_empty() {
        return Ok(None);
    }
    let mut s = Session::default();
    let mut fields = Vec::with_capacity(items.len() / 2);
    for pair in items.chunks(2) {
        let [Value::BulkString(name), Value::BulkString(value)] = pair else {
            return Err(Error::Internal("malformed session hash".into()));
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
                    .map_err(|_| Error::Internal("field name is not UTF-8".into()))?;
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
