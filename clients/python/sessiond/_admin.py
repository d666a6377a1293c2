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

