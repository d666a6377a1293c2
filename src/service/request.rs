//! What SessionService reads from a request besides its message: the
//! session key (namespace from the credentials), lock tokens and guards,
//! and the caller's deadline.

use std::sync::Arc;
use std::time::Duration;

use tonic::Request;
use tonic::metadata::MetadataMap;

use crate::error::{Error, InvalidReason, Result};
use crate::pb;
use crate::session::{self, FieldOp, Guards, OpKind, SessionKey};
use crate::shares::{Caller, Share};
use crate::state::State;

/// Time kept between the end of a lock wait and the caller's deadline, for
/// the answer to reach it.
const DEADLINE_MARGIN: Duration = Duration::from_millis(50);

/// The key of a call's session, in the namespace `authenticate` found for
/// the caller (from its credentials when authentication is on, else the
/// default one).
pub(super) fn key_of<T>(state: &State, req: &Request<T>, session_id: &str) -> Result<SessionKey> {
    SessionKey::in_namespace(&share_of(state, req)?.namespace, session_id)
}

/// The share the call works in (see `State::share_of`).
pub(super) fn share_of<'a, T>(state: &'a State, req: &'a Request<T>) -> Result<&'a Arc<Share>> {
    state.share_of(req.extensions().get::<Caller>())
}

fn token_of(token: &str) -> Result<Option<String>> {
    if token.is_empty() {
        return Ok(None);
    }
    session::check_token(token)?;
    Ok(Some(token.to_owned()))
}

pub(super) fn require_token(token: &str) -> Result<String> {
    token_of(token)?.ok_or_else(|| {
        Error::invalid(
            InvalidReason::LockToken,
            "lock_token is required: pass the token LockSession returned",
        )
    })
}

pub(super) fn guards(
    lock_token: &str,
    expected_version: Option<u64>,
    release_lock: bool,
) -> Result<Guards> {
    let lock_token = token_of(lock_token)?;
    if release_lock && lock_token.is_none() {
        return Err(Error::invalid(
            InvalidReason::LockToken,
            "release_lock needs lock_token: only the holder can release the lock",
        ));
    }
    Ok(Guards {
        lock_token,
        expected_version,
        release_lock,
        idempotency: None,
    })
}

/// The field operations of an UpdateSession; each must name one.
pub(super) fn ops_of(ops: Vec<pb::FieldOp>) -> Result<Vec<FieldOp>> {
    ops.into_iter()
        .map(|op| {
            let kind = match op.op {
                Some(pb::field_op::Op::Increment(n)) => OpKind::Increment(n),
                Some(pb::field_op::Op::Append(a)) => OpKind::Append {
                    value: a.value,
                    keep_last: a.keep_last,
                },
                Some(pb::field_op::Op::SetIfAbsent(v)) => OpKind::SetIfAbsent(v),
                None => {
                    return Err(Error::invalid(
                        InvalidReason::FieldOp,
                        format!(
                            "the op on field `{}` names no operation: set increment, append or set_if_absent",
                            session::printable(&op.field)
                        ),
                    ));
                }
            };
            Ok(FieldOp {
                field: op.field,
                kind,
            })
        })
        .collect()
}

/// A lock wait cut short so that it never outlives the caller's deadline: a
/// grant it cannot receive would hold the lock for nobody.
pub(super) fn deadline_wait<T>(req: &Request<T>, wait: Duration) -> Duration {
    match grpc_timeout(req.metadata()) {
        Some(deadline) if !wait.is_zero() => wait.min(deadline.saturating_sub(DEADLINE_MARGIN)),
        _ => wait,
    }
}

/// The caller's deadline (`grpc-timeout`: digits and a unit), if it sent a
/// readable one.
fn grpc_timeout(metadata: &MetadataMap) -> Option<Duration> {
    let v = metadata.get("grpc-timeout")?.to_str().ok()?;
    let unit = v.chars().last()?;
    let n: u64 = v.strip_suffix(unit)?.parse().ok()?;
    Some(match unit {
        'H' => Duration::from_secs(n.saturating_mul(3600)),
        'M' => Duration::from_secs(n.saturating_mul(60)),
        'S' => Duration::from_secs(n),
        'm' => Duration::from_millis(n),
        'u' => Duration::from_micros(n),
        'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeout(v: &str) -> Option<Duration> {
        let mut m = MetadataMap::new();
        m.insert("grpc-timeout", v.parse().unwrap());
        grpc_timeout(&m)
    }

    #[test]
    fn grpc_timeouts_parse_in_every_unit() {
        assert_eq!(timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(timeout("4S"), Some(Duration::from_secs(4)));
        assert_eq!(timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(timeout("9n"), Some(Duration::from_nanos(9)));
        let huge = format!("{}H", u64::MAX);
        assert_eq!(timeout(&huge), Some(Duration::from_secs(u64::MAX)));
    }

    #[test]
    fn unreadable_grpc_timeouts_are_ignored() {
        for bad in [
            "",
            "S",
            "10",
            "10x",
            "-1S",
            "1.5S",
            "ten S",
            "99999999999999999999S",
        ] {
            assert_eq!(timeout(bad), None, "{bad:?}");
        }
        assert_eq!(grpc_timeout(&MetadataMap::new()), None);
    }

    #[test]
    fn lock_waits_end_before_the_callers_deadline() {
        let mut req = Request::new(());
        let wait = Duration::from_secs(10);
        assert_eq!(deadline_wait(&req, wait), wait, "no deadline");
        req.metadata_mut()
            .insert("grpc-timeout", "1S".parse().unwrap());
        assert_eq!(deadline_wait(&req, wait), Duration::from_millis(950));
        assert_eq!(
            deadline_wait(&req, Duration::ZERO),
            Duration::ZERO,
            "try once stays"
        );
        assert_eq!(
            deadline_wait(&req, Duration::from_millis(100)),
            Duration::from_millis(100)
        );
        req.metadata_mut()
            .insert("grpc-timeout", "10m".parse().unwrap());
        assert_eq!(deadline_wait(&req, wait), Duration::ZERO);
    }

    #[test]
    fn guards_need_a_well_formed_token_to_release() {
        let g = guards("", Some(3), false).unwrap();
        assert_eq!((g.lock_token, g.expected_version), (None, Some(3)));
        let g = guards("abc-123", None, true).unwrap();
        assert_eq!(g.lock_token.as_deref(), Some("abc-123"));
        assert!(g.release_lock);
        for (token, release) in [("", true), ("bad token", false), (&*"a".repeat(65), false)] {
            match guards(token, None, release) {
                Err(Error::InvalidArgument { reason, .. }) => {
                    assert_eq!(reason, InvalidReason::LockToken)
                }
                other => panic!("{token:?}: {other:?}"),
            }
        }
        assert!(require_token("").is_err());
        assert_eq!(require_token("abc").unwrap(), "abc");
    }
}
