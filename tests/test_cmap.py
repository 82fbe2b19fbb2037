"""Concurrent map: ``ops.map(source, fn, concurrency=n, ordered=...)`` and ``.map(fn, ...)``.

The calls are gated by events the tests set, so what runs when is decided
by the test, never by timing.  The rules shared with every op (demand,
closing on every exit, errors once, no leaks) run in the conformance suite
(``ops.map-concurrent``, ``ops.map-unordered``).
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import bridges
from bridges import ops
from bridges.testing import End, SourceError, TestSource

from .test_ops import _cancelled_next

pytestmark = pytest.mark.anyio


class Gated:
    """An async function whose calls each wait for the test to release them."""

    def __init__(self) -> None:
        self.gates: dict[int, anyio.Event] = {}
        self.running = 0
        self.most = 0
        self.started: list[int] = []
        self.cancelled: list[int] = []

    def release(self, *values: int) -> None:
        for v in values:
            self.gates.setdefault(v, anyio.Event()).set()

    async def __call__(self, v: int) -> int:
        self.started.append(v)
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await self.gates.setdefault(v, anyio.Event()).wait()
        except BaseException:
            self.cancelled.append(v)
            raise
        finally:
            self.running -= 1
        return v * 10


async def test_at_most_n_calls_in_flight_and_results_in_source_order() -> None:
    fn = Gated()
    source = TestSource(range(10))
    async with ops.map(source, fn, concurrency=3) as it:
        with anyio.fail_after(5):
            first = it.__anext__()
            async with anyio.create_task_group() as tg:

                async def release_backwards() -> None:
                    await anyio.wait_all_tasks_blocked()
                    assert sorted(fn.started) == [0, 1, 2], "three calls at once, no more"
                    fn.release(2, 1)  # the later calls finish first
                    await anyio.wait_all_tasks_blocked()
                    fn.release(0)

                tg.start_soon(release_backwards)
                assert await first == 0
            fn.release(*range(10))
            assert [v async for v in it] == [10, 20, 30, 40, 50, 60, 70, 80, 90]
    assert fn.most == 3
    assert source.closed == 1


async def test_unordered_yields_results_as_the_calls_complete() -> None:
    fn = Gated()
    async with bridges.iterate(TestSource(range(4))).map(fn, concurrency=4, ordered=False) as it:
        with anyio.fail_after(5):
            got = []
            for v in (3, 1, 0, 2):
                await anyio.wait_all_tasks_blocked()
                fn.release(v)
                got.append(await it.__anext__())
            with pytest.raises(StopAsyncIteration):
                await it.__anext__()
    assert got == [30, 10, 0, 20]


@pytest.mark.parametrize("ordered", [True, False])
async def test_a_slow_consumer_stops_the_source_from_being_pulled(ordered: bool) -> None:
    source = TestSource(range(100), End.HANG)

    async def quick(v: int) -> int:
        await anyio.lowlevel.checkpoint()
        return v

    async with ops.map(source, quick, concurrency=4, ordered=ordered) as it:
        # (on asyncio, each wait_all_tasks_blocked() polls every 0.1 s: a few rounds)
        with anyio.fail_after(20):
            assert await it.__anext__() == 0
            await anyio.wait_all_tasks_blocked()  # the calls done, their results held
            assert source.pulled - 1 == 4, "at most n values held ahead of the consumer"
            for delivered in range(2, 8):
                await it.__anext__()
                await anyio.wait_all_tasks_blocked()
                assert source.pulled - delivered == 4


async def test_a_slow_call_holds_back_the_window_in_order() -> None:
    fn = Gated()
    source = TestSource(range(100), End.HANG)
    got: list[int] = []
    async with ops.map(source, fn, concurrency=4) as it:

        async def take_six() -> None:
            got.extend([await it.__anext__() for _ in range(6)])

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(take_six)
                await anyio.wait_all_tasks_blocked()
                fn.release(*range(1, 100))  # all but the first
                await anyio.wait_all_tasks_blocked()
                assert source.pulled == 4, "three results held behind the slow first call"
                assert got == []
                fn.release(0)
    assert got == [0, 10, 20, 30, 40, 50]


async def test_the_first_error_cancels_the_calls_in_flight_closes_the_source_and_is_raised_once(
    caplog: Any,
) -> None:
    boom = SourceError("bad value")
    fn = Gated()

    three_started = anyio.Event()

    async def fails_on_two(v: int) -> int:
        if v == 2:
            await three_started.wait()  # with 0, 1 and 3 in flight
            raise boom
        if v == 3:
            three_started.set()
        return await fn(v)

    source = TestSource(range(10), End.HANG)
    async with ops.map(source, fails_on_two, concurrency=4) as it:
        with anyio.fail_after(5):
            with pytest.raises(SourceError) as info:
                await it.__anext__()
            assert info.value is boom, "the error itself, never an ExceptionGroup"
            assert sorted(fn.cancelled) == [0, 1, 3], "the calls in flight were cancelled"
            assert source.closed == 1, "the source is closed before the error is raised"
            with pytest.raises(StopAsyncIteration):
                await it.__anext__()
    assert not caplog.records


async def test_results_completed_before_an_error_come_first() -> None:
    boom = SourceError("late")

    async def fails_on_three(v: int) -> int:
        for _ in range(v):
            await anyio.lowlevel.checkpoint()
        if v == 3:
            raise boom
        return v

    got: list[int] = []
    with pytest.raises(SourceError) as info:
        async with ops.map(TestSource(range(10)), fails_on_three, concurrency=4) as it:
            async for v in it:
                got.append(v)
    assert info.value is boom
    assert got == [0, 1, 2]


async def test_a_source_error_comes_after_the_results_of_the_calls_in_flight() -> None:
    boom = SourceError("source")
    fn = Gated()
    source = TestSource(range(3), End.FAIL, boom)
    got: list[int] = []
    async with ops.map(source, fn, concurrency=4, ordered=False) as it:

        async def take_one() -> None:
            got.append(await it.__anext__())

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(take_one)
                await anyio.wait_all_tasks_blocked()
                assert sorted(fn.started) == [0, 1, 2]
                assert source.closed == 1, "the source ended (with its error)"
                fn.release(0, 1, 2)
            got += [await it.__anext__() for _ in range(2)]
            assert sorted(got) == [0, 10, 20]
            with pytest.raises(SourceError) as info:
                await it.__anext__()
            assert info.value is boom
            assert fn.cancelled == []


@pytest.mark.parametrize("how", ["break", "aclose", "cancelled"])
async def test_early_exit_cancels_the_calls_in_flight_and_closes_the_source(how: str) -> None:
    fn = Gated()
    source = TestSource(range(100), End.HANG)
    fn.release(0)
    with anyio.fail_after(5), anyio.CancelScope() as outer:
        async with ops.map(source, fn, concurrency=4) as it:
            assert await it.__anext__() == 0
            await anyio.wait_all_tasks_blocked()
            assert fn.running == 4
            if how == "aclose":
                await it.aclose()
                assert source.closed == 1, "closed before aclose() returned"
                assert fn.running == 0
            elif how == "cancelled":
                outer.cancel()
                await anyio.lowlevel.checkpoint()
    assert source.closed == 1
    assert sorted(fn.cancelled) == [1, 2, 3, 4]
    assert fn.running == 0


async def test_a_timeout_around_one_request_loses_nothing() -> None:
    fn = Gated()
    async with ops.map(TestSource(range(3)), fn, concurrency=2) as it:
        with anyio.move_on_after(5) as deadline:
            await _cancelled_next(it)
            assert fn.started == [0, 1], "the calls went on"
            fn.release(0, 1, 2)
            assert [v async for v in it] == [0, 10, 20]
        assert not deadline.cancelled_caught
    assert fn.cancelled == []


class CleanupFails(TestSource):
    """Endless values; closing it raises ``error`` (after its own cleanup)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(range(10**6))
        self.error = error

    async def aclose(self) -> None:
        await super().aclose()
        raise self.error


async def test_cleanup_error_is_raised_by_aclose_and_loses_to_the_consumers(caplog: Any) -> None:
    boom = SourceError("cleanup")
    it = ops.map(CleanupFails(boom), lambda v: v, concurrency=2)
    await it.__aenter__()
    assert await it.__anext__() == 0
    with pytest.raises(SourceError) as info:
        await it.__aexit__(None, None, None)
    assert info.value is boom
    with caplog.at_level(logging.ERROR, logger="bridges"), pytest.raises(KeyError):
        async with ops.map(CleanupFails(boom), lambda v: v, concurrency=2) as mapped:
            async for _ in mapped:
                raise KeyError("mine")
    assert any(r.exc_info and r.exc_info[1] is boom for r in caplog.records)


async def test_needs_async_with_and_says_so() -> None:
    source = TestSource(range(3))
    it = bridges.iterate(source).map(lambda v: v, concurrency=2)
    with pytest.raises(RuntimeError, match=r"async with map\(fn, concurrency=2\)"):
        await it.__anext__()
    assert source.pulled == 0, "nothing is pulled before saying so"
    await it.aclose()
    # the terminal methods and a chain above it enter it
    assert await bridges.iterate(TestSource(range(4))).map(
        lambda v: -v, concurrency=2
    ).to_list() == [
        0,
        -1,
        -2,
        -3,
    ]
    async with ops.map(TestSource(range(5)), lambda v: v, concurrency=3).take(2) as top:
        assert [v async for v in top] == [0, 1]


async def test_concurrency_one_is_the_plain_map_without_a_task_group() -> None:
    source = TestSource(range(3))
    it = ops.map(source, lambda v: v + 1)
    assert type(it) is type(bridges.iterate(TestSource([])).map(lambda v: v))
    assert [v async for v in it] == [1, 2, 3], "no async with needed"
    plain = ops.map(TestSource(range(2)), lambda v: v, concurrency=1, ordered=False)
    assert await plain.__anext__() == 0
    await plain.aclose()


async def test_arguments_are_checked_at_once() -> None:
    with pytest.raises(TypeError, match="async iterable"):
        ops.map([1, 2], lambda v: v)  # type: ignore[arg-type]
    it = bridges.iterate(TestSource([]))
    with pytest.raises(TypeError, match="function"):
        it.map(3, concurrency=2)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="concurrency must be an int"):
        it.map(lambda v: v, concurrency=2.0)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="concurrency must be >= 1"):
        it.map(lambda v: v, concurrency=0)
    with pytest.raises(TypeError, match="ordered must be True or False"):
        it.map(lambda v: v, concurrency=2, ordered="yes")  # type: ignore[call-overload]
    await it.aclose()


async def test_a_sync_function_and_a_function_returning_an_awaitable() -> None:
    async def double(v: int) -> int:
        await anyio.lowlevel.checkpoint()
        return 2 * v

    async with ops.map(TestSource(range(5)), lambda v: double(v), concurrency=3) as it:
        assert [v async for v in it] == [0, 2, 4, 6, 8]
    async with ops.map(TestSource(range(5)), str, concurrency=2, ordered=False) as it2:
        assert sorted([v async for v in it2]) == ["0", "1", "2", "3", "4"]
    async with ops.map(TestSource([]), str, concurrency=2) as it3:
        assert [v async for v in it3] == []


async def test_a_call_that_completes_as_another_fails_does_not_break_the_error_path(
    caplog: Any,
) -> None:
    boom = SourceError("boom")
    for _ in range(20):  # the finished call and the consumer run next, in either order on trio
        finished = anyio.Event()

        async def call(v: int, finished: anyio.Event = finished) -> int:
            if v == 1:
                finished.set()  # call 0 is done as call 1 fails
                raise boom
            await finished.wait()
            return v

        got = []
        with pytest.raises(SourceError) as info:
            async with ops.map(TestSource(range(2), End.HANG), call, concurrency=2) as it:
                async for v in it:
                    got.append(v)
        assert info.value is boom
        assert got in ([], [0])
    assert not caplog.records, "nothing went wrong behind the error"
