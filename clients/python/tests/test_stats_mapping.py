"""`Client.stats()` carries every field of admin.proto's GetStatsResponse: the
result dataclasses are checked against the generated descriptors, so a field
added to the proto fails here until the client maps it."""

from __future__ import annotations

import dataclasses

import pytest
from google.protobuf import descriptor

import sessiond
from sessiond._common import stats_from_pb
from sessiond.v1 import admin_pb2

PAIRS = [
    (admin_pb2.GetStatsResponse, sessiond.Stats),
    (admin_pb2.CacheStats, sessiond.CacheStats),
    (admin_pb2.LockStats, sessiond.LockStats),
    (admin_pb2.StoreStats, sessiond.StoreStats),
    (admin_pb2.QuotaStats, sessiond.QuotaStats),
    (admin_pb2.WatchStats, sessiond.WatchStats),
    (admin_pb2.RpcStats, sessiond.RpcStats),
    (admin_pb2.LatencySummary, sessiond.LatencySummary),
]


@pytest.mark.parametrize("message,cls", PAIRS, ids=lambda x: getattr(x, "__name__", ""))
def test_every_proto_field_has_a_dataclass_field(message, cls):
    proto_fields = {f.name for f in message.DESCRIPTOR.fields}
    ours = {f.name for f in dataclasses.fields(cls)}
    assert proto_fields - ours == set(), f"{cls.__name__} lacks {sorted(proto_fields - ours)}"
    assert ours - proto_fields == set(), f"{cls.__name__} has fields admin.proto lacks"


def _fill(msg, counter):
    """Sets every scalar of `msg` (recursively) to a distinct non-default value."""
    for f in msg.DESCRIPTOR.fields:
        if f.message_type is not None:
            if f.message_type.full_name == "google.protobuf.Duration":
                getattr(msg, f.name).FromSeconds(next(counter))
            elif f.is_repeated:
                _fill(getattr(msg, f.name).add(), counter)
            else:
                _fill(getattr(msg, f.name), counter)
        elif f.is_repeated:
            # Repeated scalars (StoreStats.durability_warnings): two values each.
            assert f.type == descriptor.FieldDescriptor.TYPE_STRING, f.full_name
            getattr(msg, f.name).extend([f"s{next(counter)}", f"s{next(counter)}"])
        elif f.type == descriptor.FieldDescriptor.TYPE_BOOL:
            setattr(msg, f.name, True)
        elif f.type == descriptor.FieldDescriptor.TYPE_STRING:
            setattr(msg, f.name, f"s{next(counter)}")
        else:
            setattr(msg, f.name, next(counter))


def _compare(msg, value, path):
    for f in msg.DESCRIPTOR.fields:
        ours = getattr(value, f.name)
        theirs = getattr(msg, f.name)
        where = f"{path}.{f.name}"
        if f.message_type is not None and f.message_type.full_name == "google.protobuf.Duration":
            assert ours == theirs.ToTimedelta(), where
        elif f.is_repeated and f.message_type is not None:
            assert len(ours) == len(theirs), where
            for item in theirs:
                _compare(item, ours[item.method], f"{where}[{item.method}]")
        elif f.is_repeated:
            assert list(ours) == list(theirs), where
        elif f.message_type is not None:
            _compare(theirs, ours, where)
        else:
            assert ours == theirs, where


def test_stats_from_pb_copies_every_value():
    pb = admin_pb2.GetStatsResponse()
    counter = iter(range(1, 1000))
    _fill(pb, counter)
    _compare(pb, stats_from_pb(pb), "stats")


def test_real_server_reports_a_healthy_feed(client):
    cache = client.stats().cache
    assert cache.feed_healthy is True, "always true on the embedded store"
    assert cache.feed_losses == 0


def test_real_server_reports_its_durability(client):
    store = client.stats().store
    assert (store.durability, store.durability_wait) == ("fsync", "fsync"), "the embedded store"
    assert store.durability_warnings == ()
    assert store.durability_failures == 0
    assert store.data_losses == 0
