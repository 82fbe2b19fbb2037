"""Thread rows: a blocking sqlite3 cursor -> aiter, and an async iterable -> a sync iterator.

Every case reads the same rows, ``SELECT id, name, score FROM t ORDER BY id``
over a table made once per process in a temporary file, through a fresh
connection per run:

* ``threads.to_aiter(cursor, buffer=256)`` (the connection is made by a
  factory in the worker thread) against the two ways a program would do
  without it: ``await anyio.to_thread.run_sync(next, cursor)`` per row (one
  thread hop per row), and iterating the cursor synchronously on the event
  loop (the floor: no thread at all, and a blocked loop).  A second bridge
  row uses the default ``buffer=64``, reported only.
* The same stream of a million rows with a 1 ms ticker task beside it: the
  ticker's worst gap is how long the loop was held (budget: 250 ms).
* ``threads.from_aiter(agen)`` (sync code pulling an async generator that
  runs in a helper thread's loop) against calling ``portal.call(anext)`` per
  value through an anyio ``BlockingPortal``: reported only (no budget).
"""

from __future__ import annotations

import atexit
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
from anyio.from_thread import start_blocking_portal

from bridges import threads

from . import Baseline, Case, Scenario, counted, drain, numbers, run_loop

_QUERY = "SELECT id, name, score FROM t ORDER BY id"
_dbs: dict[int, Path] = {}
_tmp: tempfile.TemporaryDirectory[str] | None = None


def _db(n: int) -> Path:
    """A table of ``n`` rows, made once per process."""
    global _tmp
    if n not in _dbs:
        if _tmp is None:
            _tmp = tempfile.TemporaryDirectory(prefix="bridges-bench-")
            atexit.register(_tmp.cleanup)
        _dbs[n] = make_table(Path(_tmp.name) / f"rows-{n}.sqlite", n)
    return _dbs[n]


def make_table(path: Path, n: int) -> Path:
    """A sqlite3 database at ``path`` whose table ``t`` holds ``n`` rows (id, name, score).

    The rows every cursor case reads (and the tests of ``threads`` too).
    """
    con = sqlite3.connect(path)
    with con:
        con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, score REAL)")
        con.executemany(
            "INSERT INTO t VALUES (?, ?, ?)", ((i, f"row-{i}", i * 0.5) for i in range(n))
        )
    con.close()
    return path


def _rows(path: Path) -> Iterator[tuple[int, str, float]]:
    """The factory: a connection and a cursor made in the thread that reads them."""
    con = sqlite3.connect(path)
    try:
        yield from con.execute(_QUERY)
    finally:
        con.close()


# ------------------------------------------------------------ cursor -> aiter

#: the longest the event loop may go without running another task while a cursor streams
STALL_BUDGET_MS = 250


class Ticker:
    """A task that sleeps 1 ms at a time until stopped, counting its turns and timing
    the longest gap between them: how long the loop went without running it."""

    def __init__(self) -> None:
        self.ticks = 0
        self.worst_gap = 0.0
        self._stopped = False

    async def run(self) -> None:
        last = time.perf_counter()
        while not self._stopped:
            await anyio.sleep(0.001)
            now = time.perf_counter()
            self.worst_gap = max(self.worst_gap, now - last)
            last = now
            self.ticks += 1

    def stop(self) -> None:
        self._stopped = True


def loop_stall(backend: str) -> Callable[[int], dict[str, object]]:
    """The worst gap of a `Ticker` while ``threads.to_aiter`` streams ``n`` rows: how
    long the loop went at most without running another task (a wall-clock figure,
    so it belongs here, measured on a quiet machine, rather than in a test)."""

    def measure(n: int) -> dict[str, object]:
        path = _db(n)

        async def main() -> float:
            ticker = Ticker()
            async with anyio.create_task_group() as tg:
                tg.start_soon(ticker.run)
                await drain(threads.to_aiter(lambda: _rows(path), buffer=256))
                ticker.stop()
            return ticker.worst_gap

        worst_ms = run_loop(backend, main) * 1000
        return {
            "worst_stall_ms": round(worst_ms, 1),
            "budget": f"<= {STALL_BUDGET_MS} ms",
            "ok": worst_ms <= STALL_BUDGET_MS,
        }

    return measure


def bridge_cursor(backend: str, buffer: int = 256) -> Case:
    return counted(
        backend,
        lambda n: drain(threads.to_aiter(lambda: _rows(_dbs[n]), buffer=buffer)),
        prepare=_db,
    )


def thread_hop_per_row(backend: str) -> Case:
    """``await anyio.to_thread.run_sync(next, cursor)`` for every row."""

    async def run(n: int) -> int:
        con = sqlite3.connect(_dbs[n], check_same_thread=False)
        cursor = con.execute(_QUERY)
        end = object()
        count = 0
        while (await anyio.to_thread.run_sync(next, cursor, end)) is not end:
            count += 1
        con.close()
        return count

    return counted(backend, run, prepare=_db)


def sync_iteration(backend: str) -> Case:
    """Iterate the cursor synchronously, on the loop (blocking it the whole time)."""

    async def run(n: int) -> int:
        count = 0
        for _ in _rows(_dbs[n]):
            count += 1
        return count

    return counted(backend, run, prepare=_db)


# ------------------------------------------------------- aiter -> sync iterator


def bridge_from_aiter(backend: str) -> Case:
    def case(n: int) -> float:
        t0 = time.perf_counter()
        count = 0
        with threads.from_aiter(numbers(n), backend=backend) as it:
            for _ in it:
                count += 1
        assert count == n
        return time.perf_counter() - t0

    return case


def portal_call_per_value(backend: str) -> Case:
    """A ``BlockingPortal`` on a helper thread, ``portal.call(agen.__anext__)`` per value."""

    def case(n: int) -> float:
        t0 = time.perf_counter()
        count = 0
        with start_blocking_portal(backend) as portal:
            agen = numbers(n)
            try:
                while True:
                    portal.call(agen.__anext__)
                    count += 1
            except StopAsyncIteration:
                pass
        assert count == n
        return time.perf_counter() - t0

    return case


def _scenarios() -> list[Scenario]:
    out = []
    for backend in ("asyncio", "trio"):
        out.append(
            Scenario(
                "blocking cursor -> aiter",
                backend,
                300_000,
                bridge_cursor(backend),
                [
                    Baseline(
                        "sync iteration (buffer=256)",
                        sync_iteration(backend),
                        3.0,
                        "<= 3x (aim 2x)",
                    ),
                    Baseline(
                        "sync iteration (buffer=64)",
                        sync_iteration(backend),
                        None,
                        "reported (default buffer)",
                        bridge_cursor(backend, 64),
                    ),
                ],
                note="sqlite3 rows (int, text, real); the connection is made in the worker",
            )
        )
        out.append(
            Scenario(
                "blocking cursor -> aiter, loop stall",
                backend,
                1_000_000,
                bridge_cursor(backend),
                [],
                measure=loop_stall(backend),
                note="a 1 ms ticker task's worst gap while the rows stream (buffer=256)",
            )
        )
        out.append(
            Scenario(
                "blocking cursor -> aiter, per-row hop",
                backend,
                20_000,
                bridge_cursor(backend),
                [
                    Baseline(
                        "to_thread.run_sync(next) / row",
                        thread_hop_per_row(backend),
                        0.05,
                        ">= 20x faster",
                    )
                ],
                note="fewer rows: one thread hop per row is slow",
            )
        )
        out.append(
            Scenario(
                "aiter -> sync iterator",
                backend,
                20_000,
                bridge_from_aiter(backend),
                [
                    Baseline(
                        "portal.call(anext) / value",
                        portal_call_per_value(backend),
                        None,
                        "reported",
                    )
                ],
                note="an async generator in a helper thread's loop, pulled by sync code",
            )
        )
    return out


SCENARIOS = _scenarios()
