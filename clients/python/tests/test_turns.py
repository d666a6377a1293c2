"""Turn policies and lock idempotency keys through both Python clients, on a
real sessiond: a newer LATEST_WINS waiter supersedes the older one and is
granted with its payload; DEBOUNCE too; a lock key replayed gets the first
grant (`replayed`); bad arguments are refused with their own errors."""

from __future__ import annotations

import asyncio
import threading

import pytest

import sessiond
from _support import wait_for


def _queue(client, sid, payload, results, policy="LATEST_WINS", debounce=None):
    def run():
        try:
            results[payload] = client.lock(sid, lease=5, wait=10, policy=policy, debounce=debounce, payload=payload)
        except sessiond.SessiondError as e:
            results[payload] = e

    t = threading.Thread(target=run)
    t.start()
    return t


@pytest.mark.parametrize("policy", [sessiond.TurnPolicy.LATEST_WINS, "debounce"])
def test_the_newest_waiter_answers_the_burst(client, server, sid, policy):
    debounce = 0.2 if policy == "debounce" else None
    holder = client.lock(sid, lease=5)
    base = client.stats().locks.waiting_now
    results, threads = {}, []
    with sessiond.Client(server.target) as a, sessiond.Client(server.target) as b:
        threads.append(_queue(a, sid, b"m0", results, policy, debounce))
        wait_for(lambda: client.stats().locks.waiting_now >= base + 1, what="m0 queued")
        threads.append(_queue(b, sid, b"m1", results, policy, debounce))
        threads[0].join(10)
        assert isinstance(results[b"m0"], sessiond.Superseded)
        assert results[b"m0"].reason == "SUPERSEDED"
        client.unlock(sid, holder.token)
        threads[1].join(10)
    got = results[b"m1"]
    assert isinstance(got, sessiond.Lock), got
    assert got.superseded_payloads == (b"m0",)
    assert got.superseded_dropped == 0 and not got.replayed
    client.unlock(sid, got.token)


def test_bad_turns_are_refused_with_their_errors(client, sid):
    with pytest.raises(sessiond.InvalidTurnPolicy):
        client.lock(sid, wait=0, policy="LATEST_WINS")
    with pytest.raises(sessiond.InvalidTurnPolicy):
        client.lock(sid, wait=1, payload=b"fifo has no payload")
    with pytest.raises(sessiond.InvalidDebounce):
        client.lock(sid, wait=1, policy="DEBOUNCE", debounce=2)
    with pytest.raises(sessiond.LimitExceeded):
        client.lock(sid, wait=1, policy="LATEST_WINS", payload=b"x" * 5000)
    with pytest.raises(ValueError):
        client.lock(sid, wait=1, policy="SOMETIMES")


def test_a_lock_key_replayed_gets_the_first_grant(client, other, sid):
    first = client.lock(sid, lease=5, idempotency_key="evt-7")
    again = other.lock(sid, lease=5, idempotency_key="evt-7")
    assert again.replayed and not first.replayed
    assert (again.token, again.fencing_token) == (first.token, first.fencing_token)
    with pytest.raises(sessiond.IdempotencyKeyReused):
        other.lock(sid, lease=6, idempotency_key="evt-7")
    client.unlock(sid, first.token)


def test_the_asyncio_client_takes_turns_and_keys_too(server, sid):
    async def main():
        async with sessiond.AsyncClient(server.target) as a, sessiond.AsyncClient(server.target) as b:
            holder = await a.lock(sid, lease=5)
            older = asyncio.ensure_future(
                a.lock(sid, lease=5, wait=10, policy=sessiond.TurnPolicy.LATEST_WINS, payload=b"hi")
            )
            while (await a.stats()).locks.waiting_now < 1:
                await asyncio.sleep(0.01)
            newer = asyncio.ensure_future(
                b.lock(sid, lease=5, wait=10, policy="LATEST_WINS", payload=b"there", idempotency_key="e1")
            )
            with pytest.raises(sessiond.Superseded):
                await older
            await a.unlock(sid, holder.token)
            got = await newer
            assert got.superseded_payloads == (b"hi",)
            replay = await a.lock(sid, lease=5, wait=10, policy="LATEST_WINS", payload=b"there", idempotency_key="e1")
            assert replay.replayed and replay.token == got.token
            await b.unlock(sid, got.token)

    asyncio.run(main())


def test_locked_takes_the_turn_and_the_key(client, server, sid):
    # The newest waiter of a burst enters the block with the older one's
    # payload; the older one is Superseded at entry.
    holder = client.lock(sid, lease=5)
    base = client.stats().locks.waiting_now
    results = {}

    def enter(c, payload):
        try:
            with c.locked(sid, lease=5, wait=10, policy="LATEST_WINS", payload=payload) as s:
                s.set("answered", payload)
                results[payload] = s.lock
        except sessiond.SessiondError as e:
            results[payload] = e

    with sessiond.Client(server.target) as a, sessiond.Client(server.target) as b:
        first = threading.Thread(target=enter, args=(a, b"m0"))
        first.start()
        wait_for(lambda: client.stats().locks.waiting_now >= base + 1, what="m0 queued")
        second = threading.Thread(target=enter, args=(b, b"m1"))
        second.start()
        first.join(10)
        assert isinstance(results[b"m0"], sessiond.Superseded)
        client.unlock(sid, holder.token)
        second.join(10)
    assert results[b"m1"].superseded_payloads == (b"m0",)
    assert client.get(sid, consistency="STRONG").fields["answered"] == b"m1"
    superseded = client.stats().locks.superseded
    assert superseded >= 1

    # The same event's key: the second block is handed the first grant,
    # replayed, whose lock the first block's write released.
    with client.locked(sid, lease=5, idempotency_key="event-1") as s:
        assert not s.lock.replayed
        s.set("n", b"1")
    with pytest.raises(sessiond.LockLost):
        with client.locked(sid, lease=5, idempotency_key="event-1") as s:
            assert s.lock.replayed
            s.set("n", b"2")
    assert client.get(sid, consistency="STRONG").fields["n"] == b"1"
    assert client.stats().locks.replayed >= 1


def test_async_locked_passes_the_turn_policy(server, sid):
    async def main():
        async with sessiond.AsyncClient(server.target) as c:
            async with c.locked(sid, lease=5, wait=1, policy="DEBOUNCE", debounce=0.05, payload=b"p") as s:
                assert s.lock.superseded_payloads == ()
                s.set("k", b"v")
            return await c.get(sid, consistency="STRONG")

    assert asyncio.run(main()).fields["k"] == b"v"
