"""Python client for sessiond, the gRPC session-state service for chat bots.

    import sessiond

    client = sessiond.Client("127.0.0.1:50051")
    with client.locked("user-42", lease=10, wait=0) as s:   # LockHeld when busy
        turns = int(s.fields.get("turns", b"0"))
        s.set("turns", str(turns + 1).encode())             # written at exit

`sessiond.AsyncClient` is the asyncio twin. Errors are `sessiond.SessiondError`
subclasses, one per reason (see `sessiond.errors`). The raw generated stubs
are in `sessiond.v1`.
"""

from ._common import (
    CacheStats,
    Consistency,
    LatencySummary,
    Lock,
    LockStats,
    QuotaStats,
    RateAdmitted,
    RetryPolicy,
    RpcStats,
    Session,
    SessionState,
    Stats,
    StoreStats,
    TurnPolicy,
    UpdateResult,
    WatchEvent,
    WatchStats,
    append,
    entries,
    increment,
    rate_limit,
    set_if_absent,
)
from ._admin import Inspection, LockHolder
from .aio import AsyncClient, AsyncLocked
from .client import Client, Locked, LockedSession
from .errors import (
    DeadlineExceeded,
    FieldNotInteger,
    FieldNotList,
    FieldOpRefused,
    IdempotencyKeyReused,
    IntegerOverflow,
    InvalidArgument,
    InvalidFieldOp,
    InvalidIdempotencyKey,
    InvalidField,
    InvalidLease,
    InvalidLockToken,
    InvalidSessionId,
    InvalidWait,
    InvalidDebounce,
    InvalidTurnPolicy,
    LimitExceeded,
    LockError,
    LockHeld,
    LockLost,
    LockWaitTimeout,
    Overloaded,
    PermissionDenied,
    QuotaExceeded,
    RateLimited,
    InvalidRateLimit,
    SessiondError,
    SessionNotFound,
    ShuttingDown,
    StoreUnavailable,
    Superseded,
    Unauthenticated,
    Unavailable,
    VersionMismatch,
    WatchLagged,
)

__version__ = "0.1.0"

__all__ = [
    "AsyncClient", "AsyncLocked", "CacheStats", "Client", "Consistency", "DeadlineExceeded",
    "Inspection", "InvalidArgument", "InvalidField", "InvalidLease", "InvalidLockToken", "InvalidSessionId",
    "InvalidWait", "LatencySummary", "LimitExceeded", "Lock", "LockError", "LockHeld", "LockHolder", "LockLost",
    "LockStats", "LockWaitTimeout", "Locked", "LockedSession", "Overloaded", "PermissionDenied",
    "QuotaExceeded", "QuotaStats", "RateAdmitted", "RateLimited", "InvalidRateLimit", "RetryPolicy", "RpcStats", "Session", "SessionNotFound",
    "SessionState", "SessiondError", "ShuttingDown", "Stats", "StoreStats", "StoreUnavailable",
    "Unauthenticated", "Unavailable", "UpdateResult", "VersionMismatch",
    "FieldNotInteger", "FieldNotList", "FieldOpRefused", "IdempotencyKeyReused",
    "IntegerOverflow", "InvalidFieldOp", "InvalidIdempotencyKey", "append", "entries", "rate_limit",
    "increment", "set_if_absent", "InvalidDebounce", "InvalidTurnPolicy", "Superseded", "TurnPolicy",
    "WatchEvent", "WatchLagged", "WatchStats",
]
