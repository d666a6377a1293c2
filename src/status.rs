//! The gRPC edge of [`Error`]: the one place that picks a status code and an
//! ErrorInfo reason for each error, so the table in the proto header
//! (`proto/sessiond/v1/session.proto`) is enforced here alone.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::error::{Error, InvalidReason};

/// The ErrorInfo domain of every error sessiond returns.
pub const DOMAIN: &str = "sessiond";

/// The gRPC code and ErrorInfo reason of an error, as the proto's table has
/// them.
pub fn code_and_reason(err: &Error) -> (Code, &'static str) {
    match err {
        Error::InvalidArgument { reason, .. } => (Code::InvalidArgument, invalid(*reason)),
        Error::FieldRefused { reason, .. } => (Code::InvalidArgument, invalid(*reason)),
        Error::LimitExceeded { .. } => (Code::InvalidArgument, "LIMIT_EXCEEDED"),
        Error::QuotaExceeded { .. } => (Code::ResourceExhausted, "QUOTA_EXCEEDED"),
        Error::NotFound => (Code::NotFound, "SESSION_NOT_FOUND"),
        Error::VersionLost { .. } => (Code::DataLoss, "VERSION_LOST"),
        Error::VersionMismatch { .. } => (Code::Aborted, "VERSION_MISMATCH"),
        Error::LockHeld => (Code::FailedPrecondition, "LOCK_HELD"),
        Error::LockLost => (Code::FailedPrecondition, "LOCK_LOST"),
        Error::Superseded => (Code::Aborted, "SUPERSEDED"),
        Error::LockWaitTimeout { .. } => (Code::DeadlineExceeded, "LOCK_WAIT_TIMEOUT"),
        Error::Unauthenticated(_) => (Code::Unauthenticated, "UNAUTHENTICATED"),
        Error::PermissionDenied(_) => (Code::PermissionDenied, "NAMESPACE_DENIED"),
        Error::AdminDenied(_) => (Code::PermissionDenied, "ADMIN_DENIED"),
        Error::RateLimited { .. } => (Code::ResourceExhausted, "RATE_LIMITED"),
        Error::WatchLagged => (Code::ResourceExhausted, "WATCH_LAGGED"),
        Error::Overloaded | Error::ShareExceeded { .. } => (Code::ResourceExhausted, "OVERLOADED"),
        Error::StoreUnavailable(_) => (Code::Unavailable, "STORE_UNAVAILABLE"),
        Error::ShuttingDown => (Code::Unavailable, "SHUTTING_DOWN"),
        Error::Internal(_) => (Code::Internal, "INTERNAL"),
    }
}

fn invalid(reason: InvalidReason) -> &'static str {
    match reason {
        InvalidReason::SessionId => "INVALID_SESSION_ID",
        InvalidReason::Field => "INVALID_FIELD",
        InvalidReason::Lease => "INVALID_LEASE",
        InvalidReason::Wait => "INVALID_WAIT",
        InvalidReason::LockToken => "INVALID_LOCK_TOKEN",
        InvalidReason::Namespace => "INVALID_NAMESPACE",
        InvalidReason::Request => "MALFORMED_REQUEST",
        InvalidReason::FieldOp => "INVALID_FIELD_OP",
        InvalidReason::FieldNotInteger => "FIELD_NOT_INTEGER",
        InvalidReason::IntegerOverflow => "INTEGER_OVERFLOW",
        InvalidReason::FieldNotList => "FIELD_NOT_LIST",
        InvalidReason::IdempotencyKey => "INVALID_IDEMPOTENCY_KEY",
        InvalidReason::IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
        InvalidReason::PageToken => "INVALID_PAGE_TOKEN",
        InvalidReason::RateLimit => "INVALID_RATE_LIMIT",
        InvalidReason::TurnPolicy => "INVALID_TURN_POLICY",
        InvalidReason::Debounce => "INVALID_DEBOUNCE",
    }
}

/// The ErrorInfo metadata: what a client needs to act on the error.
fn metadata(err: &Error) -> HashMap<String, String> {
    let mut m = HashMap::new();
    match err {
        Error::LimitExceeded { limit, .. } | Error::ShareExceeded { limit } => {
            m.insert("limit".to_owned(), (*limit).to_owned());
        }
        Error::Overloaded => {
            m.insert("limit".to_owned(), "max_concurrent_calls".to_owned());
        }
        Error::QuotaExceeded {
            quota,
            limit,
            usage,
        } => {
            m.insert("quota".to_owned(), quota.name().to_owned());
            m.insert("limit".to_owned(), limit.to_string());
            m.insert("usage".to_owned(), usage.to_string());
        }
        Error::RateLimited {
            name,
            retry_after_ms,
        } => {
            m.insert("limit".to_owned(), name.clone());
            m.insert("retry_after_ms".to_owned(), retry_after_ms.to_string());
        }
        Error::FieldRefused { field, .. } => {
            m.insert("field".to_owned(), field.clone());
        }
        Error::VersionLost { seen, current } => {
            m.insert("min_version".to_owned(), seen.to_string());
            m.insert("current_version".to_owned(), current.to_string());
        }
        Error::VersionMismatch { expected, current } => {
            m.insert("expected_version".to_owned(), expected.to_string());
            m.insert("current_version".to_owned(), current.to_string());
        }
        _ => {}
    }
    m
}

impl From<Error> for Status {
    fn from(err: Error) -> Status {
        let (code, reason) = code_and_reason(&err);
        let mut details = ErrorDetails::with_error_info(reason, DOMAIN, metadata(&err));
        if let Error::RateLimited { retry_after_ms, .. } = &err {
            // The standard detail too, which gRPC libraries and proxies read.
            details.set_retry_info(Some(std::time::Duration::from_millis(*retry_after_ms)));
        }
        Status::with_error_details(code, err.to_string(), details)
    }
}

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
        let status = Status::from(Error::LimitExceeded {
            limit: "max_fields",
            message: "too many".into(),
        });
        let info = status.get_details_error_info().expect("ErrorInfo attached");
        assert_eq!(
            (status.code(), &*info.reason),
            (Code::InvalidArgument, "LIMIT_EXCEEDED")
        );
        assert_eq!(info.metadata["limit"], "max_fields");
    }

    #[test]
    fn invalid_arguments_name_their_reason() {
        let status = Status::from(Error::invalid(InvalidReason::Wait, "too long"));
        let info = status.get_details_error_info().expect("ErrorInfo attached");
        assert_eq!(
            (status.code(), &*info.reason),
            (Code::InvalidArgument, "INVALID_WAIT")
        );
        assert_eq!(status.message(), "too long");
        let status = Status::from(crate::session::OpRefusal::Overflow.error("turns"));
        let info = status.get_details_error_info().expect("ErrorInfo attached");
        assert_eq!(
            (status.code(), &*info.reason),
            (Code::InvalidArgument, "INTEGER_OVERFLOW")
        );
        assert_eq!(info.metadata["field"], "turns");
    }

    #[test]
    fn a_rate_refusal_says_when_to_come_back() {
        let status = Status::from(Error::RateLimited {
            name: "replies".into(),
            retry_after_ms: 250,
        });
        let info = status.get_details_error_info().expect("ErrorInfo attached");
        assert_eq!(
            (status.code(), &*info.reason),
            (Code::ResourceExhausted, "RATE_LIMITED")
        );
        assert_eq!(info.metadata["retry_after_ms"], "250");
        assert_eq!(info.metadata["limit"], "replies");
        let retry = status.get_details_retry_info().expect("RetryInfo attached");
        assert_eq!(
            retry.retry_delay,
            Some(std::time::Duration::from_millis(250))
        );
    }
}
