"""Fixtures: one real sessiond for the whole run, clients, fresh session ids."""

from __future__ import annotations

import uuid

import pytest

import sessiond
from _support import Server


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """sessiond --listen 127.0.0.1:<free> --db-path <tmp>/s.redb --lease-min 50ms"""
    srv = Server(tmp_path_factory.mktemp("sessiond")).start()
    yield srv
    srv.stop()


@pytest.fixture
def client(server):
    with sessiond.Client(server.target) as c:
        yield c


@pytest.fixture
def other(server):
    """A second client with its own channel, as another bot instance would have."""
    with sessiond.Client(server.target) as c:
        yield c


@pytest.fixture
def sid():
    return f"py-{uuid.uuid4().hex[:12]}"
