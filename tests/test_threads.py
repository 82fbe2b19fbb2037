"""bridges.threads: blocking iterables -> async iterators, async iterables -> sync iterators.

Real threads, a real sqlite3 database, real event loops on helper threads.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import queue
import sqlite3
import threading
import time
import warnings
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal

from bridges import threads
from bridges._bench.threads import Ticker, make_table
from bridges._buffer import TAKEN, Handoff

from .sources import AwaitingCleanup, RecordingSource, assert_values_then_error

pytestmark = pytest.mark.anyio

WORKER = "bridges-threads-worker"
LOOP = "bridges-threads-loop"


class SourceError(Exception):
    pass


def _alive(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name and t.is_alive()]


async def _until(condition: Any) -> None:
    """Wait for a condition another thread makes true (bounded; fails instead of hanging)."""
    with anyio.fail_after(5):
        while not condition():
            await anyio.sleep(0.001)


def _worker_parked(it: threads.PrefetchIterator[Any]) -> bool:
    """The worker waits for room in the buffer (so it is not inside a call of the source)."""
    return bool(it._h._putters)


class Recorder(logging.Handler):
    """A real logging.Handler on the "bridges" logger."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def bridges_log() -> Iterator[Recorder]:
    handler = Recorder()
    logger = logging.getLogger("bridges")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


# ------------------------------------------------------------------ sqlite

MILLION = 1_000_000


@pytest.fixture(scope="module")
def million_rows(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_table(tmp_path_factory.mktemp("db") / "million.sqlite", MILLION)


@pytest.fixture(scope="module")
def small_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_table(tmp_path_factory.mktemp("db") / "small.sqlite", 5_000)


async def test_a_million_sqlite_rows_stream_in_order_and_the_loop_stays_responsive(
    million_rows: Path, backend_name: str, record_property: Any
) -> None:
    con = sqlite3.connect(million_rows, check_same_thread=False)
    cursor = con.execute("SELECT id, name, score FROM t ORDER BY id")
    ticker = Ticker()
    expected = 0
    ticks_at: list[int] = []  # the ticker's count at every 100,000th row
    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker.run)
        async with threads.to_aiter(cursor, buffer=256) as rows:
            async for row in rows:
                assert row[0] == expected
                expected += 1
                if expected % 100_000 == 0:
                    ticks_at.append(ticker.ticks)
            stats = rows.stats
        ticker.stop()
    elapsed = time.perf_counter() - started
    con.close()

    assert expected == MILLION, "every row, in order"
    assert row == (MILLION - 1, f"row-{MILLION - 1}", (MILLION - 1) * 0.5)
    assert stats.high_water <= 256
    assert stats.delivered == MILLION
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        cursor.fetchone()  # the worker closed the cursor at the end
    # the event loop kept running other tasks the whole time
    print(
        f"\n[{backend_name}] 1M rows in {elapsed:.2f}s ({MILLION / elapsed:,.0f} rows/s); "
        f"ticker: {ticker.ticks} ticks, worst gap {ticker.worst_gap * 1000:.1f} ms"
    )
    record_property("worst_tick_gap_ms", round(ticker.worst_gap * 1000, 1))
    # another task ran between every 100,000 rows (they take far more than the
    # ticker's 1 ms), however loaded the machine: the loop was never held.  How long
    # it went at most without running another task is a wall-clock figure: the
    # bench measures it ("blocking cursor -> aiter, loop stall")
    assert all(b > a for a, b in itertools.pairwise([0, *ticks_at])), ticks_at


async def test_a_factory_makes_the_connection_in_the_worker(small_db: Path) -> None:
    """A default sqlite3 connection (check_same_thread=True) works when made in the worker."""
    made_in: list[str] = []
    closed: list[str] = []

    class Rows:
        def __init__(self) -> None:
            made_in.append(threading.current_thread().name)
            self.con = sqlite3.connect(small_db)

        def __iter__(self) -> Iterator[tuple[int, str, float]]:
            return self.con.execute("SELECT id, name, score FROM t ORDER BY id")

        def close(self) -> None:
            closed.append(threading.current_thread().name)
            self.con.close()

    got = [row[0] async for row in threads.to_aiter(Rows, buffer=64)]
    assert got == list(range(5_000))
    assert made_in == [WORKER]
    assert closed == [WORKER], "the object the factory returned is closed too, in the worker"


async def test_early_exit_closes_a_real_cursor(small_db: Path) -> None:
    con = sqlite3.connect(small_db, check_same_thread=False)
    cursor = con.execute("SELECT id FROM t ORDER BY id")
    async with threads.to_aiter(cursor, buffer=16) as rows:
        async for (i,) in rows:
            if i == 100:
                break
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        cursor.fetchone()
    con.close()


# ------------------------------------------------------------------ to_aiter


async def test_rows_arrive_in_order() -> None:
    got = [x async for x in threads.to_aiter(iter(range(10_000)), buffer=8)]
    assert got == list(range(10_000))


async def test_a_list_and_a_file_are_blocking_iterables(tmp_path: Path) -> None:
    assert [x async for x in threads.to_aiter([1, 2, 3])] == [1, 2, 3]
    path = tmp_path / "lines.txt"
    path.write_text("".join(f"line {i}\n" for i in range(1000)))
    with path.open() as f:
        lines = [line async for line in threads.to_aiter(f, buffer=32)]
        assert f.closed, "the file, its own iterator, is closed at the end"
    assert lines == [f"line {i}\n" for i in range(1000)]


async def test_nothing_runs_before_the_first_value() -> None:
    calls: list[str] = []

    def factory() -> Iterator[int]:
        calls.append(threading.current_thread().name)
        return iter([1, 2])

    it = threads.to_aiter(factory)
    for _ in range(5):
        await anyio.lowlevel.checkpoint()
    assert calls == [] and not _alive(WORKER)
    assert await it.__anext__() == 1
    assert calls == [WORKER]
    await it.aclose()


def numbers_noting_finally(finally_ran: list[str]) -> Iterator[int]:
    """Endless numbers; the thread that ran the generator's ``finally`` is noted."""
    try:
        yield from range(10**9)
    finally:
        finally_ran.append(threading.current_thread().name)


async def test_early_exit_runs_the_generators_finally_in_the_worker_before_exit() -> None:
    finally_ran: list[str] = []
    async with threads.to_aiter(numbers_noting_finally(finally_ran), buffer=4) as it:
        assert await it.__anext__() == 0
        # the worker has filled the buffer and waits for room (not inside next())
        await _until(lambda: _worker_parked(it))
    assert finally_ran == [WORKER], "closed in the worker, before 'async with' exited"
    await _until(lambda: not _alive(WORKER))


async def test_cancelling_the_consumer_closes_the_source() -> None:
    finally_ran: list[str] = []

    with anyio.CancelScope() as scope:
        async with threads.to_aiter(numbers_noting_finally(finally_ran), buffer=4) as it:
            async for v in it:
                if v == 100:
                    await _until(lambda: _worker_parked(it))
                    scope.cancel()
                    await anyio.lowlevel.checkpoint()
    assert scope.cancelled_caught
    assert finally_ran, "the source was closed before the block exited"


class StuckRead:
    """A source whose second next() blocks until released: a read in progress at the exit."""

    def __init__(self, close_error: BaseException | None = None) -> None:
        self.inside = threading.Event()
        self.release = threading.Event()
        self.closed = threading.Event()
        self.close_error = close_error

    def stuck_read(self) -> Iterator[int]:
        try:
            yield 1
            self.inside.set()
            self.release.wait(5)  # a read that nothing can interrupt
            yield 2
        finally:
            self.closed.set()
            if self.close_error is not None:
                raise self.close_error

    async def start(self, **kwargs: Any) -> threads.PrefetchIterator[int]:
        """The stream, with the worker inside the blocking next()."""
        it = threads.to_aiter(self.stuck_read(), buffer=4, **kwargs)
        assert await it.__anext__() == 1
        await anyio.to_thread.run_sync(self.inside.wait, 5)
        return it


@pytest.mark.parametrize("grace", [{}, {"grace": None}], ids=["default-grace", "grace-None"])
async def test_early_exit_waits_for_the_call_in_progress_then_closes_before_exit(
    grace: dict[str, Any],
) -> None:
    """R21: a next() in progress is waited for, and the source is closed before the exit."""
    read = StuckRead()
    it = await read.start(**grace)
    closed_at_exit: list[bool] = []

    async def leave() -> None:
        await it.aclose()
        closed_at_exit.append(read.closed.is_set())

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(leave)
            await _until(lambda: it._h.consumer_gone)  # the exit has begun
            assert not read.closed.is_set(), "never closed while next() runs"
            read.release.set()  # the read returns
    assert closed_at_exit == [True], "the exit completed only after the worker closed the source"
    assert it.stats.delivered == 1, "the row that came after the exit went nowhere"


async def test_early_exit_from_a_cursor_lets_the_next_line_close_the_connection(
    small_db: Path, bridges_log: Recorder
) -> None:
    """The generator's finally (cursor.close()) has run when the block exits, every time."""
    con = sqlite3.connect(small_db, check_same_thread=False)
    try:
        for attempt in range(50):
            closed: list[int] = []

            def rows(attempt: int = attempt, closed: list[int] = closed) -> Iterator[int]:
                cursor = con.execute("SELECT id FROM t ORDER BY id")
                try:
                    for (i,) in cursor:
                        yield i
                finally:
                    cursor.close()
                    closed.append(attempt)

            async with threads.to_aiter(rows, buffer=256) as it:
                async for i in it:
                    if i == 300 + attempt:
                        break
            assert closed == [attempt], f"exit {attempt}: the finally had not run at exit"
    finally:
        con.close()  # the natural next line: nothing runs on the connection any more
    await _until(lambda: not _alive(WORKER))
    assert not bridges_log.records, [r.getMessage() for r in bridges_log.records]


async def test_a_call_that_outlasts_grace_is_left_behind_with_a_warning() -> None:
    """Only a call still running after grace= seconds detaches; a warning names the source."""
    read = StuckRead()
    it = await read.start(grace=0.01)
    with pytest.warns(RuntimeWarning, match=r"stuck_read.*still running 0\.01 s") as caught:
        with anyio.fail_after(5):
            await it.aclose()
    assert "grace=" in str(caught[0].message), "the message names the fix"
    assert not read.closed.is_set(), "the source cannot be closed while next() runs"
    assert _alive(WORKER)
    read.release.set()
    await anyio.to_thread.run_sync(read.closed.wait, 5)
    assert read.closed.is_set(), "closed as soon as next() returned"
    await _until(lambda: not _alive(WORKER))
    assert it.stats.delivered == 1, "the row that came after the exit went nowhere"


async def test_a_source_error_arrives_once_as_itself_after_the_rows() -> None:
    boom = SourceError("boom")

    def failing() -> Iterator[int]:
        yield 1
        yield 2
        raise boom

    it = threads.to_aiter(failing)
    info = await assert_values_then_error(it, [1, 2], boom)
    assert any(frame.name == "failing" for frame in info.traceback), "traceback kept"


async def test_a_factory_error_and_a_non_iterable_result_arrive_at_the_consumer() -> None:
    boom = SourceError("cannot connect")

    def broken() -> Iterator[int]:
        raise boom

    with pytest.raises(SourceError) as info:
        await threads.to_aiter(broken).__anext__()
    assert info.value is boom

    with pytest.raises(TypeError, match="returned a int, which is not iterable"):
        await threads.to_aiter(lambda: 42).__anext__()  # type: ignore[arg-type,return-value]


async def test_a_close_error_at_the_end_comes_after_the_rows() -> None:
    class Cursor:
        def __init__(self) -> None:
            self.rows = iter([1, 2, 3])

        def __iter__(self) -> Cursor:
            return self

        def __next__(self) -> int:
            return next(self.rows)

        def close(self) -> None:
            raise SourceError("close failed")

    got = []
    with pytest.raises(SourceError, match="close failed"):
        async for v in threads.to_aiter(Cursor()):
            got.append(v)
    assert got == [1, 2, 3]


async def test_a_close_error_on_early_exit_is_raised_by_aclose() -> None:
    def numbers() -> Iterator[int]:
        try:
            yield from range(10**9)
        finally:
            raise SourceError("cleanup failed")

    it = threads.to_aiter(numbers(), buffer=2)
    assert await it.__anext__() == 0
    await _until(lambda: _worker_parked(it))
    with pytest.raises(SourceError, match="cleanup failed"):
        await it.aclose()
    await it.aclose()  # idempotent, and the error is not raised twice


async def test_the_consumers_own_error_wins_over_a_close_error(bridges_log: Recorder) -> None:
    def numbers() -> Iterator[int]:
        try:
            yield from range(10**9)
        finally:
            raise SourceError("cleanup failed")

    class MineError(Exception):
        pass

    with pytest.raises(MineError):
        async with threads.to_aiter(numbers(), buffer=2) as it:
            await it.__anext__()
            await _until(lambda: _worker_parked(it))
            raise MineError
    [record] = bridges_log.records
    assert record.exc_info is not None and isinstance(record.exc_info[1], SourceError)


async def test_a_close_error_after_a_detached_exit_is_logged_as_what_happened(
    bridges_log: Recorder,
) -> None:
    read = StuckRead(close_error=SourceError("late cleanup failed"))
    it = await read.start(grace=0)
    with pytest.warns(RuntimeWarning, match="stuck_read"):
        await it.aclose()  # the worker is inside next() and grace=0: returns at once
    read.release.set()
    await _until(lambda: not _alive(WORKER))
    [record] = bridges_log.records
    assert record.exc_info is not None and str(record.exc_info[1]) == "late cleanup failed"
    message = record.getMessage()
    assert "stuck_read" in message and "outlasted grace=0 s" in message, message
    assert "another exception is propagating" not in message, "nothing else was propagating"


async def test_an_exit_with_no_call_in_progress_closes_before_exit_even_with_grace_zero() -> None:
    finally_ran: list[str] = []
    async with threads.to_aiter(numbers_noting_finally(finally_ran), buffer=2, grace=0) as it:
        assert await it.__anext__() == 0
        await _until(lambda: _worker_parked(it))  # waiting for room, not in a call
    assert finally_ran == [WORKER]  # and no warning (warnings are errors here)


# ------------------------------------------------------------- consumer_gone


async def test_an_idle_source_sees_the_consumer_leave_and_stops_at_once() -> None:
    """A subscription that waits for a message that never comes is woken by consumer_gone()."""
    inbox: queue.Queue[object] = queue.Queue()
    stop = object()
    closed_in: list[str] = []

    def messages() -> Iterator[object]:
        gone = threads.consumer_gone()
        gone.add_callback(lambda: inbox.put(stop))  # wakes the blocked get() at once
        try:
            while True:
                message = inbox.get(timeout=5)  # an idle listen(): blocks until a message
                if message is stop:
                    return
                yield message
        finally:
            closed_in.append(threading.current_thread().name)

    inbox.put("hello")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "left behind" warning: the source returned
        async with threads.to_aiter(messages, buffer=4) as it:
            async for message in it:
                assert message == "hello"
                break  # the worker is now blocked in inbox.get()
    assert closed_in == [WORKER], "the source stopped and was closed before the exit completed"


async def test_a_polling_source_sees_consumer_gone_is_set() -> None:
    saw_gone: list[bool] = []

    def readings() -> Iterator[int]:
        gone = threads.consumer_gone()
        try:
            yield from range(3)
            while not gone.wait(0.001):  # idle: short waits of the source's own
                pass
        finally:
            saw_gone.append(gone.is_set() and bool(gone))

    async with threads.to_aiter(readings, buffer=8) as it:
        async for n in it:
            if n == 2:
                await _until(lambda: not _worker_parked(it) and it.stats.buffered == 0)
                break
    assert saw_gone == [True]


async def test_consumer_gone_outside_a_worker_says_where_to_call_it() -> None:
    with pytest.raises(RuntimeError, match=r"worker thread of threads\.to_aiter"):
        threads.consumer_gone()
    with pytest.raises(RuntimeError, match="worker thread"):
        await anyio.to_thread.run_sync(threads.consumer_gone)


def test_consumer_gone_callbacks_are_plain_functions_and_run_once() -> None:
    gone = threads.ConsumerGone()
    calls: list[str] = []

    async def wake() -> None:
        pass

    with pytest.raises(TypeError, match="plain function"):
        gone.add_callback(wake)
    with pytest.raises(TypeError, match="takes a function"):
        gone.add_callback(42)  # type: ignore[arg-type]
    gone.add_callback(lambda: calls.append("before"))
    assert not gone.is_set()
    gone._set()
    gone._set()
    gone.add_callback(lambda: calls.append("after"))  # already gone: at once
    assert calls == ["before", "after"]
    assert gone.wait(0)


@pytest.mark.parametrize("buffer", [0, 1, 4])
async def test_at_most_buffer_rows_are_pulled_ahead(buffer: int) -> None:
    pulled = 0
    ahead: list[int] = []

    def counted() -> Iterator[int]:
        nonlocal pulled
        for i in range(200):
            pulled += 1
            yield i

    delivered = 0
    async with threads.to_aiter(counted(), buffer=buffer) as it:
        async for _ in it:
            delivered += 1
            ahead.append(pulled - delivered)
            for _ in range(3):
                await anyio.lowlevel.checkpoint()
            ahead.append(pulled - delivered)
    assert delivered == 200
    assert max(ahead) <= buffer, f"pulled {max(ahead)} ahead with buffer={buffer}"
    assert it.stats.high_water <= buffer


async def test_drop_oldest_keeps_the_latest_reading() -> None:
    finished = threading.Event()

    def readings() -> Iterator[int]:
        try:
            yield from range(1000)
        finally:
            finished.set()

    async with threads.to_aiter(readings(), buffer=1, overflow="drop_oldest") as it:
        await anyio.to_thread.run_sync(finished.wait, 5)
        assert [v async for v in it] == [999]
        assert it.stats.dropped == 999


async def test_a_burst_then_a_blocking_read_holds_no_row_back() -> None:
    """Chunked hand-over must not keep rows from a consumer while the source blocks."""
    more = threading.Event()

    def tail() -> Iterator[int]:
        yield from range(100)  # a fast burst (the consumer starts collecting chunks) ...
        more.wait()  # ... then a read that blocks until there is more
        yield 100

    async with threads.to_aiter(tail(), buffer=256) as it:
        with anyio.fail_after(5):
            got = [await it.__anext__() for _ in range(100)]
        assert got == list(range(100))
        more.set()
        assert await it.__anext__() == 100


async def test_a_slow_source_is_delivered_row_by_row() -> None:
    gate = [threading.Event() for _ in range(5)]

    def slow() -> Iterator[int]:
        for i, g in enumerate(gate):
            g.wait()
            yield i

    async with threads.to_aiter(slow(), buffer=64) as it:
        for i, g in enumerate(gate):
            g.set()
            with anyio.fail_after(5):
                assert await it.__anext__() == i


async def test_each_stream_has_one_worker_and_none_outlives_it() -> None:
    streams = [threads.to_aiter(iter(range(10**9)), buffer=8) for _ in range(5)]
    try:
        for i, it in enumerate(streams):
            assert await it.__anext__() == 0  # starts this stream's worker
            assert len(_alive(WORKER)) == i + 1, "one worker thread per stream"
    finally:
        for it in streams:
            await it.aclose()
    assert not _alive(WORKER), "every worker has ended when its stream is closed"


async def test_a_dropped_iterator_releases_its_worker_with_a_resource_warning() -> None:
    finally_ran: list[str] = []

    it = threads.to_aiter(numbers_noting_finally(finally_ran), buffer=4)
    assert await it.__anext__() == 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del it
        gc.collect()
    assert any(issubclass(w.category, ResourceWarning) for w in caught)
    await _until(lambda: finally_ran)


def test_works_under_plain_asyncio_run() -> None:
    async def main() -> list[int]:
        return [x async for x in threads.to_aiter(iter(range(5000)), buffer=16)]

    assert asyncio.run(main()) == list(range(5000))


@pytest.mark.parametrize(
    ("args", "kwargs", "exc", "words"),
    [
        ((42,), {}, TypeError, "blocking iterable or a zero-argument callable"),
        ((None,), {}, TypeError, "NoneType"),
        (([1],), {"buffer": -1}, ValueError, ">= 0"),
        (([1],), {"buffer": "8"}, TypeError, "int"),
        (([1],), {"overflow": "sometimes"}, ValueError, "drop_oldest"),
        (([1],), {"grace": -1}, ValueError, ">= 0"),
        (([1],), {"grace": "1"}, TypeError, "seconds"),
    ],
)
def test_to_aiter_rejects_bad_arguments_at_once(
    args: tuple[Any, ...], kwargs: dict[str, Any], exc: type[Exception], words: str
) -> None:
    with pytest.raises(exc, match=words):
        threads.to_aiter(*args, **kwargs)


def test_to_aiter_rejects_an_async_iterable() -> None:
    async def agen() -> AsyncGenerator[int, None]:
        yield 1

    source = agen()
    with pytest.raises(TypeError, match="already async"):
        threads.to_aiter(source)  # type: ignore[call-overload]
    asyncio.run(source.aclose())


# ---------------------------------------------------------------- from_aiter


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_sync_code_iterates_an_async_source(backend: str) -> None:
    source = RecordingSource(range(1000))
    with threads.from_aiter(source, buffer=8, backend=backend) as it:
        assert list(it) == list(range(1000))
        assert it.stats.high_water <= 8
    assert source.ran_in == [LOOP]
    assert source.closed == 1
    assert not _alive(LOOP), "the loop thread is joined"


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_breaking_out_cancels_the_source_and_joins_the_thread(backend: str) -> None:
    source = RecordingSource(range(10**9), hang=True)
    with threads.from_aiter(source, buffer=4, backend=backend) as it:
        for v in it:
            if v == 10:
                break
    assert source.closed == 1, "the source's cleanup ran before the block exited"
    assert not _alive(LOOP)
    assert source.pulled <= 10 + 1 + 4


def test_a_hanging_source_is_cancelled_on_exit() -> None:
    source = RecordingSource(range(3), hang=True)
    with threads.from_aiter(source, backend="trio") as it:
        assert [next(it) for _ in range(3)] == [0, 1, 2]
    assert source.closed == 1
    assert not _alive(LOOP)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_source_error_is_raised_as_itself_once(backend: str) -> None:
    boom = SourceError("boom")
    source = RecordingSource(range(3), error=boom)
    got: list[int] = []
    with threads.from_aiter(source, backend=backend) as it:
        with pytest.raises(SourceError) as info:
            got.extend(it)
        assert info.value is boom
        assert not _alive(LOOP), "the loop thread is joined when the error is raised"
        with pytest.raises(StopIteration):
            next(it)
    assert got == [0, 1, 2]
    assert source.closed == 1


def test_at_most_buffer_values_are_pulled_ahead() -> None:
    for buffer in (0, 1, 5):
        source = RecordingSource(range(100))
        ahead = []
        with threads.from_aiter(source, buffer=buffer) as it:
            for delivered, _ in enumerate(it, 1):
                time.sleep(0.0005)  # a slow consumer: the loop would run ahead if it could
                ahead.append(source.pulled - delivered)
        assert max(ahead) <= buffer, (buffer, max(ahead))


async def test_a_portal_runs_the_source_in_the_callers_loop(backend_name: str) -> None:
    source = RecordingSource(range(500))
    loop_thread = threading.current_thread().name

    def sync_code(portal: BlockingPortal) -> list[int]:
        with threads.from_aiter(source, buffer=16, portal=portal) as it:
            return list(it)

    async with BlockingPortal() as portal:
        got = await anyio.to_thread.run_sync(sync_code, portal)
    assert got == list(range(500))
    assert source.ran_in == [loop_thread], "the source ran in the caller's loop"
    assert source.closed == 1


async def test_a_portal_stream_left_early_cancels_the_source() -> None:
    source = RecordingSource(range(10**9), hang=True)

    def sync_code(portal: BlockingPortal) -> list[int]:
        with threads.from_aiter(source, buffer=4, portal=portal) as it:
            return [v for v, _ in zip(it, range(5), strict=False)]

    async with BlockingPortal() as portal:
        got = await anyio.to_thread.run_sync(sync_code, portal)
    assert got == [0, 1, 2, 3, 4]
    assert source.closed == 1


def test_a_stopped_portal_fails_the_stream_instead_of_hanging() -> None:
    source = RecordingSource(range(1), hang=True)
    with start_blocking_portal() as portal, threads.from_aiter(source, portal=portal) as it:
        assert next(it) == 0
        stopper = threading.Thread(target=portal.call, args=(portal.stop, True))
        stopper.start()
        with pytest.raises(RuntimeError, match="cancelled before it ended"):
            next(it)
        stopper.join()
    assert source.closed == 1


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_leaving_runs_a_source_cleanup_that_awaits(backend: str) -> None:
    # leaving cancels the pump on the helper loop; the source's close runs inside
    # that cancellation and must not be cut short at its first await
    source = AwaitingCleanup()
    with threads.from_aiter(source, buffer=1, backend=backend) as it:
        assert next(it) == 0
    source.assert_cleaned("the pump's cancellation")


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_portal_leaving_runs_a_source_cleanup_that_awaits(backend: str) -> None:
    source = AwaitingCleanup()
    with start_blocking_portal(backend) as portal:
        with threads.from_aiter(source, buffer=1, portal=portal) as it:
            assert next(it) == 0
        source.assert_cleaned("the task's cancellation")


def test_portal_stopped_runs_a_source_cleanup_that_awaits() -> None:
    source = AwaitingCleanup()
    with (
        start_blocking_portal() as portal,
        threads.from_aiter(source, buffer=1, portal=portal) as it,
    ):
        assert next(it) == 0
        # cancels the pump task from outside
        stopper = threading.Thread(target=portal.call, args=(portal.stop, True))
        stopper.start()
        with pytest.raises(RuntimeError, match="cancelled before it ended"):
            while True:
                next(it)
        stopper.join()
    assert source.cleaned, "the source's cleanup was cut short by the portal's cancellation"


def test_close_from_another_thread_ends_a_blocked_consumer() -> None:
    source = RecordingSource(range(1), hang=True)
    it = threads.from_aiter(source, backend="asyncio")
    got: list[int] = []

    def consume() -> None:
        for v in it:
            got.append(v)  # noqa: PERF402 - each value as it comes, for the wait below

    consumer = threading.Thread(target=consume)
    consumer.start()
    deadline = time.monotonic() + 5
    # the consumer has the value and is parked waiting for the next one (the source hangs)
    while not (got and it.stats.waiting_receivers == 1):
        assert time.monotonic() < deadline, "the consumer never took the value and waited"
        time.sleep(0.001)
    it.close()
    consumer.join(5)
    assert not consumer.is_alive()
    assert got == [0]
    assert source.closed == 1


def test_an_error_from_aiter_itself_is_raised_as_itself() -> None:
    boom = SourceError("no stream today")

    class Broken:
        def __aiter__(self) -> AsyncIterator[int]:
            raise boom

    with threads.from_aiter(Broken(), backend="trio") as it, pytest.raises(SourceError) as info:
        next(it)
    assert info.value is boom


async def test_close_on_an_event_loop_thread_cancels_without_waiting() -> None:
    source = RecordingSource(range(10**9), hang=True)
    it = threads.from_aiter(source, buffer=2)
    assert await anyio.to_thread.run_sync(next, it) == 0  # started from a worker thread
    [loop_thread] = _alive(LOOP)
    it.close()  # here, on the event loop: it must not block
    await anyio.to_thread.run_sync(loop_thread.join, 5)
    assert source.closed == 1


def test_a_cleanup_error_is_raised_by_close_unless_the_consumer_raised(
    bridges_log: Recorder,
) -> None:
    class Failing:
        def __aiter__(self) -> AsyncIterator[int]:
            return self._gen()

        async def _gen(self) -> AsyncIterator[int]:
            try:
                while True:
                    await anyio.lowlevel.checkpoint()
                    yield 1
            finally:
                raise SourceError("cleanup failed")

    with (
        pytest.raises(SourceError, match="cleanup failed"),
        threads.from_aiter(Failing(), backend="trio") as it,
    ):
        next(it)

    class MineError(Exception):
        pass

    with pytest.raises(MineError), threads.from_aiter(Failing(), backend="asyncio") as it:
        next(it)
        raise MineError
    [record] = bridges_log.records
    assert record.exc_info is not None and isinstance(record.exc_info[1], SourceError)


def test_iterating_without_with_ends_and_joins() -> None:
    source = RecordingSource(range(50))
    assert list(threads.from_aiter(source, backend="trio")) == list(range(50))
    assert not _alive(LOOP)
    assert source.closed == 1


def test_a_dropped_blocking_iterator_cancels_its_source() -> None:
    source = RecordingSource(range(10**9), hang=True)
    it = threads.from_aiter(source, buffer=2)
    assert next(it) == 0
    thread = _alive(LOOP)[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del it
        gc.collect()
    assert any(issubclass(w.category, ResourceWarning) for w in caught)
    thread.join(5)
    assert not thread.is_alive()
    assert source.closed == 1


async def test_from_aiter_refuses_to_block_an_event_loop() -> None:
    it = threads.from_aiter(RecordingSource(range(3)))
    with pytest.raises(RuntimeError, match="event loop"):
        next(it)
    with pytest.raises(RuntimeError, match=r"to_thread\.run_sync"):
        it.__enter__()
    it.close()


@pytest.mark.parametrize(
    ("kwargs", "exc", "words"),
    [
        ({"source": [1, 2]}, TypeError, "iterate it directly"),
        ({"source": 42}, TypeError, "async iterable"),
        ({"buffer": -1}, ValueError, ">= 0"),
        ({"backend": "curio"}, ValueError, "'asyncio' or 'trio'"),
        ({"portal": object()}, TypeError, "BlockingPortal"),
    ],
)
def test_from_aiter_rejects_bad_arguments_at_once(
    kwargs: dict[str, Any], exc: type[Exception], words: str
) -> None:
    kwargs = {"source": RecordingSource(range(1)), **kwargs}
    with pytest.raises(exc, match=words):
        threads.from_aiter(**kwargs)
    assert not _alive(LOOP)


# ------------------------------------------------------- the core's blocking verbs


def test_get_sync_takes_values_from_an_async_producer_on_another_loop() -> None:
    h: Handoff[int] = Handoff(4)

    async def produce() -> None:
        for i in range(2000):
            assert await h.put(i) is TAKEN
        h.close()

    for backend in ("asyncio", "trio"):
        h = Handoff(4)
        t = threading.Thread(target=anyio.run, args=(produce,), kwargs={"backend": backend})
        t.start()
        got = []
        with pytest.raises(StopIteration):
            while True:
                got.append(h.get_sync())
        t.join()
        assert got == list(range(2000))
        assert h.stats.high_water <= 4


def test_get_sync_raises_the_failure_once_then_the_end() -> None:
    h: Handoff[int] = Handoff(4)
    boom = SourceError()
    h.put_nowait(1)
    h.fail(boom)
    assert h.get_sync() == 1
    with pytest.raises(SourceError) as info:
        h.get_sync()
    assert info.value is boom
    with pytest.raises(StopIteration):
        h.get_sync()


def test_get_sync_is_woken_when_the_consumer_side_leaves_from_another_thread() -> None:
    h: Handoff[int] = Handoff(4)
    outcome: list[object] = []

    def consume() -> None:
        try:
            h.get_sync()
        except StopIteration:
            outcome.append("end")

    t = threading.Thread(target=consume)
    t.start()
    while not h._getters:
        time.sleep(0.001)
    h.leave()
    t.join(5)
    assert outcome == ["end"]


def test_wait_room_sync_blocks_until_the_buffer_drains_to_half() -> None:
    h: Handoff[int] = Handoff(4)
    for i in range(4):
        h.put_nowait(i)
    passed = threading.Event()

    def producer() -> None:
        h.wait_room_sync()
        passed.set()

    t = threading.Thread(target=producer)
    t.start()
    while not h._putters:
        time.sleep(0.001)
    assert h.get_nowait() == (True, 0)
    assert not passed.is_set(), "3 of 4 held: above the low-water mark"
    assert h.get_nowait() == (True, 1)
    assert passed.wait(5), "2 of 4 held: woken"
    t.join()


def test_wait_room_sync_on_a_rendezvous_waits_for_a_consumer() -> None:
    h: Handoff[int] = Handoff(0)
    got: list[int] = []

    def consumer() -> None:
        got.append(h.get_sync())

    c = threading.Thread(target=consumer)
    c.start()
    h.wait_room_sync()  # returns once the consumer waits
    assert h.put_nowait(7) is TAKEN
    c.join(5)
    assert got == [7]
