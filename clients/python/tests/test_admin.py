"""AdminService's operator calls against a real sessiond: inspect a held
lock, force it open (the old holder gets LockLost), list by prefix, purge."""

from __future__ import annotations

import asyncio
import uuid

import pytest

import sessiond


def test_inspect_force_unlock_list_and_purge(client, other):
    base = f"py-admin-{uuid.uuid4().hex[:8]}/"
    ids = [f"{base}{i}" for i in range(12)]
    for i in ids:
        client.update(i, {"n": b"1"})
    lock = client.lock(ids[0], lease=30, wait=0)

    seen = client.inspect(ids[0])
    assert seen.exists and seen.version == 1 and seen.field_count == 1
    assert seen.size_bytes == 2
    assert seen.lock is not None and seen.lock.fencing_token == lock.fencing_token
    assert client.stats().instance_id.startswith(seen.lock.instance)
    assert seen.waiters == 0

    assert client.force_unlock(ids[0]) == lock.fencing_token
    assert client.force_unlock(ids[0]) is None
    with pytest.raises(sessiond.LockLost):
        other.update(ids[0], {"n": b"2"}, lock_token=lock.token)
    assert client.inspect(ids[0]).lock is None

    page, token = client.list_page(base, page_size=5)
    assert len(page) <= 5 and token
    assert sorted(client.list_sessions(base, page_size=5)) == sorted(ids)

    assert client.purge(base, page_size=5) == len(ids)
    assert client.list_sessions(base) == []
    assert client.stats().locks.forced_releases >= 1


def test_async_operator_calls(server):
    base = f"py-admin-{uuid.uuid4().hex[:8]}/"

    async def main():
        async with sessiond.AsyncClient(server.target) as c:
            await c.update(f"{base}a", {"x": b"1"})
            assert (await c.inspect(f"{base}a")).version == 1
            assert await c.list_sessions(base) == [f"{base}a"]
            assert await c.purge(base) == 1
            assert not (await c.inspect(f"{base}a")).exists
            with pytest.raises(sessiond.InvalidArgument):
                await c.list_page(base, "not-a-token")

    asyncio.run(main())
