//! Sessions, mutations and their validation: plain Rust, no gRPC, no store.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::error::{Error, InvalidReason, Result};

mod fields;
mod idempotency;
mod limits;
mod operate;
mod ops;
mod quotas;
mod rate;
mod turn;

pub use fields::Fields;
pub use idempotency::Idempotency;
pub use limits::Limits;
pub use operate::{Cursor, Holder, Inspection, Page, page_size};
pub use ops::{FieldOp, OpKind, OpRefusal, apply_ops, list_entries, parse_int};
pub use quotas::{Quota, Quotas, Usage};
pub use rate::{Admitted, Gcra, RateLimit, RateScope, check_rate};
pub use turn::{CHAIN_PAYLOADS, Chain, MAX_DEBOUNCE, Superseded, Turn, TurnPolicy};

/// Longest session id and field name, in bytes.
pub const MAX_ID_BYTES: usize = 256;

/// The namespace used while authentication is off.
pub const DEFAULT_NAMESPACE: &str = "default";

/// [`DEFAULT_NAMESPACE`], shared.
pub fn default_namespace() -> &'static Arc<str> {
    static NS: std::sync::OnceLock<Arc<str>> = std::sync::OnceLock::new();
    NS.get_or_init(|| Arc::from(DEFAULT_NAMESPACE))
}

/// Where a session lives: a namespace and an id, both validated.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionKey {
    /// Shared: all keys of a namespace point at one string.
    pub namespace: Arc<str>,
    /// Boxed, as every cached session holds its key: 8 bytes less than a
    /// `String`.
    pub id: Box<str>,
}

impl SessionKey {
    /// Validates `id` (1..=256 bytes of UTF-8, no control characters, no
    /// invisible formatting characters: see [`hidden`]).
    pub fn new(namespace: &str, id: &str) -> Result<SessionKey> {
        let namespace = match namespace {
            DEFAULT_NAMESPACE => default_namespace().clone(),
            other => Arc::from(other),
        };
        SessionKey::in_namespace(&namespace, id)
    }

    /// As [`SessionKey::new`], sharing the namespace string.
    pub fn in_namespace(namespace: &Arc<str>, id: &str) -> Result<SessionKey> {
        check_id(id)
            .map_err(|why| Error::invalid(InvalidReason::SessionId, format!("session_id {why}")))?;
        Ok(SessionKey {
            namespace: namespace.clone(),
            id: id.into(),
        })
    }
}

/// `Err(why)` unless `s` is 1..=256 bytes without control characters.
fn check_name(s: &str) -> std::result::Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > MAX_ID_BYTES {
        return Err(format!("is {} bytes; the limit is {MAX_ID_BYTES}", s.len()));
    }
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        return Err(format!(
            "must not contain control characters (found U+{:04X})",
            c as u32
        ));
    }
    Ok(())
}

/// `Err(why)` unless `id` is a name ([`check_name`]) that also shows what it
/// is: an id is what operators search logs and dashboards for, so two ids
/// that print alike must not be two sessions (`user\u{200B}42` beside
/// `user42`), and an id must not reorder or break the line it is printed on.
fn check_id(id: &str) -> std::result::Result<(), String> {
    check_name(id)?;
    match id.chars().find(|&c| hidden(c)) {
        Some(c) => Err(format!(
            "must not contain invisible, bidirectional or line-breaking formatting characters (found U+{:04X})",
            c as u32
        )),
        None => Ok(()),
    }
}

/// The formatting characters an id may not hold (besides control
/// characters): bidirectional controls, zero-width characters and the line
/// and paragraph separators. The proto's `GetSessionRequest.session_id`
/// lists them.
pub fn hidden(c: char) -> bool {
    matches!(c,
        '\u{061C}'                 // Arabic letter mark
        | '\u{180E}'               // Mongolian vowel separator (once a space)
        | '\u{200B}'..='\u{200F}'  // zero-width space, non-joiner, joiner; LRM, RLM
        | '\u{2028}'..='\u{202E}'  // line, paragraph separators; LRE, RLE, PDF, LRO, RLO
        | '\u{2060}'..='\u{2064}'  // word joiner, invisible operators
        | '\u{2066}'..='\u{2069}'  // LRI, RLI, FSI, PDI
        | '\u{FEFF}' // zero-width no-break space
    )
}

/// A session as stored. Times are milliseconds since the Unix epoch, on the
/// store's clock (Redis `TIME`, or this host's clock for the embedded store).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Session {
    pub fields: Fields,
    pub version: u64,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub expires_ms: i64,
}

/// A validated UpdateSession mutation.
#[derive(Debug, Clone, Default)]
pub struct Mutation {
    pub set: Vec<(String, Bytes)>,
    pub delete: Vec<String>,
    /// Remove every field not in `set`.
    pub replace: bool,
    /// Field operations, applied after the rest (names distinct, and
    /// distinct from `set` and `delete`).
    pub ops: Vec<FieldOp>,
}

/// The guards of a write.
#[derive(Debug, Clone, Default)]
pub struct Guards {
    /// The write must be made by this lock holder.
    pub lock_token: Option<String>,
    /// Compare-and-set; 0 = create only.
    pub expected_version: Option<u64>,
    /// Release the lock in the same atomic step.
    pub release_lock: bool,
    /// A repeat of an earlier write with this key gets its result instead
    /// (and releases the lock if asked to and the token holds it).
    pub idempotency: Option<Idempotency>,
}

/// What a successful write returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub version: u64,
    pub expires_ms: i64,
    /// The new value of each field of the mutation's `ops`, in order.
    pub op_values: Vec<Bytes>,
}

/// What a LockSession asks of the store.
#[derive(Debug, Clone, Default)]
pub struct LockRequest {
    pub lease: Duration,
    /// Zero: try once.
    pub wait: Duration,
    pub turn: Turn,
    /// A repeat within the window gets the first grant's answer.
    pub idempotency: Option<Idempotency>,
}

impl LockRequest {
    /// A FIFO request without payload or key.
    pub fn new(lease: Duration, wait: Duration) -> LockRequest {
        LockRequest {
            lease,
            wait,
            ..Default::default()
        }
    }
}

/// A granted lock.
#[derive(Debug, Clone)]
pub struct LockGrant {
    pub token: String,
    pub fence: u64,
    pub lease_expires_ms: i64,
    /// The session at the moment of the grant; `None` if it does not exist.
    pub session: Option<Session>,
    /// The payloads of the waiters this grant superseded (see `turn`).
    pub superseded: Superseded,
    /// The answer of an earlier LockSession with the same idempotency key
    /// (no new grant; its superseded payloads are repeated).
    pub replayed: bool,
}

/// A name cut short and stripped of control characters, safe to put in a
/// message.
pub fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(64).collect()
}

/// Applies a validated mutation to a copy of the fields (used by the embedded
/// store; the Redis scripts do the same in Lua): sets, deletes and replace,
/// then the field operations, whose new values it returns. On a refused op
/// (with its index) the copy is half changed: throw it away.
pub fn apply(fields: &mut Fields, m: &Mutation) -> Result<Vec<Bytes>, (OpRefusal, usize)> {
    if m.replace {
        fields.clear();
    }
    for name in &m.delete {
        fields.remove(name);
    }
    for (name, value) in &m.set {
        fields.insert(name.clone(), value.clone());
    }
    apply_ops(fields, &m.ops)
}

/// Checks a lock token's shape before it reaches a store.
pub fn check_token(token: &str) -> Result<()> {
    if token.len() > 64
        || token
            .chars()
            .any(|c| !(c.is_ascii_alphanumeric() || c == '-'))
    {
        return Err(Error::invalid(
            InvalidReason::LockToken,
            "lock_token is malformed: pass the token LockSession returned, unchanged",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        assert!(SessionKey::new("default", "user-42").is_ok());
        assert!(SessionKey::new("default", "ユーザー{}:/").is_ok());
        for bad in ["", "a\nb", "\u{7f}"] {
            let err = SessionKey::new("default", bad).unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::InvalidArgument {
                        reason: InvalidReason::SessionId,
                        ..
                    }
                ),
                "{err:?}"
            );
        }
        assert!(SessionKey::new("default", &"x".repeat(257)).is_err());
        for hidden in [
            "user\u{200B}42",
            "a\u{200D}b",
            "evil\u{202E}gpj.exe",
            "x\u{2066}y\u{2069}",
            "line\u{2028}break",
            "para\u{2029}",
            "\u{FEFF}bom",
            "\u{061C}",
        ] {
            let err = SessionKey::new("default", hidden).unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::InvalidArgument {
                        reason: InvalidReason::SessionId,
                        ..
                    }
                ),
                "{hidden:?}: {err:?}"
            );
        }
        // Visible scripts, marks and symbols stay welcome.
        for fine in ["عربي", "עברית", "e\u{301}", "👍", "한국어", "a\u{00A0}b"] {
            assert!(SessionKey::new("default", fine).is_ok(), "{fine:?}");
        }
        assert!(SessionKey::new("default", &"x".repeat(256)).is_ok());
    }

    #[test]
    fn apply_replaces_and_deletes() {
        let mut f: Fields = [
            ("a".to_owned(), Bytes::from("1")),
            ("b".into(), Bytes::from("2")),
        ]
        .into_iter()
        .collect();
        apply(
            &mut f,
            &Mutation {
                set: vec![("c".into(), Bytes::from("3"))],
                delete: vec!["a".into()],
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(f.iter().map(|(k, _)| k).collect::<Vec<_>>(), ["b", "c"]);
        apply(
            &mut f,
            &Mutation {
                set: vec![("d".into(), Bytes::new())],
                replace: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(f.iter().map(|(k, _)| k).collect::<Vec<_>>(), ["d"]);
    }
}
