"""`watch`: WatchSession as an iterator (blocking client) and an async
iterator (asyncio client), against a real sessiond."""

from __future__ import annotations

import asyncio

import pytest

import sessiond


def test_watch_yields_the_snapshot_then_every_event(client, other, sid):
    events = client.watch(sid, include_values=True)
    first = next(events)
    assert (first.kind, first.version, first.session) == ("snapshot", 0, None)
    v1 = other.update(sid, {"a": b"1"}).version
    ch = next(events)
    assert (ch.kind, ch.version, ch.set_fields, ch.created) == ("changed", v1, ("a",), True)
    assert ch.values == {"a": b"1"}
    lock = other.lock(sid, lease=5)
    acquired = next(events)
    assert (acquired.kind, acquired.fencing_token) == ("lock_acquired", lock.fencing_token)
    other.update(sid, {"b": b"2"}, delete_fields=["a"], lock_token=lock.token, release_lock=True)
    ch = next(events)
    assert (ch.kind, ch.set_fields, ch.removed_fields) == ("changed", ("b",), ("a",))
    released = next(events)
    assert (released.kind, released.fencing_token) == ("lock_released", lock.fencing_token)
    other.delete(sid)
    deleted = next(events)
    assert (deleted.kind, deleted.version) == ("deleted", v1 + 1)
    events.close()  # cancels the stream
    assert client.stats().watch.events_sent >= 6


def test_watch_resumes_after_the_last_version_read(client, other, sid):
    events = client.watch(sid)
    next(events)
    last = other.update(sid, {"n": b"1"}).version
    assert next(events).version == last
    events.close()
    other.update(sid, {"n": b"2"})
    other.update(sid, {"n": b"3"})
    resumed = client.watch(sid, after_version=last)
    assert next(resumed).kind == "resumed"
    assert [next(resumed).version for _ in range(2)] == [last + 1, last + 2]
    resumed.close()
    # A version whose events are not kept: a snapshot, marked resync.
    again = client.watch(sid, after_version=last + 1_000)
    snap = next(again)
    assert (snap.kind, snap.resync, snap.session.version) == ("snapshot", True, last + 2)
    again.close()


def test_watch_of_a_bad_id_is_refused(client):
    with pytest.raises(sessiond.InvalidSessionId):
        next(client.watch("a\nb"))


def test_async_watch(server, sid):
    async def main():
        async with sessiond.AsyncClient(server.target) as c:
            seen = []

            async def watcher():
                async for ev in c.watch(sid, include_values=True):
                    seen.append(ev)
                    if ev.kind == "changed" and ev.values.get("done") == b"1":
                        return

            task = asyncio.create_task(watcher())
            while not seen:
                await asyncio.sleep(0.01)
            for i in range(5):
                await c.update(sid, {"n": str(i).encode()})
            await c.update(sid, {"done": b"1"})
            await asyncio.wait_for(task, 10)
            assert seen[0].kind == "snapshot"
            assert [e.version for e in seen[1:]] == [1, 2, 3, 4, 5, 6]

    asyncio.run(main())
