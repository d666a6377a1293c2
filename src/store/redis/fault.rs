//! What can go wrong between sessiond and Redis, apart from the refusals the
//! scripts answer with (those are outcomes, in `wire`).
//!
//! A connection, timeout or pool fault means the store is unavailable, and
//! the call's outcome is unknown (a timeout may come after the script ran:
//! the proto's retry table says which calls a client may repeat); a protocol
//! fault means a script and its parser in
//! `wire` disagree, a bug on our side. `From<Fault> for Error` is the one
//! place that tells them apart.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use crate::error::Error;

#[derive(Debug, thiserror::Error)]
pub enum Fault {
    /// Redis answered with an error, or the connection failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),

    /// No answer within the configured Redis timeout.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),

    /// The pool could not open or check a connection.
    #[error("redis: {0}")]
    Pool(#[from] deadpool_redis::PoolError),

    /// The sentinels named no master that answers as one (a failover is
    /// under way, or none of them could be reached).
    #[error("redis sentinel: {0}")]
    NoMaster(String),

    /// The script ran but the durability wait did not confirm it (sessiond's
    /// own words, from `Wait::judge`: they say it may have been applied).
    #[error("{0}")]
    NotDurable(String),

    /// A script's reply does not have the shape its header promises.
    #[error("{0}")]
    Protocol(String),
}

impl Fault {
    /// A fault of the connection (not of the protocol), which the store
    /// counts against its health.
    pub(super) fn is_unavailable(&self) -> bool {
        !matches!(self, Fault::Protocol(_))
    }
}

impl Fault {
    /// What a caller is told: the kind of fault, never Redis's own words
    /// (they can name keys, scripts, memory limits or the server's setup).
    fn public(&self) -> String {
        match self {
            Fault::Redis(e) if e.is_io_error() || e.is_connection_dropped() => {
                "the connection to Redis failed".to_owned()
            }
            Fault::Redis(e) if e.code().is_some() => "Redis refused the command".to_owned(),
            Fault::Redis(_) => "Redis could not be used".to_owned(),
            Fault::Pool(_) => "no connection to Redis could be opened".to_owned(),
            Fault::NoMaster(_) => "Redis Sentinel named no reachable master".to_owned(),
            Fault::NotDurable(why) => why.clone(),
            Fault::Timeout(_) => self.to_string(),
            Fault::Protocol(_) => "a store reply was not understood".to_owned(),
        }
    }
}

impl From<Fault> for Error {
    /// The caller gets [`Fault::public`]; the whole fault goes to the log,
    /// at most one line a second (an outage fails every call the same way,
    /// and each failed call has its own line with its request id).
    fn from(fault: Fault) -> Error {
        if fault.is_unavailable() {
            if LOGGED.due() {
                tracing::warn!(error = %fault, "Redis call failed");
            }
            Error::StoreUnavailable(fault.public())
        } else {
            tracing::error!(error = %fault, "Redis reply not understood");
            Error::Internal(fault.public())
        }
    }
}

/// The last time a Redis fault was logged, in ms since the process started.
static LOGGED: Throttle = Throttle::new(1000);

/// Lets a log line through at most once per `every_ms`.
struct Throttle {
    every_ms: u64,
    last_ms: AtomicU64,
}

impl Throttle {
    const fn new(every_ms: u64) -> Throttle {
        Throttle {
            every_ms,
            last_ms: AtomicU64::new(0),
        }
    }

    fn due(&self) -> bool {
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        let now = START.get_or_init(Instant::now).elapsed().as_millis() as u64 + self.every_ms;
        let last = self.last_ms.load(Relaxed);
        now >= last + self.every_ms
            && self
                .last_ms
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_faults_are_unavailable_and_protocol_faults_internal() {
        let timeout = Error::from(Fault::Timeout(Duration::from_millis(500)));
        assert!(
            matches!(&timeout, Error::StoreUnavailable(m) if m == "redis did not answer within 500ms"),
            "{timeout:?}"
        );
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        let dropped = Error::from(Fault::from(redis::RedisError::from(io)));
        assert!(
            matches!(&dropped, Error::StoreUnavailable(m) if m == "the connection to Redis failed"),
            "{dropped:?}"
        );
        let protocol = Error::from(Fault::Protocol("lock script answered NOPE".into()));
        assert!(
            matches!(&protocol, Error::Internal(m) if m == "a store reply was not understood"),
            "{protocol:?}"
        );
    }

    #[test]
    fn redis_words_stay_out_of_the_callers_message() {
        let reply = b"-OOM command not allowed when used memory > 'maxmemory'\r\n";
        let Ok(redis::Value::ServerError(oom)) = redis::parse_redis_value(reply) else {
            panic!("a server error parses as one");
        };
        let oom = redis::RedisError::from(oom);
        let err = Error::from(Fault::from(oom));
        assert!(
            matches!(&err, Error::StoreUnavailable(m) if m == "Redis refused the command"),
            "{err:?}"
        );
    }

    #[test]
    fn the_throttle_lets_one_line_through_per_period() {
        let t = Throttle::new(60_000);
        assert!(t.due());
        assert!(!t.due());
    }
}
