"""What AdminService's operator calls return: a session and its lock as
InspectSession shows them, and the conversion from the generated messages."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Optional

from ._common import timestamp
from .v1 import admin_pb2


@dataclass(frozen=True)
class LockHolder:
    """Who holds a lock, as AdminService.InspectSession shows it (never its token)."""

    fencing_token: int
    lease_expires_at: Optional[_dt.datetime]
    held_since: Optional[_dt.datetime]
    # The granting instance: the first 16 characters of its GetStats instance_id.
    instance: str


@dataclass(frozen=True)
class Inspection:
    """AdminService.InspectSession: a session and its lock, for operators."""

    exists: bool
    version: int
    field_count: int
    size_bytes: int
    expires_at: Optional[_dt.datetime]
    lock: Optional[LockHolder]
    waiters: int
    # 0 when nobody waits.
    oldest_wait_ms: int


def inspection_from_pb(pb: admin_pb2.InspectSessionResponse) -> Inspection:
    lock = None
    if pb.HasField("lock"):
        lk = pb.lock
        lock = LockHolder(
            fencing_token=lk.fencing_token,
            lease_expires_at=timestamp(lk.lease_expires_at, lk.HasField("lease_expires_at")),
            held_since=timestamp(lk.held_since, lk.HasField("held_since")),
            instance=lk.instance,
        )
    return Inspection(
        exists=pb.exists,
        version=pb.version,
        field_count=pb.field_count,
        size_bytes=pb.size_bytes,
        expires_at=timestamp(pb.expires_at, pb.HasField("expires_at")),
        lock=lock,
        waiters=pb.waiters,
        oldest_wait_ms=pb.oldest_wait_ms,
    )


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
    )


def update_from_pb(pb: session_pb2.UpdateSessionResponse) -> UpdateResult:
    return UpdateResult(version=pb.version, expires_at=timestamp(pb.expires_at, pb.HasField("expires_at")))


def _latency(pb: admin_pb2.LatencySummary) -> LatencySummary:
    return LatencySummary(count=pb.count, p50=pb.p50, p90=pb.p90, p99=pb.p99, max=pb.max)
