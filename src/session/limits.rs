//! `Limits`: the bounds a configuration sets on leases, waits and
//! sessions, and the checks of a mutation against them.

use std::collections::HashSet;
use std::time::Duration;

use super::{MAX_ID_BYTES, Mutation, OpKind, check_name, printable};
use crate::error::{Error, InvalidReason, Result};

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
    /// Per-namespace quotas, decided by the store (off by default).
    pub quotas: super::Quotas,
    /// How long a write's idempotency key is remembered.
    pub idempotency_window: Duration,
    /// The rate (per second) and burst of a rate limit whose check gives
    /// none (`--rate-limit-default-per-second`, `--rate-limit-default-burst`).
    pub rate_default: (f64, u64),
    /// The largest payload a LockSession may attach to its wait
    /// (`--max-turn-payload-bytes`).
    pub max_turn_payload_bytes: u64,
}

impl Limits {
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

    /// Validates what can be checked without the stored state: counts,
    /// sizes, names, and the limits the mutation alone already exceeds.
    ///
    /// Every check costs O(size of the request), the cheapest first: the
    /// counts, then the sizes, then one pass over the names, and the overlap
    /// of sets and deletes through a hash set. A request of a million names
    /// is refused on its count before any name is looked at.
    pub fn check_mutation(&self, m: &Mutation) -> Result<()> {
        // Every name set or operated on is a field afterwards (names are
        // distinct, checked below), so together they are at most max_fields.
        let named = m.set.len().saturating_add(m.ops.len());
        if named > self.max_fields {
            return Err(self.too_many_fields(named));
        }
        // A session never holds more than max_fields fields, so deleting
        // more names than that can never be useful (duplicates included).
        if m.delete.len() > self.max_fields {
            return Err(Error::LimitExceeded {
                limit: "max_fields",
                message: format!(
                    "delete_fields names {} fields; a session has at most max_fields {}",
                    m.delete.len(),
                    self.max_fields
                ),
            });
        }
        let set_bytes: u64 = m.set.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum();
        let op_bytes: u64 = m
            .ops
            .iter()
            .map(|op| (op.field.len() + op.value_len()) as u64)
            .sum();
        if set_bytes + op_bytes > self.max_session_bytes {
            return Err(self.too_large(set_bytes + op_bytes));
        }
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
        }
        self.check_ops(m)?;
        if !m.delete.is_empty() && !m.set.is_empty() {
            let deleted: HashSet<&str> = m.delete.iter().map(String::as_str).collect();
            if let Some((name, _)) = m.set.iter().find(|(n, _)| deleted.contains(n.as_str())) {
                return Err(Error::invalid(
                    InvalidReason::Field,
                    format!(
                        "field `{}` is both set and deleted; pick one",
                        printable(name)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The names, values and arguments of the field operations, and that
    /// each names a field no other part of the mutation names. O(ops +
    /// sets + deletes) through a hash set.
    fn check_ops(&self, m: &Mutation) -> Result<()> {
        if m.ops.is_empty() {
            return Ok(());
        }
        let mut named: HashSet<&str> = HashSet::with_capacity(m.ops.len());
        for op in &m.ops {
            check_field_name(&op.field)?;
            if op.value_len() as u64 > self.max_field_bytes {
                return Err(Error::LimitExceeded {
                    limit: "max_field_bytes",
                    message: format!(
                        "the value of the op on field `{}` is {} bytes; max_field_bytes is {}",
                        printable(&op.field),
                        op.value_len(),
                        self.max_field_bytes
                    ),
                });
            }
            if let OpKind::Append { keep_last: 0, .. } = op.kind {
                return Err(Error::invalid(
                    InvalidReason::FieldOp,
                    format!(
                        "the append to field `{}` has keep_last 0; keep at least 1 entry",
                        printable(&op.field)
                    ),
                ));
            }
            if !named.insert(&op.field) {
                return Err(Error::invalid(
                    InvalidReason::Field,
                    format!(
                        "field `{}` has more than one op; send one",
                        printable(&op.field)
                    ),
                ));
            }
        }
        let elsewhere = m.set.iter().map(|(n, _)| n).chain(&m.delete);
        if let Some(name) = elsewhere.into_iter().find(|n| named.contains(n.as_str())) {
            return Err(Error::invalid(
                InvalidReason::Field,
                format!(
                    "field `{}` is both in ops and set or deleted; pick one",
                    printable(name)
                ),
            ));
        }
        Ok(())
    }

    /// The largest request message a call within these limits can need, the
    /// decoding limit of SessionService: an UpdateSession that sets
    /// `max_session_bytes` of names and values in `max_fields` fields and
    /// deletes `max_fields` names of the longest length, plus its id, token
    /// and flags. So `max_session_bytes + max_fields * (256 + 32) + 4 KiB`:
    /// per field, a deleted name of at most 256 bytes with its tag and
    /// length (259 bytes) and the framing of a set entry (at most 15), with
    /// room to spare; 4 KiB covers the id, the token and the scalars. With
    /// the defaults, 1 MiB + 72 KiB + 4 KiB = 1,126,400 bytes.
    pub fn max_request_bytes(&self) -> usize {
        const PER_FIELD: u64 = MAX_ID_BYTES as u64 + 32;
        const FIXED: u64 = 4096;
        let bytes = (self.max_fields as u64)
            .saturating_mul(PER_FIELD)
            .saturating_add(self.max_session_bytes)
            .saturating_add(FIXED);
        usize::try_from(bytes).unwrap_or(usize::MAX)
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

    /// A field that would hold `len` bytes (an append's list, checked in
    /// the store's step).
    pub fn field_too_long(&self, name: &str, len: u64) -> Error {
        Error::LimitExceeded {
            limit: "max_field_bytes",
            message: format!(
                "field `{}` would hold {len} bytes; max_field_bytes is {}: keep fewer entries",
                printable(name),
                self.max_field_bytes
            ),
        }
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

#[cfg(test)]
mod tests;

#[cfg(test)]
mod props;
