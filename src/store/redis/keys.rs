//! The five keys of a session, the arguments every write script shares, and
//! the namespace's quota keys.
//! All keys carry the hash tag `{<ns>/<id>}` (percent-encoded, see
//! `wire::encode_into`), so they live in one Cluster slot.

use super::Inner;
use super::wire::encode_into;
use crate::session::{Guards, SessionKey};

/// The five keys of one session, in the order the scripts expect, and the
/// invalidation subject (the encoded `ns/id`).
#[derive(Clone, Default)]
pub(super) struct Keys {
    pub(super) keys: [String; 5],
    pub(super) subject: String,
}

impl Inner {
    pub(super) fn keys(&self, key: &SessionKey) -> Keys {
        let mut subject = String::with_capacity(key.namespace.len() + key.id.len() + 8);
        encode_into(&mut subject, &key.namespace);
        subject.push('/');
        encode_into(&mut subject, &key.id);
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
        Keys {
            keys: [k('d'), k('m'), k('l'), k('q'), k('w')],
            subject,
        }
    }
}

impl Keys {
    pub(super) fn add_to(&self, inv: &mut redis::ScriptInvocation<'_>) {
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
    pub(super) fn add_quota(&self, inv: &mut redis::ScriptInvocation<'_>, key: &SessionKey) {
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
}

/// ARGV 1-3 of the write scripts: lock token, expected version, release.
pub(super) fn add_guards(inv: &mut redis::ScriptInvocation<'_>, g: &Guards) {
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
