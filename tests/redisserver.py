"""The redis-server fixtures: ``redis_server`` is one server per test process (per xdist
worker); ``private_redis_server`` is one per test, for the tests that stop or kill it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bridges.redis import LocalServer as RedisServer

__all__ = ["RedisServer", "private_redis_server", "redis_server"]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One server per test process, without persistence; tests use keys of their own."""
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def private_redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A server for one test (one that stops, restarts or kills it)."""
    with RedisServer(tmp_path) as server:
        yield server
