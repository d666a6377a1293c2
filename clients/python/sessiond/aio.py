"""sessiond's client, written once: `AsyncClient` and its `async with
client.locked(...)` here, on grpc.aio; the blocking `Client` and `Locked` in
`client.py`, generated from this file by gen_sync.py (unasync), so both have the
same methods, semantics and retry policy (`_retry`, the table in session.proto).
Where they must differ (channels, sleeping, the lease refresh: a task here, a
thread there) the code goes through `_async_io` / `_sync_io`.

Create an `AsyncClient` inside the running event loop (grpc.aio binds the
channel to it). A `Client` is thread-safe.
"""

from __future__ import annotations

import datetime
from typing import Any, AsyncIterator, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import grpc

from . import _async_io as _io
from . import _common as c
from . import _retry, _trace
from . import errors
from ._admin import Inspection, inspection_from_pb
from ._common import (
    Consistency,
    TurnPolicy,
    Lock,
    LockedSession,
    RateAdmitted,
    Seconds,
    Session,
    SessionState,
    Stats,
    UpdateResult,
    WatchEvent,
)
from .v1 import admin_pb2, admin_pb2_grpc, session_pb2, session_pb2_grpc

Metadata = Sequence[Tuple[str, str]]

# The RPCs of AdminService; every other name is SessionService's.
ADMIN_RPCS = frozenset({"GetStats", "InspectSession", "ForceUnlock", "ListSessions", "PurgeSessions"})


class AsyncClient:
    """A sessiond client over one gRPC channel.

    Args:
        target: "host:port" of a sessiond instance (or any gRPC target).
        timeout: deadline of each attempt of each call, in seconds. LockSession
            gets its `wait` on top of it.
        retries: how many more attempts a call that failed with UNAVAILABLE
            gets, with exponential backoff and jitter, where a retry can
            neither apply a write twice nor take a lock nobody knows of: reads,
            RefreshLock, UnlockSession, and UpdateSession / DeleteSession
            guarded by `expected_version` or a lock token, on any UNAVAILABLE;
            LockSession and unguarded writes only on SHUTTING_DOWN (nothing was
            done). See the README, "Deadlines and retries".
        credentials: channel credentials for TLS; None for a plaintext channel.
        metadata: sent with every call (e.g. an authorization header). With the
            OpenTelemetry API installed, the caller's current trace context goes
            with it (`traceparent`, `tracestate`).
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
        channel: Optional[_io.Channel] = None,
        options: Optional[Sequence[Tuple[str, Any]]] = None,
    ) -> None:
        if channel is None:
            if credentials is None:
                channel = _io.insecure_channel(target, options=options)
            else:
                channel = _io.secure_channel(target, credentials, options=options)
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

    async def close(self) -> None:
        if self._owns_channel:
            await self.channel.close()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _call(
        self,
        name: str,
        request: Any,
        *,
        timeout: Optional[float],
        lock_token: bool = False,
        expected_version: bool = False,
        idempotency_key: bool = False,
    ) -> Any:
        """One RPC with a deadline per attempt, retried as `_retry.should_retry`
        says. The error raised has `maybe_applied` set when an earlier attempt
        of unknown outcome was retried."""
        method = getattr(self._admin if name in ADMIN_RPCS else self._sessions, name)
        deadline = self.timeout if timeout is None else timeout
        attempt = 0
        unknown = False
        while True:
            try:
                metadata = _trace.with_context(self._metadata)
                return await method(request, timeout=deadline, metadata=metadata)
            except grpc.RpcError as e:
                exc = errors.from_rpc_error(e, maybe_applied=unknown)
                if attempt < self.retry_policy.retries and _retry.should_retry(
                    name,
                    exc.code,
                    exc.reason,
                    lock_token=lock_token,
                    expected_version=expected_version,
                    idempotency_key=idempotency_key,
                ):
                    unknown = unknown or _retry.outcome_unknown(exc.code, exc.reason)
                    await _io.sleep(self.retry_policy.backoff(attempt))
                    attempt += 1
                    continue
                raise exc from e

    # ------------------------------------------------------------ the RPCs

    async def get(
        self,
        session_id: str,
        *,
        consistency: Union[Consistency, str] = Consistency.CACHED,
        min_version: int = 0,
        timeout: Optional[float] = None,
    ) -> Session:
        """GetSession. Raises SessionNotFound when it does not exist."""
        req = c.get_request(session_id, consistency, min_version)
        resp = await self._call("GetSession", req, timeout=timeout)
        return c.session_from_pb(resp.session, resp.from_cache)

    async def update(
        self,
        session_id: str,
        set_fields: Optional[Mapping[str, bytes]] = None,
        delete_fields: Iterable[str] = (),
        *,
        replace: bool = False,
        lock_token: Optional[str] = None,
        expected_version: Optional[int] = None,
        release_lock: bool = False,
        ops: Iterable[session_pb2.FieldOp] = (),
        idempotency_key: Optional[str] = None,
        timeout: Optional[float] = None,
    ) -> UpdateResult:
        """UpdateSession: set and delete fields in one atomic write.

        `ops` (`sessiond.increment`, `sessiond.append`, `sessiond.set_if_absent`)
        change single fields from their stored values in the same step; the
        result's `op_values` has their new values. `idempotency_key` (e.g. the
        event id): a repeat within the server's window gets the first answer.

        Retried on any UNAVAILABLE only when guarded by `expected_version`,
        `lock_token` or `idempotency_key`: a replay of a write that landed is
        then refused, lands on the state it made itself (under the lock), or
        gets the first answer (the key). An unguarded write is retried on
        SHUTTING_DOWN only.
        """
        req = c.update_request(
            session_id,
            set_fields,
            delete_fields,
            replace,
            lock_token,
            expected_version,
            release_lock,
            ops,
            idempotency_key,
        )
        resp = await self._call(
            "UpdateSession",
            req,
            timeout=timeout,
            lock_token=bool(lock_token),
            expected_version=expected_version is not None,
            idempotency_key=bool(idempotency_key),
        )
        return c.update_from_pb(resp)

    async def delete(
        self,
        session_id: str,
        *,
        lock_token: Optional[str] = None,
        expected_version: Optional[int] = None,
        release_lock: bool = False,
        idempotency_key: Optional[str] = None,
        timeout: Optional[float] = None,
    ) -> bool:
        """DeleteSession. True when something was deleted. Retried as `update`:
        unguarded, a replay could delete a session someone created in between,
        so it is retried on SHUTTING_DOWN only. With `idempotency_key`, a repeat
        gets the first delete's answer and deletes nothing."""
        req = c.delete_request(session_id, lock_token, expected_version, release_lock, idempotency_key)
        resp = await self._call(
            "DeleteSession",
            req,
            timeout=timeout,
            lock_token=bool(lock_token),
            expected_version=expected_version is not None,
            idempotency_key=bool(idempotency_key),
        )
        return resp.deleted

    async def lock(
        self,
        session_id: str,
        *,
        lease: Optional[Seconds] = None,
        wait: Seconds = 0,
        rate_limit: Optional[session_pb2.RateLimit] = None,
        policy: Union[TurnPolicy, str] = TurnPolicy.FIFO,
        debounce: Optional[Seconds] = None,
        payload: bytes = b"",
        idempotency_key: Optional[str] = None,
        timeout: Optional[float] = None,
    ) -> Lock:
        """LockSession. `wait` 0 tries once (LockHeld when busy); > 0 queues
        for up to `wait` seconds (LockWaitTimeout). `lease` None is the
        server's default. The call's deadline is `wait` + `timeout`.
        `rate_limit` (see `sessiond.rate_limit`) is checked first: RateLimited
        when it refuses, and then nothing is locked or queued for.

        `policy` LATEST_WINS or DEBOUNCE (with `debounce` seconds of quiet)
        makes this waiter the newest of the session's burst, with `payload`
        attached (e.g. the message): a newer one supersedes it (Superseded),
        and the one granted gets the others' payloads in
        `superseded_payloads`, oldest first.

        `idempotency_key` (e.g. the event id): a repeat within the server's
        window gets the first grant's answer with `replayed` set (the same
        token, the lock it holds if that grant still holds it). Retried on any
        UNAVAILABLE with a key; without one on SHUTTING_DOWN only: a grant
        whose answer was lost would leave a lock that nobody knows of until
        its lease ends, and a retry would meet it as LockHeld or queue behind
        it.
        """
        req = session_pb2.LockSessionRequest(
            session_id=session_id,
            lease_ms=c.millis(lease, "lease"),
            wait_ms=c.millis(wait, "wait"),
            rate_limit=rate_limit,
            policy=c.turn_policy(policy),
            debounce_ms=c.millis(debounce, "debounce"),
            payload=payload,
            idempotency_key=idempotency_key or "",
        )
        deadline = (self.timeout if timeout is None else timeout) + (c.seconds(wait) or 0.0)
        resp = await self._call("LockSession", req, timeout=deadline, idempotency_key=bool(idempotency_key))
        return c.lock_from_pb(session_id, resp)

    async def unlock(self, session_id: str, token: str, *, timeout: Optional[float] = None) -> None:
        """UnlockSession. LockLost when the token no longer held the lock
        (with `maybe_applied` set if an earlier attempt may have unlocked)."""
        req = session_pb2.UnlockSessionRequest(session_id=session_id, lock_token=token)
        await self._call("UnlockSession", req, timeout=timeout)

    async def refresh(
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
        resp = await self._call("RefreshLock", req, timeout=timeout)
        return c.timestamp(resp.lease_expires_at, resp.HasField("lease_expires_at"))

    async def check_rate(
        self,
        session_id: str = "",
        name: str = "",
        *,
        per_second: Optional[float] = None,
        burst: Optional[int] = None,
        cost: int = 1,
        namespace_scope: bool = False,
        timeout: Optional[float] = None,
    ) -> RateAdmitted:
        """CheckRate: takes `cost` units from the rate limit `name` ("default"
        when empty) of the session, or of the whole namespace with
        `namespace_scope` (then `session_id` is not read). GCRA: `per_second`
        units a second on average, at most `burst` at once; None takes the
        server's defaults. Raises RateLimited (with `.retry_after`) when the
        limit is used up: nothing was taken. Retried on SHUTTING_DOWN only: a
        replay after an applied check would take its units twice."""
        req = session_pb2.CheckRateRequest(session_id=session_id, name=name, cost=cost)
        if per_second is not None:
            req.per_second = per_second
        if burst is not None:
            req.burst = burst
        if namespace_scope:
            req.scope = session_pb2.RATE_SCOPE_NAMESPACE
        resp = await self._call("CheckRate", req, timeout=timeout)
        return RateAdmitted(remaining=resp.remaining, reset_after=resp.reset_after_ms / 1000)

    async def watch(
        self, session_id: str, *, after_version: int = 0, include_values: bool = False
    ) -> AsyncIterator[WatchEvent]:
        """WatchSession: the session's events, as they happen, until the caller
        stops iterating (the stream is then cancelled) or the watch ends with
        an error: WatchLagged (the caller read too slowly), ShuttingDown (the
        instance drains), StoreUnavailable. The first event is a "snapshot",
        or with `after_version` (the last version read) "resumed" followed by
        the events since, or a "snapshot" with `resync` when they are no
        longer kept. Never retried by itself: watch again with
        `after_version`. No deadline: a watch lasts as long as it is read."""
        req = session_pb2.WatchSessionRequest(
            session_id=session_id, after_version=after_version, include_values=include_values
        )
        call = self._sessions.WatchSession(req, metadata=_trace.with_context(self._metadata))
        try:
            async for resp in call:
                yield c.watch_event_from_pb(resp)
        except grpc.RpcError as e:
            raise errors.from_rpc_error(e) from e
        finally:
            call.cancel()

    async def stats(self, *, timeout: Optional[float] = None) -> Stats:
        """AdminService.GetStats of the instance this channel reaches."""
        resp = await self._call("GetStats", admin_pb2.GetStatsRequest(), timeout=timeout)
        return c.stats_from_pb(resp)

    # ------------------------------------------------------------ operators
    # AdminService's calls on sessions. With authentication on they need a
    # token with the admin grant (ADMIN_DENIED: PermissionDenied otherwise).
    # `namespace` "" is the token's first (or "default" with auth off). None
    # is retried but on SHUTTING_DOWN: a replayed ForceUnlock could free the
    # next holder's lock.

    async def inspect(
        self, session_id: str, *, namespace: str = "", timeout: Optional[float] = None
    ) -> Inspection:
        """InspectSession: version, size, lock holder, waiters, idle expiry."""
        req = admin_pb2.InspectSessionRequest(namespace=namespace, session_id=session_id)
        return inspection_from_pb(await self._call("InspectSession", req, timeout=timeout))

    async def force_unlock(
        self, session_id: str, *, namespace: str = "", timeout: Optional[float] = None
    ) -> Optional[int]:
        """ForceUnlock: frees the lock whoever holds it (the holder then gets
        LockLost). Returns the released holder's fencing token, None when
        nobody held the lock."""
        req = admin_pb2.ForceUnlockRequest(namespace=namespace, session_id=session_id)
        resp = await self._call("ForceUnlock", req, timeout=timeout)
        return resp.released_fencing_token if resp.released else None

    async def list_page(
        self,
        prefix: str = "",
        page_token: str = "",
        *,
        namespace: str = "",
        page_size: int = 0,
        timeout: Optional[float] = None,
    ) -> Tuple[List[str], str]:
        """One page of ListSessions: (ids, next page token; "" at the end)."""
        req = admin_pb2.ListSessionsRequest(
            namespace=namespace, id_prefix=prefix, page_size=page_size, page_token=page_token
        )
        resp = await self._call("ListSessions", req, timeout=timeout)
        return list(resp.session_ids), resp.next_page_token

    async def list_sessions(self, prefix: str = "", *, namespace: str = "", page_size: int = 0) -> List[str]:
        """Every id under `prefix`, all pages read (each id once)."""
        ids: List[str] = []
        seen: set = set()
        token = ""
        while True:
            page, token = await self.list_page(prefix, token, namespace=namespace, page_size=page_size)
            ids.extend(i for i in page if not (i in seen or seen.add(i)))
            if not token:
                return ids

    async def purge(self, prefix: str, *, namespace: str = "", page_size: int = 0) -> int:
        """PurgeSessions, page after page until done: deletes every session
        whose id starts with `prefix` (not empty). Returns how many it deleted."""
        deleted = 0
        token = ""
        while True:
            req = admin_pb2.PurgeSessionsRequest(
                namespace=namespace, id_prefix=prefix, page_size=page_size, page_token=token
            )
            resp = await self._call("PurgeSessions", req, timeout=None)
            deleted += resp.deleted
            token = resp.next_page_token
            if not token:
                return deleted

    # ------------------------------------------------------------ helpers

    async def get_or_none(self, session_id: str, **kwargs: Any) -> Optional[Session]:
        """Like `get`, but None instead of SessionNotFound."""
        try:
            return await self.get(session_id, **kwargs)
        except errors.SessionNotFound:
            return None

    async def update_with_retry(
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
        only). On VersionMismatch, or LockHeld while someone holds the lock
        (nothing was written either way), it reads again (from the store) and
        calls `fn` again, up to `attempts` times in all, with a short jittered
        sleep in between; then the error is raised. `fn` must therefore be free
        of side effects other than staging (the asyncio client also takes an
        async `fn`). Returns the write's result (or the unchanged version when
        `fn` staged nothing).

        An error that follows a retried UNAVAILABLE of unknown outcome is
        raised at once (`maybe_applied` is set): the earlier attempt may have
        been applied, and running `fn` again could apply it twice.
        """
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        current = await self.get_or_none(session_id, timeout=timeout)
        for attempt in range(attempts):
            state = SessionState(session_id, current)
            await _io.settle(fn(state))
            to_set, to_delete = state.changes()
            if not to_set and not to_delete:
                return UpdateResult(version=state.version)
            try:
                return await self.update(
                    session_id, to_set, to_delete, expected_version=state.version, timeout=timeout
                )
            except (errors.VersionMismatch, errors.LockHeld) as e:
                # By class: an ABORTED without ErrorInfo is a VersionMismatch too.
                reason = "LOCK_HELD" if isinstance(e, errors.LockHeld) else "VERSION_MISMATCH"
                if not _retry.restarts_conflict(reason, e.maybe_applied) or attempt + 1 == attempts:
                    raise
                await _io.sleep(_retry.conflict_backoff(attempt))
                if isinstance(e, errors.VersionMismatch):
                    floor = max(e.current_version or 0, state.version + 1)
                else:  # LockHeld: the holder has not written yet
                    floor = state.version
                current = await self.get_or_none(
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
        rate_limit: Optional[session_pb2.RateLimit] = None,
        policy: Union[TurnPolicy, str] = TurnPolicy.FIFO,
        debounce: Optional[Seconds] = None,
        payload: bytes = b"",
        idempotency_key: Optional[str] = None,
    ) -> "AsyncLocked":
        """Lock, hand over the session, write the staged changes and release.

            with client.locked("user-42", lease=10, wait=0) as s:   # async with
                s.set("last", b"hello")

        Raises LockHeld (wait 0) or LockWaitTimeout at entry when the lock
        cannot be had. See `Locked` / `AsyncLocked` for what happens at exit.
        `rate_limit`, `policy`, `debounce`, `payload` and `idempotency_key`
        are `lock`'s: Superseded at entry when a newer waiter of the burst
        took this one's place; `s.lock` is the grant (its
        `superseded_payloads`, and `replayed` when the key's lock was granted
        before: the event was handled already, and the lock may be over).
        """
        return AsyncLocked(
            self,
            session_id,
            lease=lease,
            wait=wait,
            refresh=refresh,
            timeout=timeout,
            lock_options=dict(
                rate_limit=rate_limit,
                policy=policy,
                debounce=debounce,
                payload=payload,
                idempotency_key=idempotency_key,
            ),
        )


class AsyncLocked:
    """Context manager returned by `locked` (`with`, or `async with`).

    While the body runs, the lease is extended every lease/3 (a thread for the
    blocking client, a task for the asyncio one). At exit:
    - the body raised: the lock is released (errors of that unlock are
      swallowed so the body's exception is the one you see);
    - the background refresh was told LOCK_LOST: nothing is written, LockLost
      is raised (the lock was not held throughout the body);
    - fields were changed: one UpdateSession with the lock token and
      `release_lock=True` writes them and releases the lock; LockLost if the
      lease was lost meanwhile (the server refuses the write);
    - nothing changed: UnlockSession (LockLost if the lease was lost).
    A refresh that fails otherwise (deadline, overload, store down) is kept in
    `last_refresh_error` and tried again at the next tick.
    """

    def __init__(
        self,
        client: AsyncClient,
        session_id: str,
        *,
        lease: Seconds,
        wait: Seconds,
        refresh: bool,
        timeout: Optional[float],
        lock_options: Optional[Dict[str, Any]] = None,
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
        self.lock_options = lock_options or {}
        self.state: Optional[LockedSession] = None
        self.last_refresh_error: Optional[errors.SessiondError] = None
        self._ticker: Optional[_io.Ticker] = None

    async def _refresh_once(self) -> bool:
        """One lease extension; False (stop refreshing) once the lock is lost."""
        state = self.state
        assert state is not None
        interval = self.lease / 3.0
        try:
            # Each attempt must end well before the lease does.
            state.lease_expires_at = await self.client.refresh(
                state.session_id,
                state.token,
                lease=self.lease,
                timeout=min(self.client.timeout, interval),
            )
        except errors.LockLost as e:
            state.lost_error = e
            return False
        except errors.SessiondError as e:
            # Transient: try again at the next tick. If the lease runs out
            # meanwhile the server says LOCK_LOST then, and the final write is
            # refused anyway.
            self.last_refresh_error = e
        return True

    async def __aenter__(self) -> LockedSession:
        lock = await self.client.lock(
            self.session_id, lease=self.lease, wait=self.wait, timeout=self.timeout, **self.lock_options
        )
        self.state = LockedSession(lock)
        if self.refresh:
            self._ticker = _io.Ticker(f"sessiond-refresh-{self.session_id}", self.lease / 3.0, self._refresh_once)
            self._ticker.start()
        return self.state

    async def __aexit__(self, exc_type, exc, tb) -> bool:
        state = self.state
        assert state is not None
        if self._ticker is not None:
            await self._ticker.stop()
        if exc_type is not None:
            try:
                await self.client.unlock(state.session_id, state.token, timeout=self.timeout)
            except errors.SessiondError:
                pass
            return False
        if state.lost_error is not None:
            raise state.lost_error
        to_set, to_delete = state.changes()
        if to_set or to_delete:
            state.result = await self.client.update(
                state.session_id,
                to_set,
                to_delete,
                lock_token=state.token,
                release_lock=True,
                timeout=self.timeout,
            )
        else:
            await self.client.unlock(state.session_id, state.token, timeout=self.timeout)
        return False
