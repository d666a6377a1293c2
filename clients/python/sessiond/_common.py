"""What the blocking and the asyncio clients share: result types, request
building, response conversion and the staged sessions handed to handlers
(the retry policy is in `_retry`). Nothing here does I/O."""

from __future__ import annotations

import datetime as _dt
import enum
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Optional, Tuple, Union

from . import errors
from ._retry import RetryPolicy  # noqa: F401 (re-exported: sessiond._common.RetryPolicy)
from .v1 import admin_pb2, session_pb2

Seconds = Union[float, int, _dt.timedelta]


class TurnPolicy(enum.Enum):
    """How a LockSession waiter takes its turn (see session.proto)."""

    FIFO = session_pb2.TURN_POLICY_FIFO
    LATEST_WINS = session_pb2.TURN_POLICY_LATEST_WINS
    DEBOUNCE = session_pb2.TURN_POLICY_DEBOUNCE


def turn_policy(policy: Union["TurnPolicy", str]) -> int:
    """The proto value of a policy given as a TurnPolicy or its name."""
    if isinstance(policy, str):
        try:
            policy = TurnPolicy[policy.upper()]
        except KeyError:
            raise ValueError(f"unknown turn policy {policy!r}: use FIFO, LATEST_WINS or DEBOUNCE") from None
    return policy.value


class Consistency(enum.Enum):
    """How fresh a GetSession read must be (see session.proto)."""

    CACHED = session_pb2.CONSISTENCY_CACHED
    STRONG = session_pb2.CONSISTENCY_STRONG


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class Session:
    """A session as stored. `fields` maps field names to bytes."""

    session_id: str
    fields: Dict[str, bytes]
    version: int
    created_at: Optional[_dt.datetime] = None
    updated_at: Optional[_dt.datetime] = None
    expires_at: Optional[_dt.datetime] = None
    # True when the answering instance served this read from its cache.
    from_cache: bool = False


@dataclass(frozen=True)
class Lock:
    """A held lock, as LockSession returned it."""

    session_id: str
    token: str
    fencing_token: int
    lease_expires_at: Optional[_dt.datetime]
    # The session when the lock was granted (a STRONG read); None if it does
    # not exist yet.
    session: Optional[Session]
    # The payloads of the waiters this grant superseded (LATEST_WINS or
    # DEBOUNCE), oldest first, and how many older ones the server dropped.
    superseded_payloads: Tuple[bytes, ...] = ()
    superseded_dropped: int = 0
    # True when this is the answer of an earlier lock with the same
    # idempotency_key (no new grant: a replayed event, or a retry).
    replayed: bool = False


@dataclass(frozen=True)
class UpdateResult:
    version: int
    expires_at: Optional[_dt.datetime] = None
    # One per op of the request, in order: the field's value after the write
    # (an increment's integer as text, an append's whole list: see `entries`).
    op_values: Tuple[bytes, ...] = ()


@dataclass(frozen=True)
class RateAdmitted:
    """An admitted CheckRate: units a call could still take at once, and the
    seconds until the limit is back to a full burst."""

    remaining: int
    reset_after: float


def rate_limit(
    name: str = "",
    *,
    per_second: Optional[float] = None,
    burst: Optional[int] = None,
    cost: int = 1,
    namespace_scope: bool = False,
) -> session_pb2.RateLimit:
    """A rate limit for `lock(..., rate_limit=...)`, with the arguments of
    `check_rate`: checked before the lock is tried or queued for."""
    r = session_pb2.RateLimit(name=name, cost=cost)
    if per_second is not None:
        r.per_second = per_second
    if burst is not None:
        r.burst = burst
    if namespace_scope:
        r.scope = session_pb2.RATE_SCOPE_NAMESPACE
    return r


# ---------------------------------------------------------------- field ops


def increment(field: str, by: int = 1) -> session_pb2.FieldOp:
    """An op adding `by` (signed 64-bit) to the integer `field` holds (0 when
    absent). FieldNotInteger / IntegerOverflow when it cannot."""
    return session_pb2.FieldOp(field=field, increment=by)


def append(field: str, value: bytes, keep_last: int) -> session_pb2.FieldOp:
    """An op appending `value` to the list `field` holds, keeping its last
    `keep_last` entries (read them with `entries`). FieldNotList when the
    field holds something else."""
    return session_pb2.FieldOp(
        field=field, append=session_pb2.AppendOp(value=bytes(value), keep_last=keep_last)
    )


def set_if_absent(field: str, value: bytes) -> session_pb2.FieldOp:
    """An op setting `field` to `value` unless it exists."""
    return session_pb2.FieldOp(field=field, set_if_absent=bytes(value))


def entries(value: bytes) -> List[bytes]:
    """The entries of a list field (a protobuf-encoded sessiond.v1.FieldList),
    oldest first."""
    return list(session_pb2.FieldList.FromString(bytes(value)).entries)


@dataclass(frozen=True)
class LatencySummary:
    count: int = 0
    p50: float = 0.0
    p90: float = 0.0
    p99: float = 0.0
    max: float = 0.0


@dataclass(frozen=True)
class CacheStats:
    entries: int = 0
    weighted_bytes: int = 0
    hits: int = 0
    misses: int = 0
    hit_rate: float = 0.0
    evictions: int = 0
    invalidations_received: int = 0
    bypasses: int = 0
    # True while CACHED reads may use the cache (on Redis: while the
    # invalidation feed is connected), and how often the feed was lost.
    feed_healthy: bool = False
    feed_losses: int = 0


@dataclass(frozen=True)
class LockStats:
    acquisitions: int = 0
    contended: int = 0
    waits_granted: int = 0
    waits_abandoned: int = 0
    waiting_now: int = 0
    lease_expiries: int = 0
    stale_token_rejections: int = 0
    held_rejections: int = 0
    wait_ms: LatencySummary = field(default_factory=LatencySummary)
    # Locks released by ForceUnlock or PurgeSessions on this instance.
    forced_releases: int = 0
    # Queued callers ended Superseded by a newer waiter of their burst.
    superseded: int = 0
    # LockSession calls answered from an earlier grant's idempotency key.
    replayed: int = 0


@dataclass(frozen=True)
class StoreStats:
    healthy: bool = False
    errors: int = 0
    pool_size: int = 0
    pool_idle: int = 0
    # What an acknowledged write survives ("aof-always", "none", "unknown", ...; "fsync" embedded).
    durability: str = ""
    # What a write waits for before it is acknowledged ("none", "aof", "replicas:N"; "fsync").
    durability_wait: str = ""
    # Settings that can lose acknowledged writes or evict sessions, one sentence each.
    durability_warnings: Tuple[str, ...] = ()
    durability_failures: int = 0
    # Times the store was found to have lost its data (sessions and versions gone).
    data_losses: int = 0


@dataclass(frozen=True)
class QuotaStats:
    # The server's per-namespace quotas (0: none).
    max_sessions_per_namespace: int = 0
    max_bytes_per_namespace: int = 0
    # Writes this instance refused with QUOTA_EXCEEDED, by quota.
    session_refusals: int = 0
    byte_refusals: int = 0


@dataclass(frozen=True)
class WatchStats:
    # WatchSession streams open on the instance now.
    watchers: int = 0
    # Events sent to watchers, snapshots included.
    events_sent: int = 0
    # Watchers ended with WATCH_LAGGED.
    lagged: int = 0


@dataclass(frozen=True)
class WatchEvent:
    """One message of a watch (`Client.watch`). `kind` names the event:
    "snapshot" (`session`, None when it does not exist; `resync` when it
    replaces a resume that could not be served; `fencing_token` and
    `lease_expires_at` of the lock, 0 / None when free), "resumed", "changed"
    (`set_fields`, `removed_fields`, `replaced`, `created`, `expires_at`, and
    `values` when asked for), "lock_acquired" (`fencing_token`,
    `lease_expires_at`), "lock_released", "lock_expired", "lock_forced"
    (`fencing_token`), "deleted", "idle_expired". `version` is the session's
    version once it happened: pass the last one read as `after_version` to
    resume."""

    kind: str
    version: int
    session: Optional[Session] = None
    resync: bool = False
    fencing_token: int = 0
    lease_expires_at: Optional[_dt.datetime] = None
    set_fields: Tuple[str, ...] = ()
    removed_fields: Tuple[str, ...] = ()
    values: Dict[str, bytes] = field(default_factory=dict)
    replaced: bool = False
    created: bool = False
    expires_at: Optional[_dt.datetime] = None


@dataclass(frozen=True)
class RpcStats:
    method: str
    calls: int = 0
    errors: int = 0
    latency_us: LatencySummary = field(default_factory=LatencySummary)


@dataclass(frozen=True)
class Stats:
    """AdminService.GetStats of one instance; `rpcs` is keyed by method name."""

    instance_id: str
    version: str
    uptime: _dt.timedelta
    store_backend: str
    cache: CacheStats
    locks: LockStats
    store: StoreStats
    rpcs: Dict[str, RpcStats]
    quotas: QuotaStats = field(default_factory=QuotaStats)
    watch: WatchStats = field(default_factory=WatchStats)


# ---------------------------------------------------------------- conversions


def seconds(value: Optional[Seconds]) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, _dt.timedelta):
        return value.total_seconds()
    return float(value)


def millis(value: Optional[Seconds], what: str) -> int:
    """A duration as the uint32 milliseconds of the API; None means 0 (server default)."""
    s = seconds(value)
    if s is None:
        return 0
    if s < 0:
        raise ValueError(f"{what} must not be negative, got {s}s")
    ms = int(round(s * 1000))
    if s > 0 and ms == 0:
        ms = 1  # a positive duration never silently becomes "default"/"try once"
    return min(ms, 2**32 - 1)


def timestamp(msg, present: bool) -> Optional[_dt.datetime]:
    return msg.ToDatetime(tzinfo=_dt.timezone.utc) if present else None


def session_from_pb(pb: session_pb2.Session, from_cache: bool = False) -> Session:
    return Session(
        session_id=pb.session_id,
        fields=dict(pb.fields),
        version=pb.version,
        created_at=timestamp(pb.created_at, pb.HasField("created_at")),
        updated_at=timestamp(pb.updated_at, pb.HasField("updated_at")),
        expires_at=timestamp(pb.expires_at, pb.HasField("expires_at")),
        from_cache=from_cache,
    )


def lock_from_pb(session_id: str, pb: session_pb2.LockSessionResponse) -> Lock:
    return Lock(
        session_id=session_id,
        token=pb.lock_token,
        fencing_token=pb.fencing_token,
        lease_expires_at=timestamp(pb.lease_expires_at, pb.HasField("lease_expires_at")),
        session=session_from_pb(pb.session) if pb.HasField("session") else None,
        superseded_payloads=tuple(pb.superseded_payloads),
        superseded_dropped=pb.superseded_dropped,
        replayed=pb.replayed,
    )


def update_from_pb(pb: session_pb2.UpdateSessionResponse) -> UpdateResult:
    return UpdateResult(
        version=pb.version,
        expires_at=timestamp(pb.expires_at, pb.HasField("expires_at")),
        op_values=tuple(pb.op_values),
    )


def _latency(pb: admin_pb2.LatencySummary) -> LatencySummary:
    return LatencySummary(count=pb.count, p50=pb.p50, p90=pb.p90, p99=pb.p99, max=pb.max)


def stats_from_pb(pb: admin_pb2.GetStatsResponse) -> Stats:
    c, lk, st, q = pb.cache, pb.locks, pb.store, pb.quotas
    return Stats(
        instance_id=pb.instance_id,
        version=pb.version,
        uptime=pb.uptime.ToTimedelta(),
        store_backend=pb.store_backend,
        cache=CacheStats(
            entries=c.entries,
            weighted_bytes=c.weighted_bytes,
            hits=c.hits,
            misses=c.misses,
            hit_rate=c.hit_rate,
            evictions=c.evictions,
            invalidations_received=c.invalidations_received,
            bypasses=c.bypasses,
            feed_healthy=c.feed_healthy,
            feed_losses=c.feed_losses,
        ),
        locks=LockStats(
            acquisitions=lk.acquisitions,
            contended=lk.contended,
            waits_granted=lk.waits_granted,
            waits_abandoned=lk.waits_abandoned,
            waiting_now=lk.waiting_now,
            lease_expiries=lk.lease_expiries,
            stale_token_rejections=lk.stale_token_rejections,
            held_rejections=lk.held_rejections,
            wait_ms=_latency(lk.wait_ms),
            forced_releases=lk.forced_releases,
            superseded=lk.superseded,
            replayed=lk.replayed,
        ),
        store=StoreStats(
            healthy=st.healthy,
            errors=st.errors,
            pool_size=st.pool_size,
            pool_idle=st.pool_idle,
            durability=st.durability,
            durability_wait=st.durability_wait,
            durability_warnings=tuple(st.durability_warnings),
            durability_failures=st.durability_failures,
            data_losses=st.data_losses,
        ),
        rpcs={
            r.method: RpcStats(
                method=r.method, calls=r.calls, errors=r.errors, latency_us=_latency(r.latency_us)
            )
            for r in pb.rpcs
        },
        quotas=QuotaStats(
            max_sessions_per_namespace=q.max_sessions_per_namespace,
            max_bytes_per_namespace=q.max_bytes_per_namespace,
            session_refusals=q.session_refusals,
            byte_refusals=q.byte_refusals,
        ),
        watch=WatchStats(
            watchers=pb.watch.watchers,
            events_sent=pb.watch.events_sent,
            lagged=pb.watch.lagged,
        ),
    )


def watch_event_from_pb(pb: session_pb2.WatchSessionResponse) -> WatchEvent:
    kind = pb.WhichOneof("event") or ""
    if kind == "snapshot":
        s = pb.snapshot
        lock = s.lock if s.HasField("lock") else None
        return WatchEvent(
            kind=kind,
            version=pb.version,
            session=session_from_pb(s.session) if s.HasField("session") else None,
            resync=s.resync,
            fencing_token=lock.fencing_token if lock else 0,
            lease_expires_at=timestamp(lock.lease_expires_at, lock.HasField("lease_expires_at"))
            if lock
            else None,
        )
    if kind == "changed":
        ch = pb.changed
        return WatchEvent(
            kind=kind,
            version=pb.version,
            set_fields=tuple(ch.set_fields),
            removed_fields=tuple(ch.removed_fields),
            values=dict(ch.values),
            replaced=ch.replaced,
            created=ch.created,
            expires_at=timestamp(ch.expires_at, ch.HasField("expires_at")),
        )
    if kind == "lock_acquired":
        a = pb.lock_acquired
        return WatchEvent(
            kind=kind,
            version=pb.version,
            fencing_token=a.fencing_token,
            lease_expires_at=timestamp(a.lease_expires_at, a.HasField("lease_expires_at")),
        )
    if kind in ("lock_released", "lock_expired", "lock_forced"):
        return WatchEvent(kind=kind, version=pb.version, fencing_token=getattr(pb, kind).fencing_token)
    return WatchEvent(kind=kind, version=pb.version)


# ---------------------------------------------------------------- requests


def get_request(
    session_id: str, consistency: Union[Consistency, str], min_version: int
) -> session_pb2.GetSessionRequest:
    if isinstance(consistency, str):
        consistency = Consistency[consistency.upper()]
    return session_pb2.GetSessionRequest(
        session_id=session_id, consistency=consistency.value, min_version=min_version
    )


def update_request(
    session_id: str,
    set_fields: Optional[Mapping[str, bytes]],
    delete_fields: Iterable[str],
    replace: bool,
    lock_token: Optional[str],
    expected_version: Optional[int],
    release_lock: bool,
    ops: Iterable[session_pb2.FieldOp] = (),
    idempotency_key: Optional[str] = None,
) -> session_pb2.UpdateSessionRequest:
    for name, value in (set_fields or {}).items():
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeError(f"field {name!r}: values are bytes, got {type(value).__name__}")
    req = session_pb2.UpdateSessionRequest(
        session_id=session_id,
        set_fields={k: bytes(v) for k, v in (set_fields or {}).items()},
        delete_fields=list(delete_fields),
        replace=replace,
        lock_token=lock_token or "",
        release_lock=release_lock,
        ops=list(ops),
        idempotency_key=idempotency_key or "",
    )
    if expected_version is not None:
        req.expected_version = expected_version
    return req


def delete_request(
    session_id: str,
    lock_token: Optional[str],
    expected_version: Optional[int],
    release_lock: bool,
    idempotency_key: Optional[str] = None,
) -> session_pb2.DeleteSessionRequest:
    req = session_pb2.DeleteSessionRequest(
        session_id=session_id,
        lock_token=lock_token or "",
        release_lock=release_lock,
        idempotency_key=idempotency_key or "",
    )
    if expected_version is not None:
        req.expected_version = expected_version
    return req


# ---------------------------------------------------------------- staged state


class SessionState:
    """The session as a handler sees it: a snapshot plus staged changes.

    `fields` is a private, mutable copy of the session's fields. Change it
    through `set`/`delete` or directly (`s.fields["k"] = b"v"`,
    `del s.fields["k"]`); what differs from the snapshot when the handler is
    done is written in one UpdateSession.
    """

    def __init__(self, session_id: str, session: Optional[Session]) -> None:
        self.session_id = session_id
        self.exists = session is not None
        # 0 when the session does not exist (which is also what
        # expected_version means by "create only").
        self.version = session.version if session is not None else 0
        self.session = session
        self._original: Dict[str, bytes] = dict(session.fields) if session is not None else {}
        self.fields: Dict[str, bytes] = dict(self._original)

    def set(self, name: str, value: bytes) -> None:
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeError(f"field {name!r}: values are bytes, got {type(value).__name__}")
        self.fields[name] = bytes(value)

    def delete(self, name: str) -> None:
        self.fields.pop(name, None)

    def changes(self) -> Tuple[Dict[str, bytes], List[str]]:
        """(fields to set, fields to delete) relative to the snapshot."""
        for name, value in self.fields.items():
            if not isinstance(value, (bytes, bytearray, memoryview)):
                raise TypeError(f"field {name!r}: values are bytes, got {type(value).__name__}")
        to_set = {k: bytes(v) for k, v in self.fields.items() if self._original.get(k) != v}
        to_delete = sorted(k for k in self._original if k not in self.fields)
        return to_set, to_delete

    @property
    def changed(self) -> bool:
        to_set, to_delete = self.changes()
        return bool(to_set or to_delete)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(session_id={self.session_id!r}, version={self.version}, "
            f"exists={self.exists}, fields={sorted(self.fields)})"
        )


class LockedSession(SessionState):
    """The session handed to the body of `with client.locked(...) as s`
    (or `async with`).

    Besides the staging API of SessionState it has the lock's `token`,
    `fencing_token` and `lease_expires_at`, `result` (the UpdateResult of the
    final write, after the block) and `lost` (True once the background refresh
    was told LOCK_LOST; `check()` raises LockLost then, for long handlers that
    want to stop early).
    """

    def __init__(self, lock: Lock) -> None:
        super().__init__(lock.session_id, lock.session)
        self.lock = lock
        self.token = lock.token
        self.fencing_token = lock.fencing_token
        self.lease_expires_at = lock.lease_expires_at
        self.result: Optional[UpdateResult] = None
        self.lost_error: Optional[errors.LockLost] = None

    @property
    def lost(self) -> bool:
        return self.lost_error is not None

    def check(self) -> None:
        if self.lost_error is not None:
            raise self.lost_error

