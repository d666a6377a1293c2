//! `Limits`: the bounds a configuration sets on leases, waits and
//! sessions, and the checks of a mutation against them.

use std::time::Duration;

use super::{Mutation, check_name, printable};
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

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::config::{Config, Settings};

    fn limits() -> Limits {
        Settings::new(Config::defaults()).unwrap().limits
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
}
