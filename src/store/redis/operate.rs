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

use std::collections::{HashMap, HashSet};

use redis::Value;

use super::fault::Fault;
use super::library::Function;
use super::target::Target;
use super::wire::{self, ForceReply, decode, encode_into};
use super::{Inner, RedisStore};
use crate::error::{Error, Result};
use crate::session::{Cursor, Inspection, Page, SessionKey};

/// SCAN calls one page may make before it is returned, however few ids it
/// found: a page's cost is bounded even in a namespace with few matches
/// among many keys.
const SCANS_PER_PAGE: usize = 16;

impl RedisStore {
    pub async fn inspect(&self, key: &SessionKey) -> Result<Inspection> {
        let inner = &self.inner;
        let mut inv = inner.library.call(Function::Inspect);
        inner.keys(key).add_to(&mut inv);
        Ok(inner.invoke(&inv, wire::inspect).await?)
    }

    /// The fencing token of the holder whose lock was released; `None` when
    /// nobody held it.
    pub async fn force_unlock(&self, key: &SessionKey) -> Result<Option<u64>> {
        let inner = &self.inner;
        let keys = inner.keys(key);
        let mut inv = inner.library.call(Function::ForceUnlock);
        keys.add_to(&mut inv);
        inv.arg(inner.channels.wake(keys.slot));
        match inner.invoke(&inv, wire::force_unlock).await? {
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
        // `<prefix>:{<ns>/<id>}:d`; the encoded parts hold no glob
        // character, the configured key prefix may.
        let mut pattern = glob_escaped(&inner.prefix);
        pattern.push_str(":{");
        encode_into(&mut pattern, namespace);
        pattern.push('/');
        encode_into(&mut pattern, prefix);
        pattern.push_str("*}:d");
        let mut found = Found {
            head: format!("{}:{{", inner.prefix),
            seen: HashSet::new(),
            ids: Vec::new(),
        };
        if matches!(inner.target, Target::Cluster(_)) {
            return self.list_cluster(&pattern, found, cursor, size).await;
        }
        let mut at = match cursor {
            Cursor::Start => 0,
            Cursor::Scan(c) => *c,
            Cursor::After(_) | Cursor::Shard { .. } => return Err(Error::bad_page_token()),
        };
        for _ in 0..SCANS_PER_PAGE {
            let (next, keys): (u64, Vec<Value>) = inner.query(&scan(at, &pattern, size)).await?;
            found.add(&keys);
            at = next;
            if at == 0 || found.ids.len() >= size {
                break;
            }
        }
        Ok(Page {
            ids: found.ids,
            next: (at != 0).then_some(Cursor::Scan(at)),
        })
    }

    /// `list` on a Redis Cluster: a plain SCAN reaches one node, so every
    /// master is scanned in turn, in the order of the lowest hash slot each
    /// owns, and the cursor says which master (by that slot) and where on
    /// it. A page may end on one master and go on with the next.
    ///
    /// A listing spans calls, and the cluster may change between them. A
    /// failover is harmless to the order (the new master owns the same
    /// slots) but its SCAN cursor means nothing on the promoted replica,
    /// whose table is laid out otherwise: the rest of that master's keys may
    /// be missed or listed again. A slot migrated during the listing from a
    /// master not yet scanned to one already scanned takes its keys out of
    /// the listing: those present for the whole listing may be missed
    /// (keys moving the other way may be listed twice, on different pages).
    /// Only a listing during a resharding or a failover is affected; a
    /// purge then may leave such keys, for the next purge to delete.
    /// Not missing them would take scanning by slot (16384 steps of CLUSTER
    /// GETKEYSINSLOT, without MATCH) or a token holding the set of slots
    /// already covered: neither is worth it for a rare operator call.
    async fn list_cluster(
        &self,
        pattern: &str,
        mut found: Found,
        cursor: &Cursor,
        size: usize,
    ) -> Result<Page> {
        let inner = &self.inner;
        let (slot, mut at) = match cursor {
            Cursor::Start => (None, 0),
            Cursor::Shard { slot, scan } => (Some(*slot), *scan),
            Cursor::After(_) | Cursor::Scan(_) => return Err(Error::bad_page_token()),
        };
        let reply: Value = inner.query(redis::cmd("CLUSTER").arg("SLOTS")).await?;
        let masters = lowest_slots(&reply)
            .ok_or_else(|| Fault::Protocol("CLUSTER SLOTS answered in an unknown shape".into()))?;
        let Some(mut slot) = slot.or_else(|| masters.first().copied()) else {
            return Ok(Page::default());
        };
        for _ in 0..SCANS_PER_PAGE {
            let (next, keys): (u64, Vec<Value>) =
                inner.query_at(&scan(at, pattern, size), slot).await?;
            found.add(&keys);
            at = next;
            if at == 0 {
                // This master is done; the next is the first whose lowest
                // slot comes after it (slots only grow: the listing ends).
                match masters.iter().find(|s| **s > slot) {
                    Some(s) => slot = *s,
                    None => {
                        return Ok(Page {
                            ids: found.ids,
                            next: None,
                        });
                    }
                }
            }
            if found.ids.len() >= size {
                break;
            }
        }
        Ok(Page {
            ids: found.ids,
            next: Some(Cursor::Shard { slot, scan: at }),
        })
    }
}

/// The ids a page found so far, each once.
struct Found {
    /// The data keys' head, up to and including `{`.
    head: String,
    seen: HashSet<String>,
    ids: Vec<String>,
}

impl Found {
    fn add(&mut self, keys: &[Value]) {
        for k in keys {
            if let Some(id) = id_of(k, &self.head)
                && self.seen.insert(id.clone())
            {
                self.ids.push(id);
            }
        }
    }
}

/// One SCAN call of a page of `size` from `at`.
fn scan(at: u64, pattern: &str, size: usize) -> redis::Cmd {
    let mut cmd = redis::cmd("SCAN");
    cmd.arg(at)
        .arg("MATCH")
        .arg(pattern)
        .arg("COUNT")
        .arg(size.max(10));
    cmd
}

/// The lowest slot of each master in a CLUSTER SLOTS answer (ranges of
/// `[first, last, [host, port, id, ...], replicas...]`), in order; `None`
/// for an answer of another shape.
fn lowest_slots(reply: &Value) -> Option<Vec<u16>> {
    let Value::Array(ranges) = reply else {
        return None;
    };
    let mut lowest: HashMap<Vec<u8>, u16> = HashMap::new();
    for range in ranges {
        let Value::Array(range) = range else {
            return None;
        };
        let (Some(Value::Int(first)), Some(Value::Array(master))) = (range.first(), range.get(2))
        else {
            return None;
        };
        let first = u16::try_from(*first).ok()?;
        // The node's id when given (Redis 4 on), else its address.
        let name = match (master.get(2), master.first(), master.get(1)) {
            (Some(Value::BulkString(id)), _, _) => id.clone(),
            (_, Some(Value::BulkString(host)), Some(Value::Int(port))) => {
                let mut name = host.clone();
                name.extend_from_slice(format!(":{port}").as_bytes());
                name
            }
            _ => return None,
        };
        let at = lowest.entry(name).or_insert(first);
        *at = (*at).min(first);
    }
    let mut slots: Vec<u16> = lowest.into_values().collect();
    slots.sort_unstable();
    Some(slots)
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

    #[test]
    fn masters_come_in_the_order_of_their_lowest_slot() {
        let s = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let node = |port: i64, id: &str| Value::Array(vec![s("10.0.0.1"), Value::Int(port), s(id)]);
        let range = |first: i64, last: i64, master: Value| {
            Value::Array(vec![
                Value::Int(first),
                Value::Int(last),
                master,
                node(7000 + first, "replica"),
            ])
        };
        let reply = Value::Array(vec![
            range(10923, 16383, node(7002, "c")),
            range(5461, 10922, node(7001, "b")),
            range(100, 5460, node(7000, "a")),
            // `a` owns a range below its other one, after a resharding.
            range(0, 99, node(7000, "a")),
        ]);
        assert_eq!(lowest_slots(&reply), Some(vec![0, 5461, 10923]));
        assert_eq!(lowest_slots(&Value::Array(vec![])), Some(vec![]));
        assert_eq!(lowest_slots(&Value::Int(1)), None);
    }
}
