"""bridges.rx with real reactivex sources and schedulers: thread pools, new-thread
and timeout schedulers, reactivex's virtual-time TestScheduler and marbles, and
the trio scheduler under trio's autojump clock."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from typing import Any

import anyio
import anyio.lowlevel
import pytest
import reactivex
import trio
import trio.testing
from reactivex import Observable, abc
from reactivex import operators as ops
from reactivex.disposable import Disposable
from reactivex.scheduler import NewThreadScheduler, ThreadPoolScheduler
from reactivex.subject import Subject
from reactivex.testing import ReactiveTest, TestScheduler

from bridges import BufferOverflowError, rx

from .conftest import BACKENDS
from .sources import EXITS, AwaitingCleanup, assert_values_then_error, leave_by

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

ASYNCIO_BACKENDS = [p for p in BACKENDS if p.id != "trio"]

on_next, on_error, on_completed = (
    ReactiveTest.on_next,
    ReactiveTest.on_error,
    ReactiveTest.on_completed,
)


class BoomError(Exception):
    pass


@pytest.fixture
def pool() -> Iterator[ThreadPoolScheduler]:
    """A one-worker pool: a task submitted after a test's source shows the worker is free."""
    scheduler = ThreadPoolScheduler(1)
    yield scheduler
    scheduler.executor.shutdown(wait=True)


async def worker_is_free(pool: ThreadPoolScheduler) -> None:
    """Wait (bounded) until the pool's only worker has finished what it was running."""
    future = pool.executor.submit(lambda: None)
    await anyio.to_thread.run_sync(future.result, 5.0)


class Tracked:
    """Wraps an Observable: counts subscriptions, disposals and values emitted upstream."""

    def __init__(self, source: Observable[Any]) -> None:
        self.subscribed = 0
        self.disposed = 0
        self.emitted = 0
        self.threads: set[int] = set()

        def subscribe(
            observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            self.subscribed += 1

            def count(value: Any) -> None:
                self.emitted += 1
                self.threads.add(threading.get_ident())
                observer.on_next(value)

            inner = source.subscribe(count, observer.on_error, observer.on_completed)
            return Disposable(lambda: (inner.dispose(), self._dispose()))

        self.observable: Observable[Any] = reactivex.create(subscribe)

    def _dispose(self) -> None:
        self.disposed += 1


def sync_loop_source(count: int, tracked: list[int]) -> Observable[int]:
    """A cold Observable that emits inside subscribe() with a plain loop, ignoring
    disposal (the worst synchronous source: it never returns its subscription early)."""

    def subscribe(
        observer: abc.ObserverBase[int], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        for i in range(count):
            tracked.append(i)
            observer.on_next(i)
        observer.on_completed()
        return Disposable()

    return reactivex.create(subscribe)


# ====================================================================== to_aiter


class TestToAiter:
    pytestmark = pytest.mark.anyio

    async def test_values_then_completion(self) -> None:
        it = rx.to_aiter(reactivex.range(5))
        assert [v async for v in it] == [0, 1, 2, 3, 4]
        assert it.stats.delivered == 5
        with pytest.raises(StopAsyncIteration):
            await it.__anext__()

    async def test_error_is_the_original_object_after_the_values(self) -> None:
        boom = BoomError("boom")
        it = rx.to_aiter(reactivex.of(1, 2).pipe(ops.concat(reactivex.throw(boom))))
        await assert_values_then_error(it, [1, 2], boom)

    async def test_nothing_is_subscribed_before_the_first_value_is_asked_for(self) -> None:
        tracked = Tracked(reactivex.of(1, 2))
        it = rx.to_aiter(tracked.observable)
        for _ in range(3):
            await anyio.lowlevel.checkpoint()
        assert tracked.subscribed == 0
        assert await it.__anext__() == 1
        assert tracked.subscribed == 1
        await it.aclose()

    @pytest.mark.parametrize("how", [*EXITS, "cancel"])
    async def test_disposed_exactly_once_on_every_exit(self, how: str) -> None:
        source: Observable[int] = reactivex.of(1, 2, 3)
        if how == "error":
            source = source.pipe(ops.concat(reactivex.throw(BoomError())))
        elif how != "end":
            source = source.pipe(ops.concat(reactivex.never()))
        tracked = Tracked(source)
        it = rx.to_aiter(tracked.observable)
        if how in EXITS:
            await leave_by(how, it, [1, 2, 3], BoomError)
        else:
            with anyio.CancelScope() as scope:
                async with it:
                    async for v in it:
                        if v == 3:
                            scope.cancel()
                            await anyio.lowlevel.checkpoint()
            assert scope.cancelled_caught
        await it.aclose()
        assert tracked.disposed == 1

    async def test_on_next_from_reactivex_thread_pool(self) -> None:
        pool = ThreadPoolScheduler(2)
        try:
            tracked = Tracked(reactivex.from_iterable(range(2000), scheduler=pool))
            got = [v async for v in rx.to_aiter(tracked.observable, buffer=16)]
            assert got == list(range(2000))
            assert threading.get_ident() not in tracked.threads
        finally:
            pool.executor.shutdown(wait=True)

    async def test_on_next_from_the_timeout_scheduler(self) -> None:
        # reactivex's default for interval(): a threading.Timer per tick
        source = reactivex.interval(0.001).pipe(ops.take(20))
        assert [v async for v in rx.to_aiter(source, buffer=4)] == list(range(20))

    async def test_subscribe_on_runs_a_cold_sync_observable_in_bounded_memory(
        self, pool: ThreadPoolScheduler
    ) -> None:
        n = 200_000
        it = rx.to_aiter(reactivex.range(n), buffer=64, subscribe_on=pool)
        expected = 0
        async for v in it:
            assert v == expected
            expected += 1
        assert expected == n
        assert it.stats.high_water <= 64

    async def test_early_exit_releases_the_worker_and_stops_range(
        self, pool: ThreadPoolScheduler
    ) -> None:
        tracked = Tracked(reactivex.range(10**7))
        it = rx.to_aiter(tracked.observable, buffer=64, subscribe_on=pool)
        async with it:
            async for v in it:
                if v == 99:
                    break
        await worker_is_free(pool)  # the blocked on_next was released and range stopped
        emitted = tracked.emitted
        assert emitted <= 100 + 64 + 1
        assert tracked.disposed == 1
        await worker_is_free(pool)
        assert tracked.emitted == emitted

    async def test_early_exit_stops_a_source_that_emits_inside_subscribe(
        self, pool: ThreadPoolScheduler
    ) -> None:
        emitted: list[int] = []
        it = rx.to_aiter(sync_loop_source(10**7, emitted), buffer=8, subscribe_on=pool)
        async with it:
            async for v in it:
                if v == 20:
                    break
        await worker_is_free(pool)
        assert len(emitted) <= 21 + 8 + 1

    @pytest.mark.parametrize("kind", ["trampolined", "emits-inside-subscribe"])
    async def test_full_buffer_on_the_loop_thread_fails_and_stops_the_source(
        self, kind: str
    ) -> None:
        emitted: list[int] = []
        if kind == "trampolined":  # range: disposed at once
            tracked = Tracked(reactivex.range(10**6))
            source = tracked.observable.pipe(ops.do_action(emitted.append))
        else:  # never hands out its subscription: stopped by an exception
            source = sync_loop_source(10**6, emitted)
        it = rx.to_aiter(source, buffer=4)
        got = []
        with pytest.raises(BufferOverflowError, match="subscribe_on=") as info:
            async for v in it:
                got.append(v)
        assert got == [0, 1, 2, 3]
        assert "buffer=" in str(info.value)
        assert len(emitted) == 5, "the source must stop at the value that overflowed"

    @pytest.mark.parametrize(
        ("buffer", "overflow", "subscribe_on", "expected", "error", "dropped"),
        [
            (None, "block", False, list(range(100)), False, 0),
            (4, "block", False, [0, 1, 2, 3], True, 0),
            (4, "block", True, list(range(100)), False, 0),
            (4, "drop_newest", False, [0, 1, 2, 3], False, 96),
            (4, "drop_oldest", False, [96, 97, 98, 99], False, 96),
            (4, "error", False, [0, 1, 2, 3], True, 0),
        ],
        ids=["unbounded", "block", "block+subscribe_on", "drop_newest", "drop_oldest", "error"],
    )
    async def test_what_each_policy_does_to_a_fast_observable(
        self,
        pool: ThreadPoolScheduler,
        buffer: int | None,
        overflow: str,
        subscribe_on: bool,
        expected: list[int],
        error: bool,
        dropped: int,
    ) -> None:
        """The table in docs/rx.md: range(100) emitted synchronously, buffer=4."""
        it = rx.to_aiter(
            reactivex.range(100),
            buffer=buffer,
            overflow=overflow,
            subscribe_on=pool if subscribe_on else None,
        )
        got: list[int] = []
        if error:
            with pytest.raises(BufferOverflowError):
                async for v in it:
                    got.append(v)
        else:
            got = [v async for v in it]
        assert got == expected
        assert it.stats.dropped == dropped
        assert it.stats.high_water <= (100 if buffer is None else buffer)

    async def test_a_hot_subject_from_a_thread_blocks_until_the_consumer_takes(self) -> None:
        subject: Subject[int] = Subject()
        it = rx.to_aiter(subject, buffer=2)
        async with it:
            sent: list[int] = []

            def produce() -> None:
                for i in range(50):
                    subject.on_next(i)
                    sent.append(i)
                subject.on_completed()

            thread = threading.Thread(target=produce)
            thread.start()
            got = []
            async for v in it:
                got.append(v)
                assert len(sent) <= v + 1 + 2 + 1  # at most the buffer ahead
            await anyio.to_thread.run_sync(thread.join)
        assert got == list(range(50))

    async def test_conflation_under_a_slow_consumer_in_virtual_time(self) -> None:
        """buffer=1, drop_oldest: a slow consumer sees the latest value at each look."""
        scheduler = TestScheduler()
        source = reactivex.hot("-a-b-c---d-e-|", timespan=1.0, scheduler=scheduler)
        async with rx.to_aiter(source, buffer=1, overflow="drop_oldest") as it:
            scheduler.advance_to(6)  # a, b and c have been emitted
            assert await it.__anext__() == "c"
            scheduler.advance_to(12)  # d and e
            assert await it.__anext__() == "e"
            scheduler.advance_to(20)  # completed
            assert [v async for v in it] == []
        assert it.stats.dropped == 3

    async def test_a_virtual_time_error_arrives_after_the_values(self) -> None:
        scheduler = TestScheduler()
        boom = BoomError()
        source = scheduler.create_hot_observable(
            on_next(210, 1), on_next(220, 2), on_error(230, boom), on_next(240, 3)
        )
        it = rx.to_aiter(source)
        scheduler.advance_to(205)  # lazy: not subscribed yet
        async with it:
            scheduler.advance_to(300)
            assert [await it.__anext__(), await it.__anext__()] == [1, 2]
            with pytest.raises(BoomError) as info:
                await it.__anext__()
            assert info.value is boom
        assert source.subscriptions[0].subscribe == 205
        assert source.subscriptions[0].unsubscribe == 230  # auto-detached at the error

    async def test_bad_arguments_fail_at_once(self) -> None:
        with pytest.raises(TypeError, match="Observable"):
            rx.to_aiter([1, 2])  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="scheduler"):
            rx.to_aiter(reactivex.of(1), subscribe_on="pool")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="buffer"):
            rx.to_aiter(reactivex.of(1), buffer=-1)
        with pytest.raises(ValueError, match="overflow"):
            rx.to_aiter(reactivex.of(1), overflow="sometimes")

    async def test_a_forgotten_iterator_disposes_when_collected(self) -> None:
        tracked = Tracked(reactivex.of(1, 2).pipe(ops.concat(reactivex.never())))
        it = rx.to_aiter(tracked.observable)
        async for _ in it:
            break  # no async with, no aclose()
        assert tracked.disposed == 0
        with pytest.warns(ResourceWarning):
            del it  # nothing but this test refers to it: collected at once
        gc.collect()
        assert tracked.disposed == 1


# ==================================================================== from_aiter


async def counting(n: int, log: list[str], *, hang: bool = False) -> AsyncIterator[int]:
    try:
        for i in range(n):
            log.append(f"pull {i}")
            yield i
        if hang:
            await anyio.sleep_forever()
    finally:
        log.append("closed")


class Collector:
    """An observer that records notifications and the thread they came on."""

    def __init__(self) -> None:
        self.values: list[Any] = []
        self.errors: list[Exception] = []
        self.completed = 0
        self.threads: set[int] = set()
        self.done = anyio.Event()

    def on_next(self, value: Any) -> None:
        self.threads.add(threading.get_ident())
        self.values.append(value)

    def on_error(self, error: Exception) -> None:
        self.errors.append(error)
        self.done.set()

    def on_completed(self) -> None:
        self.completed += 1
        self.done.set()


class TestFromAiter:
    pytestmark = pytest.mark.anyio

    async def test_values_then_completion_in_a_task_group(self) -> None:
        log: list[str] = []
        collector = Collector()
        async with anyio.create_task_group() as tg:
            rx.from_aiter(counting(3, log), task_group=tg).subscribe(collector)
            await collector.done.wait()
        assert collector.values == [0, 1, 2]
        assert collector.completed == 1
        assert collector.threads == {threading.get_ident()}
        assert log[-1] == "closed"

    async def test_source_error_reaches_on_error_once_as_itself(self) -> None:
        boom = BoomError()

        async def failing() -> AsyncIterator[int]:
            yield 1
            raise boom

        collector = Collector()
        async with anyio.create_task_group() as tg:
            rx.from_aiter(failing(), task_group=tg).subscribe(collector)
            await collector.done.wait()
        assert collector.values == [1]
        assert collector.errors == [boom]
        assert collector.errors[0] is boom
        assert collector.completed == 0

    async def test_notifications_in_order_exactly_once(self) -> None:
        scheduler = TestScheduler()  # only to record notifications the reactivex way
        observer = scheduler.create_observer()
        log: list[str] = []
        async with anyio.create_task_group() as tg:
            rx.from_aiter(counting(3, log), task_group=tg).subscribe(observer)
        assert observer.messages == [
            on_next(0, 0),
            on_next(0, 1),
            on_next(0, 2),
            on_completed(0),
        ]

    @pytest.mark.parametrize("anyio_backend", ASYNCIO_BACKENDS)
    async def test_asyncio_without_a_task_group(self) -> None:
        log: list[str] = []
        collector = Collector()
        rx.from_aiter(counting(3, log)).subscribe(collector)
        await collector.done.wait()
        assert collector.values == [0, 1, 2]
        assert collector.completed == 1

    @pytest.mark.parametrize("anyio_backend", ["trio"])
    async def test_trio_without_a_task_group_is_a_clear_error(self) -> None:
        with pytest.raises(RuntimeError, match="task_group="):
            rx.from_aiter(counting(3, []))

    @pytest.mark.parametrize("anyio_backend", ["trio"])
    async def test_trio_nursery_as_task_group(self) -> None:
        collector = Collector()
        async with trio.open_nursery() as nursery:
            rx.from_aiter(counting(3, []), task_group=nursery).subscribe(collector)
        assert collector.values == [0, 1, 2]

    async def test_cold_re_iterable_and_factory_one_shot_errors(self) -> None:
        class Reiterable:
            def __init__(self) -> None:
                self.iterations = 0

            def __aiter__(self) -> AsyncIterator[int]:
                self.iterations += 1
                return counting(2, [])

        source = Reiterable()
        async with anyio.create_task_group() as tg:
            for observable in (
                rx.from_aiter(source, task_group=tg),
                rx.from_aiter(lambda: counting(2, []), task_group=tg),
            ):
                for _ in range(2):
                    collector = Collector()
                    observable.subscribe(collector)
                    await collector.done.wait()
                    assert collector.values == [0, 1]
            assert source.iterations == 2

            one_shot = rx.from_aiter(counting(2, []), task_group=tg)
            first, second = Collector(), Collector()
            one_shot.subscribe(first)
            one_shot.subscribe(second)
            assert len(second.errors) == 1
            assert isinstance(second.errors[0], RuntimeError)
            assert "one-shot" in str(second.errors[0])
            assert "lambda" in str(second.errors[0])  # it names the fix
            await first.done.wait()
            assert first.values == [0, 1]

    async def test_the_next_value_is_pulled_only_after_on_next_returned(self) -> None:
        log: list[str] = []

        def on_value(v: int) -> None:
            assert log[-1] == f"pull {v}", "pulled ahead of the observer"
            log.append(f"seen {v}")

        async with anyio.create_task_group() as tg:
            rx.from_aiter(counting(3, log), task_group=tg).subscribe(on_value)
        assert log == ["pull 0", "seen 0", "pull 1", "seen 1", "pull 2", "seen 2", "closed"]

    async def test_dispose_cancels_the_pump_and_closes_the_source(self) -> None:
        log: list[str] = []
        collector = Collector()
        async with anyio.create_task_group() as tg:
            subscription = rx.from_aiter(counting(2, log, hang=True), task_group=tg).subscribe(
                collector
            )
            await anyio.wait_all_tasks_blocked()  # both values in, the source hangs
            assert collector.values == [0, 1]
            subscription.dispose()
            subscription.dispose()
        assert log[-1] == "closed"
        assert collector.completed == 0 and collector.errors == []

    async def test_a_cleanup_error_of_a_source_closed_by_dispose_is_logged_not_lost(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        async def source() -> AsyncIterator[int]:
            try:
                yield 0
                await anyio.sleep_forever()
            finally:
                raise BoomError("cleanup")

        collector = Collector()
        with caplog.at_level(logging.ERROR, logger="bridges"), anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                subscription = rx.from_aiter(source(), task_group=tg).subscribe(collector)
                await anyio.wait_all_tasks_blocked()
                subscription.dispose()
        assert collector.values == [0]
        assert collector.errors == [], "a disposed observer hears nothing"
        assert any("BoomError" in r.exc_text for r in caplog.records if r.exc_text)

    async def test_dispose_inside_on_next_closes_the_source_without_cancelling(self) -> None:
        source = AwaitingCleanup()
        got: list[int] = []
        async with anyio.create_task_group() as tg:
            rx.from_aiter(source, task_group=tg).pipe(ops.take(3)).subscribe(got.append)
        assert got == [0, 1, 2]
        source.assert_cleaned("a cancellation")

    async def test_on_next_raising_comes_out_of_the_task_group(self) -> None:
        log: list[str] = []
        collector = Collector()
        mistake = BoomError("observer bug")

        def on_value(v: int) -> None:
            if v == 1:
                raise mistake

        with pytest.raises(BaseExceptionGroup) as info:
            async with anyio.create_task_group() as tg:
                rx.from_aiter(counting(100, log, hang=True), task_group=tg).subscribe(
                    on_value, collector.on_error, collector.on_completed
                )
                await anyio.sleep_forever()
        assert info.value.exceptions == (mistake,)
        assert collector.errors == [], "on_error is not called for the observer's own mistake"
        assert log == ["pull 0", "pull 1", "closed"]

    async def test_on_next_raising_during_a_cancellation_runs_a_source_cleanup_that_awaits(
        self,
    ) -> None:
        # the observer fails just as a cancellation from outside comes: the pump
        # closed the source inside that cancellation, so the source's cleanup was
        # cancelled at its first await
        source = AwaitingCleanup()
        mistake = BoomError("observer bug")
        with anyio.CancelScope() as outside:

            def on_value(v: int) -> None:
                outside.cancel()
                raise mistake

            with pytest.raises(BaseExceptionGroup) as info:
                async with anyio.create_task_group() as tg:
                    rx.from_aiter(source, task_group=tg).subscribe(on_value)
                    await anyio.sleep_forever()
        source.assert_cleaned()
        assert mistake in info.value.exceptions

    @pytest.mark.parametrize("anyio_backend", ASYNCIO_BACKENDS)
    async def test_on_next_raising_goes_to_the_loop_exception_handler(self) -> None:
        loop = asyncio.get_running_loop()
        reported: list[dict[str, Any]] = []
        closed = anyio.Event()
        log: list[str] = []
        mistake = BoomError("observer bug")

        def handler(_loop: Any, context: dict[str, Any]) -> None:
            reported.append(context)
            closed.set()

        def on_value(v: int) -> None:
            raise mistake

        errors: list[Exception] = []
        loop.set_exception_handler(handler)
        try:
            rx.from_aiter(counting(100, log)).subscribe(on_value, errors.append)
            with anyio.fail_after(5):
                await closed.wait()
            for _ in range(5):
                await anyio.lowlevel.checkpoint()
        finally:
            loop.set_exception_handler(None)
        assert len(reported) == 1
        assert reported[0]["exception"] is mistake
        assert errors == []
        assert log == ["pull 0", "closed"]

    async def test_subscribe_and_dispose_from_another_thread(self) -> None:
        log: list[str] = []
        collector = Collector()
        async with anyio.create_task_group() as tg:
            observable = rx.from_aiter(counting(3, log, hang=True), task_group=tg)
            subscription = await anyio.to_thread.run_sync(observable.subscribe, collector)
            with anyio.fail_after(5):
                while len(collector.values) < 3:
                    await anyio.sleep(0.001)
            assert collector.threads == {threading.get_ident()}, "delivered on the loop thread"
            await anyio.to_thread.run_sync(subscription.dispose)
        assert log[-1] == "closed"

    @pytest.mark.parametrize("anyio_backend", ASYNCIO_BACKENDS)
    async def test_subscribe_from_an_asyncio_scheduler_action(self) -> None:
        # AsyncIOScheduler runs actions as loop callbacks, outside any task
        from reactivex.scheduler.eventloop import AsyncIOScheduler

        scheduler = AsyncIOScheduler(asyncio.get_running_loop())
        collector = Collector()
        async with anyio.create_task_group() as tg:
            rx.from_aiter(lambda: counting(3, []), task_group=tg).pipe(
                ops.subscribe_on(scheduler)
            ).subscribe(collector)
            with anyio.fail_after(5):
                await collector.done.wait()
        assert collector.values == [0, 1, 2]
        assert collector.errors == []

    @pytest.mark.parametrize("anyio_backend", ASYNCIO_BACKENDS)
    async def test_subscribe_from_another_thread_without_a_task_group(self) -> None:
        log: list[str] = []
        collector = Collector()
        observable = rx.from_aiter(counting(3, log))
        await anyio.to_thread.run_sync(observable.subscribe, collector)
        with anyio.fail_after(5):
            await collector.done.wait()
        assert collector.values == [0, 1, 2]
        assert collector.threads == {threading.get_ident()}
        assert log[-1] == "closed"

    async def test_subscribing_off_loop_to_an_observable_made_off_loop_is_an_error(
        self,
    ) -> None:
        observable = await anyio.to_thread.run_sync(rx.from_aiter, counting(1, []))
        errors: list[Exception] = []
        await anyio.to_thread.run_sync(lambda: observable.subscribe(print, errors.append))
        assert isinstance(errors[0], RuntimeError)
        assert "inside the event loop" in str(errors[0])

    async def test_a_pump_lets_other_tasks_run(self) -> None:
        async def never_suspends() -> AsyncIterator[int]:
            for i in range(1000):
                yield i

        other_ran = anyio.Event()
        seen_before_other: list[int] = []

        def on_value(v: int) -> None:
            if not other_ran.is_set():
                seen_before_other.append(v)

        async def other() -> None:
            other_ran.set()

        async with anyio.create_task_group() as tg:
            rx.from_aiter(never_suspends(), task_group=tg).subscribe(on_value)
            tg.start_soon(other)
        assert other_ran.is_set()
        assert len(seen_before_other) < 1000

    async def test_retry_resubscribes_from_on_error(self) -> None:
        attempts = []

        async def flaky() -> AsyncIterator[int]:
            attempts.append(1)
            yield len(attempts)
            if len(attempts) < 3:
                raise BoomError

        collector = Collector()
        async with anyio.create_task_group() as tg:
            rx.from_aiter(flaky, task_group=tg).pipe(ops.retry(5)).subscribe(collector)
        assert collector.values == [1, 2, 3]
        assert collector.completed == 1

    async def test_a_factory_that_returns_no_async_iterable(self) -> None:
        collector = Collector()
        async with anyio.create_task_group() as tg:
            rx.from_aiter(lambda: [1, 2], task_group=tg).subscribe(collector)  # type: ignore[arg-type,return-value]
        assert isinstance(collector.errors[0], TypeError)

    async def test_bad_arguments_fail_at_once(self) -> None:
        with pytest.raises(TypeError, match="async iterable"):
            rx.from_aiter(42)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="task group"):
            rx.from_aiter(counting(1, []), task_group="tg")


# ==================================================================== round trips


def ends(kind: str) -> Observable[int]:
    source: Observable[int] = reactivex.of(1, 2, 3)
    if kind == "error":
        source = source.pipe(ops.concat(reactivex.throw(BoomError("end"))))
    return source


class TestRoundTrips:
    pytestmark = pytest.mark.anyio

    @pytest.mark.parametrize("kind", ["complete", "error"])
    async def test_observable_to_aiter_and_back(self, kind: str) -> None:
        source = ends(kind)
        direct = Collector()
        source.subscribe(direct)
        collector = Collector()
        async with anyio.create_task_group() as tg:
            rx.from_aiter(rx.to_aiter(source), task_group=tg).subscribe(collector)
        assert collector.values == direct.values == [1, 2, 3]
        assert collector.completed == direct.completed
        assert [type(e) for e in collector.errors] == [type(e) for e in direct.errors]

    async def test_error_object_survives_the_round_trip(self) -> None:
        boom = BoomError()
        collector = Collector()
        async with anyio.create_task_group() as tg:
            source = reactivex.of(1).pipe(ops.concat(reactivex.throw(boom)))
            rx.from_aiter(rx.to_aiter(source), task_group=tg).subscribe(collector)
        assert collector.errors == [boom] and collector.errors[0] is boom

    @pytest.mark.parametrize("kind", ["complete", "error"])
    async def test_aiter_to_observable_and_back(self, kind: str) -> None:
        boom = BoomError()
        log: list[str] = []

        async def source() -> AsyncIterator[int]:
            async for v in counting(3, log):
                yield v
            if kind == "error":
                raise boom

        got: list[int] = []
        async with anyio.create_task_group() as tg:
            it = rx.to_aiter(rx.from_aiter(source(), task_group=tg))
            if kind == "error":
                with pytest.raises(BoomError) as info:
                    async for v in it:
                        got.append(v)
                assert info.value is boom
            else:
                got = [v async for v in it]
            assert log[-1] == "closed", "the source is closed before the consumer hears the end"
        assert got == [0, 1, 2]

    async def test_early_exit_cleans_up_both_ends_aiter_first(self) -> None:
        log: list[str] = []
        async with anyio.create_task_group() as tg:
            it = rx.to_aiter(rx.from_aiter(counting(100, log, hang=True), task_group=tg))
            async with it:
                async for v in it:
                    if v == 2:
                        break
            # leaving disposed the subscription: the pump is cancelled and closes the source
            await anyio.wait_all_tasks_blocked()
            assert log[-1] == "closed"
        # Rx has no backpressure: the pump may have pulled ahead into the unbounded
        # buffer (docs/rx.md says so), but nothing after the source was closed
        assert log.count("closed") == 1

    async def test_early_exit_cleans_up_both_ends_observable_first(self) -> None:
        tracked = Tracked(reactivex.of(1, 2, 3).pipe(ops.concat(reactivex.never())))
        got: list[int] = []
        async with anyio.create_task_group() as tg:
            subscription = rx.from_aiter(rx.to_aiter(tracked.observable), task_group=tg).subscribe(
                got.append
            )
            await anyio.wait_all_tasks_blocked()
            subscription.dispose()
        assert got == [1, 2, 3]
        assert tracked.disposed == 1

    async def test_on_next_from_a_thread_pool_through_both_bridges(self) -> None:
        pool = ThreadPoolScheduler(2)
        try:
            source = reactivex.from_iterable(range(500), scheduler=NewThreadScheduler())
            collector = Collector()
            async with anyio.create_task_group() as tg:
                rx.from_aiter(
                    rx.to_aiter(source.pipe(ops.observe_on(pool)), buffer=8), task_group=tg
                ).subscribe(collector)
            assert collector.values == list(range(500))
            assert collector.threads == {threading.get_ident()}
        finally:
            pool.executor.shutdown(wait=True)


# ================================================================ trio scheduler


class TestTrioScheduler:
    @pytest.mark.trio
    async def test_actions_run_in_order_on_the_trio_thread(self) -> None:
        ran: list[tuple[str, int]] = []
        async with rx.open_trio_scheduler() as scheduler:
            done = trio.Event()
            for name in "abcde":
                scheduler.schedule(lambda _s, n: ran.append((n, threading.get_ident())), name)
            scheduler.schedule(lambda _s, _: done.set())
            await done.wait()
        assert [n for n, _ in ran] == list("abcde")
        assert {t for _, t in ran} == {threading.get_ident()}

    @pytest.mark.trio
    async def test_relative_and_absolute_times_follow_the_trio_clock(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        ran: list[tuple[str, float]] = []
        async with rx.open_trio_scheduler() as scheduler:
            start, t0 = scheduler.now, trio.current_time()

            def record(name: str) -> Callable[[abc.SchedulerBase, Any], None]:
                return lambda _s, _st: ran.append((name, trio.current_time() - t0))

            scheduler.schedule_relative(3.0, record("relative 3"))
            scheduler.schedule_relative(timedelta(seconds=1), record("relative 1"))
            scheduler.schedule_absolute(start + timedelta(seconds=2), record("absolute 2"))
            scheduler.schedule_relative(-1, record("past"))
            cancelled = scheduler.schedule_relative(2.5, record("cancelled"))
            cancelled.dispose()
            await trio.sleep(10)
            assert (scheduler.now - start).total_seconds() == pytest.approx(10)
        assert [name for name, _ in ran] == ["past", "relative 1", "absolute 2", "relative 3"]
        assert [t for _, t in ran] == pytest.approx([0, 1, 2, 3], abs=1e-6)

    @pytest.mark.trio
    async def test_periodic(self, autojump_clock: trio.testing.MockClock) -> None:
        ticks: list[float] = []
        async with rx.open_trio_scheduler() as scheduler:
            t0 = trio.current_time()

            def tick(state: int | None) -> int:
                ticks.append(trio.current_time() - t0)
                return (state or 0) + 1

            periodic = scheduler.schedule_periodic(0.5, tick)
            await trio.sleep(2.1)
            periodic.dispose()
            await trio.sleep(5)
        assert ticks == pytest.approx([0.5, 1.0, 1.5, 2.0])

    @pytest.mark.trio
    async def test_scheduling_from_another_thread(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        ran: list[int] = []
        async with rx.open_trio_scheduler() as scheduler:
            done = trio.Event()

            def from_thread() -> None:
                scheduler.schedule(lambda _s, _st: ran.append(threading.get_ident()))
                scheduler.schedule_relative(1.0, lambda _s, _st: done.set())

            await trio.to_thread.run_sync(from_thread)
            await done.wait()
        assert ran == [threading.get_ident()]

    @pytest.mark.trio
    async def test_an_action_error_comes_out_of_the_block_as_itself(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        boom = BoomError("scheduled")
        body_reached_end = False

        def fail(_s: abc.SchedulerBase, _st: Any) -> None:
            raise boom

        with pytest.raises(BoomError) as info:
            async with rx.open_trio_scheduler() as scheduler:
                scheduler.schedule_relative(1.0, fail)
                await trio.sleep(100)
                body_reached_end = True
        assert info.value is boom
        assert not body_reached_end, "the action's error cancels the block"
        assert trio.current_time() == pytest.approx(1.0)

    @pytest.mark.trio
    async def test_the_blocks_own_error_wins_and_the_actions_is_logged(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        def fail(_s: abc.SchedulerBase, _st: Any) -> None:
            raise BoomError("scheduled")

        with pytest.raises(KeyError), caplog.at_level(logging.ERROR, logger="bridges"):
            async with rx.open_trio_scheduler() as scheduler:
                scheduler.schedule(fail)
                try:
                    await trio.sleep_forever()
                finally:
                    raise KeyError("body")
        assert any("BoomError" in r.exc_text for r in caplog.records if r.exc_text)

    @pytest.mark.trio
    async def test_leaving_cancels_what_is_still_scheduled(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        ran: list[str] = []
        async with rx.open_trio_scheduler() as scheduler:
            scheduler.schedule_relative(5, lambda _s, _st: ran.append("late"))
            interval = rx.to_aiter(reactivex.interval(1.0, scheduler=scheduler))
            async with interval:
                assert await interval.__anext__() == 0
        scheduler.schedule(lambda _s, _st: ran.append("after the block"))
        await trio.sleep(10)
        assert ran == []

    @pytest.mark.trio
    async def test_interval_take(self, autojump_clock: trio.testing.MockClock) -> None:
        async with rx.open_trio_scheduler() as scheduler:
            t0 = trio.current_time()
            source = reactivex.interval(1.0, scheduler=scheduler).pipe(ops.take(3))
            got = [(v, trio.current_time() - t0) async for v in rx.to_aiter(source)]
        assert got == [(0, 1.0), (1, 2.0), (2, 3.0)]

    @pytest.mark.trio
    async def test_debounce(self, autojump_clock: trio.testing.MockClock) -> None:
        subject: Subject[str] = Subject()
        async with rx.open_trio_scheduler() as scheduler:
            t0 = trio.current_time()
            it = rx.to_aiter(subject.pipe(ops.debounce(0.5, scheduler=scheduler)))
            async with it, trio.open_nursery() as nursery:

                async def type_keys() -> None:
                    for key in "abc":  # a burst: only "c" survives
                        subject.on_next(key)
                        await trio.sleep(0.1)
                    await trio.sleep(1)
                    subject.on_next("d")  # alone: survives
                    await trio.sleep(1)
                    subject.on_completed()

                nursery.start_soon(type_keys)
                got = [(v, round(trio.current_time() - t0, 6)) async for v in it]
        assert got == [("c", 0.7), ("d", 1.8)]

    @pytest.mark.trio
    async def test_delay(self, autojump_clock: trio.testing.MockClock) -> None:
        async with rx.open_trio_scheduler() as scheduler:
            t0 = trio.current_time()
            source = reactivex.of(1, 2).pipe(ops.delay(2.0, scheduler=scheduler))
            got = [(v, trio.current_time() - t0) async for v in rx.to_aiter(source)]
        assert got == [(1, 2.0), (2, 2.0)]

    @pytest.mark.trio
    async def test_observe_on_brings_thread_values_to_trio(self) -> None:
        pool = ThreadPoolScheduler(2)
        threads: set[int] = set()
        try:
            async with rx.open_trio_scheduler() as scheduler:
                source = reactivex.from_iterable(range(100), scheduler=pool).pipe(
                    ops.observe_on(scheduler),
                    ops.do_action(lambda _: threads.add(threading.get_ident())),
                )
                assert [v async for v in rx.to_aiter(source)] == list(range(100))
        finally:
            pool.executor.shutdown(wait=True)
        assert threads == {threading.get_ident()}

    @pytest.mark.anyio
    @pytest.mark.parametrize("anyio_backend", ASYNCIO_BACKENDS)
    async def test_asyncio_is_told_which_scheduler_to_use(self) -> None:
        with pytest.raises(RuntimeError, match="AsyncIOThreadSafeScheduler"):
            async with rx.open_trio_scheduler():
                pass

    def test_direct_construction_checks_its_arguments(self) -> None:
        with pytest.raises(TypeError, match="open_trio_scheduler"):
            rx.TrioScheduler(42, 42)  # type: ignore[arg-type]

    @pytest.mark.trio
    async def test_direct_construction_wants_a_trio_token_and_a_trio_clock(self) -> None:
        token, clock = trio.lowlevel.current_trio_token(), trio.lowlevel.current_clock()
        with pytest.raises(TypeError, match=r"trio\.abc\.Clock, not TrioToken and int"):
            rx.TrioScheduler(token, 42)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"TrioToken and a trio\.abc\.Clock, not int and"):
            rx.TrioScheduler(42, clock)  # type: ignore[arg-type]
        assert rx.TrioScheduler(token, clock).now is not None  # the right ones are taken
