"""The asyncio twin of `sessiond.Client`, on grpc.aio.

Same methods and semantics, awaited; `async with client.locked(...) as s:`
refreshes the lease from a background task instead of a thread. Create the
client inside the running event loop (grpc.aio binds the channel to it).
"""

from __future__ import annotations

import datetime
import asyncio
import random
from typing import Any, Awaitable, Callable, Iterable, Mapping, Optional, Sequence, Tuple, Union

import grpc
import grpc.aio

from . import _common as c
from . import errors
from ._common import Consistency, Lock, Seconds, Session, SessionState, Stats, UpdateResult
from .client import LockedSession
from .v1 import admin_pb2, admin_pb2_grpc, session_pb2, session_pb2_grpc

Metadata = Sequence[Tuple[str, str]]


class AsyncClient:
    """An asyncio sessiond client over one grpc.aio channel.

    Arguments, deadlines and retries as for `sessiond.Client`.
    """

    def __init__(
        self,
        target: str,
        timeout: float = 5.0,
        retries: int = 3,
        *,
        credentials: Optional[grpc.ChannelCredentials] = None,
        metadata: Optional[Metadata] = None,
        channel: Optional[grpc.aio.Channel] = None,
        options: Optional[Sequence[Tuple[str, Any]]] = None,
    ) -> None:
        if channel is None:
            if credentials is None:
                channel = grpc.aio.insecure_channel(target, options=options)
            else:
                channel = grpc.aio.secure_channel(target, credentials, options=options)
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

    async def _call(self, method: Callable, request: Any, *, timeout: Optional[float], retry: bool) -> Any:
        deadline = self.timeout if timeout is None else timeout
        attempt = 0
        while True:
            try:
                return await method(request, timeout=deadline, metadata=self._metadata)
            except grpc.RpcError as e:
                if (
                    retry
                    and e.code() == grpc.StatusCode.UNAVAILABLE
                    and attempt < self.retry_policy.retries
                ):
                    await asyncio.sleep(self.retry_policy.backoff(attempt))
                    attempt += 1
                    continue
                raise errors.from_rpc_error(e, maybe_applied=attempt > 0) from e

    # ------------------------------------------------------------ the RPCs

    async def get(
        self,
        session_id: str,
        *,
        consistency: Union[Consistency, str] = Consistency.CACHED,
        min_version: int = 0,
        timeout: Optional[float] = None,
    ) -> Session:
        req = c.get_request(session_id, consistency, min_version)
        resp = await self._call(self._sessions.GetSession, req, timeout=timeout, retry=True)
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
        timeout: Optional[float] = None,
    ) -> UpdateResult:
        req = c.update_request(
            session_id, set_fields, delete_fields, replace, lock_token, expected_version, release_lock
        )
        guarded = bool(lock_token) or expected_version is not None
        resp = await self._call(self._sessions.UpdateSession, req, timeout=timeout, retry=guarded)
        return c.update_from_pb(resp)

    async def delete(
        self,
        session_id: str,
        *,
        lock_token: Optional[str] = None,
        expected_version: Optional[int] = None,
        release_lock: bool = False,
        timeout: Optional[float] = None,
    ) -> bool:
        req = c.delete_request(session_id, lock_token, expected_version, release_lock)
        resp = await self._call(self._sessions.DeleteSession, req, timeout=timeout, retry=True)
        return resp.deleted

    async def lock(
        self,
        session_id: str,
        *,
        lease: Optional[Seconds] = None,
        wait: Seconds = 0,
        timeout: Optional[float] = None,
    ) -> Lock:
        req = session_pb2.LockSessionRequest(
            session_id=session_id, lease_ms=c.millis(lease, "lease"), wait_ms=c.millis(wait, "wait")
        )
        deadline = (self.timeout if timeout is None else timeout) + (c.seconds(wait) or 0.0)
        resp = await self._call(self._sessions.LockSession, req, timeout=deadline, retry=False)
        return c.lock_from_pb(session_id, resp)

    async def unlock(self, session_id: str, token: str, *, timeout: Optional[float] = None) -> None:
        req = session_pb2.UnlockSessionRequest(session_id=session_id, lock_token=token)
        await self._call(self._sessions.UnlockSession, req, timeout=timeout, retry=True)

    async def refresh(
        self,
        session_id: str,
        token: str,
        *,
        lease: Optional[Seconds] = None,
        timeout: Optional[float] = None,
    ) -> Optional[datetime.datetime]:
        req = session_pb2.RefreshLockRequest(
            session_id=session_id, lock_token=token, lease_ms=c.millis(lease, "lease")
        )
        resp = await self._call(self._sessions.RefreshLock, req, timeout=timeout, retry=True)
        return c.timestamp(resp.lease_expires_at, resp.HasField("lease_expires_at"))

    async def stats(self, *, timeout: Optional[float] = None) -> Stats:
        resp = await self._call(self._admin.GetStats, admin_pb2.GetStatsRequest(), timeout=timeout, retry=True)
        return c.stats_from_pb(resp)

    # ------------------------------------------------------------ helpers

    async def get_or_none(self, session_id: str, **kwargs: Any) -> Optional[Session]:
        try:
            return await self.get(session_id, **kwargs)
        except errors.SessionNotFound:
            return None

    async def update_with_retry(
        self,
        session_id: str,
        fn: Callable[[SessionState], Union[Any, Awaitable[Any]]],
        *,
        attempts: int = 10,
        timeout: Optional[float] = None,
    ) -> UpdateResult:
        """As `Client.update_with_retry`; `fn` may be a plain or an async function."""
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        current = await self.get_or_none(session_id, timeout=timeout)
        for attempt in range(attempts):
            state = SessionState(session_id, current)
            staged = fn(state)
            if asyncio.iscoroutine(staged):
                await staged
            to_set, to_delete = state.changes()
            if not to_set and not to_delete:
                return UpdateResult(version=state.version)
            try:
                return await self.update(
                    session_id, to_set, to_delete, expected_version=state.version, timeout=timeout
                )
            except errors.VersionMismatch as e:
                if e.maybe_applied or attempt + 1 == attempts:
                    raise
                await asyncio.sleep(random.uniform(0.0, min(0.1, 0.002 * 2**attempt)))
                floor = max(e.current_version or 0, state.version + 1)
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
    ) -> "AsyncLocked":
        """`async with client.locked(...) as s:`, as `Client.locked`."""
        return AsyncLocked(self, session_id, lease=lease, wait=wait, refresh=refresh, timeout=timeout)


class AsyncLocked:
    """Async context manager returned by `AsyncClient.locked`; exit rules as `sessiond.client.Locked`."""

    def __init__(
        self,
        client: AsyncClient,
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
        self._task: Optional[asyncio.Task] = None
        self.last_refresh_error: Optional[errors.SessiondError] = None

    async def _refresh_loop(self, state: LockedSession) -> None:
        interval = self.lease / 3.0
        while True:
            await asyncio.sleep(interval)
            try:
                state.lease_expires_at = await self.client.refresh(
                    state.session_id,
                    state.token,
                    lease=self.lease,
                    timeout=min(self.client.timeout, interval),
                )
            except errors.LockLost as e:
                state.lost_error = e
                return
            except errors.SessiondError as e:
                self.last_refresh_error = e

    async def __aenter__(self) -> LockedSession:
        lock = await self.client.lock(self.session_id, lease=self.lease, wait=self.wait, timeout=self.timeout)
        self.state = LockedSession(lock)
        if self.refresh:
            self._task = asyncio.ensure_future(self._refresh_loop(self.state))
        return self.state

    async def __aexit__(self, exc_type, exc, tb) -> bool:
        state = self.state
        assert state is not None
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
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
