//! Sessions, mutations and their validation: plain Rust, no gRPC, no store.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::config::Config;
use crate::error::{Error, InvalidReason, Result};

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
    /// Validates `id` (1..=256 bytes of UTF-8, no control characters).
    pub fn new(namespace: &str, id: &str) -> Result<SessionKey> {
        let namespace = match namespace {
            DEFAULT_NAMESPACE => default_namespace().clone(),
            other => Arc::from(other),
        };
        SessionKey::in_namespace(&namespace, id)
    }

    /// As [`SessionKey::new`], sharing the namespace string.
    pub fn in_namespace(namespace: &Arc<str>, id: &str) -> Result<SessionKey> {
        check_name(id)
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

/// A session's fields, sorted by name, in an exactly sized boxed slice with
/// boxed names. Sessions hold a handful of fields, and a cached session
/// should cost little more than its bytes: a `BTreeMap` leaf alone takes
/// about 600 bytes, and a `Vec` and `String`s 8 bytes more each.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fields(Box<[(Box<str>, Bytes)]>);

impl Fields {
    fn find(&self, name: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(n, _)| (**n).cmp(name))
    }

    pub fn get(&self, name: &str) -> Option<&Bytes> {
        self.find(name).ok().map(|i| &self.0[i].1)
    }

    /// Rebuilds the slice: for the embedded store's writes, not hot paths.
    fn edit(&mut self, f: impl FnOnce(&mut Vec<(Box<str>, Bytes)>)) {
        let mut v = std::mem::take(&mut self.0).into_vec();
        f(&mut v);
        self.0 = v.into_boxed_slice();
    }

    pub fn insert(&mut self, name: String, value: Bytes) {
        match self.find(&name) {
            Ok(i) => self.0[i].1 = value,
            Err(i) => self.edit(|v| v.insert(i, (name.into(), value))),
        }
    }

    pub fn remove(&mut self, name: &str) {
        if let Ok(i) = self.find(name) {
            self.edit(|v| {
                v.remove(i);
            });
        }
    }

    pub fn clear(&mut self) {
        self.0 = Box::default();
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Bytes)> {
        self.0.iter().map(|(n, v)| (&**n, v))
    }

    /// Names and values together, as counted against `max_session_bytes`.
    pub fn bytes(&self) -> u64 {
        self.0.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum()
    }
}

impl FromIterator<(String, Bytes)> for Fields {
    /// Sorts by name; of two equal names the later one wins.
    fn from_iter<I: IntoIterator<Item = (String, Bytes)>>(iter: I) -> Fields {
        let mut v: Vec<(Box<str>, Bytes)> = iter
            .into_iter()
            .map(|(n, v)| (n.into_boxed_str(), v))
            .collect();
        v.reverse();
        v.sort_by(|a, b| a.0.cmp(&b.0)); // stable: the later one comes first
        v.dedup_by(|later, earlier| later.0 == earlier.0);
        Fields(v.into_boxed_slice())
    }
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

impl Session {
    /// Bytes counted against `max_session_bytes`: names plus values.
    pub fn data_bytes(&self) -> u64 {
        self.fields
            .iter()
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum()
    }
}

/// A validated UpdateSession mutation.
#[derive(Debug, Clone, Default)]
pub struct Mutation {
    pub set: Vec<(String, Bytes)>,
    pub delete: Vec<String>,
    /// Remove every field not in `set`.
    pub replace: bool,
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
}

/// What a successful write returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub version: u64,
    pub expires_ms: i64,
}

/// A granted lock.
#[derive(Debug, Clone)]
pub struct LockGrant {
    pub token: String,
    pub fence: u64,
    pub lease_expires_ms: i64,
    /// The session at the moment of the grant; `None` if it does not exist.
    pub session: Option<Session>,
}

/// Limits and bounds from the configuration, checked at the edge and (for the
/// ones that depend on the stored state) by the store in the write's atomic step.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_fields: usize,
    pub max_field_bytes: u64,
    pub max_session_bytes: u64,
    pub lease_default: Duration,
    pub lease_min: Duration,
    pub lease_max: Duration,
    pub wait_max: Duration,
    pub idle_ttl: Duration,
}

impl Limits {
    pub fn from_config(c: &Config) -> Limits {
        Limits {
            max_fields: c.max_fields,
            max_field_bytes: c.max_field_bytes,
            max_session_bytes: c.max_session_bytes,
            lease_default: c.lease_default,
            lease_min: c.lease_min,
            lease_max: c.lease_max,
            wait_max: c.wait_max,
            idle_ttl: c.idle_ttl,
        }
    }

    /// The lease for a request's `lease_ms` (0 = default).
    pub fn lease(&self, lease_ms: u32) -> Result<Duration> {
        if lease_ms == 0 {
            return Ok(self.lease_default);
        }
        let lease = Duration::from_millis(lease_ms.into());
        if lease < self.lease_min || lease > self.lease_max {
            return Err(Error::invalid(
                InvalidReason::Lease,
                format!(
                    "lease_ms {lease_ms} is out of bounds: use 0 (default {} ms) or {}..={} ms",
                    self.lease_default.as_millis(),
                    self.lease_min.as_millis(),
                    self.lease_max.as_millis()
                ),
            ));
        }
        Ok(lease)
    }

    /// The wait for a request's `wait_ms` (0 = try once).
    pub fn wait(&self, wait_ms: u32) -> Result<Duration> {
        let wait = Duration::from_millis(wait_ms.into());
        if wait > self.wait_max {
            return Err(Error::invalid(
                InvalidReason::Wait,
                format!(
                    "wait_ms {wait_ms} is above the limit of {} ms",
                    self.wait_max.as_millis()
                ),
            ));
        }
        Ok(wait)
    }

    /// Validates what can be checked without the stored state: names, value
    /// sizes, and the limits the mutation alone already exceeds.
    pub fn check_mutation(&self, m: &Mutation) -> Result<()> {
        for (name, value) in &m.set {
            check_field_name(name)?;
            if value.len() as u64 > self.max_field_bytes {
                return Err(Error::LimitExceeded {
                    limit: "max_field_bytes",
                    message: format!(
                        "field `{}` is {} bytes; max_field_bytes is {}",
                        printable(name),
                        value.len(),
                        self.max_field_bytes
                    ),
                });
            }
        }
        for name in &m.delete {
            check_field_name(name)?;
            if m.set.iter().any(|(n, _)| n == name) {
                return Err(Error::invalid(
                    InvalidReason::Field,
                    format!(
                        "field `{}` is both set and deleted; pick one",
                        printable(name)
                    ),
                ));
            }
        }
        if m.set.len() > self.max_fields {
            return Err(self.too_many_fields(m.set.len()));
        }
        let set_bytes: u64 = m.set.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum();
        if set_bytes > self.max_session_bytes {
            return Err(self.too_large(set_bytes));
        }
        Ok(())
    }

    /// Checks the session a mutation would produce (done inside the store's
    /// atomic step).
    pub fn check_result(&self, fields: usize, bytes: u64) -> Result<()> {
        if fields > self.max_fields {
            return Err(self.too_many_fields(fields));
        }
        if bytes > self.max_session_bytes {
            return Err(self.too_large(bytes));
        }
        Ok(())
    }

    pub fn too_many_fields(&self, n: usize) -> Error {
        Error::LimitExceeded {
            limit: "max_fields",
            message: format!(
                "the session would have {n} fields; max_fields is {}",
                self.max_fields
            ),
        }
    }

    pub fn too_large(&self, bytes: u64) -> Error {
        Error::LimitExceeded {
            limit: "max_session_bytes",
            message: format!(
                "the session would hold {bytes} bytes of names and values; max_session_bytes is {}",
                self.max_session_bytes
            ),
        }
    }
}

fn check_field_name(name: &str) -> Result<()> {
    check_name(name).map_err(|why| {
        Error::invalid(
            InvalidReason::Field,
            format!("field name `{}` {why}", printable(name)),
        )
    })
}

/// A name cut short and stripped of control characters, safe to put in a
/// message.
fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(64).collect()
}

/// Applies a validated mutation to a copy of the fields (used by the embedded
/// store; the Redis scripts do the same in Lua).
pub fn apply(fields: &mut Fields, m: &Mutation) {
    if m.replace {
        fields.clear();
    }
    for name in &m.delete {
        fields.remove(name);
    }
    for (name, value) in &m.set {
        fields.insert(name.clone(), value.clone());
    }
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

    fn limits() -> Limits {
        Limits::from_config(&Config::defaults())
    }

    #[test]
    fn ids_are_checked() {
        assert!(SessionKey::new("default", "user-42").is_ok());
        assert!(SessionKey::new("default", "ユーザー{}:/").is_ok());
        for bad in ["", "a\nb", "\u{7f}"] {
            let err = SessionKey::new("default", bad).unwrap_err();
            assert_eq!(err.code_and_reason().1, "INVALID_SESSION_ID");
        }
        assert!(SessionKey::new("default", &"x".repeat(257)).is_err());
        assert!(SessionKey::new("default", &"x".repeat(256)).is_ok());
    }

    #[test]
    fn mutation_limits_name_the_limit() {
        let l = limits();
        let big = Mutation {
            set: vec![("a".into(), Bytes::from(vec![0u8; 64 * 1024 + 1]))],
            ..Default::default()
        };
        match l.check_mutation(&big) {
            Err(Error::LimitExceeded { limit, .. }) => assert_eq!(limit, "max_field_bytes"),
            other => panic!("unexpected {other:?}"),
        }
        let both = Mutation {
            set: vec![("a".into(), Bytes::new())],
            delete: vec!["a".into()],
            replace: false,
        };
        assert!(l.check_mutation(&both).is_err());
    }

    #[test]
    fn leases_and_waits_are_bounded() {
        let l = limits();
        assert_eq!(l.lease(0).unwrap(), l.lease_default);
        assert!(l.lease(1).is_err());
        assert!(l.lease(u32::MAX).is_err());
        assert!(l.wait(0).is_ok());
        assert!(l.wait(u32::MAX).is_err());
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
                replace: false,
            },
        );
        assert_eq!(f.iter().map(|(k, _)| k).collect::<Vec<_>>(), ["b", "c"]);
        apply(
            &mut f,
            &Mutation {
                set: vec![("d".into(), Bytes::new())],
                delete: vec![],
                replace: true,
            },
        );
        assert_eq!(f.iter().map(|(k, _)| k).collect::<Vec<_>>(), ["d"]);
    }

    #[test]
    fn fields_stay_sorted_and_unique() {
        let f: Fields = [("b", "1"), ("a", "2"), ("b", "3")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Bytes::from(v)))
            .collect();
        assert_eq!(f.len(), 2);
        assert_eq!(f.get("b").unwrap(), "3", "the later value wins");
        let mut f = f;
        f.insert("c".into(), Bytes::from("4"));
        f.insert("a".into(), Bytes::from("5"));
        f.remove("b");
        let all: Vec<_> = f.iter().map(|(k, v)| (k, v.clone())).collect();
        assert_eq!(all, [("a", Bytes::from("5")), ("c", Bytes::from("4"))]);
        assert_eq!(f.bytes(), 4);
    }
}
