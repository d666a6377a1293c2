"""The retry policy against clients/retry-policy.json, the fixture the Node
client's tests assert too: the decision function on every row, then both
Python clients on a stand-in stub (every row), then the blocking client on a
real sessiond whose Redis is gone (the STORE_UNAVAILABLE rows)."""

from __future__ import annotations

import asyncio
import inspect
import json
import socket
import subprocess

import grpc
import pytest

import sessiond
from sessiond import _retry
from sessiond.v1 import admin_pb2, session_pb2
from _fakes import AsyncRecorder, FakeError, Recorder
from _support import REPO, Server, free_port, wait_for

POLICY = json.loads((REPO / "clients" / "retry-policy.json").read_text())
ROWS = POLICY["rows"]


def row_id(row):
    guards = "+".join(row["guards"]) or "unguarded"
    return f"{row['call']}[{guards}]-{row['code']}/{row['reason']}"


def code(name):
    return grpc.StatusCode[name]


# ------------------------------------------------------------ the decision


@pytest.mark.parametrize("row", ROWS, ids=row_id)
def test_should_retry_agrees_with_the_fixture(row):
    got = _retry.should_retry(
        row["call"],
        code(row["code"]),
        row["reason"],
        lock_token="lock_token" in row["guards"],
        expected_version="expected_version" in row["guards"],
        idempotency_key="idempotency_key" in row["guards"],
    )
    assert got is row["retry"]


def test_the_fixture_covers_every_call_and_guard_combination():
    calls = {r["call"] for r in ROWS}
    # WatchSession is a stream its caller resumes (after_version), never a
    # call the client retries: it has no rows.
    unary = set(session_pb2.DESCRIPTOR.services_by_name["SessionService"].methods_by_name) - {"WatchSession"}
    assert calls == unary | {"GetStats"}
    for write in ("UpdateSession", "DeleteSession"):
        guards = {tuple(r["guards"]) for r in ROWS if r["call"] == write}
        # the 7 of lock_token, expected_version and release_lock, and an
        # idempotency key alone or with release_lock
        assert len(guards) == 9, guards
        assert {("idempotency_key",), ("idempotency_key", "release_lock")} <= guards
    assert {tuple(r["guards"]) for r in ROWS if r["call"] == "LockSession"} == {(), ("idempotency_key",)}
    statuses = {(r["code"], r["reason"]) for r in ROWS}
    for call in calls:
        assert {(r["code"], r["reason"]) for r in ROWS if r["call"] == call} == statuses, call


@pytest.mark.parametrize("row", POLICY["outcome_unknown"], ids=lambda r: str(r["reason"]))
def test_outcome_unknown_agrees_with_the_fixture(row):
    assert _retry.outcome_unknown(code(row["code"]), row["reason"]) is row["unknown"]


@pytest.mark.parametrize("row", POLICY["conflicts"], ids=lambda r: f"{r['reason']}-{r['maybe_applied']}")
def test_restarts_conflict_agrees_with_the_fixture(row):
    assert _retry.restarts_conflict(row["reason"], row["maybe_applied"]) is row["restart"]


def test_backoff_parameters_and_bounds(monkeypatch):
    b, cb = POLICY["backoff"], POLICY["conflict_backoff"]
    policy = sessiond.RetryPolicy()
    assert (policy.retries, policy.base_backoff, policy.max_backoff) == (
        b["retries"], b["base_ms"] / 1000, b["max_ms"] / 1000
    )
    for cls in (sessiond.Client, sessiond.AsyncClient):
        assert inspect.signature(cls).parameters["retries"].default == b["retries"]
        assert inspect.signature(cls.update_with_retry).parameters["attempts"].default == cb["attempts"]
    assert (_retry.CONFLICT_BASE_BACKOFF, _retry.CONFLICT_MAX_BACKOFF) == (
        cb["base_ms"] / 1000, cb["max_ms"] / 1000
    )
    samples = [(policy.backoff, s) for s in b["samples"]] + [(_retry.conflict_backoff, s) for s in cb["samples"]]
    for backoff, s in samples:
        lo, hi = s["min_ms"] / 1000, s["max_ms"] / 1000
        for _ in range(50):
            assert lo <= backoff(s["n"]) <= hi, s
        # The random half spans exactly [c/2, c].
        monkeypatch.setattr(_retry.random, "uniform", lambda a, z: a)
        assert backoff(s["n"]) == pytest.approx(lo)
        monkeypatch.setattr(_retry.random, "uniform", lambda a, z: z)
        assert backoff(s["n"]) == pytest.approx(hi)
        monkeypatch.undo()


# ------------------------------------------------------------ both clients on a stand-in

ANSWERS = {
    "GetSession": session_pb2.GetSessionResponse(session=session_pb2.Session(session_id="u", version=3)),
    "GetStats": admin_pb2.GetStatsResponse(instance_id="i"),
    "RefreshLock": session_pb2.RefreshLockResponse(),
    "UnlockSession": session_pb2.UnlockSessionResponse(),
    "LockSession": session_pb2.LockSessionResponse(lock_token="t", fencing_token=1),
    "UpdateSession": session_pb2.UpdateSessionResponse(version=4),
    "DeleteSession": session_pb2.DeleteSessionResponse(deleted=True),
    "CheckRate": session_pb2.CheckRateResponse(remaining=1),
}


def invoke(client, call, guards):
    """The client method for `call`, with the row's guards (a coroutine for
    the asyncio client)."""
    g = {
        "lock_token": "tok" if "lock_token" in guards else None,
        "expected_version": 3 if "expected_version" in guards else None,
        "release_lock": "release_lock" in guards,
        "idempotency_key": "evt-1" if "idempotency_key" in guards else None,
    }
    return {
        "GetSession": lambda: client.get("u"),
        "GetStats": lambda: client.stats(),
        "RefreshLock": lambda: client.refresh("u", "tok"),
        "UnlockSession": lambda: client.unlock("u", "tok"),
        "LockSession": lambda: client.lock("u", wait=0, idempotency_key=g["idempotency_key"]),
        "UpdateSession": lambda: client.update("u", {"a": b"1"}, **g),
        "DeleteSession": lambda: client.delete("u", **g),
        "CheckRate": lambda: client.check_rate("u"),
    }[call]()


def stub_of(client, call):
    return client._admin if call == "GetStats" else client._sessions


def quick(client, retries):
    client.retry_policy = sessiond.RetryPolicy(retries=retries, base_backoff=0.001, max_backoff=0.002)
    return client


@pytest.mark.parametrize("row", ROWS, ids=row_id)
def test_blocking_client_follows_the_row(row):
    with quick(sessiond.Client("127.0.0.1:1", timeout=1.0), 2) as client:
        rec = Recorder([FakeError(code(row["code"]), "scripted", row["reason"])], ANSWERS[row["call"]])
        setattr(stub_of(client, row["call"]), row["call"], rec)
        if row["retry"]:
            invoke(client, row["call"], row["guards"])
            assert len(rec.calls) == 2
        else:
            with pytest.raises(sessiond.SessiondError) as ei:
                invoke(client, row["call"], row["guards"])
            assert (ei.value.code, ei.value.reason) == (code(row["code"]), row["reason"])
            assert len(rec.calls) == 1 and not ei.value.maybe_applied


@pytest.mark.parametrize("row", ROWS, ids=row_id)
def test_asyncio_client_follows_the_row(row):
    async def main():
        async with sessiond.AsyncClient("127.0.0.1:1", timeout=1.0) as client:
            quick(client, 2)
            rec = AsyncRecorder([FakeError(code(row["code"]), "scripted", row["reason"])], ANSWERS[row["call"]])
            setattr(stub_of(client, row["call"]), row["call"], rec)
            if row["retry"]:
                await invoke(client, row["call"], row["guards"])
                assert len(rec.calls) == 2
            else:
                with pytest.raises(sessiond.SessiondError) as ei:
                    await invoke(client, row["call"], row["guards"])
                assert (ei.value.code, ei.value.reason) == (code(row["code"]), row["reason"])
                assert len(rec.calls) == 1

    asyncio.run(main())


@pytest.mark.parametrize("row", POLICY["outcome_unknown"], ids=lambda r: str(r["reason"]))
def test_maybe_applied_follows_the_outcome_of_retried_attempts(row):
    """RefreshLock is retried on every UNAVAILABLE; the LOCK_LOST that answers
    the retry may be the echo of a first attempt that landed, unless that one
    said SHUTTING_DOWN."""
    with quick(sessiond.Client("127.0.0.1:1", timeout=1.0), 2) as client:
        client._sessions.RefreshLock = Recorder(
            [FakeError(code(row["code"]), "first", row["reason"]),
             FakeError(grpc.StatusCode.FAILED_PRECONDITION, "gone", "LOCK_LOST")],
            None,
        )
        with pytest.raises(sessiond.LockLost) as ei:
            client.refresh("u", "tok")
        assert ei.value.maybe_applied is row["unknown"]


@pytest.mark.parametrize("row", POLICY["conflicts"], ids=lambda r: f"{r['reason']}-{r['maybe_applied']}")
def test_update_with_retry_follows_the_conflict_rows(row):
    """The handler runs again only after a conflict that wrote nothing."""
    refused = FakeError(code(row["code"]), "refused", row["reason"], {"current_version": "6"})
    if row["maybe_applied"]:
        # An ambiguous first attempt, retried, then the refusal.
        script, retries = [FakeError(grpc.StatusCode.UNAVAILABLE, "reset"), refused], 1
    else:
        script, retries = [refused], 0
    with quick(sessiond.Client("127.0.0.1:1", timeout=1.0), retries) as client:
        client._sessions.GetSession = Recorder([], ANSWERS["GetSession"])
        client._sessions.UpdateSession = Recorder(script, session_pb2.UpdateSessionResponse(version=7))
        runs = []
        if row["restart"]:
            assert client.update_with_retry("u", lambda s: runs.append(s.set("n", b"1"))).version == 7
            assert len(runs) == 2
        else:
            with pytest.raises(sessiond.SessiondError) as ei:
                client.update_with_retry("u", lambda s: runs.append(s.set("n", b"1")))
            assert ei.value.reason == row["reason"] and len(runs) == 1


# ------------------------------------------------------------ a real sessiond without its store

STORE_ROWS = [
    r for r in ROWS
    if r["reason"] == "STORE_UNAVAILABLE"
    # GetStats never touches the store; release_lock without a token is
    # refused (INVALID_LOCK_TOKEN) before the store is asked.
    and r["call"] != "GetStats"
    and not ("release_lock" in r["guards"] and "lock_token" not in r["guards"])
]


@pytest.fixture(scope="module")
def storeless(tmp_path_factory):
    """A Redis-backed sessiond whose redis-server has been stopped."""
    port = free_port()
    redis = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )

    def redis_up():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            return False

    srv = None
    try:
        wait_for(redis_up, what="redis-server to listen")
        srv = Server(
            tmp_path_factory.mktemp("storeless"),
            "--redis-url", f"redis://127.0.0.1:{port}/0", "--redis-timeout", "300ms",
        ).start()
        redis.terminate()
        redis.wait(10)
        yield srv
    finally:
        if redis.poll() is None:
            redis.kill()
            redis.wait()
        if srv is not None:
            srv.stop()


@pytest.mark.parametrize("row", STORE_ROWS, ids=row_id)
def test_real_store_unavailable_is_retried_as_the_row_says(storeless, row):
    attempts = []

    class Count(grpc.UnaryUnaryClientInterceptor):
        def intercept_unary_unary(self, continuation, details, request):
            attempts.append(details.method)
            return continuation(details, request)

    token = "well-formed-but-never-issued"
    channel = grpc.intercept_channel(grpc.insecure_channel(storeless.target), Count())
    with quick(sessiond.Client("unused", timeout=5.0, channel=channel), 1) as client:
        g = {
            "lock_token": token if "lock_token" in row["guards"] else None,
            "expected_version": 3 if "expected_version" in row["guards"] else None,
            "release_lock": "release_lock" in row["guards"],
            "idempotency_key": "evt-1" if "idempotency_key" in row["guards"] else None,
        }
        call = {
            "GetSession": lambda: client.get("never-read"),
            "RefreshLock": lambda: client.refresh("u", token),
            "UnlockSession": lambda: client.unlock("u", token),
            "LockSession": lambda: client.lock("u", wait=0, idempotency_key=g["idempotency_key"]),
            "UpdateSession": lambda: client.update("u", {"a": b"1"}, **g),
            "DeleteSession": lambda: client.delete("u", **g),
            "CheckRate": lambda: client.check_rate("u"),
        }[row["call"]]
        with pytest.raises(sessiond.StoreUnavailable) as ei:
            call()
        assert ei.value.reason == "STORE_UNAVAILABLE"
        assert len(attempts) == (2 if row["retry"] else 1), attempts
        assert ei.value.maybe_applied is row["retry"]
    channel.close()


def test_update_with_retry_restarts_on_an_aborted_without_error_info():
    """Classed by its code, an ABORTED without ErrorInfo is a VersionMismatch
    and restarts the loop like one (as before the policy was written down)."""
    with quick(sessiond.Client("127.0.0.1:1", timeout=1.0), 0) as client:
        client._sessions.GetSession = Recorder([], ANSWERS["GetSession"])
        client._sessions.UpdateSession = Recorder(
            [FakeError(grpc.StatusCode.ABORTED, "bare")], session_pb2.UpdateSessionResponse(version=7)
        )
        runs = []
        assert client.update_with_retry("u", lambda s: runs.append(s.set("n", b"1"))).version == 7
        assert len(runs) == 2
