"""The broker rows' shared parts: one server of each kind per bench or test process
(started on first use, stopped at exit), and the cases and rows of a broker spoke."""

from __future__ import annotations

import atexit
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from . import Baseline, Case, Scenario, run_loop


class _Server(Protocol):
    @property
    def url(self) -> str: ...

    def __enter__(self) -> object: ...

    def __exit__(self, *exc_info: object) -> object: ...


class Spoke(Protocol):
    """A broker spoke module (``bridges.nats``, ``bridges.redis``), as the bench uses it."""

    @property
    def LocalServer(self) -> type[_Server]: ...  # noqa: N802 - a module's class

    def connect(self, url: str, /) -> AbstractAsyncContextManager[Any]: ...


_shared: dict[type, _Server] = {}


def shared_url(kind: type[_Server]) -> str:
    """The URL of this process's server of ``kind`` (a spoke's ``LocalServer``)."""
    server = _shared.get(kind)
    if server is None:
        server = _shared[kind] = kind()
        server.__enter__()
        atexit.register(server.__exit__, None, None, None)
    return server.url


#: a timed body: given a client and n, it sets up, then times the passage itself
Body = Callable[[Any, int], Awaitable[float]]


@dataclass(frozen=True)
class Row:
    """One direction of a broker spoke against its hand-written peer."""

    name: str
    spoke: Body
    peer: str
    by_hand: Body
    note: str
    #: other hand-written peers, reported beside the budgeted one: (name, body, budget text)
    also: tuple[tuple[str, Body, str], ...] = ()


def broker_scenarios(
    spoke: Spoke,
    by_hand: Callable[[str], AbstractAsyncContextManager[Any]],
    rows: list[Row],
    n: int = 20_000,
) -> list[Scenario]:
    """Each row on asyncio, uvloop and trio: the spoke through its ``connect()`` on
    the row's backend; the peer on a client from ``by_hand(url)`` on the same kind
    of loop (asyncio for trio: the clients run on asyncio only)."""

    def spoke_case(backend: str, body: Body) -> Case:
        def run(n: int) -> float:
            async def main() -> float:
                async with spoke.connect(shared_url(spoke.LocalServer)) as client:
                    return await body(client, n)

            return run_loop(backend, main)

        return run

    def hand_case(backend: str, body: Body) -> Case:
        def run(n: int) -> float:
            async def main() -> float:
                async with by_hand(shared_url(spoke.LocalServer)) as client:
                    return await body(client, n)

            return run_loop("uvloop" if backend == "uvloop" else "asyncio", main)

        return run

    return [
        Scenario(
            row.name,
            backend,
            n,
            spoke_case(backend, row.spoke),
            [
                Baseline(row.peer, hand_case(backend, row.by_hand), 1.0, "<= 1.0x"),
                *(
                    Baseline(name, hand_case(backend, body), None, text)
                    for name, body, text in row.also
                ),
            ],
            note=row.note,
        )
        for backend in ("asyncio", "uvloop", "trio")
        for row in rows
    ]
