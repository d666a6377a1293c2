"""Exceptions raised by the sessiond client, one per `google.rpc.ErrorInfo` reason.

Every error status sessiond sends carries a `google.rpc.Status` in the
`grpc-status-details-bin` trailer whose details hold a `google.rpc.ErrorInfo`
(domain "sessiond"). `from_rpc_error` turns a failed call into the exception
class registered for that reason, or, when the status has no ErrorInfo (a
transport failure, a client-side deadline), into the class for its code.

    SessiondError                 .code .reason .metadata .message
      InvalidArgument             INVALID_ARGUMENT
        InvalidSessionId          INVALID_SESSION_ID
        InvalidField              INVALID_FIELD
        InvalidLease              INVALID_LEASE
        InvalidWait               INVALID_WAIT
        InvalidLockToken          INVALID_LOCK_TOKEN
        LimitExceeded             LIMIT_EXCEEDED (.limit)
        InvalidRateLimit          INVALID_RATE_LIMIT
      SessionNotFound             NOT_FOUND / SESSION_NOT_FOUND
      VersionMismatch             ABORTED / VERSION_MISMATCH (.current_version)
      LockError                   FAILED_PRECONDITION
        LockHeld                  LOCK_HELD
        LockLost                  LOCK_LOST
      LockWaitTimeout             DEADLINE_EXCEEDED / LOCK_WAIT_TIMEOUT
      DeadlineExceeded            DEADLINE_EXCEEDED without a reason (the call's deadline)
      Overloaded                  RESOURCE_EXHAUSTED / OVERLOADED
      QuotaExceeded               RESOURCE_EXHAUSTED / QUOTA_EXCEEDED (.quota .limit .usage)
      RateLimited                 RESOURCE_EXHAUSTED / RATE_LIMITED (.limit .retry_after)
      WatchLagged                 RESOURCE_EXHAUSTED / WATCH_LAGGED (watch again from the last version)
      Unavailable                 UNAVAILABLE (also transport failures)
        StoreUnavailable          STORE_UNAVAILABLE
        ShuttingDown              SHUTTING_DOWN
      Unauthenticated, PermissionDenied
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Tuple, Type

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

DOMAIN = "sessiond"
_DETAILS_KEY = "grpc-status-details-bin"


class SessiondError(Exception):
    """Base of every error the client raises for a failed call.

    Attributes:
        code: the gRPC status code.
        reason: the ErrorInfo reason (e.g. "LOCK_HELD"), or None when the
            status carried no ErrorInfo (transport failure, client deadline).
        metadata: the ErrorInfo metadata (e.g. {"current_version": "7"}).
        message: the status message.
        maybe_applied: True when an earlier attempt of this same call failed
            with an UNAVAILABLE of unknown outcome (anything but SHUTTING_DOWN)
            and was retried: that attempt may have been applied by the server
            before its answer was lost, so a VersionMismatch or LockLost
            raised now may be caused by our own earlier attempt (see the
            README, "Deadlines and retries").
    """

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode = grpc.StatusCode.UNKNOWN,
        reason: Optional[str] = None,
        metadata: Optional[Mapping[str, str]] = None,
        maybe_applied: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.reason = reason
        self.metadata: Dict[str, str] = dict(metadata or {})
        self.maybe_applied = maybe_applied
        # Set when the rich status disagreed with the call's code or message.
        self.status_inconsistency: Optional[str] = None

    def __str__(self) -> str:
        label = self.reason or self.code.name
        text = f"{label}: {self.message}" if self.message else label
        if self.metadata:
            text += " " + " ".join(f"{k}={v}" for k, v in sorted(self.metadata.items()))
        return text

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code.name}, reason={self.reason!r}, "
            f"message={self.message!r}, metadata={self.metadata!r})"
        )


class InvalidArgument(SessiondError):
    """INVALID_ARGUMENT: the request was malformed or over a configured limit."""


class InvalidSessionId(InvalidArgument):
    """INVALID_SESSION_ID: the id is empty, over 256 bytes or has control characters."""


class InvalidField(InvalidArgument):
    """INVALID_FIELD: a field name is malformed, or both set and deleted."""


class InvalidLease(InvalidArgument):
    """INVALID_LEASE: the lease is outside the server's configured bounds."""


class InvalidWait(InvalidArgument):
    """INVALID_WAIT: the lock wait is above the server's configured maximum."""


class InvalidLockToken(InvalidArgument):
    """INVALID_LOCK_TOKEN: the lock token is malformed or missing where needed."""


class LimitExceeded(InvalidArgument):
    """LIMIT_EXCEEDED: a field-count or size limit was exceeded; nothing was written."""

    @property
    def limit(self) -> Optional[str]:
        """Which limit, as the server names it in the ErrorInfo metadata."""
        return self.metadata.get("limit")


class InvalidRateLimit(InvalidArgument):
    """INVALID_ARGUMENT / INVALID_RATE_LIMIT: a CheckRate's name, rate, burst
    or cost makes no limit."""


class InvalidFieldOp(InvalidArgument):
    """INVALID_FIELD_OP: a field op names no operation, or appends with keep_last 0."""


class FieldOpRefused(InvalidArgument):
    """A field op does not fit the field's stored value; nothing was written."""

    @property
    def field(self) -> Optional[str]:
        """The field, as the server names it in the ErrorInfo metadata."""
        return self.metadata.get("field")


class FieldNotInteger(FieldOpRefused):
    """FIELD_NOT_INTEGER: an increment of a field that does not hold an integer."""


class IntegerOverflow(FieldOpRefused):
    """INTEGER_OVERFLOW: an increment would leave the signed 64-bit range."""


class FieldNotList(FieldOpRefused):
    """FIELD_NOT_LIST: an append to a field that does not hold a list."""


class InvalidTurnPolicy(InvalidArgument):
    """INVALID_TURN_POLICY: a LockSession's policy is unknown, or LATEST_WINS /
    DEBOUNCE without a wait, or a payload with FIFO."""


class InvalidDebounce(InvalidArgument):
    """INVALID_DEBOUNCE: a LockSession's debounce is out of 1 ms..60 s, not
    below its wait, or given without DEBOUNCE."""


class InvalidIdempotencyKey(InvalidArgument):
    """INVALID_IDEMPOTENCY_KEY: the key is empty-but-set, over 256 bytes or has control characters."""


class IdempotencyKeyReused(InvalidArgument):
    """IDEMPOTENCY_KEY_REUSED: the key was used for another write on this session
    within the server's window; use a new key for a new request."""


class SessionNotFound(SessiondError):
    """NOT_FOUND / SESSION_NOT_FOUND: no such session (or it expired)."""


class VersionMismatch(SessiondError):
    """ABORTED / VERSION_MISMATCH: the expected_version guard failed; nothing was written."""

    @property
    def current_version(self) -> Optional[int]:
        """The session's version when the write was refused, if the server said."""
        value = self.metadata.get("current_version")
        try:
            return int(value) if value is not None else None
        except ValueError:
            return None


class LockError(SessiondError):
    """FAILED_PRECONDITION: a lock-related refusal."""


class LockHeld(LockError):
    """LOCK_HELD: someone else holds the session's lock (busy)."""


class LockLost(LockError):
    """LOCK_LOST: the token no longer holds the lock: stop working on the session."""


class Superseded(SessiondError):
    """ABORTED / SUPERSEDED: a newer LockSession of the session's burst
    (LATEST_WINS or DEBOUNCE) took this waiter's turn; it carries this call's
    payload on, so leave the turn to it. Never retried."""


class LockWaitTimeout(SessiondError):
    """DEADLINE_EXCEEDED / LOCK_WAIT_TIMEOUT: the wait for the lock ran out."""


class DeadlineExceeded(SessiondError):
    """DEADLINE_EXCEEDED without a reason: the call's own deadline passed."""


class Overloaded(SessiondError):
    """RESOURCE_EXHAUSTED / OVERLOADED: the server shed the call; back off."""


class QuotaExceeded(SessiondError):
    """RESOURCE_EXHAUSTED / QUOTA_EXCEEDED: the write would grow the namespace
    beyond a quota of the server's (its sessions or their bytes); nothing was
    written. Retrying as is cannot help: delete sessions, write smaller ones,
    or have the quota raised. Deletes and shrinking writes always pass."""

    @property
    def quota(self) -> Optional[str]:
        """Which quota: "sessions" or "bytes"."""
        return self.metadata.get("quota")

    @property
    def limit(self) -> Optional[int]:
        """The quota's value."""
        return _int(self.metadata.get("limit"))

    @property
    def usage(self) -> Optional[int]:
        """The namespace's usage of that quota before the write."""
        return _int(self.metadata.get("usage"))


class WatchLagged(SessiondError):
    """RESOURCE_EXHAUSTED / WATCH_LAGGED: a watch did not read its events as
    fast as they came and was ended; watch again with `after_version` = the
    last version read."""


class RateLimited(SessiondError):
    """RESOURCE_EXHAUSTED / RATE_LIMITED: CheckRate refused the call; it took
    nothing. The same call is admitted after `retry_after` seconds (unless
    others take the units first). Never retried by the client: whether the
    work is still worth doing then is the caller's choice."""

    @property
    def limit(self) -> Optional[str]:
        """The limit's name."""
        return self.metadata.get("limit")

    @property
    def retry_after_ms(self) -> Optional[int]:
        """When the same call would be admitted, in milliseconds."""
        return _int(self.metadata.get("retry_after_ms"))

    @property
    def retry_after(self) -> Optional[float]:
        """When the same call would be admitted, in seconds."""
        ms = self.retry_after_ms
        return None if ms is None else ms / 1000


def _int(value: Optional[str]) -> Optional[int]:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


class Unavailable(SessiondError):
    """UNAVAILABLE: the server or its store cannot be reached. Whether a write
    was applied is unknown (except for ShuttingDown): the client retries only
    the calls whose replay is harmless (see `sessiond._retry`)."""


class StoreUnavailable(Unavailable):
    """UNAVAILABLE / STORE_UNAVAILABLE: sessiond cannot reach its store (or it
    stopped answering mid-call: a write may have been applied)."""


class ShuttingDown(Unavailable):
    """UNAVAILABLE / SHUTTING_DOWN: this sessiond instance is stopping; the call
    was not carried out, so any call may be retried."""


class Unauthenticated(SessiondError):
    """UNAUTHENTICATED: credentials missing or not accepted."""


class PermissionDenied(SessiondError):
    """PERMISSION_DENIED: the credentials do not grant this namespace."""


BY_REASON: Dict[str, Type[SessiondError]] = {
    "INVALID_SESSION_ID": InvalidSessionId,
    "INVALID_FIELD": InvalidField,
    "INVALID_LEASE": InvalidLease,
    "INVALID_WAIT": InvalidWait,
    "INVALID_LOCK_TOKEN": InvalidLockToken,
    "LIMIT_EXCEEDED": LimitExceeded,
    "INVALID_FIELD_OP": InvalidFieldOp,
    "FIELD_NOT_INTEGER": FieldNotInteger,
    "INTEGER_OVERFLOW": IntegerOverflow,
    "FIELD_NOT_LIST": FieldNotList,
    "INVALID_IDEMPOTENCY_KEY": InvalidIdempotencyKey,
    "IDEMPOTENCY_KEY_REUSED": IdempotencyKeyReused,
    "SESSION_NOT_FOUND": SessionNotFound,
    "VERSION_MISMATCH": VersionMismatch,
    "LOCK_HELD": LockHeld,
    "LOCK_LOST": LockLost,
    "LOCK_WAIT_TIMEOUT": LockWaitTimeout,
    "SUPERSEDED": Superseded,
    "INVALID_TURN_POLICY": InvalidTurnPolicy,
    "INVALID_DEBOUNCE": InvalidDebounce,
    "OVERLOADED": Overloaded,
    "QUOTA_EXCEEDED": QuotaExceeded,
    "RATE_LIMITED": RateLimited,
    "WATCH_LAGGED": WatchLagged,
    "INVALID_RATE_LIMIT": InvalidRateLimit,
    "STORE_UNAVAILABLE": StoreUnavailable,
    "SHUTTING_DOWN": ShuttingDown,
    "UNAUTHENTICATED": Unauthenticated,
    "NAMESPACE_DENIED": PermissionDenied,
    "ADMIN_DENIED": PermissionDenied,
    "INVALID_PAGE_TOKEN": InvalidArgument,
}

BY_CODE: Dict[grpc.StatusCode, Type[SessiondError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: SessionNotFound,
    grpc.StatusCode.ABORTED: VersionMismatch,
    grpc.StatusCode.FAILED_PRECONDITION: LockError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.RESOURCE_EXHAUSTED: Overloaded,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
}


def _error_info(call: Any) -> Tuple[Optional[error_details_pb2.ErrorInfo], Optional[str]]:
    """The sessiond ErrorInfo of a failed call, parsed with grpcio-status.

    Returns (info, inconsistency). `rpc_status.from_call` refuses a rich status
    whose code or message disagrees with the call's own; that is a server bug
    worth seeing, so it is reported as `inconsistency` (and kept on the
    exception as `status_inconsistency`) while the ErrorInfo is still read from
    the trailer, so the caller gets the most precise exception possible.
    """
    inconsistency = None
    try:
        status = rpc_status.from_call(call)
    except ValueError as e:
        inconsistency = str(e)
        status = None
        for key, value in call.trailing_metadata() or ():
            if key == _DETAILS_KEY:
                status = status_pb2.Status.FromString(value)
    if status is None:
        return None, inconsistency
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            if info.domain == DOMAIN:
                return info, inconsistency
    return None, inconsistency


def from_rpc_error(err: grpc.RpcError, *, maybe_applied: bool = False) -> SessiondError:
    """Translates a failed call (sync `grpc.RpcError` or `grpc.aio.AioRpcError`).

    Both kinds expose `code()`, `details()` and `trailing_metadata()`, which is
    all `rpc_status.from_call` reads.
    """
    code = err.code() if callable(getattr(err, "code", None)) else grpc.StatusCode.UNKNOWN
    message = (err.details() if callable(getattr(err, "details", None)) else None) or ""
    info, inconsistency = (
        _error_info(err) if callable(getattr(err, "trailing_metadata", None)) else (None, None)
    )
    if info is not None:
        cls = BY_REASON.get(info.reason, BY_CODE.get(code, SessiondError))
        exc = cls(
            message,
            code=code,
            reason=info.reason,
            metadata=dict(info.metadata),
            maybe_applied=maybe_applied,
        )
    else:
        cls = BY_CODE.get(code, SessiondError)
        exc = cls(message, code=code, maybe_applied=maybe_applied)
    exc.status_inconsistency = inconsistency
    exc.__cause__ = err
    return exc


__all__ = [name for name, value in dict(globals()).items()
           if isinstance(value, type) and issubclass(value, SessiondError)] + ["from_rpc_error"]
