//! What can go wrong between sessiond and Redis, apart from the refusals the
//! scripts answer with (those are outcomes, in `wire`).
//!
//! A connection, timeout or pool fault means the store is unavailable, and
//! the call's outcome is unknown (a timeout may come after the script ran:
//! the proto's retry table says which calls a client may repeat); a protocol
//! fault means a script and its parser in
//! `wire` disagree, a bug on our side. `From<Fault> for Error` is the one
//! place that tells them apart.

use std::time::Duration;

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

impl From<Fault> for Error {
    fn from(fault: Fault) -> Error {
        if fault.is_unavailable() {
            Error::StoreUnavailable(fault.to_string())
        } else {
            Error::Internal(fault.to_string())
        }
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
            matches!(&dropped, Error::StoreUnavailable(m) if m.starts_with("redis: ")),
            "{dropped:?}"
        );
        let protocol = Error::from(Fault::Protocol("lock script answered NOPE".into()));
        assert!(
            matches!(&protocol, Error::Internal(m) if m == "lock script answered NOPE"),
            "{protocol:?}"
        );
    }
}
