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
            let [lock, waiters, data @ ..] = r.rest else {
                return Err(r.malformed(format_args!("no lock or waiters")));
            };
            let waiters = r.uint(waiters, "the waiters")?;
            Ok(Inspection {
                session: session(data)?,
                holder: holder(r, lock, now)?,
                waiters: u32::try_from(waiters).unwrap_or(u32::MAX),
                oldest_wait_ms: 0,
            })
        }
        _ => Err(r.unknown()),
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
