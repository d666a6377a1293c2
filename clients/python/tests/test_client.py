"""The blocking client against a real sessiond: reads, writes, locks, CAS, leases."""

from __future__ import annotations

import threading
import time

import pytest

import sessiond
from _support import wait_for


def test_write_read_delete_and_versions_never_reused(client, sid):
    with pytest.raises(sessiond.SessionNotFound):
        client.get(sid)
    assert client.get_or_none(sid) is None

    created = client.update(sid, {"lang": b"en", "name": b"Ada"}, expected_version=0)
    assert created.version == 1 and created.expires_at is not None
    s = client.get(sid, consistency="strong")
    assert (s.session_id, s.fields, s.version, s.from_cache) == (sid, {"lang": b"en", "name": b"Ada"}, 1, False)
    assert s.created_at is not None and s.updated_at is not None and s.expires_at > s.updated_at

    second = client.update(sid, {"lang": b"fr"}, ["name"])
    assert second.version == 2
    assert client.get(sid, min_version=2).fields == {"lang": b"fr"}

    replaced = client.update(sid, {"only": b"this"}, replace=True, expected_version=2)
    assert replaced.version == 3
    assert client.get(sid, min_version=3).fields == {"only": b"this"}

    assert client.delete(sid) is True
    assert client.delete(sid) is False  # a retried delete is harmless
    with pytest.raises(sessiond.SessionNotFound):
        client.get(sid, consistency=sessiond.Consistency.STRONG)

    again = client.update(sid, {"lang": b"de"}, expected_version=0)
    assert again.version > 3, "versions continue after a delete and re-create"


def test_cached_read_reports_its_source(client, sid):
    client.update(sid, {"a": b"1"})
    client.get(sid, consistency="strong")
    reads = [client.get(sid) for _ in range(3)]
    assert all(r.fields == {"a": b"1"} for r in reads)
    assert any(r.from_cache for r in reads), "repeated CACHED reads are served from the cache"
    client.update(sid, {"a": b"2"})
    assert client.get(sid).fields == {"a": b"2"}, "a write on this instance invalidates its cache"


def test_locked_update_writes_and_releases_in_one_step(client, other, sid):
    with client.locked(sid, lease=5) as s:
        assert (s.exists, s.version, s.fields) == (False, 0, {})
        assert s.token and s.fencing_token > 0 and s.lease_expires_at is not None
        with pytest.raises(sessiond.LockHeld):
            other.lock(sid, wait=0)
        s.set("turns", b"1")
        s.fields["greeting"] = b"hi"
    assert s.result is not None and s.result.version == 1
    assert client.get(sid, consistency="strong").fields == {"turns": b"1", "greeting": b"hi"}

    first_fence = s.fencing_token
    with other.locked(sid, lease=5, wait=0) as s2:  # free again: released by the write
        assert (s2.exists, s2.version) == (True, 1)
        assert s2.fencing_token > first_fence
        s2.delete("greeting")
        del s2.fields["turns"]
        s2.set("turns", b"2")
    assert client.get(sid, consistency="strong").fields == {"turns": b"2"}


def test_locked_without_changes_only_unlocks(client, other, sid):
    v = client.update(sid, {"a": b"1"}).version
    with client.locked(sid, lease=5) as s:
        assert s.fields == {"a": b"1"}
    assert s.result is None
    assert client.get(sid, consistency="strong").version == v
    other.unlock(sid, other.lock(sid, wait=0).token)


def test_locked_releases_on_exception_and_writes_nothing(client, other, sid):
    client.update(sid, {"a": b"1"})
    with pytest.raises(ZeroDivisionError):
        with client.locked(sid, lease=5) as s:
            s.set("a", b"changed")
            1 / 0
    assert client.get(sid, consistency="strong").fields == {"a": b"1"}
    other.unlock(sid, other.lock(sid, wait=0).token)


def test_lock_is_mandatory_for_writers(client, other, sid):
    client.update(sid, {"a": b"1"})
    lock = client.lock(sid, lease=5)
    assert lock.session is not None and lock.session.fields == {"a": b"1"}
    with pytest.raises(sessiond.LockHeld):
        other.update(sid, {"a": b"2"})
    with pytest.raises(sessiond.LockHeld):
        other.delete(sid)
    assert other.update(sid, {"a": b"3"}, lock_token=lock.token).version == 2
    assert other.delete(sid, lock_token=lock.token, release_lock=True) is True
    other.unlock(sid, other.lock(sid, wait=0).token)


def test_waiters_are_served_first_come_first_served(client, server, sid):
    holder = client.lock(sid, lease=5)
    order, threads = [], []
    base = client.stats().locks.waiting_now
    clients = [sessiond.Client(server.target) for _ in range(3)]
    try:
        for i, c in enumerate(clients):
            def wait_turn(c=c, i=i):
                lk = c.lock(sid, lease=5, wait=10)
                order.append(i)
                c.unlock(sid, lk.token)

            t = threading.Thread(target=wait_turn)
            t.start()
            threads.append(t)
            wait_for(lambda: client.stats().locks.waiting_now >= base + i + 1, what=f"waiter {i} queued")
        client.unlock(sid, holder.token)
        for t in threads:
            t.join(15)
    finally:
        for c in clients:
            c.close()
    assert order == [0, 1, 2]


def test_cas_under_contention_loses_no_update(server, sid):
    threads_n, increments = 4, 15
    acknowledged = [0] * threads_n
    refused = [0] * threads_n

    def incr(s: sessiond.SessionState) -> None:
        s.set("count", str(int(s.fields.get("count", b"0")) + 1).encode())

    def worker(i: int) -> None:
        with sessiond.Client(server.target) as c:
            for _ in range(increments):
                try:
                    c.update_with_retry(sid, incr, attempts=5)
                    acknowledged[i] += 1
                except sessiond.VersionMismatch:
                    refused[i] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    with sessiond.Client(server.target) as c:
        final = c.get(sid, consistency="strong")
    assert sum(acknowledged) + sum(refused) == threads_n * increments
    assert int(final.fields["count"]) == sum(acknowledged) == final.version
    assert sum(acknowledged) > 0


def test_cas_creates_and_stages_nothing_when_fn_changes_nothing(client, sid):
    r = client.update_with_retry(sid, lambda s: s.set("n", b"1") if not s.exists else None)
    assert r.version == 1
    r = client.update_with_retry(sid, lambda s: s.set("n", b"1") if not s.exists else None)
    assert r.version == 1 and client.get(sid, consistency="strong").version == 1


def test_refresh_keeps_the_lock_through_a_long_handler(client, other, sid):
    with client.locked(sid, lease=0.3) as s:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:  # a handler 3x longer than the lease
            with pytest.raises(sessiond.LockHeld):
                other.lock(sid, wait=0)
            time.sleep(0.1)
        assert not s.lost
        s.set("answer", b"42")
    assert s.result is not None
    assert client.get(sid, consistency="strong").fields == {"answer": b"42"}


def test_expired_lease_refuses_the_write_whatever_the_clocks_say(client, sid):
    client.update(sid, {"a": b"1"})
    with pytest.raises(sessiond.LockLost):
        with client.locked(sid, lease=0.1, refresh=False) as s:
            time.sleep(0.4)  # the lease runs out; nobody else takes the lock
            s.set("a", b"stale")
    assert client.get(sid, consistency="strong").fields == {"a": b"1"}


def test_lease_taken_over_refuses_the_write(client, other, sid):
    client.update(sid, {"a": b"1"})
    with pytest.raises(sessiond.LockLost):
        with client.locked(sid, lease=0.2, refresh=False) as s:
            taker = other.lock(sid, lease=5, wait=5)  # granted when the lease runs out
            assert taker.fencing_token > s.fencing_token
            s.set("a", b"stale")
    assert client.get(sid, consistency="strong").fields == {"a": b"1"}
    assert other.update(sid, {"a": b"2"}, lock_token=taker.token, release_lock=True).version == 2


def test_lost_lock_seen_by_refresh_fails_the_final_write(client, other, sid):
    client.update(sid, {"a": b"1"})
    with pytest.raises(sessiond.LockLost):
        with client.locked(sid, lease=0.3) as s:
            client.unlock(sid, s.token)  # pulled from under the handler...
            taker = other.lock(sid, lease=5, wait=0)  # ...and taken by someone else
            wait_for(lambda: s.lost, timeout=5, what="the refresher to see LOCK_LOST")
            with pytest.raises(sessiond.LockLost):
                s.check()
            s.set("a", b"stale")
    assert client.get(sid, consistency="strong").fields == {"a": b"1"}
    other.unlock(sid, taker.token)


def test_stale_tokens_are_refused(client, sid):
    lock = client.lock(sid, lease=5)
    assert client.refresh(sid, lock.token, lease=5) is not None
    client.unlock(sid, lock.token)
    with pytest.raises(sessiond.LockLost):
        client.refresh(sid, lock.token)
    with pytest.raises(sessiond.LockLost):
        client.unlock(sid, lock.token)
    with pytest.raises(sessiond.LockLost):
        client.update(sid, {"a": b"1"}, lock_token=lock.token)


def test_fencing_tokens_increase_across_delete_and_recreate(client, sid):
    fences = []
    for _ in range(2):
        lk = client.lock(sid, lease=5)
        fences.append(lk.fencing_token)
        client.update(sid, {"a": b"1"}, lock_token=lk.token, release_lock=True)
        lk = client.lock(sid, lease=5)
        fences.append(lk.fencing_token)
        client.delete(sid, lock_token=lk.token, release_lock=True)
    assert fences == sorted(set(fences))


def test_stats_count_this_clients_calls(client, sid):
    before = client.stats()
    client.update(sid, {"a": b"1"})
    client.get(sid)
    after = client.stats()
    assert after.instance_id == before.instance_id and after.store_backend == "embedded"
    assert after.version and after.uptime >= before.uptime
    assert after.rpcs["UpdateSession"].calls >= before.rpcs.get("UpdateSession", sessiond.RpcStats("")).calls + 1
    assert after.store.healthy


def test_check_rate_admits_a_burst_then_says_when(client, sid):
    # 10 a second, 2 at once.
    first = client.check_rate(sid, "replies", per_second=10, burst=2)
    assert first.remaining == 1 and 0 < first.reset_after <= 0.2
    assert client.check_rate(sid, "replies", per_second=10, burst=2).remaining == 0
    with pytest.raises(sessiond.RateLimited) as refused:
        client.check_rate(sid, "replies", per_second=10, burst=2)
    e = refused.value
    assert e.limit == "replies" and 0 < e.retry_after <= 0.1 and e.retry_after_ms >= 1
    time.sleep(e.retry_after)
    assert client.check_rate(sid, "replies", per_second=10, burst=2).remaining == 0
    # A namespace's limit is another one; bad arguments name their reason.
    assert client.check_rate(name="replies", per_second=10, burst=2, namespace_scope=True).remaining == 1
    with pytest.raises(sessiond.InvalidRateLimit):
        client.check_rate(sid, per_second=0)


def test_lock_checks_its_rate_limit_before_queueing(client, other, sid):
    limit = sessiond.rate_limit("locks", per_second=0.01, burst=1)
    held = client.lock(sid, lease=5, rate_limit=limit)
    started = time.monotonic()
    with pytest.raises(sessiond.RateLimited) as refused:
        other.lock(sid, wait=5, rate_limit=limit)  # refused at once, never queued
    assert time.monotonic() - started < 2 and refused.value.limit == "locks"
    client.unlock(sid, held.token)
