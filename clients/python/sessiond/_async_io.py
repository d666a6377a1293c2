"""What `aio.py` needs from asyncio and grpc.aio, under the names that
`_sync_io.py` gives their blocking counterparts.

`client.py` is generated from `aio.py` (see gen_sync.py): the generator strips
`async`/`await` and swaps this module for `_sync_io`, so every place where the
two clients must really differ (channels, sleeping, the lease-refresh ticker,
handlers that may be coroutines) goes through here.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any, Awaitable, Callable, Optional

import grpc.aio

Channel = grpc.aio.Channel
insecure_channel = grpc.aio.insecure_channel
secure_channel = grpc.aio.secure_channel
sleep = asyncio.sleep


async def settle(value: Any) -> Any:
    """The handler's result, awaited when it is awaitable: update_with_retry
    accepts plain and async handlers."""
    if inspect.isawaitable(value):
        return await value
    return value


class Ticker:
    """Calls `tick()` every `interval` seconds in a task until it returns
    False or `stop()` is awaited (which cancels a tick in flight)."""

    def __init__(self, name: str, interval: float, tick: Callable[[], Awaitable[bool]]) -> None:
        self.name = name
        self.interval = interval
        self.tick = tick
        self._task: Optional[asyncio.Task] = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            if not await self.tick():
                return

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
