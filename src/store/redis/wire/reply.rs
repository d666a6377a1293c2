//! The scripts' replies, each parsed once into the outcomes its script's
//! header lists. Every script answers `{status, a, b, expired, rest...}` (see
//! the prelude); the parsers here are the only code that reads a reply by
//! position or a status by name, and the store matches on the types they
//! return. A reply of a shape its script's header does not allow is a
//! [`Fault::Protocol`], never a panic or a silent default.

use std::time::Duration;

use bytes::Bytes;
use redis::Value;

use super::{Fault, session};
use crate::session::{LockGrant, OpRefusal, Quota, Session, Superseded, Written};

/// A parsed reply: what the script did, and whether the call found that a
/// lease had run out unseen (the 4th element of every reply, see the
/// prelude), for the expiry counter.
pub struct Reply<T> {
    pub outcome: T,
    pub expired: bool,
}

/// What lock.lua did.
#[derive(Debug)]
pub enum LockReply {
    /// The lock is this token's; `session` as it was at the grant, and the
    /// payloads of the waiters it superseded.
    Granted {
        fence: u64,
        lease_expires_ms: i64,
        session: Option<Session>,
        superseded: Superseded,
    },
    /// A newer waiter of the burst took this token's turn.
    Superseded,
    /// The grant made earlier under the call's idempotency key.
    Replayed(LockGrant),
    /// The idempotency key of another request.
    KeyReused,
    /// Held by another, and the attempt was not to queue ('try').
    Held,
    /// Queued, or its place renewed ('wait'). It may be granted the lock in
    /// `free_in`: when the holder's lease runs out, or its quiet period
    /// ends (`None`: unknown, or free already).
    Queued { free_in: Option<Duration> },
}

/// The guard refusals of the write scripts (`check_guards` in the prelude,
/// and `earlier` in idempotency.lua).
#[derive(Debug, PartialEq)]
pub enum Refusal {
    LockLost,
    LockHeld,
    VersionMismatch {
        current: u64,
    },
    /// The idempotency key was used by another request.
    KeyReused,
}

/// The limits update.lua enforces.
#[derive(Debug, PartialEq)]
// The variants are named after the flags (`--max-fields`, ...).
#[allow(clippy::enum_variant_names)]
pub enum Limit {
    MaxFields,
    MaxSessionBytes,
    /// An append's list, of the mutation's op `op`.
    MaxFieldBytes {
        op: usize,
    },
}

/// What update.lua did.
#[derive(Debug)]
pub enum WriteReply {
    Written {
        written: Written,
        handover: Handover,
    },
    Refused(Refusal),
    /// Nothing written: the write would have taken `limit` to `value`.
    LimitExceeded {
        limit: Limit,
        value: u64,
    },
    /// Nothing written: the write would have grown the namespace beyond
    /// `quota`; `usage` is the namespace's before it.
    QuotaExceeded {
        quota: Quota,
        usage: u64,
    },
    /// Nothing written: the mutation's op `op` does not fit its field.
    OpRefused {
        refusal: OpRefusal,
        op: usize,
    },
}

/// What delete.lua did.
#[derive(Debug)]
pub enum DeleteReply {
    /// `version`: the deleted session's, `None` when there was none.
    Deleted {
        version: Option<u64>,
        handover: Handover,
    },
    Refused(Refusal),
}

/// What unlock.lua did.
#[derive(Debug)]
pub enum UnlockReply {
    Released(Handover),
    LockLost,
}

/// What refresh.lua did.
#[derive(Debug)]
pub enum RefreshReply {
    Extended { lease_expires_ms: i64 },
    LockLost,
}

/// What a script that released the lock did with it (the prelude's
/// `release`).
#[derive(Debug)]
pub enum Handover {
    /// Nothing released, or nobody waiting.
    Nobody,
    /// The first live waiter belongs to another instance: woken over
    /// pub/sub, it takes the lock itself.
    Woke { token: String },
    /// The first live waiter belongs to this instance: the lock is already
    /// its own, and this instance gives it the grant.
    Handed(LockGrant),
    /// A reply of a shape the prelude does not allow, after a write or an
    /// unlock that did happen: the call still succeeds (failing it would
    /// tell the caller its write was not made), and the waiter, if any,
    /// finds the lock its own at its next retry.
    Unreadable(Fault),
}

/// lock.lua: `{'GRANTED', fence, lease expires ms, expired, {dropped,
/// payload...}, data...}`, `{'LOCK_HELD', 0, 0, expired}`, `{'QUEUED', ms
/// until it may be granted, 0, expired}`, `{'SUPERSEDED', 0, 0,
/// expired}`, `{'REPLAYED', fence, lease expires ms, expired, token,
/// {dropped, payload...}, data...}` or `{'IDEMPOTENCY_KEY_REUSED', 0, 0,
/// expired}`.
pub fn lock(value: &Value) -> Result<Reply<LockReply>, Fault> {
    parse("lock", value, |r| match r.status {
        b"GRANTED" => Ok(LockReply::Granted {
            fence: r.uint(r.a, "the fencing token")?,
            lease_expires_ms: r.int(r.b, "the lease's end")?,
            superseded: r.superseded(0)?,
            session: session(r.rest.get(1..).unwrap_or_default())?,
        }),
        b"LOCK_HELD" => Ok(LockReply::Held),
        b"SUPERSEDED" => Ok(LockReply::Superseded),
        b"IDEMPOTENCY_KEY_REUSED" => Ok(LockReply::KeyReused),
        b"REPLAYED" => Ok(LockReply::Replayed(LockGrant {
            fence: r.uint(r.a, "the replayed fencing token")?,
            lease_expires_ms: r.int(r.b, "the replayed lease's end")?,
            token: match r.rest.first().and_then(text).map(std::str::from_utf8) {
                Some(Ok(t)) => t.to_owned(),
                _ => return Err(r.malformed(format_args!("no replayed token"))),
            },
            superseded: r.superseded(1)?,
            session: session(r.rest.get(2..).unwrap_or_default())?,
            replayed: true,
        })),
        // PTTL: -2 for no lock (free now), -1 for one without a TTL.
        b"QUEUED" => Ok(LockReply::Queued {
            free_in: u64::try_from(r.int(r.a, "the holder's remaining lease")?)
                .ok()
                .filter(|&ms| ms > 0)
                .map(|ms| Duration::from_millis(ms + 1)),
        }),
        _ => Err(r.unknown()),
    })
}

/// update.lua: `{'OK', new version, expires ms, expired, handover, op
/// values}`, a guard's refusal, `{'LIMIT_EXCEEDED', limit name, value,
/// expired[, op index]}` or an op's refusal `{status, op index, 0,
/// expired}`.
pub fn write(value: &Value) -> Result<Reply<WriteReply>, Fault> {
    parse("update", value, |r| match r.status {
        b"OK" => Ok(WriteReply::Written {
            written: Written {
                version: r.uint(r.a, "the new version")?,
                expires_ms: r.int(r.b, "the expiry")?,
                op_values: r.op_values()?,
            },
            handover: r.handover_in(r.rest.get(..1).unwrap_or_default()),
        }),
        b"LIMIT_EXCEEDED" => Ok(WriteReply::LimitExceeded {
            limit: match text(r.a) {
                Some(b"max_fields") => Limit::MaxFields,
                Some(b"max_session_bytes") => Limit::MaxSessionBytes,
                Some(b"max_field_bytes") => Limit::MaxFieldBytes {
                    op: r.index(r.rest.first(), "the op")?,
                },
                _ => return Err(r.malformed(format_args!("the limit is {:?}", r.a))),
            },
            value: r.uint(r.b, "the value the write would reach")?,
        }),
        b"QUOTA_EXCEEDED" => Ok(WriteReply::QuotaExceeded {
            quota: match text(r.a) {
                Some(b"sessions") => Quota::Sessions,
                Some(b"bytes") => Quota::Bytes,
                _ => return Err(r.malformed(format_args!("the quota is {:?}", r.a))),
            },
            usage: r.uint(r.b, "the namespace's usage")?,
        }),
        b"FIELD_NOT_INTEGER" | b"INTEGER_OVERFLOW" | b"FIELD_NOT_LIST" => {
            Ok(WriteReply::OpRefused {
                refusal: match r.status {
                    b"FIELD_NOT_INTEGER" => OpRefusal::NotInteger,
                    b"INTEGER_OVERFLOW" => OpRefusal::Overflow,
                    _ => OpRefusal::NotList,
                },
                op: r.index(Some(r.a), "the op")?,
            })
        }
        _ => Ok(WriteReply::Refused(r.refusal()?)),
    })
}

/// delete.lua: `{'OK', deleted version or 0, 0, expired, handover}` or a
/// guard's refusal.
pub fn delete(value: &Value) -> Result<Reply<DeleteReply>, Fault> {
    parse("delete", value, |r| match r.status {
        b"OK" => Ok(DeleteReply::Deleted {
            version: Some(r.uint(r.a, "the deleted version")?).filter(|&v| v > 0),
            handover: r.handover_after_release(),
        }),
        _ => Ok(DeleteReply::Refused(r.refusal()?)),
    })
}

/// unlock.lua: `{'OK', 0, 0, expired, handover}` or `{'LOCK_LOST', ..}`.
pub fn unlock(value: &Value) -> Result<Reply<UnlockReply>, Fault> {
    parse("unlock", value, |r| match r.status {
        b"OK" => Ok(UnlockReply::Released(r.handover_after_release())),
        b"LOCK_LOST" => Ok(UnlockReply::LockLost),
        _ => Err(r.unknown()),
    })
}

/// refresh.lua: `{'OK', lease expires ms, 0, expired}` or `{'LOCK_LOST', ..}`.
pub fn refresh(value: &Value) -> Result<Reply<RefreshReply>, Fault> {
    parse("refresh", value, |r| match r.status {
        b"OK" => Ok(RefreshReply::Extended {
            lease_expires_ms: r.int(r.a, "the lease's end")?,
        }),
        b"LOCK_LOST" => Ok(RefreshReply::LockLost),
        _ => Err(r.unknown()),
    })
}

/// abandon.lua: `{'OK', 1 if it held the lock else 0, 0, expired, handover
/// (only when it held the lock)}`.
pub fn abandon(value: &Value) -> Result<Reply<Handover>, Fault> {
    parse("abandon", value, |r| match r.status {
        b"OK" => r.handover(r.rest),
        _ => Err(r.unknown()),
    })
}

/// The parts every reply has: `{status, a, b, expired, rest...}`.
struct Parts<'a> {
    script: &'static str,
    status: &'a [u8],
    a: &'a Value,
    b: &'a Value,
    rest: &'a [Value],
}

/// Splits a reply into its parts and reads the outcome with `outcome`.
fn parse<T>(
    script: &'static str,
    value: &Value,
    outcome: impl FnOnce(&Parts<'_>) -> Result<T, Fault>,
) -> Result<Reply<T>, Fault> {
    let malformed =
        |what: &str| Fault::Protocol(format!("malformed {script} script reply: {what}"));
    let Value::Array(items) = value else {
        return Err(malformed("not an array"));
    };
    let [status, a, b, expired, rest @ ..] = items.as_slice() else {
        return Err(malformed("fewer than 4 elements"));
    };
    let Some(status) = text(status) else {
        return Err(malformed("the status is not a string"));
    };
    let expired = match expired {
        Value::Int(0) => false,
        Value::Int(1) => true,
        _ => return Err(malformed("the expiry flag is not 0 or 1")),
    };
    let parts = Parts {
        script,
        status,
        a,
        b,
        rest,
    };
    Ok(Reply {
        outcome: outcome(&parts)?,
        expired,
    })
}

impl Parts<'_> {
    fn malformed(&self, what: std::fmt::Arguments<'_>) -> Fault {
        Fault::Protocol(format!("malformed {} script reply: {what}", self.script))
    }

    fn unknown(&self) -> Fault {
        Fault::Protocol(format!(
            "{} script answered {}",
            self.script,
            String::from_utf8_lossy(self.status)
        ))
    }

    fn int(&self, v: &Value, what: &str) -> Result<i64, Fault> {
        match v {
            Value::Int(n) => Ok(*n),
            other => Err(self.malformed(format_args!("{what} is {other:?}"))),
        }
    }

    /// A count, version or fencing token: never negative.
    fn uint(&self, v: &Value, what: &str) -> Result<u64, Fault> {
        let n = self.int(v, what)?;
        u64::try_from(n).map_err(|_| self.malformed(format_args!("{what} is {n}")))
    }

    fn refusal(&self) -> Result<Refusal, Fault> {
        match self.status {
            b"LOCK_LOST" => Ok(Refusal::LockLost),
            b"LOCK_HELD" => Ok(Refusal::LockHeld),
            b"VERSION_MISMATCH" => Ok(Refusal::VersionMismatch {
                current: self.uint(self.a, "the current version")?,
            }),
            b"IDEMPOTENCY_KEY_REUSED" => Ok(Refusal::KeyReused),
            _ => Err(self.unknown()),
        }
    }

    /// The 5th element of a releasing script's reply: `false` (or absent)
    /// for nobody, `{token}` for a woken waiter, `{token, fence, lease
    /// expires ms, data...}` for a waiter of this instance handed the lock.
    /// The handover of a script whose own step succeeded: an unreadable one
    /// does not undo that (see [`Handover::Unreadable`]).
    fn handover_after_release(&self) -> Handover {
        self.handover_in(self.rest)
    }

    /// As `handover_after_release`, from `rest` (update.lua's 5th element,
    /// the 6th being the ops' values).
    fn handover_in(&self, rest: &[Value]) -> Handover {
        self.handover(rest).unwrap_or_else(Handover::Unreadable)
    }

    /// An index into the request (an op's), from the reply.
    fn index(&self, v: Option<&Value>, what: &str) -> Result<usize, Fault> {
        let n = self.uint(v.unwrap_or(&Value::Nil), what)?;
        usize::try_from(n).map_err(|_| self.malformed(format_args!("{what} is {n}")))
    }

    /// The 6th element of update.lua's `OK`: the ops' new values (absent
    /// when the reply has no 6th element).
    fn op_values(&self) -> Result<Vec<Bytes>, Fault> {
        match self.rest.get(1) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::BulkString(b) => Ok(Bytes::copy_from_slice(b)),
                    other => Err(self.malformed(format_args!("an op's value is {other:?}"))),
                })
                .collect(),
            Some(other) => Err(self.malformed(format_args!("the ops' values are {other:?}"))),
        }
    }

    /// The superseded payloads, `{dropped, payload...}`: the `i`th element
    /// after the first four (lock.lua's `GRANTED` has them first, its
    /// `REPLAYED` after the token).
    fn superseded(&self, i: usize) -> Result<Superseded, Fault> {
        let Some(Value::Array(items)) = self.rest.get(i) else {
            return Err(self.malformed(format_args!("no superseded payloads")));
        };
        let [dropped, payloads @ ..] = items.as_slice() else {
            return Err(self.malformed(format_args!("no count of dropped payloads")));
        };
        let dropped = self.uint(dropped, "the dropped payloads")?;
        let payloads = payloads
            .iter()
            .map(|v| match v {
                Value::BulkString(b) => Ok(Bytes::copy_from_slice(b)),
                other => Err(self.malformed(format_args!("a payload is {other:?}"))),
            })
            .collect::<Result<_, _>>()?;
        Ok(Superseded {
            payloads,
            dropped: u32::try_from(dropped).unwrap_or(u32::MAX),
        })
    }

    fn handover(&self, rest: &[Value]) -> Result<Handover, Fault> {
        let items = match rest {
            [] | [Value::Nil] | [Value::Boolean(false)] => return Ok(Handover::Nobody),
            [Value::Array(items)] => items.as_slice(),
            _ => return Err(self.malformed(format_args!("the handover is not false or an array"))),
        };
        let token = |v: &Value| match v {
            Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
            _ => None,
        };
        match items {
            [t] => match token(t) {
                Some(token) => Ok(Handover::Woke { token }),
                None => Err(self.malformed(format_args!("the woken token is {t:?}"))),
            },
            [t, fence, expires, data @ ..] => match token(t) {
                Some(token) => Ok(Handover::Handed(LockGrant {
                    token,
                    fence: self.uint(fence, "the handed fencing token")?,
                    lease_expires_ms: self.int(expires, "the handed lease's end")?,
                    session: session(data)?,
                    superseded: Superseded::default(),
                    replayed: false,
                })),
                None => Err(self.malformed(format_args!("the handed token is {t:?}"))),
            },
            _ => Err(self.malformed(format_args!("the handover has {} elements", items.len()))),
        }
    }
}

/// The bytes of a string reply.
fn text(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

mod operate;
mod watch;
pub use operate::{ForceReply, force_unlock, inspect};
pub use watch::{watch_begin, watch_read};

#[cfg(test)]
mod tests;

#[cfg(test)]
pub(super) mod props;
