"""The blocking client: `Client` and its `locked(...)` context manager."""

from __future__ import annotations

import datetime
import random
import threading
import time
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, Tuple, Union

import grpc

from . import _common as c
from . import errors
from ._common import Consistency, Lock, Seconds, Session, SessionState, Stats, UpdateResult
from .v1 import admin_pb2, admin_pb2_grpc, session_pb2, session_pb2_grpc

Metadata = Sequence[Tuple[str, str]]


class Client:
    """A blocking sessiond client over one gRPC channel. Thread-safe.

    Args:
        target: "host:port" of a sessiond instance (or any gRPC target).
        timeout: deadline of each attempt of each call, in seconds. LockSession
            gets its `wait` on top of it.
        retries: how many times a call that failed with UNAVAILABLE is retried
            (with exponential backoff and jitter), for the calls where that is
            safe: reads, RefreshLock, UnlockSession, DeleteSession, and
            UpdateSession guarded by `expected_version` or a lock token.
            LockSession and unguarded updates are never retried (see README).
        credentials: channel credentials for TLS; None for a plaintext channel.
        metadata: sent with every call (e.g. an authorization header).
        channel: an existing channel to use instead of opening one.
    """

    def __init__(
        self,
        target: str,
        timeout: float = 5.0,
        retries: int = 3,
        *,
        credentials: Optional[grpc.ChannelCredentials] = None,
        metadata: Optional[Metadata] = None,
        channel: Optional[grpc.Channel] = None,
        options: Optional[Sequence[Tuple[str, Any]]] = None,
    ) -> None:
        if channel is None:
            if credentials is None:
                channel = grpc.insecure_channel(target, options=options)
            else:
                channel = grpc.secure_channel(target, credentials, options=options)
            self._owns_channel = True
        else:
            self._owns_channel = False
        self.channel = channel
        self.timeout = float(timeout)
        self.retry_policy = c.RetryPolicy(retries=retries)
        self._metadata = tuple(metadata or ())
        self._sessions = session_pb2_grpc.SessionServiceStub(channel)
        self._admin = admin_pb2_grpc.AdminServiceStub(channel)

    # ------------------------------------------------------------ plumbing

    def close(self) -> None:
        if self._owns_channel:
            self.channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: Callable, request: Any, *, timeout: Optional[float], retry: bool) -> Any:
        """One RPC with a deadline per attempt; UNAVAILABLE retried when `retry`."""
        deadline = self.timeout if timeout is None else timeout
        attempt = 0
        while True:
            try:
                return method(request, timeout=deadline, metadata=self._metadata)
            except grpc.RpcError as e:
                if (
                    retry
                    and e.code() == grpc.StatusCode.UNAVAILABLE
                    and attempt < self.retry_policy.retries
                ):
                    time.sleep(self.retry_policy.backoff(attempt))
                    attempt += 1
                    continue
                raise errors.from_rpc_error(e, maybe_applied=attempt > 0) from e

    # ------------------------------------------------------------ the RPCs

    def get(
        self,
        session_id: str,
        *,
        consistency: Union[Consistency, str] = Consistency.CACHED,
        min_version: int = 0,
        timeout: Optional[float] = None,
    ) -> Session:
        """GetSession. Raises SessionNotFound when it does not exist."""
        req = c.get_request(session_id, consistency, min_version)
        resp = self._call(self._sessions.GetSession, req, timeout=timeout, retry=True)
        return c.session_from_pb(resp.session, resp.from_cache)

    def update(
        self,
        session_id: str,
        set_fields: Optional[Mapping[str, bytes]] = None,
        delete_fields: Iterable[str] = (),
        *,
        replace: bool = False,
        lock_token: Optional[str] = None,
        expected_version: Optional[int] = None,
        release_lock: bool = False,
        timeout: Optional[float] = None,
    ) -> UpdateResult:
        """UpdateSession: set and delete fields in one atomic write.

        Retried on UNAVAILABLE only when guarded by `expected_version` or
        `lock_token`: a guarded write is never applied on top of a state it
        was not meant for. An unguarded write is sent once.
        """
        req = c.update_request(
            session_id, set_fields, delete_fields, replace, lock_token, expected_version, release_lock
        )
        guarded = bool(lock_token) or expected_version is not None
        resp = self._call(self._sessions.UpdateSession, req, timeout=timeout, retry=guarded)
        return c.update_from_pb(resp)

    def delete(
        self,
        session_id: str,
        *,
        lock_token: Optional[str] = None,
        expected_version: Optional[int] = None,
        release_lock: bool = False,
        timeout: Optional[float] = None,
    ) -> bool:
        """DeleteSession. True when something was deleted. Retried on
        UNAVAILABLE (a retried delete is harmless per the API; the answer of
        a retry may then be False)."""
        req = c.delete_request(session_id, lock_token, expected_version, release_lock)
        resp = self._call(self._sessions.DeleteSession, req, timeout=timeout, retry=True)
        return resp.deleted

    def lock(
        self,
        session_id: str,
        *,
        lease: Optional[Seconds] = None,
        wait: Seconds = 0,
        timeout: Optional[float] = None,
    ) -> Lock:
        """LockSession. `wait` 0 tries once (LockHeld when busy); > 0 queues
        FIFO for up to `wait` seconds (LockWaitTimeout). `lease` None is the
        server's default. The call's deadline is `wait` + `timeout`.

        Never retried: a grant whose answer was lost would leave a lock that
        nobody knows of until its lease ends, and a retry would queue behind it.
        """
        req = session_pb2.LockSessionRequest(
            session_id=session_id, lease_ms=c.millis(lease, "lease"), wait_ms=c.millis(wait, "wait")
        )
        deadline = (self.timeout if timeout is None else timeout) + (c.seconds(wait) or 0.0)
        resp = self._call(self._sessions.LockSession, req, timeout=deadline, retry=False)
        return c.lock_from_pb(session_id, resp)

    def unlock(self, session_id: str, token: str, *, timeout: Optional[float] = None) -> None:
        """UnlockSession. LockLost when the token no longer held the lock
        (with `maybe_applied` set if an earlier attempt may have unlocked)."""
        req = session_pb2.UnlockSessionRequest(session_id=session_id, lock_token=token)
        self._call(self._sessions.UnlockSession, req, timeout=timeout, retry=True)

    def refresh(
        self,
        session_id: str,
        token: str,
        *,
        lease: Optional[Seconds] = None,
        timeout: Optional[float] = None,
    ) -> Optional[datetime.datetime]:
        """RefreshLock: extend the lease from now. Returns the new expiry
        (a datetime). LockLost when the lock is gone: stop working at once."""
        req = session_pb2.RefreshLockRequest(
            session_id=session_id, lock_token=token, lease_ms=c.millis(lease, "lease")
        )
        resp = self._call(self._sessions.RefreshLock, req, timeout=timeout, retry=True)
        return c.timestamp(resp.lease_expires_at, resp.HasField("lease_expires_at"))

    def stats(self, *, timeout: Optional[float] = None) -> Stats:
        """AdminService.GetStats of the instance this channel reaches."""
        resp = self._call(self._admin.GetStats, admin_pb2.GetStatsRequest(), timeout=timeout, retry=True)
        return c.stats_from_pb(resp)

    # ------------------------------------------------------------ helpers

    def get_or_none(self, session_id: str, **kwargs: Any) -> Optional[Session]:
        """Like `get`, but None instead of SessionNotFound."""
        try:
            return self.get(session_id, **kwargs)
        except errors.SessionNotFound:
            return None

    def update_with_retry(
        self,
        session_id: str,
        fn: Callable[[SessionState], Any],
        *,
        attempts: int = 10,
        timeout: Optional[float] = None,
    ) -> UpdateResult:
        """Optimistic read-modify-write without a lock (compare-and-set).

        Reads the session, calls `fn(state)` to stage changes on a
        `SessionState` (`state.fields`, `state.set`, `state.delete`), and
        writes them with `expected_version` = the version read (0 = create
        only). On VersionMismatch it reads again (from the store, at least the
        version the server reported) and calls `fn` again, up to `attempts`
        times in all; then the VersionMismatch is raised. `fn` must therefore
        be free of side effects other than staging. Returns the write's result
        (or the unchanged version when `fn` staged nothing).

        A VersionMismatch that follows a retried UNAVAILABLE is raised at once
        (`maybe_applied` is set): the earlier attempt may have been applied,
        and running `fn` again could apply it twice.
        """
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        current = self.get_or_none(session_id, timeout=timeout)
        for attempt in range(attempts):
            state = SessionState(session_id, current)
            fn(state)
            to_set, to_delete = state.changes()
            if not to_set and not to_delete:
                return UpdateResult(version=state.version)
            try:
                return self.update(
                    session_id, to_set, to_delete, expected_version=state.version, timeout=timeout
                )
            except errors.VersionMismatch as e:
                if e.maybe_applied or attempt + 1 == attempts:
                    raise
                time.sleep(random.uniform(0.0, min(0.1, 0.002 * 2**attempt)))
                floor = max(e.current_version or 0, state.version + 1)
                current = self.get_or_none(
                    session_id, consistency=Consistency.STRONG, min_version=floor, timeout=timeout
                )
        raise AssertionError("unreachable")

    def locked(
        self,
        session_id: str,
        *,
        lease: Seconds = 10.0,
        wait: Seconds = 0,
        refresh: bool = True,
        timeout: Optional[float] = None,
    ) -> "Locked":
        """Lock, hand over the session, write the staged changes and release.

            with client.locked("user-42", lease=10, wait=0) as s:
                s.set("last", b"hello")

        Raises LockHeld (wait 0) or LockWaitTimeout at entry when the lock
        cannot be had. See `Locked` for what happens at exit.
        """
        return Locked(self, session_id, lease=lease, wait=wait, refresh=refresh, timeout=timeout)


class LockedSession(SessionState):
    """The session handed to the body of `with client.locked(...) as s`.

    Besides the staging API of SessionState it has the lock's `token`,
    `fencing_token` and `lease_expires_at`, `result` (the UpdateResult of the
    final write, after the block) and `lost` (True once the background refresh
    was told LOCK_LOST; `check()` raises LockLost then, for long handlers that
    want to stop early).
    """

    def __init__(self, lock: Lock) -> None:
        super().__init__(lock.session_id, lock.session)
        self.lock = lock
        self.token = lock.token
        self.fencing_token = lock.fencing_token
        self.lease_expires_at = lock.lease_expires_at
        self.result: Optional[UpdateResult] = None
        self.lost_error: Optional[errors.LockLost] = None

    @property
    def lost(self) -> bool:
        return self.lost_error is not None

    def check(self) -> None:
        if self.lost_error is not None:
            raise self.lost_error


class _Refresher(threading.Thread):
    """Extends the lease every lease/3 until stopped or told LOCK_LOST."""

    def __init__(self, client: Client, state: LockedSession, lease: float) -> None:
        super().__init__(name=f"sessiond-refresh-{state.session_id}", daemon=True)
        self.client = client
        self.state = state
        self.lease = lease
        self.interval = lease / 3.0
        self.stopped = threading.Event()
        self.last_error: Optional[errors.SessiondError] = None

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                # Each attempt must end well before the lease does.
                self.state.lease_expires_at = self.client.refresh(
                    self.state.session_id,
                    self.state.token,
                    lease=self.lease,
                    timeout=min(self.client.timeout, self.interval),
                )
            except errors.LockLost as e:
                self.state.lost_error = e
                return
            except errors.SessiondError as e:
                # Transient (deadline, overload, store down): try again at the
                # next tick. If the lease runs out meanwhile the server says
                # LOCK_LOST then, and the final write is refused anyway.
                self.last_error = e

    def stop(self) -> None:
        self.stopped.set()
        self.join()


class Locked:
    """Context manager returned by `Client.locked`.

    At exit:
    - the body raised: the lock is released (errors of that unlock are
      swallowed so the body's exception is the one you see);
    - the background refresh was told LOCK_LOST: nothing is written, LockLost
      is raised (the lock was not held throughout the body);
    - fields were changed: one UpdateSession with the lock token and
      `release_lock=True` writes them and releases the lock; LockLost if the
      lease was lost meanwhile (the server refuses the write);
    - nothing changed: UnlockSession (LockLost if the lease was lost).
    """

    def __init__(
        self,
        client: Client,
        session_id: str,
        *,
        lease: Seconds,
        wait: Seconds,
        refresh: bool,
        timeout: Optional[float],
    ) -> None:
        lease_s = c.seconds(lease)
        if not lease_s or lease_s <= 0:
            raise ValueError("locked() needs a positive lease (seconds)")
        self.client = client
        self.session_id = session_id
        self.lease = lease_s
        self.wait = wait
        self.refresh = refresh
        self.timeout = timeout
        self.state: Optional[LockedSession] = None
        self._refresher: Optional[_Refresher] = None

    def __enter__(self) -> LockedSession:
        lock = self.client.lock(self.session_id, lease=self.lease, wait=self.wait, timeout=self.timeout)
        self.state = LockedSession(lock)
        if self.refresh:
            self._refresher = _Refresher(self.client, self.state, self.lease)
            self._refresher.start()
        return self.state

    def __exit__(self, exc_type, exc, tb) -> bool:
        state = self.state
        assert state is not None
        if self._refresher is not None:
            self._refresher.stop()
        if exc_type is not None:
            try:
                self.client.unlock(state.session_id, state.token, timeout=self.timeout)
            except errors.SessiondError:
                pass
            return False
        if state.lost_error is not None:
            raise state.lost_error
        to_set, to_delete = state.changes()
        if to_set or to_delete:
            state.result = self.client.update(
                state.session_id,
                to_set,
                to_delete,
                lock_token=state.token,
                release_lock=True,
                timeout=self.timeout,
            )
        else:
            self.client.unlock(state.session_id, state.token, timeout=self.timeout)
        return False
