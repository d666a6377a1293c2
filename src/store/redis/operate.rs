//! The operators' calls on Redis: inspect a session, force its lock open,
//! and list the sessions of a namespace by id prefix.
//!
//! Listing is SCAN with MATCH on the namespace's data keys, not an index: an
//! index (a sorted set per namespace) would cost every write and every
//! expiry one more key to keep in step, in another hash slot than the
//! session's on Cluster, and it could drift from the data whenever Redis
//! expires a session on its own. SCAN costs nothing on the hot path and
//! never blocks Redis (each call looks at about COUNT buckets). Its
//! guarantee is what the listing promises: a key present for the whole scan
//! is returned at least once. It may return a key twice (when the keyspace
//! shrinks between calls), so a page is deduplicated; and a page ends on a
//! SCAN call's boundary, so the page token (the SCAN cursor) resumes
//! exactly where the page stopped.

use std::collections::HashSet;

use redis::Value;

use super::wire::{self, ForceReply, decode, encode_into};
use super::{Inner, RedisStore};
use crate::error::Result;
use crate::session::{Cursor, Inspection, Page, SessionKey};

/// SCAN calls one page may make before it is returned, however few ids it
/// found: a page's cost is bounded even in a namespace with few matches
/// among many keys.
const SCANS_PER_PAGE: usize = 16;

impl RedisStore {
    pub async fn inspect(&self, key: &SessionKey) -> Result<Inspection> {
        let inner = &self.inner;
        let mut inv = inner.scripts.inspect.prepare_invoke();
        inner.keys(key).add_to(&mut inv);
        Ok(inner.invoke(&mut inv, wire::inspect).await?)
    }

    /// The fencing token of the holder whose lock was released; `None` when
    /// nobody held it.
    pub async fn force_unlock(&self, key: &SessionKey) -> Result<Option<u64>> {
        let inner = &self.inner;
        let keys = inner.keys(key);
        let mut inv = inner.scripts.force_unlock.prepare_invoke();
        keys.add_to(&mut inv);
        inv.arg(&inner.wake_channel);
        match inner.invoke(&mut inv, wire::force_unlock).await? {
            ForceReply::Released { fence, handover } => {
                inner.hand_over(handover, &keys);
                Ok(Some(fence))
            }
            ForceReply::NotHeld => Ok(None),
        }
    }

    /// A page of the ids under `prefix` in `namespace`, from `cursor`.
    pub async fn list(
        &self,
        namespace: &str,
        prefix: &str,
        cursor: &Cursor,
        size: usize,
    ) -> Result<Page> {
        let inner = &self.inner;
        let mut at = match cursor {
            Cursor::Start => 0,
            Cursor::Scan(c) => *c,
            Cursor::After(_) => return Err(crate::error::Error::bad_page_token()),
        };
        // `<prefix>:{<ns>/<id>}:d`; the encoded parts hold no glob
        // character, the configured key prefix may.
        let mut pattern = glob_escaped(&inner.prefix);
        pattern.push_str(":{");
        encode_into(&mut pattern, namespace);
        pattern.push('/');
        encode_into(&mut pattern, prefix);
        pattern.push_str("*}:d");
        let head = format!("{}:{{", inner.prefix);
        let mut seen = HashSet::new();
        let mut ids = Vec::new();
        for _ in 0..SCANS_PER_PAGE {
            let (next, keys): (u64, Vec<Value>) = inner
                .query(
                    redis::cmd("SCAN")
                        .arg(at)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(size.max(10)),
                )
                .await?;
            for k in &keys {
                if let Some(id) = id_of(k, &head)
                    && seen.insert(id.clone())
                {
                    ids.push(id);
                }
            }
            at = next;
            if at == 0 || ids.len() >= size {
                break;
            }
        }
        Ok(Page {
            ids,
            next: (at != 0).then_some(Cursor::Scan(at)),
        })
    }
}

impl Inner {
    /// A fresh lock token naming this instance and when the call began:
    /// `<instance tag>-<ms since the epoch, 12 hex digits><random>`, so
    /// that InspectSession can say which instance granted a lock, and how
    /// long the first waiter has been queued, without ever showing a token.
    /// 61 characters, within the 64 a token may have.
    pub(super) fn new_lock_token(&self) -> String {
        let ms = u64::try_from(super::super::now_ms()).unwrap_or(0) & 0xffff_ffff_ffff;
        format!("{}-{ms:012x}{}", self.instance_tag(), super::new_token())
    }

    /// The first 16 characters of this instance's id.
    pub(super) fn instance_tag(&self) -> &str {
        self.instance.get(..16).unwrap_or(&self.instance)
    }
}

/// The session id in a data key `<head><encoded ns>/<encoded id>}:d`
/// (`head` up to and including `{`); `None` for a key of another shape.
fn id_of(key: &Value, head: &str) -> Option<String> {
    let key = match key {
        Value::BulkString(b) => std::str::from_utf8(b).ok()?,
        _ => return None,
    };
    let tagged = key.strip_prefix(head)?.strip_suffix("}:d")?;
    let (_, id) = tagged.split_once('/')?;
    decode(id)
}

/// `s` with the characters SCAN's MATCH reads as a pattern escaped.
fn glob_escaped(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\' | '^') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_back_from_keys() {
        let key = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        assert_eq!(
            id_of(&key("sd:{ns/user%2F1}:d"), "sd:{").as_deref(),
            Some("user/1")
        );
        assert_eq!(id_of(&key("sd:{ns/user}:m"), "sd:{"), None);
        assert_eq!(id_of(&key("other:{ns/user}:d"), "sd:{"), None);
        assert_eq!(glob_escaped("a*b[c]"), "a\\*b\\[c\\]");
    }
}
