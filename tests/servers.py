"""The broker-server fixtures.  For each broker: ``<name>_server`` is one server per
test process (per xdist worker), on which tests use names of their own;
``private_<name>_server`` is one per test, for the tests that stop, restart or kill it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from bridges.nats import LocalServer as NatsServer
from bridges.redis import LocalServer as RedisServer

__all__ = [
    "NatsServer",
    "RedisServer",
    "nats_server",
    "private_nats_server",
    "private_redis_server",
    "redis_server",
]

S = TypeVar("S", NatsServer, RedisServer)


def _fixtures(server: Callable[[Path], S], name: str) -> tuple[Any, Any]:
    """The shared and the private fixture of one kind of server."""

    @pytest.fixture(scope="session")
    def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S]:
        with server(tmp_path_factory.mktemp(name)) as running:
            yield running

    @pytest.fixture
    def private(tmp_path: Path) -> Iterator[S]:
        with server(tmp_path) as running:
            yield running

    return shared, private


nats_server, private_nats_server = _fixtures(NatsServer, "nats")
redis_server, private_redis_server = _fixtures(RedisServer, "redis")
