//! The replies of the operators' scripts (inspect.lua, force_unlock.lua).

use redis::Value;

use super::{Fault, Handover, Parts, Reply, parse, session, text};
use crate::session::{Holder, Inspection};

/// What force_unlock.lua did.
#[derive(Debug)]
pub enum ForceReply {
    /// The holder with this fencing token lost the lock; `Handover` says
    /// who got it next.
    Released {
        fence: u64,
        handover: Handover,
    },
    NotHeld,
}

/// force_unlock.lua: `{'OK', fence, 0, expired, handover}` or
/// `{'NOT_HELD', ..}`.
pub fn force_unlock(value: &Value) -> Result<Reply<ForceReply>, Fault> {
    parse("force_unlock", value, |r| match r.status {
        b"OK" => Ok(ForceReply::Released {
            fence: r.uint(r.a, "the released fencing token")?,
            handover: r.handover_after_release(),
        }),
        b"NOT_HELD" => Ok(ForceReply::NotHeld),
        _ => Err(r.unknown()),
    })
}

/// inspect.lua: `{'OK', now ms, 0, expired, lock, waiters, data...}`.
pub fn inspect(value: &Value) -> Result<Reply<Inspection>, Fault> {
    parse("inspect", value, |r| match r.status {
        b"OK" => {
            let now = r.int(r.a, "the server's time")?;
            let [lock, waiters, queued, data @ ..] = r.rest else {
                return Err(r.malformed(format_args!("no lock, waiters or queueing time")));
            };
            let waiters = r.uint(waiters, "the waiters")?;
            let queued = text(queued)
                .ok_or_else(|| r.malformed(format_args!("the queueing time is {queued:?}")))?;
            Ok(Inspection {
                session: session(data)?,
                holder: holder(r, lock, now)?,
                waiters: u32::try_from(waiters).unwrap_or(u32::MAX),
                oldest_wait_ms: waited_ms(queued),
            })
        }
        _ => Err(r.unknown()),
    })
}

/// How long ago a waiter whose token says it queued at `queued` (12 hex
/// digits of ms since the epoch, on its instance's clock) began; 0 when it
/// says nothing.
fn waited_ms(queued: &[u8]) -> u64 {
    let at = std::str::from_utf8(queued)
        .ok()
        .and_then(|h| i64::from_str_radix(h, 16).ok());
    at.map_or(0, |at| {
        u64::try_from(crate::store::now_ms().saturating_sub(at)).unwrap_or(0)
    })
}

/// `false` (nil in RESP2) or `{instance, fence digits, ms left, since ms}`.
fn holder(r: &Parts<'_>, lock: &Value, now: i64) -> Result<Option<Holder>, Fault> {
    let items = match lock {
        Value::Nil | Value::Boolean(false) => return Ok(None),
        Value::Array(items) => items.as_slice(),
        other => return Err(r.malformed(format_args!("the lock is {other:?}"))),
    };
    let [instance, fence, left, since] = items else {
        return Err(r.malformed(format_args!("the lock has {} elements", items.len())));
    };
    let digits = |v: &Value, what: &str| -> Result<i64, Fault> {
        text(v)
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| r.malformed(format_args!("{what} is {v:?}")))
    };
    let instance = text(instance)
        .and_then(|b| std::str::from_utf8(b).ok())
        .ok_or_else(|| r.malformed(format_args!("the instance is {instance:?}")))?;
    let fence = digits(fence, "the fencing token")?;
    Ok(Some(Holder {
        fence: u64::try_from(fence)
            .map_err(|_| r.malformed(format_args!("the fencing token is {fence}")))?,
        lease_expires_ms: now.saturating_add(r.int(left, "the lease left")?.max(0)),
        since_ms: digits(since, "the grant's time")?,
        instance: (!instance.is_empty()).then(|| instance.to_owned()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Value {
        Value::BulkString(v.as_bytes().to_vec())
    }

    #[test]
    fn inspect_reads_the_holder_and_the_first_waiter() {
        let now = crate::store::now_ms();
        let queued = format!("{:012x}", now - 250);
        let lock = Value::Array(vec![
            s("ab12"),
            s("1700000000000123"),
            Value::Int(900),
            s("5"),
        ]);
        let reply = Value::Array(vec![
            s("OK"),
            Value::Int(1000),
            Value::Int(0),
            Value::Int(0),
            lock,
            Value::Int(2),
            s(&queued),
        ]);
        let seen = inspect(&reply).unwrap().outcome;
        assert!(seen.session.is_none());
        assert_eq!(
            seen.holder,
            Some(Holder {
                fence: 1_700_000_000_000_123,
                lease_expires_ms: 1900,
                since_ms: 5,
                instance: Some("ab12".into()),
            })
        );
        assert_eq!(seen.waiters, 2);
        assert!((250..10_000).contains(&seen.oldest_wait_ms));
    }

    #[test]
    fn malformed_replies_are_faults_not_panics() {
        let base = |rest: Vec<Value>| {
            let mut v = vec![s("OK"), Value::Int(0), Value::Int(0), Value::Int(0)];
            v.extend(rest);
            Value::Array(v)
        };
        for bad in [
            base(vec![]),
            base(vec![Value::Nil, Value::Int(0)]),
            base(vec![Value::Int(3), Value::Int(0), s("")]),
            base(vec![Value::Array(vec![s("a")]), Value::Int(0), s("")]),
            base(vec![Value::Nil, Value::Int(-1), s("")]),
        ] {
            assert!(inspect(&bad).is_err(), "{bad:?}");
        }
        let free = base(vec![Value::Nil, Value::Int(0), s("")]);
        let seen = inspect(&free).unwrap().outcome;
        assert_eq!(
            (seen.holder, seen.waiters, seen.oldest_wait_ms),
            (None, 0, 0)
        );
        let not_held = Value::Array(vec![
            s("NOT_HELD"),
            Value::Int(0),
            Value::Int(0),
            Value::Int(1),
        ]);
        let r = force_unlock(&not_held).unwrap();
        assert!(matches!(r.outcome, ForceReply::NotHeld) && r.expired);
        let released = Value::Array(vec![
            s("OK"),
            Value::Int(7),
            Value::Int(0),
            Value::Int(0),
            Value::Nil,
        ]);
        assert!(matches!(
            force_unlock(&released).unwrap().outcome,
            ForceReply::Released {
                fence: 7,
                handover: Handover::Nobody
            }
        ));
    }
}
