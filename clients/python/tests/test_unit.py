"""Client logic that needs no server: error mapping from fabricated statuses,
staging, conversions, and which calls are retried."""

from __future__ import annotations

import datetime as dt

import grpc
import pytest
from google.rpc import code_pb2

import sessiond
from sessiond import errors
from sessiond._common import RetryPolicy, SessionState, millis
from sessiond.v1 import session_pb2
from _fakes import FakeError, Recorder

EXPECTED = {
    "INVALID_SESSION_ID": (grpc.StatusCode.INVALID_ARGUMENT, sessiond.InvalidSessionId),
    "INVALID_FIELD": (grpc.StatusCode.INVALID_ARGUMENT, sessiond.InvalidField),
    "INVALID_LEASE": (grpc.StatusCode.INVALID_ARGUMENT, sessiond.InvalidLease),
    "INVALID_WAIT": (grpc.StatusCode.INVALID_ARGUMENT, sessiond.InvalidWait),
    "INVALID_LOCK_TOKEN": (grpc.StatusCode.INVALID_ARGUMENT, sessiond.InvalidLockToken),
    "LIMIT_EXCEEDED": (grpc.StatusCode.INVALID_ARGUMENT, sessiond.LimitExceeded),
    "SESSION_NOT_FOUND": (grpc.StatusCode.NOT_FOUND, sessiond.SessionNotFound),
    "VERSION_MISMATCH": (grpc.StatusCode.ABORTED, sessiond.VersionMismatch),
    "LOCK_HELD": (grpc.StatusCode.FAILED_PRECONDITION, sessiond.LockHeld),
    "LOCK_LOST": (grpc.StatusCode.FAILED_PRECONDITION, sessiond.LockLost),
    "LOCK_WAIT_TIMEOUT": (grpc.StatusCode.DEADLINE_EXCEEDED, sessiond.LockWaitTimeout),
    "OVERLOADED": (grpc.StatusCode.RESOURCE_EXHAUSTED, sessiond.Overloaded),
    "QUOTA_EXCEEDED": (grpc.StatusCode.RESOURCE_EXHAUSTED, sessiond.QuotaExceeded),
    "STORE_UNAVAILABLE": (grpc.StatusCode.UNAVAILABLE, sessiond.StoreUnavailable),
    "SHUTTING_DOWN": (grpc.StatusCode.UNAVAILABLE, sessiond.ShuttingDown),
}


@pytest.mark.parametrize("reason", sorted(EXPECTED))
def test_every_reason_maps_to_its_exception(reason):
    code, cls = EXPECTED[reason]
    exc = errors.from_rpc_error(FakeError(code, "what went wrong", reason, {"k": "v"}))
    assert type(exc) is cls
    assert isinstance(exc, sessiond.SessiondError)
    assert (exc.code, exc.reason, exc.metadata, exc.message) == (code, reason, {"k": "v"}, "what went wrong")
    assert exc.status_inconsistency is None
    assert reason in str(exc) and "k=v" in str(exc)


def test_hierarchy_groups_reasons():
    assert issubclass(sessiond.LimitExceeded, sessiond.InvalidArgument)
    assert issubclass(sessiond.InvalidLockToken, sessiond.InvalidArgument)
    assert issubclass(sessiond.LockHeld, sessiond.LockError)
    assert issubclass(sessiond.LockLost, sessiond.LockError)
    assert issubclass(sessiond.StoreUnavailable, sessiond.Unavailable)
    assert issubclass(sessiond.ShuttingDown, sessiond.Unavailable)


@pytest.mark.parametrize(
    "code,cls",
    [
        (grpc.StatusCode.UNAVAILABLE, sessiond.Unavailable),
        (grpc.StatusCode.DEADLINE_EXCEEDED, sessiond.DeadlineExceeded),
        (grpc.StatusCode.INVALID_ARGUMENT, sessiond.InvalidArgument),
        (grpc.StatusCode.FAILED_PRECONDITION, sessiond.LockError),
        (grpc.StatusCode.UNAUTHENTICATED, sessiond.Unauthenticated),
        (grpc.StatusCode.PERMISSION_DENIED, sessiond.PermissionDenied),
        (grpc.StatusCode.INTERNAL, sessiond.SessiondError),
    ],
)
def test_status_without_error_info_maps_by_code(code, cls):
    exc = errors.from_rpc_error(FakeError(code, "no details"))
    assert type(exc) is cls and exc.reason is None and exc.metadata == {}


def test_error_info_of_another_domain_is_ignored():
    exc = errors.from_rpc_error(FakeError(grpc.StatusCode.FAILED_PRECONDITION, "x", "LOCK_HELD", domain="other"))
    assert type(exc) is sessiond.LockError and exc.reason is None


def test_inconsistent_rich_status_is_reported_not_hidden():
    err = FakeError(grpc.StatusCode.FAILED_PRECONDITION, "held", "LOCK_HELD", status_code=code_pb2.ABORTED)
    exc = errors.from_rpc_error(err)
    assert type(exc) is sessiond.LockHeld
    assert exc.status_inconsistency and "doesn't match" in exc.status_inconsistency


def test_metadata_helpers():
    vm = errors.from_rpc_error(FakeError(grpc.StatusCode.ABORTED, "m", "VERSION_MISMATCH", {"current_version": "7"}))
    assert vm.current_version == 7
    le = errors.from_rpc_error(FakeError(grpc.StatusCode.INVALID_ARGUMENT, "m", "LIMIT_EXCEEDED", {"limit": "max_fields"}))
    assert le.limit == "max_fields"


def test_session_state_diff_covers_set_delete_and_direct_assignment():
    snap = sessiond.Session("u", {"a": b"1", "b": b"2", "c": b"3"}, 4)
    s = SessionState("u", snap)
    assert (s.exists, s.version, s.changed) == (True, 4, False)
    s.set("a", b"1")  # same value: no change
    s.set("b", b"20")
    s.delete("c")
    s.fields["d"] = b"4"
    s.delete("never-there")
    assert s.changes() == ({"b": b"20", "d": b"4"}, ["c"])
    with pytest.raises(TypeError):
        s.set("e", "text")
    s.fields["e"] = "text"
    with pytest.raises(TypeError):
        s.changes()
    fresh = SessionState("new", None)
    assert (fresh.exists, fresh.version, fresh.fields) == (False, 0, {})


def test_durations_become_milliseconds():
    assert millis(None, "lease") == 0
    assert millis(0.3, "lease") == 300
    assert millis(dt.timedelta(seconds=2), "wait") == 2000
    assert millis(0.0001, "wait") == 1  # positive never rounds to "try once"
    with pytest.raises(ValueError):
        millis(-1, "wait")


def test_backoff_is_jittered_and_capped():
    p = RetryPolicy(retries=5, base_backoff=0.1, max_backoff=0.3)
    for attempt in range(8):
        for _ in range(50):
            assert 0 <= p.backoff(attempt) <= min(0.3, 0.1 * 2**attempt)


def unavailable():
    return FakeError(grpc.StatusCode.UNAVAILABLE, "connection refused")


@pytest.fixture
def offline_client(monkeypatch):
    client = sessiond.Client("127.0.0.1:1", timeout=1.5, retries=2)
    client.retry_policy = RetryPolicy(retries=2, base_backoff=0.001, max_backoff=0.002)
    yield client
    client.close()


def test_reads_are_retried_on_unavailable(offline_client):
    rec = Recorder([unavailable(), unavailable()], session_pb2.GetSessionResponse(
        session=session_pb2.Session(session_id="u", version=3, fields={"a": b"1"})))
    offline_client._sessions.GetSession = rec
    s = offline_client.get("u")
    assert (s.version, s.fields, len(rec.calls)) == (3, {"a": b"1"}, 3)
    assert all(timeout == 1.5 for _, timeout in rec.calls)


def test_retries_are_bounded_and_flagged(offline_client):
    rec = Recorder([unavailable()] * 5, session_pb2.RefreshLockResponse())
    offline_client._sessions.RefreshLock = rec
    with pytest.raises(sessiond.Unavailable) as ei:
        offline_client.refresh("u", "tok")
    assert len(rec.calls) == 3 and ei.value.maybe_applied


def test_unguarded_update_and_lock_are_sent_once(offline_client):
    rec = Recorder([unavailable()] * 5, session_pb2.UpdateSessionResponse(version=2))
    offline_client._sessions.UpdateSession = rec
    with pytest.raises(sessiond.Unavailable) as ei:
        offline_client.update("u", {"a": b"1"})
    assert len(rec.calls) == 1 and not ei.value.maybe_applied

    lock = Recorder([unavailable()] * 5, session_pb2.LockSessionResponse())
    offline_client._sessions.LockSession = lock
    with pytest.raises(sessiond.Unavailable):
        offline_client.lock("u", wait=2)
    assert len(lock.calls) == 1
    assert lock.calls[0][1] == pytest.approx(3.5)  # the wait on top of the timeout


@pytest.mark.parametrize("guard", [{"expected_version": 0}, {"lock_token": "tok"}])
def test_guarded_update_is_retried(offline_client, guard):
    rec = Recorder([unavailable()], session_pb2.UpdateSessionResponse(version=9))
    offline_client._sessions.UpdateSession = rec
    assert offline_client.update("u", {"a": b"1"}, **guard).version == 9
    assert len(rec.calls) == 2


def test_cas_does_not_rerun_fn_after_an_ambiguous_attempt(offline_client):
    offline_client._sessions.GetSession = Recorder([], session_pb2.GetSessionResponse(
        session=session_pb2.Session(session_id="u", version=5, fields={"n": b"1"})))
    offline_client._sessions.UpdateSession = Recorder(
        [unavailable(), FakeError(grpc.StatusCode.ABORTED, "v", "VERSION_MISMATCH", {"current_version": "6"})],
        session_pb2.UpdateSessionResponse(version=6))
    runs = []
    with pytest.raises(sessiond.VersionMismatch) as ei:
        offline_client.update_with_retry("u", lambda s: runs.append(s.set("n", b"2")))
    assert ei.value.maybe_applied and len(runs) == 1


def test_expected_version_zero_is_sent_as_present():
    from sessiond._common import update_request

    assert update_request("u", {}, [], False, None, 0, False).HasField("expected_version")
    assert not update_request("u", {}, [], False, None, None, False).HasField("expected_version")
