//! Turn policies of LockSession: how a waiter takes its turn (FIFO, or as
//! the newest of the session's *burst*: LATEST_WINS, DEBOUNCE), the payload
//! it attaches to its wait, and the bounded chain of payloads a grant
//! carries from the waiters it superseded. The stores apply the rules (the
//! embedded lock table, redis/lock.lua); this is what both share.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;

use super::Limits;
use crate::error::{Error, InvalidReason, Result};

/// The longest quiet period a DEBOUNCE waiter may ask for.
pub const MAX_DEBOUNCE: Duration = Duration::from_secs(60);

/// How many of the largest payloads one grant can carry: the chain is
/// bounded by this many times `--max-turn-payload-bytes`.
pub const CHAIN_PAYLOADS: u64 = 16;

/// How a waiter takes its turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TurnPolicy {
    /// Queued behind everyone; never superseded.
    #[default]
    Fifo,
    /// Supersedes the burst's older waiter; granted as soon as it is first
    /// in line and the lock is free.
    LatestWins,
    /// As `LatestWins`, and granted only after this long without a newer
    /// waiter.
    Debounce(Duration),
}

/// A LockSession's turn: its policy and the payload it attaches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Turn {
    pub policy: TurnPolicy,
    pub payload: Bytes,
}

impl Turn {
    /// Whether the waiter joins its session's burst.
    pub fn joins_burst(&self) -> bool {
        self.policy != TurnPolicy::Fifo
    }

    /// The quiet period (zero but for DEBOUNCE).
    pub fn debounce(&self) -> Duration {
        match self.policy {
            TurnPolicy::Debounce(d) => d,
            _ => Duration::ZERO,
        }
    }
}

impl Limits {
    /// Validates a LockSession's policy (as the proto's enum number),
    /// quiet period and payload against its wait (zero: try once). Cheap
    /// checks first; the payload's length before anything reads it.
    pub fn turn(
        &self,
        policy: i32,
        debounce_ms: u32,
        payload: Bytes,
        wait: Duration,
    ) -> Result<Turn> {
        let bad_policy = |why: String| Error::invalid(InvalidReason::TurnPolicy, why);
        let policy = match policy {
            0 => TurnPolicy::Fifo,
            1 => TurnPolicy::LatestWins,
            2 => TurnPolicy::Debounce(Duration::from_millis(debounce_ms.into())),
            other => {
                return Err(bad_policy(format!(
                    "policy {other} is unknown: use FIFO (0), LATEST_WINS (1) or DEBOUNCE (2)"
                )));
            }
        };
        if payload.len() as u64 > self.max_turn_payload_bytes {
            return Err(Error::LimitExceeded {
                limit: "max_turn_payload_bytes",
                message: format!(
                    "payload is {} bytes; max_turn_payload_bytes is {}",
                    payload.len(),
                    self.max_turn_payload_bytes
                ),
            });
        }
        match policy {
            TurnPolicy::Fifo if !payload.is_empty() => {
                return Err(bad_policy(
                    "a payload needs policy LATEST_WINS or DEBOUNCE: a FIFO waiter is never superseded, so nobody would receive it".into(),
                ));
            }
            TurnPolicy::Debounce(_) => {}
            _ if debounce_ms != 0 => {
                return Err(Error::invalid(
                    InvalidReason::Debounce,
                    "debounce_ms needs policy DEBOUNCE: leave it 0 with another policy",
                ));
            }
            _ => {}
        }
        if policy != TurnPolicy::Fifo && wait.is_zero() {
            return Err(bad_policy(
                "LATEST_WINS and DEBOUNCE need wait_ms > 0: a try-once never queues, so it cannot take a burst's turn".into(),
            ));
        }
        if let TurnPolicy::Debounce(d) = policy
            && (d.is_zero() || d > MAX_DEBOUNCE || d >= wait)
        {
            return Err(Error::invalid(
                InvalidReason::Debounce,
                format!(
                    "debounce_ms {debounce_ms} is out of bounds: use 1..={} ms, below wait_ms ({} ms)",
                    MAX_DEBOUNCE.as_millis(),
                    wait.as_millis()
                ),
            ));
        }
        Ok(Turn { policy, payload })
    }

    /// The most bytes of payloads one grant carries.
    pub fn max_turn_chain_bytes(&self) -> u64 {
        self.max_turn_payload_bytes.saturating_mul(CHAIN_PAYLOADS)
    }
}

/// The payloads a burst's waiter carries from the waiters it superseded,
/// oldest first, within a bound on their total size: the oldest go first,
/// counted in `dropped`. (redis/lock.lua keeps the same chain in the
/// waiters hash.)
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chain {
    pub payloads: VecDeque<Bytes>,
    pub bytes: u64,
    pub dropped: u32,
}

impl Chain {
    /// Appends `payload`, dropping the oldest payloads until the chain is
    /// within `max` bytes.
    pub fn push(&mut self, payload: Bytes, max: u64) {
        self.bytes += payload.len() as u64;
        self.payloads.push_back(payload);
        while self.bytes > max {
            match self.payloads.pop_front() {
                Some(p) => {
                    self.bytes -= p.len() as u64;
                    self.dropped = self.dropped.saturating_add(1);
                }
                None => break,
            }
        }
    }
}

/// What a grant carries from the burst it ends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Superseded {
    /// The superseded waiters' payloads, oldest first.
    pub payloads: Vec<Bytes>,
    /// How many older ones were left out (see [`Chain::push`]).
    pub dropped: u32,
}

impl From<Chain> for Superseded {
    fn from(c: Chain) -> Superseded {
        Superseded {
            payloads: c.payloads.into(),
            dropped: c.dropped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        let mut l = crate::config::Settings::new(crate::config::Config::defaults())
            .unwrap()
            .limits;
        l.max_turn_payload_bytes = 8;
        l
    }

    fn reason(r: Result<Turn>) -> String {
        match r {
            Err(Error::InvalidArgument { reason, .. }) => format!("{reason:?}"),
            Err(Error::LimitExceeded { limit, .. }) => limit.to_owned(),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn policies_are_checked_against_the_wait_and_the_payload() {
        let l = limits();
        let s = Duration::from_secs(1);
        let p = Bytes::from_static(b"hi");
        assert_eq!(
            l.turn(0, 0, Bytes::new(), Duration::ZERO).unwrap(),
            Turn::default()
        );
        let t = l.turn(2, 200, p.clone(), s).unwrap();
        assert_eq!(t.debounce(), Duration::from_millis(200));
        assert!(t.joins_burst());
        assert_eq!(reason(l.turn(3, 0, Bytes::new(), s)), "TurnPolicy");
        assert_eq!(reason(l.turn(-1, 0, Bytes::new(), s)), "TurnPolicy");
        assert_eq!(
            reason(l.turn(1, 0, p.clone(), Duration::ZERO)),
            "TurnPolicy"
        );
        assert_eq!(reason(l.turn(0, 0, p.clone(), s)), "TurnPolicy");
        assert_eq!(reason(l.turn(1, 5, p.clone(), s)), "Debounce");
        assert_eq!(reason(l.turn(2, 0, p.clone(), s)), "Debounce");
        assert_eq!(reason(l.turn(2, 1000, p.clone(), s)), "Debounce");
        assert_eq!(
            reason(l.turn(2, 60_001, p.clone(), Duration::from_secs(120))),
            "Debounce"
        );
        assert_eq!(
            reason(l.turn(1, 0, Bytes::from_static(b"123456789"), s)),
            "max_turn_payload_bytes"
        );
    }

    #[test]
    fn chains_drop_their_oldest_payloads_first() {
        let mut c = Chain::default();
        for p in ["aaa", "bb", "cccc", "d"] {
            c.push(Bytes::from(p), 7);
        }
        assert_eq!(c.payloads, ["bb", "cccc", "d"].map(Bytes::from));
        assert_eq!((c.bytes, c.dropped), (7, 1));
        c.push(Bytes::from("eeeeeee"), 7);
        assert_eq!(c.payloads, ["eeeeeee"].map(Bytes::from));
        assert_eq!((c.bytes, c.dropped), (7, 4));
    }
}
