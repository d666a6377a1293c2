"""The asyncio twin against a real sessiond (each test runs its own event loop)."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

import sessiond


def run(coro):
    return asyncio.run(coro)


def test_async_locked_update_and_reads(server, sid):
    async def main():
        async with sessiond.AsyncClient(server.target) as c:
            assert await c.get_or_none(sid) is None
            async with c.locked(sid, lease=5) as s:
                assert not s.exists
                s.set("turns", b"1")
            assert s.result.version == 1
            got = await c.get(sid, consistency="strong")
            assert got.fields == {"turns": b"1"} and got.version == 1
            async with c.locked(sid, lease=5) as s:
                pass  # nothing changed: just unlocks
            assert s.result is None
            lock = await c.lock(sid, wait=0)
            assert lock.session.version == 1
            await c.refresh(sid, lock.token, lease=5)
            assert (await c.update(sid, {"a": b"1"}, lock_token=lock.token, release_lock=True)).version == 2
            assert await c.delete(sid) is True
            stats = await c.stats()
            assert stats.rpcs["LockSession"].calls >= 3

    run(main())


def test_async_errors_are_mapped_from_aio_errors(server, sid):
    async def main():
        async with sessiond.AsyncClient(server.target) as c, sessiond.AsyncClient(server.target) as d:
            with pytest.raises(sessiond.SessionNotFound) as ei:
                await c.get(sid)
            assert ei.value.reason == "SESSION_NOT_FOUND" and isinstance(ei.value.__cause__, grpc.aio.AioRpcError)
            assert ei.value.status_inconsistency is None
            lock = await c.lock(sid, lease=5)
            with pytest.raises(sessiond.LockHeld) as ei:
                await d.lock(sid, wait=0)
            assert ei.value.code == grpc.StatusCode.FAILED_PRECONDITION
            with pytest.raises(sessiond.LockWaitTimeout):
                await d.lock(sid, wait=0.2)
            with pytest.raises(sessiond.InvalidLease):
                await d.lock(sid, lease=0.01)
            await c.unlock(sid, lock.token)
            with pytest.raises(sessiond.LockLost):
                await c.unlock(sid, lock.token)

    run(main())


def test_async_drop_and_inorder(server, sid):
    """Seed 002 with asyncio tasks: try-once answers busy, waiting keeps order."""

    async def handle(c, user, text, wait, log):
        try:
            async with c.locked(user, lease=5, wait=wait) as s:
                history = s.fields.get("history", b"").decode().splitlines()
                await asyncio.sleep(0.3)
                s.set("history", "\n".join(history + [text]).encode())
                log.append(text)
                return f"echo #{len(history) + 1}: {text}"
        except sessiond.LockHeld:
            return "busy"

    async def wait_until(pred):
        deadline = time.monotonic() + 10
        while not await pred():
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)

    async def scenario(c, user, wait):
        log = []
        base = (await c.stats()).locks
        t1 = asyncio.ensure_future(handle(c, user, "m1", wait, log))
        await wait_until(lambda: _acquired_since(c, base))
        t2 = asyncio.ensure_future(handle(c, user, "m2", wait, log))
        if wait:
            await wait_until(lambda: _waiting(c, base.waiting_now + 1))
        else:
            await t2
        t3 = asyncio.ensure_future(handle(c, user, "m3", wait, log))
        if wait:
            await wait_until(lambda: _waiting(c, base.waiting_now + 2))
        return await asyncio.gather(t1, t2, t3), log

    async def main():
        async with sessiond.AsyncClient(server.target) as c:
            replies, log = await scenario(c, sid + "-drop", 0)
            assert replies == ["echo #1: m1", "busy", "busy"] and log == ["m1"]
            replies, log = await scenario(c, sid + "-inorder", 10)
            assert replies == ["echo #1: m1", "echo #2: m2", "echo #3: m3"] and log == ["m1", "m2", "m3"]
            got = await c.get(sid + "-inorder", consistency="strong")
            assert got.fields["history"] == b"m1\nm2\nm3"

    run(main())


async def _acquired_since(c, base):
    return (await c.stats()).locks.acquisitions > base.acquisitions


async def _waiting(c, n):
    return (await c.stats()).locks.waiting_now >= n


def test_async_refresh_across_a_long_handler_and_lost_lock(server, sid):
    async def main():
        async with sessiond.AsyncClient(server.target) as c, sessiond.AsyncClient(server.target) as d:
            async with c.locked(sid, lease=0.3) as s:
                for _ in range(10):  # 1 s, over three leases
                    await asyncio.sleep(0.1)
                    with pytest.raises(sessiond.LockHeld):
                        await d.lock(sid, wait=0)
                s.set("answer", b"42")
            assert (await c.get(sid, consistency="strong")).fields == {"answer": b"42"}

            with pytest.raises(sessiond.LockLost):
                async with c.locked(sid, lease=0.3) as s:
                    await c.unlock(sid, s.token)
                    taker = await d.lock(sid, lease=5)
                    deadline = time.monotonic() + 5
                    while not s.lost:
                        assert time.monotonic() < deadline, "the refresh task sees LOCK_LOST"
                        await asyncio.sleep(0.01)
                    s.set("answer", b"stale")
            assert (await c.get(sid, consistency="strong")).fields == {"answer": b"42"}
            await d.unlock(sid, taker.token)

    run(main())


def test_async_cas_under_contention(server, sid):
    async def main():
        clients = [sessiond.AsyncClient(server.target) for _ in range(3)]
        acked = 0

        async def incr(s):
            s.set("n", str(int(s.fields.get("n", b"0")) + 1).encode())

        async def worker(c):
            nonlocal acked
            for _ in range(10):
                try:
                    await c.update_with_retry(sid, incr, attempts=5)
                    acked += 1
                except sessiond.VersionMismatch:
                    pass

        await asyncio.gather(*(worker(c) for c in clients))
        final = await clients[0].get(sid, consistency="strong")
        for c in clients:
            await c.close()
        assert int(final.fields["n"]) == acked == final.version and acked > 0

    run(main())


def test_async_check_rate(server, sid):
    async def main():
        async with sessiond.AsyncClient(server.target) as c:
            admitted = await c.check_rate(sid, per_second=1, burst=1)
            assert admitted.remaining == 0 and 0.9 < admitted.reset_after <= 1
            with pytest.raises(sessiond.RateLimited) as refused:
                await c.check_rate(sid, per_second=1, burst=1)
            assert refused.value.limit == "default" and 0 < refused.value.retry_after <= 1

    run(main())
