"""reactivex rows: Observable -> aiter and aiter -> Observable, against hand-written bridges.

Every case moves the same values from the same producer: for rx -> aiter a
cold ``reactivex.from_iterable(range(n))`` (one trampolined loop, the
cheapest real Rx source), for aiter -> rx a bare async generator; all
buffers are unbounded (``rx.to_aiter``'s default), the same capacity as the
hand-written ``asyncio.Queue()`` peers.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

import anyio
import reactivex
from reactivex import abc
from reactivex import operators as ops
from reactivex.disposable import Disposable
from reactivex.scheduler import ThreadPoolScheduler

from bridges import rx

from . import END, Baseline, Case, Scenario, counted, drain, numbers, timed

# ---------------------------------------------------------------- rx -> aiter


def bridge_to_aiter(backend: str) -> Case:
    return counted(backend, lambda n: drain(rx.to_aiter(reactivex.from_iterable(range(n)))))


async def _asyncio_queue_to_aiter(n: int) -> int:
    """Subscribe with ``queue.put_nowait`` and ``await queue.get()`` until an end marker."""
    queue: asyncio.Queue[object] = asyncio.Queue()
    subscription = reactivex.from_iterable(range(n)).subscribe(
        queue.put_nowait, queue.put_nowait, lambda: queue.put_nowait(END)
    )
    count = 0
    while (v := await queue.get()) is not END:
        if isinstance(v, Exception):
            raise v
        count += 1
    subscription.dispose()
    return count


async def _trio_channel_to_aiter(n: int) -> int:
    """Subscribe with an unbounded trio memory channel's ``send_nowait``, receive by hand."""
    import trio

    send, receive = trio.open_memory_channel[object](math.inf)
    subscription = reactivex.from_iterable(range(n)).subscribe(
        send.send_nowait, send.send_nowait, send.close
    )
    count = 0
    async with receive:
        async for v in receive:
            if isinstance(v, Exception):
                raise v
            count += 1
    subscription.dispose()
    return count


asyncio_queue_to_aiter = counted("asyncio", _asyncio_queue_to_aiter)
trio_channel_to_aiter = counted("trio", _trio_channel_to_aiter)


def bridge_to_aiter_thread(buffer: int | None) -> Case:
    def case(n: int) -> float:
        async def go() -> None:
            pool = ThreadPoolScheduler(1)
            count = 0
            source = reactivex.from_iterable(range(n))
            async for _ in rx.to_aiter(source, buffer=buffer, subscribe_on=pool):
                count += 1
            pool.executor.shutdown()
            assert count == n

        return timed("asyncio", go)

    return case


def call_soon_threadsafe_to_aiter(n: int) -> float:
    """The usual hand-written thread -> asyncio bridge (unbounded, no backpressure)."""

    async def go() -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        pool = ThreadPoolScheduler(1)

        def on_next(v: object) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, v)

        def on_completed() -> None:
            loop.call_soon_threadsafe(queue.put_nowait, END)

        reactivex.from_iterable(range(n)).pipe(ops.subscribe_on(pool)).subscribe(
            on_next, on_next, on_completed
        )
        count = 0
        while True:
            v = await queue.get()
            if v is END:
                break
            count += 1
        pool.executor.shutdown()
        assert count == n

    return timed("asyncio", go)


# ---------------------------------------------------------------- aiter -> rx


class _Counter(abc.ObserverBase[Any]):
    def __init__(self) -> None:
        self.count = 0
        self.done = anyio.Event()

    def on_next(self, _: Any) -> None:
        self.count += 1

    def on_error(self, error: Exception) -> None:
        raise error

    def on_completed(self) -> None:
        self.done.set()


def bridge_from_aiter(backend: str) -> Case:
    def case(n: int) -> float:
        async def go() -> None:
            counter = _Counter()
            if backend == "trio":
                async with anyio.create_task_group() as tg:
                    rx.from_aiter(numbers(n), task_group=tg).subscribe(counter)
            else:  # asyncio without a task group: the bridge's own tracked task
                rx.from_aiter(numbers(n)).subscribe(counter)
                await counter.done.wait()
            assert counter.count == n

        return timed(backend, go)

    return case


#: what an asyncio baseline subscribes with: given n, reactivex's subscribe function
AsyncioSubscribe = Callable[[int], Callable[..., abc.DisposableBase]]


def _asyncio_observable(subscribe_for: AsyncioSubscribe) -> Case:
    """An Observable whose subscribe starts asyncio tasks; its n values are counted."""

    def case(n: int) -> float:
        async def go() -> None:
            counter = _Counter()
            reactivex.create(subscribe_for(n)).subscribe(counter)
            await counter.done.wait()
            assert counter.count == n

        return timed("asyncio", go)

    return case


def _tasks_disposable(*tasks: asyncio.Future[None]) -> abc.DisposableBase:
    """Disposing cancels the tasks."""

    def dispose() -> None:
        for t in tasks:
            t.cancel()

    return Disposable(dispose)


def _queue_subscribe(n: int) -> Callable[..., abc.DisposableBase]:
    def subscribe(observer: abc.ObserverBase[int], _: Any = None) -> abc.DisposableBase:
        queue: asyncio.Queue[object] = asyncio.Queue()

        async def produce() -> None:
            async for v in numbers(n):
                queue.put_nowait(v)
            queue.put_nowait(END)

        async def deliver() -> None:
            while True:
                v = await queue.get()
                if v is END:
                    observer.on_completed()
                    return
                observer.on_next(v)  # type: ignore[arg-type]

        return _tasks_disposable(asyncio.ensure_future(produce()), asyncio.ensure_future(deliver()))

    return subscribe


def _task_subscribe(n: int) -> Callable[..., abc.DisposableBase]:
    def subscribe(observer: abc.ObserverBase[int], _: Any = None) -> abc.DisposableBase:
        async def pump() -> None:
            async for v in numbers(n):
                observer.on_next(v)
            observer.on_completed()

        return _tasks_disposable(asyncio.ensure_future(pump()))

    return subscribe


#: a hand-written Observable: one task feeds the queue, another calls on_next
asyncio_queue_from_aiter = _asyncio_observable(_queue_subscribe)
#: the barest hand-written Observable: one task calls on_next per value (no queue)
asyncio_pump_from_aiter = _asyncio_observable(_task_subscribe)


#: what a trio baseline subscribes with: given the nursery and n, reactivex's subscribe function
TrioSubscribe = Callable[[Any, int], Callable[..., abc.DisposableBase]]


def _trio_observable(subscribe_in: TrioSubscribe) -> Case:
    """An Observable whose subscribe starts tasks in a nursery; its n values are counted."""

    def case(n: int) -> float:
        async def go() -> None:
            import trio

            counter = _Counter()
            async with trio.open_nursery() as nursery:
                reactivex.create(subscribe_in(nursery, n)).subscribe(counter)
            assert counter.count == n

        return timed("trio", go)

    return case


def _channel_subscribe(nursery: Any, n: int) -> Callable[..., abc.DisposableBase]:
    import trio

    def subscribe(observer: abc.ObserverBase[int], _: Any = None) -> abc.DisposableBase:
        send, receive = trio.open_memory_channel[int](math.inf)

        async def produce() -> None:
            async with send:
                async for v in numbers(n):
                    send.send_nowait(v)

        async def deliver() -> None:
            async with receive:
                async for v in receive:
                    observer.on_next(v)
            observer.on_completed()

        nursery.start_soon(produce)
        nursery.start_soon(deliver)
        return Disposable(nursery.cancel_scope.cancel)

    return subscribe


def _pump_subscribe(nursery: Any, n: int) -> Callable[..., abc.DisposableBase]:
    def subscribe(observer: abc.ObserverBase[int], _: Any = None) -> abc.DisposableBase:
        async def pump() -> None:
            async for v in numbers(n):
                observer.on_next(v)
            observer.on_completed()

        nursery.start_soon(pump)
        return Disposable()

    return subscribe


#: asyncio.Queue's trio twin: one task feeds an unbounded channel, another calls on_next
trio_channel_from_aiter = _trio_observable(_channel_subscribe)
#: a nursery task calls on_next per value (no queue, no cancellation plumbing)
trio_pump_from_aiter = _trio_observable(_pump_subscribe)


SCENARIOS = [
    *(
        Scenario(
            "rx -> aiter",
            backend,
            1_000_000,
            bridge_to_aiter(backend),
            [Baseline(peer_name, peer, 1.5, "<= 1.5x")],
            note="from_iterable(range(n)), unbounded",
        )
        for backend, peer_name, peer in [
            ("asyncio", "asyncio.Queue by hand", asyncio_queue_to_aiter),
            ("trio", "trio channel (inf) by hand", trio_channel_to_aiter),
        ]
    ),
    Scenario(
        "rx -> aiter, subscribe_on a thread",
        "asyncio",
        300_000,
        bridge_to_aiter_thread(None),
        [
            Baseline(
                "call_soon_threadsafe by hand",
                call_soon_threadsafe_to_aiter,
                1.5,
                "<= 1.5x (both unbounded)",
            ),
            Baseline(
                "call_soon_threadsafe by hand",
                call_soon_threadsafe_to_aiter,
                None,
                "reported (bridge bounded 1024)",
                bridge_to_aiter_thread(1024),
            ),
        ],
        note="from_iterable(range(n)) on a ThreadPoolScheduler worker",
    ),
    *(
        Scenario(
            "aiter -> rx",
            backend,
            1_000_000,
            bridge_from_aiter(backend),
            [
                Baseline(peer_name, peer, 1.5, "<= 1.5x"),
                Baseline("bare pump task by hand", pump, None, "reported"),
            ],
            note=note,
        )
        for backend, peer_name, peer, pump, note in [
            (
                "asyncio",
                "asyncio.Queue by hand",
                asyncio_queue_from_aiter,
                asyncio_pump_from_aiter,
                "async generator -> on_next",
            ),
            (
                "trio",
                "trio channel (inf) by hand",
                trio_channel_from_aiter,
                trio_pump_from_aiter,
                "async generator -> on_next, in a task group",
            ),
        ]
    ),
]
