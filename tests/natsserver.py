"""The nats-server fixtures: ``nats_server`` is one server per test process (per xdist
worker); ``private_nats_server`` is one per test, for the tests that stop or kill it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bridges.nats import LocalServer as NatsServer

__all__ = ["NatsServer", "nats_server", "private_nats_server"]


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """One JetStream server per test process; tests use names of their own on it."""
    with NatsServer(tmp_path_factory.mktemp("nats")) as server:
        yield server


@pytest.fixture
def private_nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A JetStream server for one test (one that stops, restarts or kills it)."""
    with NatsServer(tmp_path) as server:
        yield server
