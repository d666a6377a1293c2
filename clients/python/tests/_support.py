"""Starting a real sessiond for the tests, and waiting for conditions."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable, List, Optional, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "examples" / "python"

T = TypeVar("T")


def sessiond_bin() -> Path:
    return Path(os.environ.get("SESSIOND_BIN") or REPO / "target" / "debug" / "sessiond")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition: Callable[[], T], timeout: float = 10.0, what: str = "condition") -> T:
    """Polls `condition` until it returns something truthy, and returns that."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


class Server:
    """One sessiond process on a free loopback port with an embedded store."""

    def __init__(self, workdir: Path, *extra_args: str, env: Optional[dict] = None) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.extra_args = list(extra_args)
        self.env = env
        self.port = 0
        self.proc: Optional[subprocess.Popen] = None
        self.log_path = workdir / "sessiond.log"

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def args(self) -> List[str]:
        return [
            str(sessiond_bin()),
            "--listen", self.target,
            "--db-path", str(self.workdir / "s.redb"),
            "--lease-min", "50ms",
            *self.extra_args,
        ]

    def start(self, timeout: float = 30.0) -> "Server":
        binary = sessiond_bin()
        if not binary.exists():
            raise RuntimeError(
                f"no sessiond binary at {binary}: build it (cargo build --bin sessiond) "
                "or point SESSIOND_BIN at it"
            )
        self.port = free_port()
        env = dict(os.environ)
        # Only the flags the tests pass: no SESSIOND_* from the caller's shell.
        for key in [k for k in env if k.startswith("SESSIOND_")]:
            del env[key]
        env.update(self.env or {})
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args(), stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(self.target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while True:
                if self.proc is not None and self.proc.poll() is not None:
                    raise RuntimeError(
                        f"sessiond exited with {self.proc.returncode} before serving:\n{self.log()}"
                    )
                try:
                    resp = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=0.5)
                    if resp.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"sessiond did not answer health in {timeout}s:\n{self.log()}")
                time.sleep(0.05)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def signal(self, sig: int = signal.SIGTERM) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 15.0) -> Optional[int]:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"sessiond did not stop within {timeout}s of SIGTERM:\n{self.log()}")
