"""bridges.ops: paginate, batch, merge, share, rate_limit, and the chainable methods.

Time-based behaviour runs on virtual clocks (trio's MockClock with autojump,
and an asyncio loop whose clock jumps when it would wait); uvloop, which
ignores an overridden clock, gets short real-time smoke tests with generous
bounds.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import selectors
import sqlite3
import threading
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import bridges
from bridges import BufferOverflowError, ops, testing
from bridges.testing import End, SourceError, TestSource

from .sources import AwaitingCleanup, assert_values_then_error, awaiting, cancel_once_waiting

pytestmark = pytest.mark.anyio

ASYNCIO_ONLY = pytest.mark.parametrize("anyio_backend", ["asyncio"])
UVLOOP_ONLY = pytest.mark.parametrize(
    "anyio_backend", [pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop")]
)


# --------------------------------------------------------------------------- virtual time


class _JumpingSelector(selectors.DefaultSelector):
    """A selector that, instead of sleeping until the next timer, moves the loop's clock."""

    loop: VirtualTimeLoop

    def select(self, timeout: float | None = None) -> list[Any]:
        if timeout is not None and timeout > 0:
            events = super().select(0)
            if not events:
                self.loop.now += timeout
            return events
        return super().select(timeout)


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An asyncio loop on virtual time: whenever it would wait for a timer, time jumps there.

    Nothing waits in real time, so a test of "flushed after 1 second" takes
    microseconds and its timings are exact.  (Like trio's autojump clock, it
    jumps even when a thread is about to wake the loop: use it without threads.)
    """

    def __init__(self) -> None:
        selector = _JumpingSelector()
        selector.loop = self
        self.now = 0.0
        super().__init__(selector)

    def time(self) -> float:
        return self.now


def run_virtual(kind: str, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    if kind == "trio":
        import trio.testing

        anyio.run(
            main,
            backend="trio",
            backend_options={"clock": trio.testing.MockClock(autojump_threshold=0)},
        )
    else:
        anyio.run(main, backend="asyncio", backend_options={"loop_factory": VirtualTimeLoop})


VIRTUAL = pytest.mark.parametrize(
    "clock", ["trio", "asyncio"], ids=["trio-autojump", "asyncio-virtual"]
)


async def timed(
    schedule: list[tuple[float, int]], closed: list[int] | None = None
) -> AsyncIterator[int]:
    """Yield each value at its time (seconds after the first pull)."""
    t0 = anyio.current_time()
    try:
        for at, v in schedule:
            await anyio.sleep_until(t0 + at)
            yield v
    finally:
        if closed is not None:
            closed.append(1)


def test_virtual_loop_jumps() -> None:
    async def main() -> None:
        t0 = anyio.current_time()
        await anyio.sleep(3600)
        assert anyio.current_time() - t0 == pytest.approx(3600)

    run_virtual("asyncio", main)


async def _next(it: AsyncIterator[Any]) -> None:
    await it.__anext__()


async def _cancelled_next(
    it: AsyncIterator[Any], until: Callable[[], Awaitable[None]] = anyio.wait_all_tasks_blocked
) -> None:
    """A timeout around one ``__anext__``: it is cancelled once ``until()`` returns."""
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_next, it)
            await until()
            scope.cancel()


async def agen(n: int, start: int = 0) -> AsyncIterator[int]:
    for i in range(start, start + n):
        await anyio.lowlevel.checkpoint()
        yield i


#: every op over one source, built around it
ONE_SOURCE_OPS: dict[str, Callable[[AsyncIterable[int]], bridges.BridgeIterator[Any]]] = {
    "map": lambda s: bridges.iterate(s).map(lambda v: v),
    "map_concurrent": lambda s: bridges.iterate(s).map(lambda v: v, concurrency=3),
    "filter": lambda s: bridges.iterate(s).filter(lambda v: True),
    "take": lambda s: bridges.iterate(s).take(100),
    "drop": lambda s: bridges.iterate(s).drop(1),
    "flat_map": lambda s: bridges.iterate(s).flat_map(lambda v: [v, v]),
    "batch": lambda s: ops.batch(s, 3),
    "batch_within": lambda s: ops.batch(s, 3, within=60),
    "merge": lambda s: ops.merge(s),
    "rate_limit": lambda s: ops.rate_limit(s, 1000, burst=10),
}


@pytest.mark.parametrize("name", sorted(ONE_SOURCE_OPS))
async def test_op_cancelled_from_outside_runs_a_source_cleanup_that_awaits(name: str) -> None:
    source = AwaitingCleanup()
    got: list[Any] = []

    async def consume() -> None:
        async with ONE_SOURCE_OPS[name](source) as it:
            got.append(await it.__anext__())
            await anyio.sleep_forever()  # the source waits at a yield (a helper's too)

    await cancel_once_waiting(consume)
    assert len(got) == 1
    source.assert_cleaned(f"the cancellation ({name})")


async def test_flat_map_cancelled_runs_a_source_cleanup_that_awaits_also_of_the_inner() -> None:
    outer = AwaitingCleanup()
    inners: list[AwaitingCleanup] = []

    def expand(v: int) -> AsyncIterator[int]:
        inners.append(AwaitingCleanup())
        return inners[-1].__aiter__()

    async def consume() -> None:
        async with bridges.iterate(outer).flat_map(expand) as it:
            assert await it.__anext__() == 0
            await anyio.sleep_forever()

    await cancel_once_waiting(consume)
    assert len(inners) == 1
    assert inners[0].cleaned, "the inner iterator's cleanup was cut short"
    assert outer.cleaned, "the source's cleanup was cut short"


async def test_share_cancelled_from_outside_runs_a_source_cleanup_that_awaits() -> None:
    source = AwaitingCleanup()

    async def consume() -> None:
        async with ops.share(source, buffer=2) as shared, shared.subscribe() as sub:
            assert await sub.__anext__() == 0
            await anyio.sleep_forever()  # the pump waits for room, the source at a yield

    await cancel_once_waiting(consume)
    source.assert_cleaned("the pump's cancellation")


# --------------------------------------------------------------------------- chainable methods


async def test_chain_with_sync_and_async_functions() -> None:
    times_ten = awaiting(lambda v: v * 10)
    even = awaiting(lambda v: v % 2 == 0)

    got = await bridges.iterate(agen(20)).filter(even).map(times_ten).take(3).to_list()
    assert got == [0, 20, 40]
    got = await bridges.iterate(agen(6)).map(lambda v: v + 1).filter(lambda v: v > 3).to_list()
    assert got == [4, 5, 6]
    # a sync function that returns an awaitable (a lambda around an async call)
    got = await bridges.iterate(agen(3)).map(lambda v: times_ten(v)).to_list()
    assert got == [0, 10, 20]


async def test_chain_is_lazy_and_owns_its_source() -> None:
    source = TestSource(range(10), End.HANG)
    it = bridges.iterate(source).map(lambda v: v).filter(lambda v: True)
    for _ in range(3):
        await anyio.lowlevel.checkpoint()
    assert source.pulled == 0, "nothing is pulled before the first request"
    async with it:
        assert await it.__anext__() == 0
        assert source.pulled == 1
    assert source.closed == 1, "leaving the chain's block closes the source"


async def test_take_closes_the_source_before_the_last_value() -> None:
    source = TestSource(range(10), End.HANG)
    it = bridges.iterate(source).take(3)
    got = []
    async for v in it:
        got.append(v)
        if v == 2:
            assert source.closed == 1, "closed as soon as take() had its values"
    assert got == [0, 1, 2]
    assert source.pulled == 3, "never pulled beyond n"


async def test_take_zero_closes_without_pulling() -> None:
    source = TestSource(range(3))
    it = bridges.iterate(source)
    assert await it.__anext__() == 0
    assert await it.take(0).to_list() == []
    assert source.pulled == 1, "take(0) pulls nothing"
    assert source.closed == 1


async def test_take_close_error_comes_after_the_value() -> None:
    boom = SourceError("cleanup")

    async def gen() -> AsyncIterator[int]:
        try:
            yield 1
            yield 2
        finally:
            raise boom

    it = bridges.iterate(gen()).take(1)
    assert await it.__anext__() == 1, "the value is handed over first"
    with pytest.raises(SourceError) as info:
        await it.__anext__()
    assert info.value is boom
    with pytest.raises(StopAsyncIteration):
        await it.__anext__()


async def test_function_error_closes_source_and_is_raised_once() -> None:
    source = TestSource(range(10), End.HANG)

    def bad(v: int) -> int:
        if v == 2:
            raise ValueError("bad value")
        return v

    it = bridges.iterate(source).map(bad)
    assert [await it.__anext__(), await it.__anext__()] == [0, 1]
    with pytest.raises(ValueError, match="bad value"):
        await it.__anext__()
    assert source.closed == 1
    with pytest.raises(StopAsyncIteration):
        await it.__anext__()


async def test_source_error_passes_through_the_chain_unwrapped() -> None:
    boom = SourceError("boom")
    it = bridges.iterate(TestSource(range(3), End.FAIL, boom)).map(lambda v: v).drop(1)
    await assert_values_then_error(it, [1, 2], boom)


async def test_cancelled_async_call_keeps_the_value() -> None:
    calls: list[int] = []
    gate = anyio.Event()

    async def slow(v: int) -> int:
        calls.append(v)
        if len(calls) == 1:
            await gate.wait()
        return v

    source = TestSource(range(3))
    it = bridges.iterate(source).map(slow)
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_next, it)
            await anyio.wait_all_tasks_blocked()
            scope.cancel()
    assert source.closed == 0, "a cancelled call releases nothing"
    assert await it.to_list() == [0, 1, 2], "the value is not lost: fn is called again"
    assert calls == [0, 0, 1, 2]


async def test_flat_map_sync_and_async_inner_iterables() -> None:
    async def inner(v: int) -> AsyncIterator[int]:
        for _ in range(v):
            yield v

    got = await bridges.iterate(agen(4)).flat_map(inner).to_list()
    assert got == [1, 2, 2, 3, 3, 3]

    async def pairs(v: int) -> list[int]:
        return [v, -v]

    assert await bridges.iterate(agen(3)).flat_map(pairs).to_list() == [0, 0, 1, -1, 2, -2]


async def test_flat_map_rejects_strings_and_non_iterables() -> None:
    with pytest.raises(TypeError, match="string"):
        await bridges.iterate(agen(2)).flat_map(lambda v: "ab").to_list()
    source = TestSource(range(3))
    with pytest.raises(TypeError, match="iterable"):
        await bridges.iterate(source).flat_map(lambda v: 42).to_list()  # type: ignore[arg-type,return-value]
    assert source.closed == 1


async def test_flat_map_close_closes_inner_then_source() -> None:
    order: list[str] = []

    async def inner(v: int) -> AsyncIterator[int]:
        try:
            for i in range(100):
                await anyio.lowlevel.checkpoint()
                yield i
        finally:
            order.append("inner")

    async def outer() -> AsyncIterator[int]:
        try:
            yield 1
            yield 2
        finally:
            order.append("outer")

    async with bridges.iterate(outer()).flat_map(inner) as it:
        assert [await it.__anext__() for _ in range(3)] == [0, 1, 2]
    assert order == ["inner", "outer"]


async def test_reduce_for_each_to_list() -> None:
    assert await bridges.iterate(agen(5)).reduce(lambda a, b: a + b) == 10
    assert await bridges.iterate(agen(0)).reduce(lambda a, b: a + b, 100) == 100

    async def add(a: list[int], b: int) -> list[int]:
        await anyio.lowlevel.checkpoint()
        return [*a, b]

    empty: list[int] = []
    assert await bridges.iterate(agen(3)).reduce(add, empty) == [0, 1, 2]
    with pytest.raises(TypeError, match="empty"):
        await bridges.iterate(agen(0)).reduce(lambda a, b: a + b)
    seen: list[int] = []

    async def record(v: int) -> None:
        await anyio.lowlevel.checkpoint()
        seen.append(v)

    source = TestSource(range(4))
    await bridges.iterate(source).for_each(record)
    assert seen == [0, 1, 2, 3]
    assert source.closed == 1


async def test_terminal_methods_close_the_source_on_error() -> None:
    source = TestSource(range(10), End.HANG)

    def stop_at_two(v: int) -> None:
        if v == 2:
            raise KeyError(v)

    with pytest.raises(KeyError):
        await bridges.iterate(source).for_each(stop_at_two)
    assert source.closed == 1


async def test_methods_on_a_buffered_iterator_fed_by_a_thread() -> None:
    send, receive = bridges.open_channel[int](4)

    def produce() -> None:
        for i in range(100):
            send.send_blocking(i)
        send.close()

    t = threading.Thread(target=produce)
    t.start()
    try:
        total = (
            await receive.filter(lambda v: v % 3 == 0)
            .map(lambda v: v * 2)
            .reduce(lambda a, b: a + b)
        )
    finally:
        await anyio.to_thread.run_sync(t.join)
    assert total == sum(v * 2 for v in range(100) if v % 3 == 0)


async def test_method_arguments_are_checked_at_once() -> None:
    it = bridges.iterate(agen(1))
    with pytest.raises(TypeError, match="function"):
        it.map(42)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="function"):
        it.filter(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="int"):
        it.take("3")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=">= 0"):
        it.take(-1)
    with pytest.raises(ValueError, match=">= 0"):
        it.drop(-1)
    with pytest.raises(TypeError, match="function"):
        it.flat_map(3)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="function"):
        await it.for_each(3)  # type: ignore[arg-type]
    await it.aclose()


#: the ops whose first value is the source's first (or a batch of it alone)
_AFTER_CLOSE = {
    **{
        name: ONE_SOURCE_OPS[name]
        for name in ("map", "filter", "take", "flat_map", "merge", "rate_limit")
    },
    "drop": lambda src: bridges.iterate(src).drop(0),
    "batch": lambda src: ops.batch(src, 1),
    "batch-within": lambda src: ops.batch(src, 1, within=60),
    "paginate": lambda src: ops.paginate(_pages_of(src)),
    "paginate-prefetch": lambda src: ops.paginate(_pages_of(src), prefetch=True),
}


def _pages_of(src: TestSource) -> Callable[[Any], Any]:
    it = src.__aiter__()

    async def fetch(token: object) -> tuple[list[int], int]:
        return [await it.__anext__(), await it.__anext__()], 1

    return fetch


@pytest.mark.parametrize("name", list(_AFTER_CLOSE))
async def test_nothing_comes_after_aclose(name: str) -> None:
    source = TestSource(range(100), End.HANG)
    it = _AFTER_CLOSE[name](source)
    async with it:
        assert await it.__anext__() in (0, [0])
        await it.aclose()
        if not name.startswith("paginate"):  # paginate does not own what fetch_page reads
            assert source.closed == 1, "aclose() closed the source before it returned"
        for _ in range(2):
            with pytest.raises(StopAsyncIteration):
                await it.__anext__()
    with pytest.raises(RuntimeError, match="entered"):
        await it.__aenter__()


# ------------------------------------------------------------- task-owning helpers need async with


async def test_task_owning_helpers_say_how_to_use_them() -> None:
    for make in (
        lambda: ops.merge(agen(2), agen(2)),
        lambda: ops.batch(agen(2), 2, within=1),
        lambda: ops.paginate(_fetch_numbers, prefetch=True),
    ):
        it = make()
        with pytest.raises(RuntimeError, match="async with"):
            await it.__anext__()
        await it.aclose()
    shared = ops.share(agen(2))
    sub = shared.subscribe()
    with pytest.raises(RuntimeError, match="async with"):
        await sub.__anext__()


async def test_terminal_methods_enter_task_owning_iterators() -> None:
    got = await ops.merge(agen(3), agen(3, 10)).to_list()
    assert sorted(got) == [0, 1, 2, 10, 11, 12]
    # already inside its block: the terminal method does not enter again
    async with ops.merge(agen(2), agen(2, 10)) as m:
        assert sorted(await m.to_list()) == [0, 1, 10, 11]


async def test_chain_enters_the_helper_below_it() -> None:
    async with ops.merge(agen(3), agen(3, 10)).map(lambda v: -v).take(4) as it:
        got = [v async for v in it]
    assert len(got) == 4
    assert all(v <= 0 for v in got)


# --------------------------------------------------------------------------- paginate


async def _fetch_numbers(token: int | None) -> tuple[list[int], int | None]:
    start = token or 0
    return list(range(start, start + 3)), (start + 3 if start < 6 else None)


async def test_paginate_fetches_lazily_page_by_page() -> None:
    calls: list[Any] = []

    async def fetch(token: str | None) -> tuple[list[str], str | None]:
        calls.append(token)
        pages = {"a": (["a1", "a2"], "b"), "b": ([], "c"), "c": (["c1"], None)}
        return pages[token or "a"]

    it = ops.paginate(fetch, start="a")
    await anyio.lowlevel.checkpoint()
    assert calls == [], "nothing is fetched before the first value is asked for"
    assert await it.__anext__() == "a1"
    assert calls == ["a"]
    assert await it.__anext__() == "a2"
    assert calls == ["a"], "the next page only when the consumer needs it"
    assert await it.__anext__() == "c1", "an empty page with a next token is skipped"
    assert calls == ["a", "b", "c"]
    with pytest.raises(StopAsyncIteration):
        await it.__anext__()
    assert calls == ["a", "b", "c"]


async def test_paginate_sqlite_keyset_in_a_worker_thread(tmp_path: Any) -> None:
    db = sqlite3.connect(tmp_path / "rows.db", check_same_thread=False)
    db.execute("create table t (id integer primary key, name text)")
    db.executemany("insert into t values (?, ?)", [(i, f"row{i}") for i in range(1, 11)])
    db.commit()
    threads: set[str] = set()
    calls: list[int] = []

    def fetch(after: int) -> tuple[list[tuple[int, str]], int | None]:
        threads.add(threading.current_thread().name)
        calls.append(after)
        rows = db.execute("select id, name from t where id > ? order by id limit 4", (after,))
        page = rows.fetchall()
        return page, (page[-1][0] if len(page) == 4 else None)

    try:
        rows = await ops.paginate(fetch, start=0).to_list()
        assert [r[0] for r in rows] == list(range(1, 11))
        assert calls == [0, 4, 8]
        assert threading.current_thread().name not in threads, "a sync fetch runs off the loop"
        # early exit mid-page: the third page is never fetched
        calls.clear()
        async with ops.paginate(fetch, start=0) as it:
            got = [r async for r in it.take(6)]
        assert [r[0] for r in got] == [1, 2, 3, 4, 5, 6]
        assert calls == [0, 4]
    finally:
        db.close()


async def test_paginate_prefetch_fetches_one_page_ahead() -> None:
    calls: list[int | None] = []

    async def fetch(token: int | None) -> tuple[list[int], int | None]:
        calls.append(token)
        return await _fetch_numbers(token)

    async with ops.paginate(fetch, prefetch=True) as it:
        assert await it.__anext__() == 0
        await anyio.wait_all_tasks_blocked()
        assert calls == [None, 3], "the next page is fetched while this one is consumed"
        assert [v async for v in it] == list(range(1, 9))
    assert calls == [None, 3, 6]


async def test_paginate_prefetch_early_exit_cancels_the_fetch_in_flight() -> None:
    cancelled: list[int] = []

    async def fetch(token: int | None) -> tuple[list[int], int | None]:
        if token is None:
            return [1, 2, 3], 1
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.append(token)
        raise AssertionError("unreachable")

    async with ops.paginate(fetch, prefetch=True) as it:
        assert await it.__anext__() == 1  # mid-page
        await anyio.wait_all_tasks_blocked()
    assert cancelled == [1], "the page fetched ahead is cancelled before the exit returns"


async def test_paginate_error_after_the_items_before_it() -> None:
    boom = SourceError("page 2 failed")

    async def fetch(token: int | None) -> tuple[list[int], int | None]:
        if token is None:
            return [1, 2], 2
        raise boom

    for prefetch in (False, True):
        async with ops.paginate(fetch, prefetch=prefetch) as it:
            await assert_values_then_error(it, [1, 2], boom)


async def test_paginate_cancelled_fetch_is_retried_with_the_same_token() -> None:
    calls: list[int | None] = []
    first = anyio.Event()

    async def fetch(token: int | None) -> tuple[list[int], int | None]:
        calls.append(token)
        if len(calls) == 1:
            first.set()
            await anyio.sleep_forever()
        return await _fetch_numbers(token)

    it = ops.paginate(fetch)
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_next, it)
            await first.wait()
            scope.cancel()
    assert await it.to_list() == list(range(9)), "nothing skipped"
    assert calls[:2] == [None, None]


class _OneAtATime:
    """Counts the calls of a sync fetch_page running at once (R21: never more than one).

    The call numbered ``slow`` blocks until ``release`` is set (``inside`` says it has begun).
    """

    def __init__(self, slow: int | None = None) -> None:
        self.lock = threading.Lock()
        self.active = 0
        self.most = 0
        self.calls = 0
        self.slow = slow
        self.inside = threading.Event()
        self.release = threading.Event()

    def __enter__(self) -> int:
        with self.lock:
            self.active += 1
            self.calls += 1
            self.most = max(self.most, self.active)
            n = self.calls
        if n == self.slow:
            self.inside.set()
            self.release.wait(5)
        return n

    def __exit__(self, *exc_info: object) -> None:
        with self.lock:
            self.active -= 1


async def _wait_event(event: threading.Event) -> None:
    """Wait for a thread's event without blocking the loop (bounded: fails instead of hanging)."""
    with anyio.fail_after(5):
        while not event.is_set():
            await anyio.sleep(0.0005)


def _make_ids(path: Any, n: int) -> sqlite3.Connection:
    con = sqlite3.connect(path, check_same_thread=False)
    con.execute("create table t (id integer primary key)")
    con.executemany("insert into t values (?)", [(i,) for i in range(n)])
    con.commit()
    return con


async def test_paginate_a_timeout_around_anext_neither_refetches_nor_drops_a_sync_page(
    tmp_path: Any,
) -> None:
    """A fetchmany() pager on one cursor: the cancelled request's call goes on, its page comes."""
    con = _make_ids(tmp_path / "ids.db", 1000)
    cursor = con.execute("select id from t order by id")
    calls = _OneAtATime(slow=2)  # the second page is slow
    inside, release = calls.inside, calls.release

    def fetch(page: int) -> tuple[list[int], int | None]:
        with calls:
            rows = [i for (i,) in cursor.fetchmany(100)]
            return rows, (page + 1 if rows else None)

    try:
        async with ops.paginate(fetch, start=0) as it:
            got = [await it.__anext__() for _ in range(100)]
            # a timeout around __anext__ while the second page is fetched
            await _cancelled_next(it, functools.partial(_wait_event, inside))
            await _cancelled_next(it)  # and another one, while that call still runs
            release.set()
            with anyio.fail_after(5):
                got += [v async for v in it]
    finally:
        release.set()
        con.close()
    assert calls.most == 1, "two calls of fetch_page ran at once"
    assert got == list(range(1000)), "rows were skipped"


async def test_paginate_pages_slower_than_the_consumers_timeout_still_arrive() -> None:
    """A destructive read (LPOP key 100) slower than every timeout: no loss, no livelock."""
    items = deque(range(500))
    calls = _OneAtATime()
    waiting = threading.Event()  # a call waits for the consumer's next timeout
    timeouts = 0
    cond = threading.Condition()

    def lpop(token: int) -> tuple[list[int], int | None]:
        with calls:
            with cond:
                seen = timeouts
                waiting.set()
                # the page takes longer than the consumer waits
                assert cond.wait_for(lambda: timeouts > seen, timeout=5)
            page = [items.popleft() for _ in range(min(100, len(items)))]
            return page, (token + 1 if items else None)

    got: list[int] = []
    async with ops.paginate(lpop, start=0) as it:
        for _ in range(600):  # 500 items and 5 pages: each page needs one timeout
            taken, ended = await testing._timed_out_next(it, lambda: _wait_event(waiting))
            got += taken
            if ended:
                break
            if not taken:  # the request timed out: the call may go on
                waiting.clear()
                with cond:
                    timeouts += 1
                    cond.notify_all()
    assert calls.most == 1, "two calls of fetch_page ran at once"
    assert got == list(range(500)), f"{500 - len(got)} items lost"


async def test_paginate_early_exit_waits_for_the_sync_fetch_in_progress(tmp_path: Any) -> None:
    """R21: when the exit completes no call runs, so the next line may close the connection."""
    con = _make_ids(tmp_path / "ids.db", 300)
    calls = _OneAtATime(slow=2)
    inside, release = calls.inside, calls.release

    def fetch(after: int) -> tuple[list[int], int | None]:
        with calls:
            rows = [i for (i,) in con.execute("select id from t where id > ? limit 10", (after,))]
            return rows, (rows[-1] if rows else None)

    for prefetch in (False, True):
        inside.clear()
        release.clear()
        calls.calls = 0
        active_at_exit: list[int] = []
        exiting = anyio.Event()

        async def consume(
            prefetch: bool = prefetch,
            exiting: anyio.Event = exiting,
            active_at_exit: list[int] = active_at_exit,
        ) -> None:
            async with ops.paginate(fetch, start=-1, prefetch=prefetch) as it:
                assert await it.__anext__() == 0
                if not prefetch:
                    with anyio.move_on_after(0.01):  # a timeout while the next page is fetched
                        for _ in range(10):
                            await it.__anext__()
                await _wait_event(inside)
                exiting.set()
            active_at_exit.append(calls.active)

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                await exiting.wait()
                await anyio.wait_all_tasks_blocked()
                assert not active_at_exit, "the exit returned while fetch_page ran"
                release.set()
        assert active_at_exit == [0], f"prefetch={prefetch}: a call ran after the exit"
    con.close()
    assert calls.most == 1


async def test_paginate_a_fetch_that_outlasts_grace_is_left_behind_with_a_warning() -> None:
    inside, release, returned = threading.Event(), threading.Event(), threading.Event()

    def stuck_page(token: int | None) -> tuple[list[int], int | None]:
        if token is None:
            return [1], 1
        inside.set()
        release.wait(5)
        returned.set()
        return [2], None

    it = ops.paginate(stuck_page, grace=0.01)
    assert await it.__anext__() == 1
    async with anyio.create_task_group() as tg:
        tg.start_soon(_next, it)
        await _wait_event(inside)
        tg.cancel_scope.cancel()
    with pytest.warns(RuntimeWarning, match=r"stuck_page.*still running.*grace="):
        with anyio.fail_after(5):
            await it.aclose()
    release.set()
    await _wait_event(returned)
    with pytest.raises(StopAsyncIteration):
        await it.__anext__()


async def test_paginate_checks_what_fetch_page_returns() -> None:
    async def no_pair(token: object) -> list[int]:
        return [1, 2]

    with pytest.raises(TypeError, match=r"\(items, next_token\)"):
        await ops.paginate(no_pair).to_list()  # type: ignore[arg-type]

    async def string_items(token: object) -> tuple[str, None]:
        return "abc", None

    with pytest.raises(TypeError, match="iterable"):
        await ops.paginate(string_items).to_list()
    with pytest.raises(TypeError, match="function"):
        ops.paginate(42)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="prefetch"):
        ops.paginate(_fetch_numbers, prefetch="yes")  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="grace"):
        ops.paginate(_fetch_numbers, grace="1")  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="grace"):
        ops.paginate(_fetch_numbers, grace=-1)


# --------------------------------------------------------------------------- batch


async def test_batch_full_batch_is_delivered_without_another_pull() -> None:
    source = TestSource(range(10))
    async with ops.batch(source, 4) as it:
        assert await it.__anext__() == [0, 1, 2, 3]
        assert source.pulled == 4
        assert [b async for b in it] == [[4, 5, 6, 7], [8, 9]]
    assert source.closed == 1


async def test_batch_within_full_batch_is_delivered_without_another_pull() -> None:
    source = TestSource(range(100), End.HANG)
    async with ops.batch(source, 4, within=60) as it:
        assert await it.__anext__() == [0, 1, 2, 3]
        await anyio.wait_all_tasks_blocked()
        # the helper has built the next batch and holds it: one batch in hand
        assert source.pulled == 8
        assert await it.__anext__() == [4, 5, 6, 7]
    assert source.closed == 1


@pytest.mark.parametrize("within", [None, 60.0])
async def test_batch_partial_then_error(within: float | None) -> None:
    boom = SourceError("boom")
    async with ops.batch(TestSource(range(6), End.FAIL, boom), 4, within=within) as it:
        assert await it.__anext__() == [0, 1, 2, 3]
        assert await it.__anext__() == [4, 5], "the partial batch before the error"
        with pytest.raises(SourceError) as info:
            await it.__anext__()
        assert info.value is boom
        with pytest.raises(StopAsyncIteration):
            await it.__anext__()


@pytest.mark.parametrize("within", [None, 60.0])
async def test_batch_early_exit_mid_batch_closes_the_source(within: float | None) -> None:
    source = TestSource(range(100), End.HANG)
    async with ops.batch(source, 4, within=within) as it:
        async for b in it:
            assert b == [0, 1, 2, 3]
            break
    assert source.closed == 1


async def test_batch_timeout_around_one_request_keeps_the_values() -> None:
    gate = anyio.Event()

    async def gen() -> AsyncIterator[int]:
        yield 1
        yield 2
        await gate.wait()
        yield 3
        yield 4

    it = ops.batch(gen(), 4)
    await _cancelled_next(it)
    gate.set()
    # the generator was cancelled in its await: it is finished (a pull-through
    # op cannot prevent that), but the values collected so far are kept
    assert await it.to_list() == [[1, 2]]


@VIRTUAL
def test_batch_within_on_virtual_time(clock: str) -> None:
    async def main() -> None:
        schedule = [(0.0, 0), (0.3, 1), (0.6, 2), (2.0, 3), (2.1, 4), (3.5, 5), (4.6, 6), (5.0, 7)]
        closed: list[int] = []
        got: list[tuple[list[int], float]] = []
        t0 = anyio.current_time()
        async with ops.batch(timed(schedule, closed), 3, within=1.0) as it:
            async for b in it:
                got.append((b, round(anyio.current_time() - t0, 6)))
        assert got == [
            ([0, 1, 2], 0.6),  # full: at once
            ([3, 4], 3.0),  # one second after its first value
            ([5], 4.5),
            ([6, 7], 5.0),  # the end flushes the last partial batch
        ]
        assert closed == [1]

    run_virtual(clock, main)


@VIRTUAL
def test_batch_within_batches_by_arrival_when_the_consumer_is_late(clock: str) -> None:
    async def main() -> None:
        schedule = [(0.0, 0), (0.1, 1), (0.2, 2), (0.5, 3), (1.0, 4), (1.6, 5), (1.7, 6)]
        got: list[tuple[list[int], float]] = []
        t0 = anyio.current_time()
        async with ops.batch(timed(schedule), 3, within=1.0) as it:
            # the first request starts the helper (nothing is read before it)
            got.append((await it.__anext__(), round(anyio.current_time() - t0, 6)))
            await anyio.sleep(5)  # then the consumer is busy elsewhere
            async for b in it:
                got.append((b, round(anyio.current_time() - t0, 6)))
        assert got == [
            ([0, 1, 2], 0.2),
            # due at 1.5; 5 arrived after that, so it starts the next batch, and the
            # helper pulled nothing more until the consumer took this one
            ([3, 4], 5.2),
            # 5 arrived at 1.6: its batch was due at 2.6, before 6 could be pulled
            ([5], 5.2),
            ([6], 5.2),
        ]

    run_virtual(clock, main)


@VIRTUAL
def test_batch_within_never_keeps_a_value_longer_than_within(clock: str) -> None:
    async def main() -> None:
        # a value every 0.7 s; batches of 100 never fill: time alone flushes
        schedule = [(0.7 * i, i) for i in range(20)]
        arrived = {v: at for at, v in schedule}
        t0 = anyio.current_time()
        async with ops.batch(timed(schedule), 100, within=1.0) as it:
            async for b in it:
                now = anyio.current_time() - t0
                assert now - arrived[b[0]] <= 1.0 + 1e-9
                assert b == list(range(b[0], b[-1] + 1))

    run_virtual(clock, main)


@UVLOOP_ONLY
async def test_batch_within_real_time_smoke() -> None:
    source = TestSource(range(2), End.HANG)
    t0 = anyio.current_time()
    async with ops.batch(source, 10, within=0.05) as it:
        with anyio.fail_after(5):
            assert await it.__anext__() == [0, 1]
    elapsed = anyio.current_time() - t0
    assert 0.03 <= elapsed < 3.0
    assert source.closed == 1


async def test_batch_arguments() -> None:
    with pytest.raises(TypeError, match="async iterable"):
        ops.batch([1, 2], 2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=">= 1"):
        ops.batch(agen(1), 0)
    with pytest.raises(TypeError, match="int"):
        ops.batch(agen(1), 2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="> 0"):
        ops.batch(agen(1), 2, within=0)
    with pytest.raises(TypeError, match="seconds"):
        ops.batch(agen(1), 2, within="1")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- merge


async def test_merge_one_value_in_flight_per_source() -> None:
    a, b = TestSource(range(50)), TestSource(range(100, 150))
    ahead: list[int] = []
    got_a = got_b = 0
    async with ops.merge(a, b) as it:
        async for v in it:
            if v < 100:
                got_a += 1
            else:
                got_b += 1
            ahead.extend([a.pulled - got_a, b.pulled - got_b])
            for _ in range(3):
                await anyio.lowlevel.checkpoint()
    assert got_a == 50
    assert got_b == 50
    assert max(ahead) <= 1, "a source runs ahead by one value at most"


async def test_merge_keeps_each_sources_order() -> None:
    got = await ops.merge(agen(30), agen(30, 100), agen(30, 200)).to_list()
    for base in (0, 100, 200):
        assert [v for v in got if base <= v < base + 100] == list(range(base, base + 30))


async def test_merge_first_error_cancels_the_others_and_is_raised_once() -> None:
    boom = SourceError("boom")
    hanging = TestSource(range(2), End.HANG)
    failing = TestSource(range(3), End.FAIL, boom)
    got = []
    async with ops.merge(hanging, failing) as it:
        with pytest.raises(SourceError) as info:
            async for v in it:
                got.append(v)
        assert info.value is boom, "the error itself, never an ExceptionGroup"
        assert hanging.closed == 1, "the other source is cancelled and closed first"
        with pytest.raises(StopAsyncIteration):
            await it.__anext__()
    assert sorted(got) == [0, 0, 1, 1, 2]


async def test_merge_early_exit_mid_merge_closes_every_source() -> None:
    sources = [TestSource(range(100), End.HANG) for _ in range(3)]

    async def never_started() -> AsyncIterator[int]:
        yield 1  # pragma: no cover

    unstarted = never_started()
    async with ops.merge(*sources) as it:
        assert await it.__anext__() in (0,)
    assert [s.closed for s in sources] == [1, 1, 1]
    # closing a merge that never started closes its sources too
    it2 = ops.merge(unstarted, TestSource(range(3)))
    await it2.aclose()
    with pytest.raises(StopAsyncIteration):
        await unstarted.__anext__()


async def test_merge_cancellation_from_outside_closes_every_source() -> None:
    sources = [TestSource(range(2), End.HANG) for _ in range(2)]
    with anyio.move_on_after(0.05) as scope:
        async with ops.merge(*sources) as it:
            async for _ in it:
                pass
    assert scope.cancelled_caught
    assert [s.closed for s in sources] == [1, 1]


async def test_merge_timeout_around_one_request_loses_nothing() -> None:
    gate = anyio.Event()

    async def gated() -> AsyncIterator[int]:
        yield 1
        await gate.wait()
        yield 2

    async with ops.merge(gated()) as it:
        assert await it.__anext__() == 1
        with anyio.move_on_after(0.01):
            await it.__anext__()
        gate.set()
        assert [v async for v in it] == [2]


async def test_merge_a_thread_fed_channel_with_an_async_generator() -> None:
    send, receive = bridges.open_channel[int](2)

    def produce() -> None:
        for i in range(200):
            send.send_blocking(1000 + i)
        send.close()

    t = threading.Thread(target=produce)
    t.start()
    try:
        got = await ops.merge(receive, agen(200)).to_list()
    finally:
        await anyio.to_thread.run_sync(t.join)
    assert [v for v in got if v >= 1000] == list(range(1000, 1200))
    assert [v for v in got if v < 1000] == list(range(200))


async def test_merge_of_merges_and_of_nothing() -> None:
    inner = ops.merge(agen(3), agen(3, 10))
    got = await ops.merge(inner, agen(3, 20)).to_list()
    assert sorted(got) == [0, 1, 2, 10, 11, 12, 20, 21, 22]
    assert await ops.merge().to_list() == []
    with pytest.raises(TypeError, match="source #1"):
        ops.merge(agen(1), 42)  # type: ignore[arg-type]


async def endless_then_raise(error: BaseException) -> AsyncIterator[int]:
    """Endless 1s; its cleanup raises ``error``."""
    try:
        while True:
            await anyio.lowlevel.checkpoint()
            yield 1
    finally:
        raise error


async def test_merge_cleanup_error_is_raised_by_aclose() -> None:
    boom = SourceError("cleanup")
    it = ops.merge(endless_then_raise(boom), agen(100))
    await it.__aenter__()
    assert await it.__anext__() in (0, 1)
    with pytest.raises(SourceError) as info:
        await it.__aexit__(None, None, None)
    assert info.value is boom


async def test_merge_consumer_error_wins_over_cleanup_error(caplog: Any) -> None:
    boom = SourceError("cleanup")
    with caplog.at_level(logging.ERROR, logger="bridges"), pytest.raises(KeyError):
        async with ops.merge(endless_then_raise(boom)) as it:
            async for _ in it:
                raise KeyError("mine")
    assert any(r.exc_info and r.exc_info[1] is boom for r in caplog.records)


# --------------------------------------------------------------------------- share


class _Finite:
    """A re-iterable whose iterations are recorded (and which says when one ended)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.iterations: list[TestSource] = []
        self.ended = anyio.Event()

    def __aiter__(self) -> AsyncIterator[int]:
        src = TestSource(range(self.n))
        self.iterations.append(src)
        return self._run(src)

    async def _run(self, src: TestSource) -> AsyncIterator[int]:
        try:
            async for v in src:
                yield v
        finally:
            await src.aclose()
            self.ended.set()


async def _drain(sub: Any, slow: int = 0) -> list[int]:
    got = []
    async with sub:
        async for v in sub:
            got.append(v)
            for _ in range(slow):
                await anyio.lowlevel.checkpoint()
    return got


async def test_share_block_slow_subscriber_paces_the_source() -> None:
    source = _Finite(40)
    fast_got: list[int] = []
    slow_got: list[int] = []
    leads: list[int] = []
    async with ops.share(source, buffer=4) as shared:
        fast, slow = shared.subscribe(), shared.subscribe()

        async def run_fast() -> None:
            async with fast:
                async for v in fast:
                    fast_got.append(v)
                    leads.append(len(fast_got) - len(slow_got))

        async def run_slow() -> None:
            async with slow:
                async for v in slow:
                    slow_got.append(v)
                    pulled = source.iterations[0].pulled
                    assert pulled - len(slow_got) <= 4 + 1, "paced by the slowest"
                    for _ in range(20):
                        await anyio.lowlevel.checkpoint()

        async with anyio.create_task_group() as tg:
            tg.start_soon(run_fast)
            tg.start_soon(run_slow)
    assert fast_got == list(range(40))
    assert slow_got == list(range(40)), "under block every value reaches every subscriber"
    assert max(leads) == 4 + 1, "the fast one runs ahead by the slow one's buffer, no more"
    assert fast.stats.dropped == 0
    assert slow.stats.dropped == 0


@pytest.mark.parametrize(
    ("policy", "slow_expected", "dropped"),
    [
        ("drop_oldest", list(range(16, 20)), 16),
        ("drop_newest", list(range(4)), 16),
        ("error", list(range(4)), 0),
    ],
)
async def test_share_slow_and_fast_subscriber_under_drop_policies(
    policy: str, slow_expected: list[int], dropped: int
) -> None:
    source = _Finite(20)
    async with ops.share(source, buffer=4, overflow=policy) as shared:
        fast, slow = shared.subscribe(), shared.subscribe()
        result: dict[str, Any] = {}

        async def run_fast() -> None:
            result["fast"] = await _drain(fast)

        async def run_slow() -> None:
            async with slow:
                await source.ended.wait()  # takes nothing until the source has ended
                got: list[int] = []
                try:
                    async for v in slow:
                        got.append(v)
                except BufferOverflowError as exc:
                    result["error"] = exc
                result["slow"] = got

        async with anyio.create_task_group() as tg:
            tg.start_soon(run_fast)
            tg.start_soon(run_slow)
    assert result["fast"] == list(range(20)), "the fast one is not held back and loses nothing"
    assert fast.stats.dropped == 0
    assert result["slow"] == slow_expected
    assert slow.stats.dropped == dropped
    assert ("error" in result) == (policy == "error")


async def test_share_mixed_policies_per_subscriber() -> None:
    source = _Finite(20)
    async with ops.share(source, buffer=4) as shared:
        fast = shared.subscribe()  # block: it alone paces the source
        latest = shared.subscribe(buffer=1, overflow="drop_oldest")  # conflation
        result: dict[str, list[int]] = {}

        async def run_latest() -> None:
            async with latest:
                await source.ended.wait()
                result["latest"] = [v async for v in latest]

        async with anyio.create_task_group() as tg:
            tg.start_soon(run_latest)
            result["fast"] = await _drain(fast, slow=2)
    assert result["fast"] == list(range(20))
    assert result["latest"] == [19]
    assert latest.stats.dropped == 19


async def test_share_late_subscriber_gets_values_pulled_after_it_joined() -> None:
    source = TestSource(range(20))
    async with ops.share(source, buffer=4) as shared:
        a = shared.subscribe()
        async with a:
            first = [await a.__anext__() for _ in range(5)]
            await anyio.wait_all_tasks_blocked()
            # 5..8 wait in a's buffer and the pump holds 9 for it: 10 pulled
            assert source.pulled == 10
            b = shared.subscribe()
            result: dict[str, list[int]] = {}

            async def run_b() -> None:
                result["b"] = await _drain(b)

            async with anyio.create_task_group() as tg:
                tg.start_soon(run_b)
                rest = [v async for v in a]
    assert first + rest == list(range(20))
    assert result["b"] == list(range(10, 20))


async def test_share_last_subscriber_to_leave_closes_the_source() -> None:
    source = TestSource(range(3), End.HANG)  # then it waits: the pump is inside the source
    async with ops.share(source, buffer=8) as shared:
        a, b = shared.subscribe(), shared.subscribe()
        async with a, b:
            assert [await a.__anext__() for _ in range(3)] == [0, 1, 2]
            await a.aclose()
            await anyio.wait_all_tasks_blocked()
            assert source.closed == 0, "b is still there"
            assert await b.__anext__() == 0
            with anyio.fail_after(5):
                await b.aclose()
            assert source.closed == 1, "closed before the last aclose() returned"
        # a one-shot source cannot be restarted by a new subscriber
        late = shared.subscribe()
        with pytest.raises(RuntimeError, match="one-shot"):
            await late.__anext__()


async def test_share_restarts_a_reiterable_after_the_last_subscriber_left() -> None:
    source = _Finite(5)
    async with ops.share(source) as shared:
        async with shared.subscribe() as first:
            assert await first.__anext__() == 0
        assert source.iterations[0].closed == 1
        assert await _drain(shared.subscribe()) == [0, 1, 2, 3, 4]
        assert len(source.iterations) == 2, "a fresh iteration"
        # aiter(shared) is a subscriber too (read to its end, it releases itself)
        assert [v async for v in shared] == [0, 1, 2, 3, 4]
        assert len(source.iterations) == 3


async def test_share_source_error_reaches_every_subscriber() -> None:
    boom = SourceError("boom")
    source = TestSource(range(3), End.FAIL, boom)
    errors: list[BaseException] = []
    got: list[list[int]] = []
    async with ops.share(source) as shared:
        subs = [shared.subscribe() for _ in range(3)]

        async def run(sub: Any) -> None:
            values: list[int] = []
            try:
                async with sub:
                    async for v in sub:
                        values.append(v)
            except SourceError as exc:
                errors.append(exc)
            got.append(values)

        async with anyio.create_task_group() as tg:
            for sub in subs:
                tg.start_soon(run, sub)
    assert got == [[0, 1, 2]] * 3
    assert len(errors) == 3
    assert all(e is boom for e in errors)
    assert source.closed == 1


async def test_share_subscriber_cancellation_does_not_touch_the_source() -> None:
    gate = anyio.Event()
    finished: list[int] = []

    async def gen() -> AsyncIterator[int]:
        try:
            yield 0
            await gate.wait()
            for i in range(1, 5):
                yield i
        finally:
            finished.append(1)

    async with ops.share(gen()) as shared:
        a, b = shared.subscribe(), shared.subscribe()
        async with a, b:
            assert await a.__anext__() == 0
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_next, a)  # waits for a value: then cancelled
                    await anyio.wait_all_tasks_blocked()
                    scope.cancel()
            assert finished == [], "the pump, not the subscriber, was pulling the source"
            gate.set()
            assert [v async for v in a] == [1, 2, 3, 4], "nothing lost"
            assert [v async for v in b] == [0, 1, 2, 3, 4]
    assert finished == [1]


async def test_share_leaving_the_block_ends_the_subscribers() -> None:
    source = TestSource(range(100), End.HANG)
    shared = ops.share(source, buffer=4)
    async with shared:
        sub = shared.subscribe()
        assert await sub.__anext__() == 0
    assert source.closed == 1
    rest = [v async for v in sub]
    assert rest == list(range(1, 1 + len(rest))), "the buffered values, then the end"
    with pytest.raises(RuntimeError, match="closed"):
        shared.subscribe()


async def test_share_arguments() -> None:
    with pytest.raises(TypeError, match="async iterable"):
        ops.share(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="buffer"):
        ops.share(agen(1), buffer=-1)
    with pytest.raises(ValueError, match="overflow"):
        ops.share(agen(1), overflow="sometimes")
    with pytest.raises(ValueError, match="drop_oldest"):
        ops.share(agen(1), buffer=0, overflow="drop_oldest")
    shared = ops.share(agen(1))
    with pytest.raises(TypeError, match="buffer"):
        shared.subscribe(buffer="x")


# --------------------------------------------------------------------------- rate_limit


@VIRTUAL
def test_rate_limit_token_bucket_on_virtual_time(clock: str) -> None:
    async def main() -> None:
        source = TestSource(range(8))
        times = []
        t0 = anyio.current_time()
        async with ops.rate_limit(source, 2, burst=2) as it:
            async for v in it:
                times.append(round(anyio.current_time() - t0, 6))
                if v == 4:
                    await anyio.sleep(10)  # a pause refills the bucket, up to burst
        assert times == [0.0, 0.0, 0.5, 1.0, 1.5, 11.5, 11.5, 12.0]
        assert source.closed == 1

    run_virtual(clock, main)


@VIRTUAL
def test_rate_limit_waiting_for_a_token_can_be_cancelled(clock: str) -> None:
    async def main() -> None:
        source = TestSource(range(3))
        t0 = anyio.current_time()
        async with ops.rate_limit(source, 1) as it:
            assert await it.__anext__() == 0
            with anyio.move_on_after(0.25):
                await it.__anext__()
                raise AssertionError("a token came too early")
            assert source.pulled == 1, "the source is not pulled before a token"
            assert await it.__anext__() == 1
            assert anyio.current_time() - t0 == pytest.approx(1.0), "no token taken"
            assert await it.__anext__() == 2
            assert anyio.current_time() - t0 == pytest.approx(2.0)

    run_virtual(clock, main)


@UVLOOP_ONLY
async def test_rate_limit_real_time_smoke() -> None:
    t0 = anyio.current_time()
    async with ops.rate_limit(agen(6), 50) as it:
        with anyio.fail_after(10):
            assert [v async for v in it] == list(range(6))
    elapsed = anyio.current_time() - t0
    assert 0.08 <= elapsed < 5.0


async def test_rate_limit_arguments() -> None:
    with pytest.raises(ValueError, match="> 0"):
        ops.rate_limit(agen(1), 0)
    with pytest.raises(TypeError, match="seconds"):
        ops.rate_limit(agen(1), "fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=">= 1"):
        ops.rate_limit(agen(1), 5, burst=0)
    with pytest.raises(TypeError, match="async iterable"):
        ops.rate_limit(range(3), 5)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- aiostream interop


@ASYNCIO_ONLY
async def test_aiostream_streams_into_bridges_ops() -> None:
    from aiostream import pipe, stream

    xs = stream.range(5) | pipe.map(lambda v: v * 2)  # type: ignore[arg-type,misc]
    assert await bridges.iterate(xs).map(lambda v: v + 1).to_list() == [1, 3, 5, 7, 9]
    async with ops.batch(stream.range(7), 3) as it:
        assert [b async for b in it] == [[0, 1, 2], [3, 4, 5], [6]]
    got = await ops.merge(stream.range(3), stream.range(10, 13)).to_list()
    assert sorted(got) == [0, 1, 2, 10, 11, 12]
    # an aiostream Stream is re-iterable: a share restarts it for a later subscriber
    async with ops.share(stream.range(3)) as shared:
        assert await _drain(shared.subscribe()) == [0, 1, 2]
        assert await _drain(shared.subscribe()) == [0, 1, 2]
    # a streamer the user already entered
    async with stream.range(4).stream() as streamer:
        assert await bridges.iterate(streamer).take(2).to_list() == [0, 1]


@ASYNCIO_ONLY
async def test_bridges_ops_into_aiostream_pipes() -> None:
    from aiostream import pipe, stream

    source = TestSource(range(10))
    xs = stream.iterate(ops.batch(source, 3)) | pipe.map(sum) | pipe.list()  # type: ignore[arg-type]
    assert await xs == [3, 12, 21, 9]
    # aiostream's take closes our iterator early, and ours closes its source
    source = TestSource(range(100), End.HANG)
    ys = stream.iterate(bridges.iterate(source).map(lambda v: v * 10)) | pipe.take(3) | pipe.list()
    assert await ys == [0, 10, 20]
    assert source.closed == 1
    # a task-owning helper is entered first, then composed
    a, b = TestSource(range(3)), TestSource(range(10, 13))
    async with ops.merge(a, b) as merged:
        zs = stream.merge(stream.iterate(merged), stream.range(100, 102)) | pipe.list()
        assert sorted(await zs) == [0, 1, 2, 10, 11, 12, 100, 101]
    # and aiostream's own chunks agree with batch
    chunks = await (stream.range(10) | pipe.chunks(4) | pipe.list())
    ours = await ops.batch(stream.range(10), 4).to_list()
    assert chunks == ours


async def test_merge_cancelled_from_outside_logs_no_cleanup_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Regression: on trio the helpers' own Cancelled was logged as a cleanup error."""

    async def forever() -> AsyncIterator[int]:
        while True:
            yield 1
            await anyio.lowlevel.checkpoint()

    with caplog.at_level("ERROR", logger="bridges"):
        with anyio.CancelScope() as scope:
            async with ops.merge(forever(), forever()) as it:
                n = 0
                async for _ in it:
                    n += 1
                    if n == 50:
                        scope.cancel()
    assert scope.cancelled_caught
    assert not [r for r in caplog.records if r.name == "bridges"]
