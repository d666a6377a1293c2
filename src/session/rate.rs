//! Rate limits: the generic cell rate algorithm (GCRA), as the embedded store
//! applies it and `redis/rate.lua` mirrors it.
//!
//! A limit admits `per_second` units a second on average and at most `burst`
//! at once after being idle. Its whole state is one number, the theoretical
//! arrival time (TAT, µs): the time at which the limit would be back to a
//! full burst. With `interval` = 1 s / `per_second` and `tolerance` =
//! `interval` × `burst`, a call of `cost` units at `now` is admitted when
//! `max(TAT, now) + cost × interval - tolerance <= now`, and then moves TAT
//! there; a refusal changes nothing and says when the same call would be
//! admitted. A TAT at or before `now` is the same as none, so the state can
//! go (expire, be swept) once its TAT passes. All arithmetic is on integers
//! of microseconds, exact in a Lua number (a double) as long as TAT stays
//! below 2^53 µs (the year 2255) and `tolerance` is bounded (a year).

use std::sync::Arc;

use crate::error::{Error, InvalidReason, Result};
use crate::session::SessionKey;

/// The longest a limit may take to refill from empty: one year, in µs.
pub const MAX_TOLERANCE_US: u64 = 365 * 24 * 3600 * 1_000_000;
/// The most units a call may ask for, and the largest burst.
pub const MAX_BURST: u64 = 1_000_000_000;
/// The highest rate: one unit a microsecond.
pub const MAX_PER_SECOND: f64 = 1_000_000.0;
/// The name of a limit a call does not name.
pub const DEFAULT_NAME: &str = "default";

/// Whose calls a limit counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateScope {
    /// One session's.
    Session(SessionKey),
    /// A whole namespace's, whichever sessions they are about.
    Namespace(Arc<str>),
}

/// One check of a limit, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    pub name: Box<str>,
    /// 1 s / rate, in µs (at least 1).
    pub interval_us: u64,
    pub burst: u64,
    /// Units this call takes (1..=burst).
    pub cost: u64,
}

/// An admitted call: units still available at once, and when the limit is
/// back to a full burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    pub remaining: u64,
    pub reset_after_us: u64,
}

/// What the algorithm decides for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gcra {
    /// Admitted: store `tat` (µs) until it passes.
    Admit { tat: i64, admitted: Admitted },
    /// Refused: nothing changes; the same call is admitted after
    /// `retry_after_us`.
    Refuse { retry_after_us: u64, remaining: u64 },
}

impl RateLimit {
    /// Validates a request's arguments; `None` takes the configured default.
    /// `cost` 0 means 1.
    pub fn new(
        name: &str,
        per_second: Option<f64>,
        burst: Option<u64>,
        cost: u64,
        defaults: (f64, u64),
    ) -> Result<RateLimit> {
        let name = if name.is_empty() { DEFAULT_NAME } else { name };
        super::check_name(name).map_err(|why| bad(format!("limit name {why}")))?;
        let per_second = per_second.unwrap_or(defaults.0);
        let burst = burst.unwrap_or(defaults.1);
        let cost = cost.max(1);
        let (interval_us, burst) = check_rate(per_second, burst).map_err(bad)?;
        if cost > burst {
            return Err(bad(format!(
                "cost {cost} is above the burst of {burst}: such a call could never be admitted"
            )));
        }
        Ok(RateLimit {
            name: name.into(),
            interval_us,
            burst,
            cost,
        })
    }

    /// The tolerance: how long the limit takes to refill from empty (µs).
    pub fn tolerance_us(&self) -> u64 {
        self.interval_us.saturating_mul(self.burst)
    }

    /// GCRA for a call at `now_us`, given the stored TAT (`None`: none).
    pub fn decide(&self, stored: Option<i64>, now_us: i64) -> Gcra {
        let interval = self.interval_us as i64;
        let tolerance = self.tolerance_us() as i64;
        let tat = stored.unwrap_or(now_us).max(now_us);
        let new = tat + self.cost as i64 * interval;
        let allow_at = new - tolerance;
        if allow_at > now_us {
            return Gcra::Refuse {
                retry_after_us: (allow_at - now_us) as u64,
                remaining: ((tolerance - (tat - now_us)) / interval).max(0) as u64,
            };
        }
        Gcra::Admit {
            tat: new,
            admitted: Admitted {
                remaining: ((tolerance - (new - now_us)) / interval).max(0) as u64,
                reset_after_us: (new - now_us) as u64,
            },
        }
    }

    /// The refusal of this limit (RESOURCE_EXHAUSTED / RATE_LIMITED).
    pub fn refused(&self, retry_after_us: u64) -> Error {
        Error::RateLimited {
            name: self.name.to_string(),
            retry_after_ms: retry_after_us.div_ceil(1000),
        }
    }
}

/// The interval (µs) of a rate and its burst, or why they do not make a
/// limit (also `Settings`' check of the defaults).
pub fn check_rate(per_second: f64, burst: u64) -> std::result::Result<(u64, u64), String> {
    if !per_second.is_finite() || per_second <= 0.0 {
        return Err(format!(
            "per_second must be a number above 0 (got {per_second})"
        ));
    }
    if per_second > MAX_PER_SECOND {
        return Err(format!(
            "per_second {per_second} is above the highest rate, {MAX_PER_SECOND} a second"
        ));
    }
    if burst == 0 || burst > MAX_BURST {
        return Err(format!("burst must be 1..={MAX_BURST} (got {burst})"));
    }
    // At most 1e6 / f64::MIN_POSITIVE: rounded into u64 it saturates, and
    // the tolerance check below refuses it.
    let interval_us = ((1_000_000.0 / per_second).round() as u64).max(1);
    if interval_us.saturating_mul(burst) > MAX_TOLERANCE_US {
        return Err(format!(
            "a burst of {burst} at {per_second} a second takes more than a year to refill"
        ));
    }
    Ok((interval_us, burst))
}

fn bad(message: String) -> Error {
    Error::invalid(InvalidReason::RateLimit, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(per_second: f64, burst: u64, cost: u64) -> RateLimit {
        RateLimit::new("x", Some(per_second), Some(burst), cost, (1.0, 1)).expect("valid")
    }

    #[test]
    fn a_burst_is_admitted_then_refused_until_one_interval_passes() {
        let l = limit(10.0, 3, 1);
        let mut tat = None;
        let now = 1_000_000_000;
        for left in [2, 1, 0] {
            match l.decide(tat, now) {
                Gcra::Admit { tat: t, admitted } => {
                    assert_eq!(admitted.remaining, left);
                    tat = Some(t);
                }
                other => panic!("refused: {other:?}"),
            }
        }
        assert_eq!(
            l.decide(tat, now),
            Gcra::Refuse {
                retry_after_us: 100_000,
                remaining: 0
            }
        );
        assert!(matches!(l.decide(tat, now + 99_999), Gcra::Refuse { .. }));
        assert!(matches!(l.decide(tat, now + 100_000), Gcra::Admit { .. }));
        // Idle long enough, the burst is whole again.
        match l.decide(tat, now + 10_000_000) {
            Gcra::Admit { admitted, .. } => assert_eq!(admitted.remaining, 2),
            other => panic!("refused: {other:?}"),
        }
    }

    #[test]
    fn a_cost_takes_that_many_units() {
        let l = limit(1.0, 5, 4);
        let Gcra::Admit { tat, admitted } = l.decide(None, 0) else {
            panic!("refused")
        };
        assert_eq!(
            (admitted.remaining, admitted.reset_after_us),
            (1, 4_000_000)
        );
        assert_eq!(
            l.decide(Some(tat), 0),
            Gcra::Refuse {
                retry_after_us: 3_000_000,
                remaining: 1
            }
        );
    }

    #[test]
    fn bad_arguments_are_refused_with_a_reason() {
        let reason = |r: Result<RateLimit>| match r {
            Err(Error::InvalidArgument { reason, .. }) => Some(reason),
            _ => None,
        };
        let d = (1.0, 1);
        for per_second in [0.0, -1.0, f64::NAN, f64::INFINITY, 2e6, 1e-300] {
            let r = RateLimit::new("x", Some(per_second), Some(1), 1, d);
            assert_eq!(reason(r), Some(InvalidReason::RateLimit), "{per_second}");
        }
        for burst in [0, MAX_BURST + 1] {
            let r = RateLimit::new("x", Some(1.0), Some(burst), 1, d);
            assert_eq!(reason(r), Some(InvalidReason::RateLimit), "{burst}");
        }
        let r = RateLimit::new("x", Some(1.0), Some(2), 3, d);
        assert_eq!(reason(r), Some(InvalidReason::RateLimit));
        let r = RateLimit::new("a\u{7}", None, None, 1, d);
        assert_eq!(reason(r), Some(InvalidReason::RateLimit));
        let l = RateLimit::new("", None, None, 0, (4.0, 2)).expect("defaults");
        assert_eq!(
            (&*l.name, l.interval_us, l.burst, l.cost),
            ("default", 250_000, 2, 1)
        );
    }
}
