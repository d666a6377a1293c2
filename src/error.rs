//! The errors of sessiond's semantics, and their one translation to gRPC.
//!
//! Every layer below the gRPC edge returns [`Error`]; `impl From<Error> for
//! Status` is the only place that picks a status code and an ErrorInfo reason,
//! so the table in the proto header and CONTRACT.md is enforced here alone.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The ErrorInfo domain of every error sessiond returns.
pub const DOMAIN: &str = "sessiond";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request argument is malformed or out of bounds.
    #[error("{message}")]
    InvalidArgument {
        reason: InvalidReason,
        message: String,
    },

    /// A configured limit would be exceeded; nothing was written.
    #[error("{message}")]
    LimitExceeded {
        limit: &'static str,
        message: String,
    },

    #[error("session not found")]
    NotFound,

    #[error(
        "expected version {expected} but the session is at version {current} (0 = it does not exist)"
    )]
    VersionMismatch { expected: u64, current: u64 },

    #[error("the session is locked by another holder; lock it first or pass its lock token")]
    LockHeld,

    #[error(
        "the lock token does not hold the lock (the lease expired or was released); lock again"
    )]
    LockLost,

    #[error("waited {waited_ms} ms for the lock without getting it")]
    LockWaitTimeout { waited_ms: u64 },

    #[error("{0}")]
    Unauthenticated(String),

    #[error("{0}")]
    PermissionDenied(String),

    #[error("the server is overloaded; retry with backoff")]
    Overloaded,

    #[error("the store is unavailable: {0}; safe to retry")]
    StoreUnavailable(String),

    #[error("the server is shutting down; retry on another instance")]
    ShuttingDown,

    /// A bug or a corrupt store: never the caller's fault.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The ErrorInfo reasons of INVALID_ARGUMENT, other than LIMIT_EXCEEDED.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidReason {
    SessionId,
    Field,
    Lease,
    Wait,
    LockToken,
}

impl InvalidReason {
    fn as_str(self) -> &'static str {
        match self {
            InvalidReason::SessionId => "INVALID_SESSION_ID",
            InvalidReason::Field => "INVALID_FIELD",
            InvalidReason::Lease => "INVALID_LEASE",
            InvalidReason::Wait => "INVALID_WAIT",
            InvalidReason::LockToken => "INVALID_LOCK_TOKEN",
        }
    }
}

impl Error {
    pub fn invalid(reason: InvalidReason, message: impl Into<String>) -> Error {
        Error::InvalidArgument {
            reason,
            message: message.into(),
        }
    }

    /// The gRPC code and ErrorInfo reason, as the contract's table has them.
    pub fn code_and_reason(&self) -> (Code, &'static str) {
        match self {
            Error::InvalidArgument { reason, .. } => (Code::InvalidArgument, reason.as_str()),
            Error::LimitExceeded { .. } => (Code::InvalidArgument, "LIMIT_EXCEEDED"),
            Error::NotFound => (Code::NotFound, "SESSION_NOT_FOUND"),
            Error::VersionMismatch { .. } => (Code::Aborted, "VERSION_MISMATCH"),
            Error::LockHeld => (Code::FailedPrecondition, "LOCK_HELD"),
            Error::LockLost => (Code::FailedPrecondition, "LOCK_LOST"),
            Error::LockWaitTimeout { .. } => (Code::DeadlineExceeded, "LOCK_WAIT_TIMEOUT"),
            Error::Unauthenticated(_) => (Code::Unauthenticated, "UNAUTHENTICATED"),
            Error::PermissionDenied(_) => (Code::PermissionDenied, "NAMESPACE_DENIED"),
            Error::Overloaded => (Code::ResourceExhausted, "OVERLOADED"),
            Error::StoreUnavailable(_) => (Code::Unavailable, "STORE_UNAVAILABLE"),
            Error::ShuttingDown => (Code::Unavailable, "SHUTTING_DOWN"),
            Error::Internal(_) => (Code::Internal, "INTERNAL"),
        }
    }

    fn metadata(&self) -> HashMap<String, String> {
        let mut m = HashMap::new();
        match self {
            Error::LimitExceeded { limit, .. } => {
                m.insert("limit".to_owned(), (*limit).to_owned());
            }
            Error::VersionMismatch { expected, current } => {
                m.insert("expected_version".to_owned(), expected.to_string());
                m.insert("current_version".to_owned(), current.to_string());
            }
            _ => {}
        }
        m
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Status {
        let (code, reason) = err.code_and_reason();
        let details = ErrorDetails::with_error_info(reason, DOMAIN, err.metadata());
        Status::with_error_details(code, err.to_string(), details)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_carries_code_reason_and_metadata() {
        let status = Status::from(Error::VersionMismatch {
            expected: 3,
            current: 5,
        });
        assert_eq!(status.code(), Code::Aborted);
        let info = status.get_details_error_info().expect("ErrorInfo attached");
        assert_eq!(info.reason, "VERSION_MISMATCH");
        assert_eq!(info.domain, DOMAIN);
        assert_eq!(info.metadata["current_version"], "5");
    }
}
