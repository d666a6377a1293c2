//! Per-namespace quotas: how many sessions a namespace may store and how
//! many bytes (a session's size as `--max-session-bytes` counts it: the sum
//! of its field names and values). The store keeps each namespace's usage
//! and decides a write against it in the write's own atomic step; the rule
//! is here, once, so both backends apply the same one (the Redis scripts
//! mirror it in `prelude.lua`'s `quota_check`).

use crate::error::Error;

/// The quotas set by the configuration; 0 turns one off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quotas {
    /// `--max-sessions-per-namespace`.
    pub max_sessions: u64,
    /// `--max-bytes-per-namespace`.
    pub max_bytes: u64,
}

/// Which quota refused a write: its name in ErrorInfo metadata (`quota`)
/// and in the `sessiond_quota_refusals_total{quota}` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quota {
    Sessions,
    Bytes,
}

impl Quota {
    pub const ALL: [Quota; 2] = [Quota::Sessions, Quota::Bytes];

    pub fn name(self) -> &'static str {
        match self {
            Quota::Sessions => "sessions",
            Quota::Bytes => "bytes",
        }
    }

    /// The flag that sets it, for messages.
    pub fn flag(self) -> &'static str {
        match self {
            Quota::Sessions => "--max-sessions-per-namespace",
            Quota::Bytes => "--max-bytes-per-namespace",
        }
    }
}

/// What one namespace stores: its sessions and their bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub sessions: u64,
    pub bytes: u64,
}

impl Usage {
    /// The usage once a session of `old` bytes (`None`: not counted) is
    /// gone.
    pub fn without(self, old: Option<u64>) -> Usage {
        match old {
            Some(size) => Usage {
                sessions: self.sessions.saturating_sub(1),
                bytes: self.bytes.saturating_sub(size),
            },
            None => self,
        }
    }

    /// The usage once a session of `size` bytes is counted.
    pub fn with(self, size: u64) -> Usage {
        Usage {
            sessions: self.sessions.saturating_add(1),
            bytes: self.bytes.saturating_add(size),
        }
    }
}

impl Quotas {
    /// Whether any quota is set. When none is, the stores keep no usage
    /// and their write steps do no quota work at all.
    pub fn is_on(&self) -> bool {
        self.max_sessions > 0 || self.max_bytes > 0
    }

    /// Decides a write that turns a counted session of `old` bytes
    /// (`None`: the namespace does not count it yet) into one of `new`
    /// bytes, in a namespace using `usage`: the usage after it, or the
    /// refusal. A write that does not grow a count always passes, so a
    /// namespace at (or, after a quota was lowered, above) its quota can
    /// still shrink and clean up.
    pub fn admit(&self, usage: Usage, old: Option<u64>, new: u64) -> Result<Usage, Error> {
        let after = usage.without(old).with(new);
        if self.max_sessions > 0
            && after.sessions > usage.sessions
            && after.sessions > self.max_sessions
        {
            return Err(self.exceeded(Quota::Sessions, usage));
        }
        if self.max_bytes > 0 && after.bytes > usage.bytes && after.bytes > self.max_bytes {
            return Err(self.exceeded(Quota::Bytes, usage));
        }
        Ok(after)
    }

    /// The refusal of `quota`, with the namespace's usage before the write.
    pub fn exceeded(&self, quota: Quota, usage: Usage) -> Error {
        let (limit, usage) = match quota {
            Quota::Sessions => (self.max_sessions, usage.sessions),
            Quota::Bytes => (self.max_bytes, usage.bytes),
        };
        Error::QuotaExceeded {
            quota,
            limit,
            usage,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(r: Result<Usage, Error>) -> Option<(Quota, u64, u64)> {
        match r {
            Err(Error::QuotaExceeded {
                quota,
                limit,
                usage,
            }) => Some((quota, limit, usage)),
            _ => None,
        }
    }

    #[test]
    fn off_admits_everything() {
        let q = Quotas::default();
        assert!(!q.is_on());
        let big = Usage {
            sessions: u64::MAX,
            bytes: u64::MAX,
        };
        assert!(q.admit(big, None, u64::MAX).is_ok());
    }

    #[test]
    fn a_new_session_beyond_the_count_is_refused() {
        let q = Quotas {
            max_sessions: 2,
            max_bytes: 0,
        };
        let two = Usage {
            sessions: 2,
            bytes: 10,
        };
        assert_eq!(
            refused(q.admit(two, None, 1)),
            Some((Quota::Sessions, 2, 2))
        );
        // Rewriting a counted session, larger or not, creates nothing.
        assert_eq!(
            q.admit(two, Some(5), 50).ok(),
            Some(Usage {
                sessions: 2,
                bytes: 55
            })
        );
    }

    #[test]
    fn bytes_beyond_the_quota_are_refused_but_shrinking_passes() {
        let q = Quotas {
            max_sessions: 0,
            max_bytes: 100,
        };
        let full = Usage {
            sessions: 3,
            bytes: 100,
        };
        assert_eq!(
            refused(q.admit(full, Some(10), 11)),
            Some((Quota::Bytes, 100, 100))
        );
        assert!(q.admit(full, Some(10), 10).is_ok());
        assert!(q.admit(full, Some(10), 0).is_ok());
        // Above the quota (it was lowered): shrinking still passes.
        let over = Usage {
            sessions: 3,
            bytes: 150,
        };
        assert!(q.admit(over, Some(50), 20).is_ok());
        assert!(refused(q.admit(over, None, 0)).is_none());
        assert_eq!(
            refused(q.admit(over, None, 1)),
            Some((Quota::Bytes, 100, 150))
        );
    }

    #[test]
    fn removal_never_underflows() {
        let u = Usage::default().without(Some(5));
        assert_eq!(u, Usage::default());
    }
}
