//! The seven keys of a session (and the record of a write's idempotency
//! key), the arguments every write script shares, and the namespace's quota
//! keys.
//! All keys carry the hash tag `{<ns>/<id>}` (percent-encoded, see
//! `wire::encode_into`), so they live in one Cluster slot.

use super::library::Call;
use super::wire::encode_into;
use super::{Inner, slots};
use crate::session::{
    FieldOp, Guards, Idempotency, Limits, Mutation, OpKind, RateScope, SessionKey,
};

/// The seven keys of one session, in the order the scripts expect (data,
/// meta, lock, queue, waiters, and WatchSession's marker and stream, which
/// every script may touch, so declares: a key a script reaches without
/// declaring it fails while its slot migrates), the
/// invalidation subject (the encoded `ns/id`), and on a cluster the slot
/// they live in (0 elsewhere: it picks the feed's channels, see
/// `channels`).
#[derive(Clone, Default)]
pub(super) struct Keys {
    pub(super) keys: [String; 7],
    pub(super) subject: String,
    pub(super) slot: u16,
}

impl Inner {
    pub(super) fn keys(&self, key: &SessionKey) -> Keys {
        let subject = subject(key);
        // `<prefix>:{<subject>}:<suffix>`, without the formatting machinery:
        // this runs on every call.
        let k = |suffix: char| {
            let mut k = String::with_capacity(self.prefix.len() + subject.len() + 5);
            k.push_str(&self.prefix);
            k.push_str(":{");
            k.push_str(&subject);
            k.push_str("}:");
            k.push(suffix);
            k
        };
        let slot = if self.channels.sharded() {
            slots::slot(subject.as_bytes())
        } else {
            0
        };
        Keys {
            keys: [k('d'), k('m'), k('l'), k('q'), k('w'), k('k'), k('x')],
            subject,
            slot,
        }
    }
}

/// A session's hash tag: `<ns>/<id>`, each percent-encoded.
pub(super) fn subject(key: &SessionKey) -> String {
    let mut subject = String::with_capacity(key.namespace.len() + key.id.len() + 8);
    encode_into(&mut subject, &key.namespace);
    subject.push('/');
    encode_into(&mut subject, &key.id);
    subject
}

impl Inner {
    /// The key of a rate limit: `<prefix>:{<ns>/<id>}:r:<name>` in the
    /// session's hash tag, or `<prefix>:{<ns>}:r:<name>` for a namespace's
    /// (a tag without a `/`, so never a session's; one slot per namespace).
    /// The name is percent-encoded like the id: it holds no `}` or `:`.
    pub(super) fn rate_key(&self, scope: &RateScope, name: &str) -> String {
        let mut k = String::with_capacity(self.prefix.len() + name.len() + 64);
        k.push_str(&self.prefix);
        k.push_str(":{");
        match scope {
            RateScope::Session(key) => {
                encode_into(&mut k, &key.namespace);
                k.push('/');
                encode_into(&mut k, &key.id);
            }
            RateScope::Namespace(ns) => encode_into(&mut k, ns),
        }
        k.push_str("}:r:");
        encode_into(&mut k, name);
        k
    }
}

impl Keys {
    pub(super) fn add_to(&self, inv: &mut Call<'_>) {
        for k in &self.keys {
            inv.key(k);
        }
    }
}

impl Inner {
    /// What the write scripts need to count the session against its
    /// namespace's quotas, added last (see the prelude): the namespace's
    /// index, sizes and usage keys, and the two quotas as the last
    /// arguments. Nothing while no quota is set.
    pub(super) fn add_quota(&self, inv: &mut Call<'_>, key: &SessionKey) {
        let q = self.limits.quotas;
        if !q.is_on() {
            return;
        }
        let mut ns = String::with_capacity(key.namespace.len() + 8);
        encode_into(&mut ns, &key.namespace);
        for suffix in ["i", "s", "u"] {
            inv.key(format!("{}:q:{{{ns}}}:{suffix}", self.prefix));
        }
        inv.arg(q.max_sessions).arg(q.max_bytes);
    }

    /// KEYS[8] of the write scripts when the call has an idempotency key:
    /// its record, `<prefix>:{<ns>/<id>}:i:<hex>`, in the session's hash tag
    /// (the hex of the key's digest names it whatever bytes it holds).
    pub(super) fn add_idempotency_key(&self, inv: &mut Call<'_>, keys: &Keys, g: &Guards) {
        if let Some(idem) = &g.idempotency {
            inv.key(self.idempotency_key(keys, idem));
        }
    }

    /// The record of an idempotency key: `…:{<ns>/<id>}:i:<hex>` for a
    /// write's, `…:il:<hex>` for a LockSession's (apart: a bot may lock and
    /// write under one event id).
    pub(super) fn idempotency_key(&self, keys: &Keys, idem: &Idempotency) -> String {
        let hex = idem.key_hex();
        let mut k = String::with_capacity(self.prefix.len() + keys.subject.len() + 41);
        k.push_str(&self.prefix);
        k.push_str(":{");
        k.push_str(&keys.subject);
        k.push_str(if idem.lock { "}:il:" } else { "}:i:" });
        k.push_str(&hex);
        k
    }
}

/// The idempotency arguments of the write scripts: the request's digest
/// ('' without a key) and the window in ms.
pub(super) fn add_idempotency_args(inv: &mut Call<'_>, g: &Guards, limits: &Limits) {
    inv.arg(
        g.idempotency
            .as_ref()
            .map(|i| i.digest_hex())
            .unwrap_or_default(),
    )
    .arg(limits.idempotency_window.as_millis() as u64);
}

/// ARGV 1-3 of the write scripts: lock token, expected version, release.
pub(super) fn add_guards(inv: &mut Call<'_>, g: &Guards) {
    inv.arg(g.lock_token.as_deref().unwrap_or(""))
        .arg(
            g.expected_version
                .map(|v| v.to_string())
                .unwrap_or_default(),
        )
        .arg(flag(g.release_lock));
}

pub(super) fn flag(b: bool) -> &'static str {
    if b { "1" } else { "0" }
}

/// update.lua's ops, 4 arguments each: kind, name, a, b (see ops.lua).
pub(super) fn add_ops(inv: &mut Call<'_>, ops: &[FieldOp]) {
    for op in ops {
        let name = op.field.as_bytes();
        match &op.kind {
            OpKind::Increment(n) => inv.arg("i").arg(name).arg(n.to_string()).arg(""),
            OpKind::Append { value, keep_last } => {
                inv.arg("a").arg(name).arg(value.as_ref()).arg(*keep_last)
            }
            OpKind::SetIfAbsent(value) => inv.arg("s").arg(name).arg(value.as_ref()).arg(""),
        };
    }
}

/// The name of the mutation's op a script's reply points at.
pub(super) fn op_field(m: &Mutation, op: usize) -> &str {
    m.ops.get(op).map_or("", |op| op.field.as_str())
}
