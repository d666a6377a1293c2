"""The blocking counterparts of `_async_io`, under the same names, for the
generated `client.py` (see gen_sync.py): threads where the asyncio client has
tasks, `time.sleep` where it awaits `asyncio.sleep`."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

import grpc

Channel = grpc.Channel
insecure_channel = grpc.insecure_channel
secure_channel = grpc.secure_channel
sleep = time.sleep


def settle(value: Any) -> Any:
    """The handler's result as it is (the blocking client runs plain handlers)."""
    return value


class Ticker:
    """Calls `tick()` every `interval` seconds in a daemon thread until it
    returns False or `stop()` is called (which waits for a tick in flight)."""

    def __init__(self, name: str, interval: float, tick: Callable[[], bool]) -> None:
        self.name = name
        self.interval = interval
        self.tick = tick
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            if not self.tick():
                return

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join()
