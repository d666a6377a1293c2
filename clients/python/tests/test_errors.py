"""Every ErrorInfo reason sessiond can produce, provoked for real, and the
exception, status code, reason and domain the client turns it into."""

from __future__ import annotations

import signal
import subprocess
import threading
import time

import grpc
import pytest

import sessiond
from sessiond import errors
from sessiond.v1 import session_pb2
from _support import Server, free_port, wait_for


def check(ei, cls, code, reason):
    """The raised exception is exactly `cls`, from a consistent rich status."""
    exc = ei.value
    assert type(exc) is cls, f"{type(exc).__name__}: {exc!r}"
    assert (exc.code, exc.reason) == (code, reason), repr(exc)
    assert exc.status_inconsistency is None, exc.status_inconsistency
    assert exc.message, "the status message says what went wrong"
    assert isinstance(exc.__cause__, grpc.RpcError)
    return exc


INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("bad_id", ["", "a\x00b", "tab\there", "x" * 257, "é" * 129])
def test_invalid_session_id(client, bad_id):
    with pytest.raises(sessiond.InvalidSessionId) as ei:
        client.get(bad_id)
    check(ei, sessiond.InvalidSessionId, INVALID, "INVALID_SESSION_ID")
    with pytest.raises(sessiond.InvalidSessionId):
        client.update(bad_id, {"a": b"1"})
    with pytest.raises(sessiond.InvalidSessionId):
        client.lock(bad_id)


def test_longest_valid_session_id_is_accepted(client):
    sid = "é" * 128  # 256 bytes of UTF-8
    assert client.update(sid, {"a": b"1"}).version >= 1
    client.delete(sid)


@pytest.mark.parametrize(
    "set_fields,delete_fields",
    [({"": b"x"}, []), ({"bad\nname": b"x"}, []), ({"n" * 257: b"x"}, []), ({"a": b"1"}, ["a"])],
)
def test_invalid_field(client, sid, set_fields, delete_fields):
    with pytest.raises(sessiond.InvalidField) as ei:
        client.update(sid, set_fields, delete_fields)
    check(ei, sessiond.InvalidField, INVALID, "INVALID_FIELD")
    assert client.get_or_none(sid) is None, "nothing is written"


@pytest.mark.parametrize("lease", [0.01, 301.0])  # below --lease-min 50ms, above the 5m default max
def test_invalid_lease(client, sid, lease):
    with pytest.raises(sessiond.InvalidLease) as ei:
        client.lock(sid, lease=lease)
    check(ei, sessiond.InvalidLease, INVALID, "INVALID_LEASE")


def test_invalid_lease_on_refresh(client, sid):
    lock = client.lock(sid, lease=5)
    with pytest.raises(sessiond.InvalidLease) as ei:
        client.refresh(sid, lock.token, lease=0.01)
    check(ei, sessiond.InvalidLease, INVALID, "INVALID_LEASE")
    client.unlock(sid, lock.token)


def test_invalid_wait(client, sid):
    started = time.monotonic()
    with pytest.raises(sessiond.InvalidWait) as ei:
        client.lock(sid, wait=61)  # the default --wait-max is 60s
    check(ei, sessiond.InvalidWait, INVALID, "INVALID_WAIT")
    assert time.monotonic() - started < 5, "refused at once, not after waiting"


def test_invalid_lock_token(client, sid):
    for malformed in ("not a token!", "t" * 65, "tok\x00en"):  # tokens are short and plain
        with pytest.raises(sessiond.InvalidLockToken) as ei:
            client.unlock(sid, malformed)
        check(ei, sessiond.InvalidLockToken, INVALID, "INVALID_LOCK_TOKEN")
    with pytest.raises(sessiond.LockLost):
        client.unlock(sid, "well-formed-but-never-issued")
    with pytest.raises(sessiond.InvalidLockToken) as ei:
        client.unlock(sid, "")
    check(ei, sessiond.InvalidLockToken, INVALID, "INVALID_LOCK_TOKEN")
    with pytest.raises(sessiond.InvalidLockToken) as ei:
        client.refresh(sid, "")
    check(ei, sessiond.InvalidLockToken, INVALID, "INVALID_LOCK_TOKEN")
    with pytest.raises(sessiond.InvalidLockToken) as ei:
        client.update(sid, {"a": b"1"}, release_lock=True)  # releasing needs the token
    check(ei, sessiond.InvalidLockToken, INVALID, "INVALID_LOCK_TOKEN")
    assert client.get_or_none(sid) is None


def test_limit_exceeded_field_size(client, sid):
    client.update(sid, {"a": b"1"})
    with pytest.raises(sessiond.LimitExceeded) as ei:
        client.update(sid, {"big": b"x" * (64 * 1024 + 1), "b": b"2"})  # default max 64KiB
    exc = check(ei, sessiond.LimitExceeded, INVALID, "LIMIT_EXCEEDED")
    assert exc.limit, f"ErrorInfo metadata names the limit: {exc.metadata}"
    assert client.get(sid, consistency="strong").fields == {"a": b"1"}, "nothing is written"


def test_limit_exceeded_field_count(client, sid):
    with pytest.raises(sessiond.LimitExceeded) as ei:
        client.update(sid, {f"f{i}": b"" for i in range(257)})  # default max 256 fields
    exc = check(ei, sessiond.LimitExceeded, INVALID, "LIMIT_EXCEEDED")
    assert exc.limit
    assert client.get_or_none(sid) is None


def test_session_not_found(client, sid):
    for read in (lambda: client.get(sid), lambda: client.get(sid, consistency="strong")):
        with pytest.raises(sessiond.SessionNotFound) as ei:
            read()
        check(ei, sessiond.SessionNotFound, grpc.StatusCode.NOT_FOUND, "SESSION_NOT_FOUND")


def test_version_mismatch(client, sid):
    client.update(sid, {"a": b"1"})
    client.update(sid, {"a": b"2"})
    with pytest.raises(sessiond.VersionMismatch) as ei:
        client.update(sid, {"a": b"3"}, expected_version=1)
    exc = check(ei, sessiond.VersionMismatch, grpc.StatusCode.ABORTED, "VERSION_MISMATCH")
    assert exc.current_version in (None, 2)
    with pytest.raises(sessiond.VersionMismatch):
        client.update(sid, {"a": b"3"}, expected_version=0)  # create-only on an existing session
    with pytest.raises(sessiond.VersionMismatch):
        client.delete(sid, expected_version=0)  # "0 never matches an existing session"
    assert client.get(sid, consistency="strong").fields == {"a": b"2"}


def test_lock_held(client, other, sid):
    lock = client.lock(sid, lease=5)
    with pytest.raises(sessiond.LockHeld) as ei:
        other.lock(sid, wait=0)
    check(ei, sessiond.LockHeld, grpc.StatusCode.FAILED_PRECONDITION, "LOCK_HELD")
    with pytest.raises(sessiond.LockHeld) as ei:
        other.update(sid, {"a": b"1"})
    check(ei, sessiond.LockHeld, grpc.StatusCode.FAILED_PRECONDITION, "LOCK_HELD")
    client.unlock(sid, lock.token)


def test_lock_lost(client, sid):
    lock = client.lock(sid, lease=5)
    client.unlock(sid, lock.token)
    for call in (
        lambda: client.unlock(sid, lock.token),
        lambda: client.refresh(sid, lock.token),
        lambda: client.update(sid, {"a": b"1"}, lock_token=lock.token),
        lambda: client.delete(sid, lock_token=lock.token),
    ):
        with pytest.raises(sessiond.LockLost) as ei:
            call()
        check(ei, sessiond.LockLost, grpc.StatusCode.FAILED_PRECONDITION, "LOCK_LOST")


def test_lock_wait_timeout(client, other, sid):
    lock = client.lock(sid, lease=5)
    started = time.monotonic()
    with pytest.raises(sessiond.LockWaitTimeout) as ei:
        other.lock(sid, wait=0.3)
    waited = time.monotonic() - started
    check(ei, sessiond.LockWaitTimeout, grpc.StatusCode.DEADLINE_EXCEEDED, "LOCK_WAIT_TIMEOUT")
    assert 0.25 <= waited < 3, waited
    client.unlock(sid, lock.token)


def test_a_waiter_whose_deadline_passes_leaves_the_queue(client, other, sid):
    holder = client.lock(sid, lease=10)
    base = client.stats().locks
    # The raw stub, to give the call a deadline shorter than the wait it asks for.
    req = session_pb2.LockSessionRequest(session_id=sid, lease_ms=5000, wait_ms=5000)
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as ei:
        other._sessions.LockSession(req, timeout=0.5)
    assert time.monotonic() - started < 3, "the wait is capped by the call's deadline"
    exc = errors.from_rpc_error(ei.value)
    assert type(exc) in (sessiond.LockWaitTimeout, sessiond.DeadlineExceeded), repr(exc)
    wait_for(lambda: client.stats().locks.waiting_now == base.waiting_now, what="the queue to empty")
    client.unlock(sid, holder.token)
    lock = client.lock(sid, wait=0)  # nobody was granted the lock behind our back
    client.unlock(sid, lock.token)


def test_unreachable_server_is_unavailable_after_retries():
    attempts = []

    class Count(grpc.UnaryUnaryClientInterceptor):
        def intercept_unary_unary(self, continuation, details, request):
            attempts.append(details.method)
            return continuation(details, request)

    channel = grpc.intercept_channel(grpc.insecure_channel(f"127.0.0.1:{free_port()}"), Count())
    client = sessiond.Client("unused", timeout=1, retries=2, channel=channel)
    with pytest.raises(sessiond.Unavailable) as ei:
        client.get("u")
    assert ei.value.reason is None and len(attempts) == 3
    attempts.clear()
    with pytest.raises(sessiond.Unavailable):
        client.update("u", {"a": b"1"})  # unguarded: sent once
    assert len(attempts) == 1
    channel.close()


# ---- reasons that need a server of their own


def test_overloaded(tmp_path):
    srv = Server(tmp_path, "--max-concurrent-calls", "1").start()
    try:
        with sessiond.Client(srv.target) as a, sessiond.Client(srv.target, retries=0) as b:
            holder = a.lock("busy-user", lease=10)
            outcome = []

            def wait_in_queue():
                try:
                    outcome.append(b.lock("busy-user", wait=3))
                except sessiond.SessiondError as e:
                    outcome.append(e)

            waiter = threading.Thread(target=wait_in_queue)
            waiter.start()  # occupies the one call slot while it waits
            try:
                def shed():
                    try:
                        a.get("someone-else")
                    except sessiond.Overloaded as e:
                        return e
                    except sessiond.SessionNotFound:
                        return None
                exc = wait_for(shed, timeout=5, what="a call to be shed")
                assert (exc.code, exc.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "OVERLOADED")
                assert exc.status_inconsistency is None
            finally:
                waiter.join(10)
            assert isinstance(outcome[0], sessiond.LockWaitTimeout), outcome
            a.unlock("busy-user", holder.token)
    finally:
        srv.stop()


def test_quota_exceeded(tmp_path):
    srv = Server(tmp_path, "--max-sessions-per-namespace", "1").start()
    try:
        with sessiond.Client(srv.target) as c:
            c.update("only", {"a": b"1"})
            with pytest.raises(sessiond.QuotaExceeded) as ei:
                c.update("one-too-many", {"a": b"1"})
            exc = check(ei, sessiond.QuotaExceeded, grpc.StatusCode.RESOURCE_EXHAUSTED,
                        "QUOTA_EXCEEDED")
            assert (exc.quota, exc.limit, exc.usage) == ("sessions", 1, 1)
            with pytest.raises(sessiond.SessionNotFound):
                c.get("one-too-many")
            c.delete("only")
            c.update("one-too-many", {"a": b"1"})
    finally:
        srv.stop()


def test_unauthenticated_and_namespace_denied(tmp_path):
    telegram, slack = "telegram-bot-token-0001", "slack-and-line-token-01"
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{telegram} telegram\n{slack} slack,line\n")
    srv = Server(tmp_path, "--auth-tokens-file", str(tokens)).start()
    try:
        with sessiond.Client(srv.target, retries=0) as anonymous:
            with pytest.raises(sessiond.Unauthenticated) as e:
                anonymous.get("u")
            assert (e.value.code, e.value.reason) == (grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")
        wrong_ns = [("authorization", f"Bearer {slack}"), ("sessiond-namespace", "telegram")]
        with sessiond.Client(srv.target, retries=0, metadata=wrong_ns) as c:
            with pytest.raises(sessiond.PermissionDenied) as e:
                c.get("u")
            assert (e.value.code, e.value.reason) == (grpc.StatusCode.PERMISSION_DENIED, "NAMESPACE_DENIED")
        # The same id under two tokens: two sessions.
        with sessiond.Client(srv.target, metadata=[("authorization", f"Bearer {telegram}")]) as t, \
                sessiond.Client(srv.target, metadata=[("authorization", f"Bearer {slack}")]) as s:
            t.update("u", {"who": b"telegram"})
            s.update("u", {"who": b"slack"})
            assert t.get("u").fields == {"who": b"telegram"}
            assert s.get("u").fields == {"who": b"slack"}
    finally:
        srv.stop()


def test_store_unavailable(tmp_path):
    port = free_port()
    redis = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    srv = None
    try:
        import socket

        def redis_up():
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return True
            except OSError:
                return False

        wait_for(redis_up, what="redis-server to listen")
        srv = Server(tmp_path, "--redis-url", f"redis://127.0.0.1:{port}/0", "--redis-timeout", "300ms").start()
        with sessiond.Client(srv.target, retries=0) as c:
            assert c.update("u", {"a": b"1"}).version == 1
            assert c.stats().store_backend == "redis"
            redis.terminate()
            redis.wait(10)
            with pytest.raises(sessiond.StoreUnavailable) as ei:
                c.update("u", {"a": b"2"})
            check(ei, sessiond.StoreUnavailable, grpc.StatusCode.UNAVAILABLE, "STORE_UNAVAILABLE")
            with pytest.raises(sessiond.StoreUnavailable) as ei:
                c.lock("u", wait=0)
            check(ei, sessiond.StoreUnavailable, grpc.StatusCode.UNAVAILABLE, "STORE_UNAVAILABLE")
            assert not c.stats().store.healthy
    finally:
        if redis.poll() is None:
            redis.kill()
            redis.wait()
        if srv is not None:
            srv.stop()


def test_shutting_down(tmp_path):
    srv = Server(tmp_path, "--shutdown-grace", "5s").start()
    try:
        with sessiond.Client(srv.target) as a, sessiond.Client(srv.target, retries=0) as b:
            a.lock("u", lease=30)
            result = {}

            def queued():
                try:
                    b.lock("u", wait=20)
                    result["granted"] = True
                except sessiond.SessiondError as e:
                    result["error"] = e

            t = threading.Thread(target=queued)
            t.start()
            wait_for(lambda: a.stats().locks.waiting_now == 1, what="the waiter to queue")
            srv.signal(signal.SIGTERM)
            t.join(10)
            assert not t.is_alive(), "a queued waiter is answered when the drain starts"
            exc = result.get("error")
            assert isinstance(exc, sessiond.ShuttingDown), result
            assert (exc.code, exc.reason) == (grpc.StatusCode.UNAVAILABLE, "SHUTTING_DOWN")
            assert exc.status_inconsistency is None
        assert srv.proc.wait(10) == 0
    finally:
        srv.stop()
