import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetStatsResponse(_message.Message):
    __slots__ = ("instance_id", "version", "uptime", "store_backend", "cache", "locks", "store", "rpcs", "quotas", "watch")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    UPTIME_FIELD_NUMBER: _ClassVar[int]
    STORE_BACKEND_FIELD_NUMBER: _ClassVar[int]
    CACHE_FIELD_NUMBER: _ClassVar[int]
    LOCKS_FIELD_NUMBER: _ClassVar[int]
    STORE_FIELD_NUMBER: _ClassVar[int]
    RPCS_FIELD_NUMBER: _ClassVar[int]
    QUOTAS_FIELD_NUMBER: _ClassVar[int]
    WATCH_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    version: str
    uptime: _duration_pb2.Duration
    store_backend: str
    cache: CacheStats
    locks: LockStats
    store: StoreStats
    rpcs: _containers.RepeatedCompositeFieldContainer[RpcStats]
    quotas: QuotaStats
    watch: WatchStats
    def __init__(self, instance_id: _Optional[str] = ..., version: _Optional[str] = ..., uptime: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., store_backend: _Optional[str] = ..., cache: _Optional[_Union[CacheStats, _Mapping]] = ..., locks: _Optional[_Union[LockStats, _Mapping]] = ..., store: _Optional[_Union[StoreStats, _Mapping]] = ..., rpcs: _Optional[_Iterable[_Union[RpcStats, _Mapping]]] = ..., quotas: _Optional[_Union[QuotaStats, _Mapping]] = ..., watch: _Optional[_Union[WatchStats, _Mapping]] = ...) -> None: ...

class WatchStats(_message.Message):
    __slots__ = ("watchers", "events_sent", "lagged")
    WATCHERS_FIELD_NUMBER: _ClassVar[int]
    EVENTS_SENT_FIELD_NUMBER: _ClassVar[int]
    LAGGED_FIELD_NUMBER: _ClassVar[int]
    watchers: int
    events_sent: int
    lagged: int
    def __init__(self, watchers: _Optional[int] = ..., events_sent: _Optional[int] = ..., lagged: _Optional[int] = ...) -> None: ...

class QuotaStats(_message.Message):
    __slots__ = ("max_sessions_per_namespace", "max_bytes_per_namespace", "session_refusals", "byte_refusals")
    MAX_SESSIONS_PER_NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_PER_NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    SESSION_REFUSALS_FIELD_NUMBER: _ClassVar[int]
    BYTE_REFUSALS_FIELD_NUMBER: _ClassVar[int]
    max_sessions_per_namespace: int
    max_bytes_per_namespace: int
    session_refusals: int
    byte_refusals: int
    def __init__(self, max_sessions_per_namespace: _Optional[int] = ..., max_bytes_per_namespace: _Optional[int] = ..., session_refusals: _Optional[int] = ..., byte_refusals: _Optional[int] = ...) -> None: ...

class CacheStats(_message.Message):
    __slots__ = ("entries", "weighted_bytes", "hits", "misses", "hit_rate", "evictions", "invalidations_received", "bypasses", "feed_healthy", "feed_losses")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    WEIGHTED_BYTES_FIELD_NUMBER: _ClassVar[int]
    HITS_FIELD_NUMBER: _ClassVar[int]
    MISSES_FIELD_NUMBER: _ClassVar[int]
    HIT_RATE_FIELD_NUMBER: _ClassVar[int]
    EVICTIONS_FIELD_NUMBER: _ClassVar[int]
    INVALIDATIONS_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    BYPASSES_FIELD_NUMBER: _ClassVar[int]
    FEED_HEALTHY_FIELD_NUMBER: _ClassVar[int]
    FEED_LOSSES_FIELD_NUMBER: _ClassVar[int]
    entries: int
    weighted_bytes: int
    hits: int
    misses: int
    hit_rate: float
    evictions: int
    invalidations_received: int
    bypasses: int
    feed_healthy: bool
    feed_losses: int
    def __init__(self, entries: _Optional[int] = ..., weighted_bytes: _Optional[int] = ..., hits: _Optional[int] = ..., misses: _Optional[int] = ..., hit_rate: _Optional[float] = ..., evictions: _Optional[int] = ..., invalidations_received: _Optional[int] = ..., bypasses: _Optional[int] = ..., feed_healthy: _Optional[bool] = ..., feed_losses: _Optional[int] = ...) -> None: ...

class LockStats(_message.Message):
    __slots__ = ("acquisitions", "contended", "waits_granted", "waits_abandoned", "waiting_now", "lease_expiries", "stale_token_rejections", "held_rejections", "wait_ms", "forced_releases", "superseded", "replayed")
    ACQUISITIONS_FIELD_NUMBER: _ClassVar[int]
    CONTENDED_FIELD_NUMBER: _ClassVar[int]
    WAITS_GRANTED_FIELD_NUMBER: _ClassVar[int]
    WAITS_ABANDONED_FIELD_NUMBER: _ClassVar[int]
    WAITING_NOW_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRIES_FIELD_NUMBER: _ClassVar[int]
    STALE_TOKEN_REJECTIONS_FIELD_NUMBER: _ClassVar[int]
    HELD_REJECTIONS_FIELD_NUMBER: _ClassVar[int]
    WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    FORCED_RELEASES_FIELD_NUMBER: _ClassVar[int]
    SUPERSEDED_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    acquisitions: int
    contended: int
    waits_granted: int
    waits_abandoned: int
    waiting_now: int
    lease_expiries: int
    stale_token_rejections: int
    held_rejections: int
    wait_ms: LatencySummary
    forced_releases: int
    superseded: int
    replayed: int
    def __init__(self, acquisitions: _Optional[int] = ..., contended: _Optional[int] = ..., waits_granted: _Optional[int] = ..., waits_abandoned: _Optional[int] = ..., waiting_now: _Optional[int] = ..., lease_expiries: _Optional[int] = ..., stale_token_rejections: _Optional[int] = ..., held_rejections: _Optional[int] = ..., wait_ms: _Optional[_Union[LatencySummary, _Mapping]] = ..., forced_releases: _Optional[int] = ..., superseded: _Optional[int] = ..., replayed: _Optional[int] = ...) -> None: ...

class StoreStats(_message.Message):
    __slots__ = ("healthy", "errors", "pool_size", "pool_idle", "durability", "durability_wait", "durability_warnings", "durability_failures", "data_losses")
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    POOL_SIZE_FIELD_NUMBER: _ClassVar[int]
    POOL_IDLE_FIELD_NUMBER: _ClassVar[int]
    DURABILITY_FIELD_NUMBER: _ClassVar[int]
    DURABILITY_WAIT_FIELD_NUMBER: _ClassVar[int]
    DURABILITY_WARNINGS_FIELD_NUMBER: _ClassVar[int]
    DURABILITY_FAILURES_FIELD_NUMBER: _ClassVar[int]
    DATA_LOSSES_FIELD_NUMBER: _ClassVar[int]
    healthy: bool
    errors: int
    pool_size: int
    pool_idle: int
    durability: str
    durability_wait: str
    durability_warnings: _containers.RepeatedScalarFieldContainer[str]
    durability_failures: int
    data_losses: int
    def __init__(self, healthy: _Optional[bool] = ..., errors: _Optional[int] = ..., pool_size: _Optional[int] = ..., pool_idle: _Optional[int] = ..., durability: _Optional[str] = ..., durability_wait: _Optional[str] = ..., durability_warnings: _Optional[_Iterable[str]] = ..., durability_failures: _Optional[int] = ..., data_losses: _Optional[int] = ...) -> None: ...

class RpcStats(_message.Message):
    __slots__ = ("method", "calls", "errors", "latency_us")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    CALLS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_US_FIELD_NUMBER: _ClassVar[int]
    method: str
    calls: int
    errors: int
    latency_us: LatencySummary
    def __init__(self, method: _Optional[str] = ..., calls: _Optional[int] = ..., errors: _Optional[int] = ..., latency_us: _Optional[_Union[LatencySummary, _Mapping]] = ...) -> None: ...

class LatencySummary(_message.Message):
    __slots__ = ("count", "p50", "p90", "p99", "max")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    P50_FIELD_NUMBER: _ClassVar[int]
    P90_FIELD_NUMBER: _ClassVar[int]
    P99_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    count: int
    p50: float
    p90: float
    p99: float
    max: float
    def __init__(self, count: _Optional[int] = ..., p50: _Optional[float] = ..., p90: _Optional[float] = ..., p99: _Optional[float] = ..., max: _Optional[float] = ...) -> None: ...

class InspectSessionRequest(_message.Message):
    __slots__ = ("namespace", "session_id")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    session_id: str
    def __init__(self, namespace: _Optional[str] = ..., session_id: _Optional[str] = ...) -> None: ...

class InspectSessionResponse(_message.Message):
    __slots__ = ("exists", "version", "field_count", "size_bytes", "expires_at", "lock", "waiters", "oldest_wait_ms")
    EXISTS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    FIELD_COUNT_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    LOCK_FIELD_NUMBER: _ClassVar[int]
    WAITERS_FIELD_NUMBER: _ClassVar[int]
    OLDEST_WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    exists: bool
    version: int
    field_count: int
    size_bytes: int
    expires_at: _timestamp_pb2.Timestamp
    lock: LockHolder
    waiters: int
    oldest_wait_ms: int
    def __init__(self, exists: _Optional[bool] = ..., version: _Optional[int] = ..., field_count: _Optional[int] = ..., size_bytes: _Optional[int] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., lock: _Optional[_Union[LockHolder, _Mapping]] = ..., waiters: _Optional[int] = ..., oldest_wait_ms: _Optional[int] = ...) -> None: ...

class LockHolder(_message.Message):
    __slots__ = ("fencing_token", "lease_expires_at", "held_since", "instance")
    FENCING_TOKEN_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    HELD_SINCE_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    fencing_token: int
    lease_expires_at: _timestamp_pb2.Timestamp
    held_since: _timestamp_pb2.Timestamp
    instance: str
    def __init__(self, fencing_token: _Optional[int] = ..., lease_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., held_since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., instance: _Optional[str] = ...) -> None: ...

class ForceUnlockRequest(_message.Message):
    __slots__ = ("namespace", "session_id")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    session_id: str
    def __init__(self, namespace: _Optional[str] = ..., session_id: _Optional[str] = ...) -> None: ...

class ForceUnlockResponse(_message.Message):
    __slots__ = ("released", "released_fencing_token")
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    RELEASED_FENCING_TOKEN_FIELD_NUMBER: _ClassVar[int]
    released: bool
    released_fencing_token: int
    def __init__(self, released: _Optional[bool] = ..., released_fencing_token: _Optional[int] = ...) -> None: ...

class ListSessionsRequest(_message.Message):
    __slots__ = ("namespace", "id_prefix", "page_size", "page_token")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    ID_PREFIX_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    id_prefix: str
    page_size: int
    page_token: str
    def __init__(self, namespace: _Optional[str] = ..., id_prefix: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSessionsResponse(_message.Message):
    __slots__ = ("session_ids", "next_page_token")
    SESSION_IDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    session_ids: _containers.RepeatedScalarFieldContainer[str]
    next_page_token: str
    def __init__(self, session_ids: _Optional[_Iterable[str]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class PurgeSessionsRequest(_message.Message):
    __slots__ = ("namespace", "id_prefix", "page_size", "page_token")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    ID_PREFIX_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    id_prefix: str
    page_size: int
    page_token: str
    def __init__(self, namespace: _Optional[str] = ..., id_prefix: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class PurgeSessionsResponse(_message.Message):
    __slots__ = ("deleted", "next_page_token")
    DELETED_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    deleted: int
    next_page_token: str
    def __init__(self, deleted: _Optional[int] = ..., next_page_token: _Optional[str] = ...) -> None: ...
