import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Consistency(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONSISTENCY_UNSPECIFIED: _ClassVar[Consistency]
    CONSISTENCY_CACHED: _ClassVar[Consistency]
    CONSISTENCY_STRONG: _ClassVar[Consistency]

class TurnPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TURN_POLICY_FIFO: _ClassVar[TurnPolicy]
    TURN_POLICY_LATEST_WINS: _ClassVar[TurnPolicy]
    TURN_POLICY_DEBOUNCE: _ClassVar[TurnPolicy]

class RateScope(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RATE_SCOPE_SESSION: _ClassVar[RateScope]
    RATE_SCOPE_NAMESPACE: _ClassVar[RateScope]
CONSISTENCY_UNSPECIFIED: Consistency
CONSISTENCY_CACHED: Consistency
CONSISTENCY_STRONG: Consistency
TURN_POLICY_FIFO: TurnPolicy
TURN_POLICY_LATEST_WINS: TurnPolicy
TURN_POLICY_DEBOUNCE: TurnPolicy
RATE_SCOPE_SESSION: RateScope
RATE_SCOPE_NAMESPACE: RateScope

class Session(_message.Message):
    __slots__ = ("session_id", "fields", "version", "created_at", "updated_at", "expires_at")
    class FieldsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    fields: _containers.ScalarMap[str, bytes]
    version: int
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, session_id: _Optional[str] = ..., fields: _Optional[_Mapping[str, bytes]] = ..., version: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetSessionRequest(_message.Message):
    __slots__ = ("session_id", "consistency", "min_version")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    MIN_VERSION_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    consistency: Consistency
    min_version: int
    def __init__(self, session_id: _Optional[str] = ..., consistency: _Optional[_Union[Consistency, str]] = ..., min_version: _Optional[int] = ...) -> None: ...

class GetSessionResponse(_message.Message):
    __slots__ = ("session", "from_cache")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    FROM_CACHE_FIELD_NUMBER: _ClassVar[int]
    session: Session
    from_cache: bool
    def __init__(self, session: _Optional[_Union[Session, _Mapping]] = ..., from_cache: _Optional[bool] = ...) -> None: ...

class LockSessionRequest(_message.Message):
    __slots__ = ("session_id", "lease_ms", "wait_ms", "rate_limit", "policy", "debounce_ms", "payload", "idempotency_key")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_MS_FIELD_NUMBER: _ClassVar[int]
    WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    DEBOUNCE_MS_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    lease_ms: int
    wait_ms: int
    rate_limit: RateLimit
    policy: TurnPolicy
    debounce_ms: int
    payload: bytes
    idempotency_key: str
    def __init__(self, session_id: _Optional[str] = ..., lease_ms: _Optional[int] = ..., wait_ms: _Optional[int] = ..., rate_limit: _Optional[_Union[RateLimit, _Mapping]] = ..., policy: _Optional[_Union[TurnPolicy, str]] = ..., debounce_ms: _Optional[int] = ..., payload: _Optional[bytes] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class LockSessionResponse(_message.Message):
    __slots__ = ("lock_token", "fencing_token", "lease_expires_at", "session", "superseded_payloads", "superseded_dropped", "replayed")
    LOCK_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FENCING_TOKEN_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    SUPERSEDED_PAYLOADS_FIELD_NUMBER: _ClassVar[int]
    SUPERSEDED_DROPPED_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    lock_token: str
    fencing_token: int
    lease_expires_at: _timestamp_pb2.Timestamp
    session: Session
    superseded_payloads: _containers.RepeatedScalarFieldContainer[bytes]
    superseded_dropped: int
    replayed: bool
    def __init__(self, lock_token: _Optional[str] = ..., fencing_token: _Optional[int] = ..., lease_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., session: _Optional[_Union[Session, _Mapping]] = ..., superseded_payloads: _Optional[_Iterable[bytes]] = ..., superseded_dropped: _Optional[int] = ..., replayed: _Optional[bool] = ...) -> None: ...

class UpdateSessionRequest(_message.Message):
    __slots__ = ("session_id", "set_fields", "delete_fields", "replace", "lock_token", "expected_version", "release_lock", "idempotency_key", "ops")
    class SetFieldsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SET_FIELDS_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELDS_FIELD_NUMBER: _ClassVar[int]
    REPLACE_FIELD_NUMBER: _ClassVar[int]
    LOCK_TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    RELEASE_LOCK_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    OPS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    set_fields: _containers.ScalarMap[str, bytes]
    delete_fields: _containers.RepeatedScalarFieldContainer[str]
    replace: bool
    lock_token: str
    expected_version: int
    release_lock: bool
    idempotency_key: str
    ops: _containers.RepeatedCompositeFieldContainer[FieldOp]
    def __init__(self, session_id: _Optional[str] = ..., set_fields: _Optional[_Mapping[str, bytes]] = ..., delete_fields: _Optional[_Iterable[str]] = ..., replace: _Optional[bool] = ..., lock_token: _Optional[str] = ..., expected_version: _Optional[int] = ..., release_lock: _Optional[bool] = ..., idempotency_key: _Optional[str] = ..., ops: _Optional[_Iterable[_Union[FieldOp, _Mapping]]] = ...) -> None: ...

class FieldOp(_message.Message):
    __slots__ = ("field", "increment", "append", "set_if_absent")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    INCREMENT_FIELD_NUMBER: _ClassVar[int]
    APPEND_FIELD_NUMBER: _ClassVar[int]
    SET_IF_ABSENT_FIELD_NUMBER: _ClassVar[int]
    field: str
    increment: int
    append: AppendOp
    set_if_absent: bytes
    def __init__(self, field: _Optional[str] = ..., increment: _Optional[int] = ..., append: _Optional[_Union[AppendOp, _Mapping]] = ..., set_if_absent: _Optional[bytes] = ...) -> None: ...

class AppendOp(_message.Message):
    __slots__ = ("value", "keep_last")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    KEEP_LAST_FIELD_NUMBER: _ClassVar[int]
    value: bytes
    keep_last: int
    def __init__(self, value: _Optional[bytes] = ..., keep_last: _Optional[int] = ...) -> None: ...

class FieldList(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, entries: _Optional[_Iterable[bytes]] = ...) -> None: ...

class UpdateSessionResponse(_message.Message):
    __slots__ = ("version", "expires_at", "op_values")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    OP_VALUES_FIELD_NUMBER: _ClassVar[int]
    version: int
    expires_at: _timestamp_pb2.Timestamp
    op_values: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, version: _Optional[int] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., op_values: _Optional[_Iterable[bytes]] = ...) -> None: ...

class UnlockSessionRequest(_message.Message):
    __slots__ = ("session_id", "lock_token")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    LOCK_TOKEN_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    lock_token: str
    def __init__(self, session_id: _Optional[str] = ..., lock_token: _Optional[str] = ...) -> None: ...

class UnlockSessionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RefreshLockRequest(_message.Message):
    __slots__ = ("session_id", "lock_token", "lease_ms")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    LOCK_TOKEN_FIELD_NUMBER: _ClassVar[int]
    LEASE_MS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    lock_token: str
    lease_ms: int
    def __init__(self, session_id: _Optional[str] = ..., lock_token: _Optional[str] = ..., lease_ms: _Optional[int] = ...) -> None: ...

class RefreshLockResponse(_message.Message):
    __slots__ = ("lease_expires_at",)
    LEASE_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    lease_expires_at: _timestamp_pb2.Timestamp
    def __init__(self, lease_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class DeleteSessionRequest(_message.Message):
    __slots__ = ("session_id", "lock_token", "expected_version", "release_lock", "idempotency_key")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    LOCK_TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    RELEASE_LOCK_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    lock_token: str
    expected_version: int
    release_lock: bool
    idempotency_key: str
    def __init__(self, session_id: _Optional[str] = ..., lock_token: _Optional[str] = ..., expected_version: _Optional[int] = ..., release_lock: _Optional[bool] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class DeleteSessionResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: bool
    def __init__(self, deleted: _Optional[bool] = ...) -> None: ...

class CheckRateRequest(_message.Message):
    __slots__ = ("session_id", "name", "scope", "per_second", "burst", "cost")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    BURST_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    name: str
    scope: RateScope
    per_second: float
    burst: int
    cost: int
    def __init__(self, session_id: _Optional[str] = ..., name: _Optional[str] = ..., scope: _Optional[_Union[RateScope, str]] = ..., per_second: _Optional[float] = ..., burst: _Optional[int] = ..., cost: _Optional[int] = ...) -> None: ...

class RateLimit(_message.Message):
    __slots__ = ("name", "scope", "per_second", "burst", "cost")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    BURST_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    name: str
    scope: RateScope
    per_second: float
    burst: int
    cost: int
    def __init__(self, name: _Optional[str] = ..., scope: _Optional[_Union[RateScope, str]] = ..., per_second: _Optional[float] = ..., burst: _Optional[int] = ..., cost: _Optional[int] = ...) -> None: ...

class CheckRateResponse(_message.Message):
    __slots__ = ("remaining", "reset_after_ms")
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    RESET_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    remaining: int
    reset_after_ms: int
    def __init__(self, remaining: _Optional[int] = ..., reset_after_ms: _Optional[int] = ...) -> None: ...

class WatchSessionRequest(_message.Message):
    __slots__ = ("session_id", "after_version", "include_values")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_VERSION_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_VALUES_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    after_version: int
    include_values: bool
    def __init__(self, session_id: _Optional[str] = ..., after_version: _Optional[int] = ..., include_values: _Optional[bool] = ...) -> None: ...

class WatchSessionResponse(_message.Message):
    __slots__ = ("version", "snapshot", "resumed", "changed", "lock_acquired", "lock_released", "lock_expired", "lock_forced", "deleted", "idle_expired")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    RESUMED_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    LOCK_ACQUIRED_FIELD_NUMBER: _ClassVar[int]
    LOCK_RELEASED_FIELD_NUMBER: _ClassVar[int]
    LOCK_EXPIRED_FIELD_NUMBER: _ClassVar[int]
    LOCK_FORCED_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    IDLE_EXPIRED_FIELD_NUMBER: _ClassVar[int]
    version: int
    snapshot: WatchSnapshot
    resumed: WatchResumed
    changed: WatchChanged
    lock_acquired: WatchLockAcquired
    lock_released: WatchLockReleased
    lock_expired: WatchLockExpired
    lock_forced: WatchLockForced
    deleted: WatchDeleted
    idle_expired: WatchIdleExpired
    def __init__(self, version: _Optional[int] = ..., snapshot: _Optional[_Union[WatchSnapshot, _Mapping]] = ..., resumed: _Optional[_Union[WatchResumed, _Mapping]] = ..., changed: _Optional[_Union[WatchChanged, _Mapping]] = ..., lock_acquired: _Optional[_Union[WatchLockAcquired, _Mapping]] = ..., lock_released: _Optional[_Union[WatchLockReleased, _Mapping]] = ..., lock_expired: _Optional[_Union[WatchLockExpired, _Mapping]] = ..., lock_forced: _Optional[_Union[WatchLockForced, _Mapping]] = ..., deleted: _Optional[_Union[WatchDeleted, _Mapping]] = ..., idle_expired: _Optional[_Union[WatchIdleExpired, _Mapping]] = ...) -> None: ...

class WatchSnapshot(_message.Message):
    __slots__ = ("session", "resync", "lock")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    RESYNC_FIELD_NUMBER: _ClassVar[int]
    LOCK_FIELD_NUMBER: _ClassVar[int]
    session: Session
    resync: bool
    lock: WatchLock
    def __init__(self, session: _Optional[_Union[Session, _Mapping]] = ..., resync: _Optional[bool] = ..., lock: _Optional[_Union[WatchLock, _Mapping]] = ...) -> None: ...

class WatchLock(_message.Message):
    __slots__ = ("fencing_token", "lease_expires_at")
    FENCING_TOKEN_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    fencing_token: int
    lease_expires_at: _timestamp_pb2.Timestamp
    def __init__(self, fencing_token: _Optional[int] = ..., lease_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class WatchResumed(_message.Message):
    __slots__ = ("after_version",)
    AFTER_VERSION_FIELD_NUMBER: _ClassVar[int]
    after_version: int
    def __init__(self, after_version: _Optional[int] = ...) -> None: ...

class WatchChanged(_message.Message):
    __slots__ = ("set_fields", "removed_fields", "replaced", "values", "expires_at", "created")
    class ValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    SET_FIELDS_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELDS_FIELD_NUMBER: _ClassVar[int]
    REPLACED_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    set_fields: _containers.RepeatedScalarFieldContainer[str]
    removed_fields: _containers.RepeatedScalarFieldContainer[str]
    replaced: bool
    values: _containers.ScalarMap[str, bytes]
    expires_at: _timestamp_pb2.Timestamp
    created: bool
    def __init__(self, set_fields: _Optional[_Iterable[str]] = ..., removed_fields: _Optional[_Iterable[str]] = ..., replaced: _Optional[bool] = ..., values: _Optional[_Mapping[str, bytes]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class WatchLockAcquired(_message.Message):
    __slots__ = ("fencing_token", "lease_expires_at")
    FENCING_TOKEN_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    fencing_token: int
    lease_expires_at: _timestamp_pb2.Timestamp
    def __init__(self, fencing_token: _Optional[int] = ..., lease_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class WatchLockReleased(_message.Message):
    __slots__ = ("fencing_token",)
    FENCING_TOKEN_FIELD_NUMBER: _ClassVar[int]
    fencing_token: int
    def __init__(self, fencing_token: _Optional[int] = ...) -> None: ...

class WatchLockExpired(_message.Message):
    __slots__ = ("fencing_token",)
    FENCING_TOKEN_FIELD_NUMBER: _ClassVar[int]
    fencing_token: int
    def __init__(self, fencing_token: _Optional[int] = ...) -> None: ...

class WatchLockForced(_message.Message):
    __slots__ = ("fencing_token",)
    FENCING_TOKEN_FIELD_NUMBER: _ClassVar[int]
    fencing_token: int
    def __init__(self, fencing_token: _Optional[int] = ...) -> None: ...

class WatchDeleted(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WatchIdleExpired(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
