//! The errors of sessiond's semantics. Every layer below the gRPC edge
//! returns [`Error`]; `status.rs` is the one place that turns it into a
//! status code and an ErrorInfo reason.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request argument is malformed or out of bounds.
    #[error("{message}")]
    InvalidArgument {
        reason: InvalidReason,
        message: String,
    },

    /// A field operation does not fit the field's stored value (`reason`:
    /// FieldNotInteger, IntegerOverflow or FieldNotList); nothing was
    /// written.
    #[error("{message}")]
    FieldRefused {
        reason: InvalidReason,
        field: String,
        message: String,
    },

    /// A configured limit would be exceeded; nothing was written.
    #[error("{message}")]
    LimitExceeded {
        limit: &'static str,
        message: String,
    },

    /// A namespace quota would be exceeded; nothing was written. `usage`
    /// is the namespace's count before the write.
    #[error(
        "the namespace's {} quota of {limit} is reached (it uses {usage}): delete sessions or make them smaller, or raise {}",
        quota.name(),
        quota.flag()
    )]
    QuotaExceeded {
        quota: crate::session::Quota,
        limit: u64,
        usage: u64,
    },

    #[error("session not found")]
    NotFound,

    /// The store holds an older session than the caller has seen.
    #[error(
        "the session is at version {current}, below the version {seen} you have seen: the store lost data (e.g. Redis restarted without persistence) or min_version is wrong; read without min_version to see what is there now"
    )]
    VersionLost { seen: u64, current: u64 },

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

    /// A newer waiter of the session's burst took this waiter's turn.
    #[error(
        "a newer LockSession of this session's burst superseded this one; it carries this call's payload on, so leave the turn to it"
    )]
    Superseded,

    #[error("waited {waited_ms} ms for the lock without getting it")]
    LockWaitTimeout { waited_ms: u64 },

    #[error("{0}")]
    Unauthenticated(String),

    #[error("{0}")]
    PermissionDenied(String),

    /// An AdminService call without the admin grant for its namespace.
    #[error("{0}")]
    AdminDenied(String),

    /// A rate limit refused the call; the same call is admitted after
    /// `retry_after_ms`.
    #[error("the rate limit `{name}` is used up; retry in {retry_after_ms} ms")]
    RateLimited { name: String, retry_after_ms: u64 },

    #[error("the server is overloaded; retry with backoff")]
    Overloaded,

    /// A watcher did not read its events as fast as they came.
    #[error(
        "the watcher fell behind its session's events; watch again with after_version = the last version read"
    )]
    WatchLagged,

    /// A caller's fair share is used up: its namespace's calls or lock
    /// waiters, or the waiters of one session (`limit` names the flag).
    #[error("the {limit} limit is reached; retry with backoff")]
    ShareExceeded { limit: &'static str },

    #[error(
        "the store is unavailable: {0}; retry with backoff (a write without a guard may have been applied)"
    )]
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
    /// The `sessiond-namespace` metadata is repeated or malformed.
    Namespace,
    /// The request is not a well-formed message of its method.
    Request,
    /// A field operation without an operation, or with a bad argument.
    FieldOp,
    /// An increment of a field that does not hold a decimal integer.
    FieldNotInteger,
    /// An increment whose sum leaves the signed 64-bit range.
    IntegerOverflow,
    /// An append to a field that does not hold a list.
    FieldNotList,
    /// An idempotency key that is not a name (1..=256 bytes, no control
    /// characters).
    IdempotencyKey,
    /// An idempotency key sent again with another request.
    IdempotencyKeyReused,
    /// A page token that no listing of this server handed out.
    PageToken,
    /// A rate limit's name, rate, burst or cost that makes no limit.
    RateLimit,
    /// A LockSession's policy that is unknown or does not fit its other
    /// arguments.
    TurnPolicy,
    /// A LockSession's debounce_ms out of bounds, or without DEBOUNCE.
    Debounce,
}

impl Error {
    pub fn bad_page_token() -> Error {
        Error::invalid(
            InvalidReason::PageToken,
            "page_token is malformed: pass the next_page_token of the previous page, unchanged, with the same namespace and prefix",
        )
    }

    pub fn invalid(reason: InvalidReason, message: impl Into<String>) -> Error {
        Error::InvalidArgument {
            reason,
            message: message.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
