"""Pipeline helper rows: merge, batch, concurrent map against aiostream (asyncio), by hand (trio).

Every case consumes the same sources: plain async generators of ints that
never suspend, so what is measured is the helper's own cost per value.
aiostream runs on asyncio only; on trio the baseline is what one writes by
hand (a nursery feeding a rendezvous memory channel for merge, a chunking
async generator for batch), reported without a budget.

Concurrent map is the exception: its call is ``await anyio.sleep(delay)``.
With ``delay=0`` (a call that yields once, like the quickest I/O) what is
measured is the cost of running ``CALLS`` calls at once and giving their
results back in order; with 1 ms, how close each gets to the ideal
``CALLS`` calls per millisecond.  On trio the baseline is the task group
and semaphore one writes by hand, with a budget.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, aclosing
from typing import Any

import anyio

from .. import ops
from . import Baseline, Case, Scenario, counted, drain, numbers, timed

SOURCES = 4
SIZE = 64
CALLS = 8


def _split(n: int) -> list[int]:
    per, extra = divmod(n, SOURCES)
    return [per + (1 if i < extra else 0) for i in range(SOURCES)]


# ---------------------------------------------------------------- merge


def bridges_merge(backend: str) -> Case:
    return counted(backend, lambda n: drain(ops.merge(*(numbers(k) for k in _split(n)))))


async def _aiostream_merge(n: int) -> int:
    from aiostream import stream

    return await drain(stream.merge(*(numbers(k) for k in _split(n))).stream())


aiostream_merge = counted("asyncio", _aiostream_merge)


async def _trio_nursery_merge(n: int) -> int:
    import trio

    send, receive = trio.open_memory_channel[int](0)

    async def feed(k: int, send: trio.MemorySendChannel[int]) -> None:
        async with send:
            async for v in numbers(k):
                await send.send(v)

    async with trio.open_nursery() as nursery:
        async with send:
            for k in _split(n):
                nursery.start_soon(feed, k, send.clone())
        return await drain(receive)


trio_nursery_merge = counted("trio", _trio_nursery_merge)


# ---------------------------------------------------------------- batch


async def _drain_batches(batches: AbstractAsyncContextManager[AsyncIterable[list[int]]]) -> int:
    """Enter ``batches``, iterate them to their end; return how many values they held."""
    count = 0
    async with batches as it:
        async for b in it:
            count += len(b)
    return count


def bridges_batch(backend: str, within: float | None = None) -> Case:
    return counted(backend, lambda n: _drain_batches(ops.batch(numbers(n), SIZE, within=within)))


async def _aiostream_chunks(n: int) -> int:
    from aiostream import stream

    source: Any = numbers(n)
    xs: Any = stream.chunks(source, SIZE)
    return await _drain_batches(xs.stream())


aiostream_chunks = counted("asyncio", _aiostream_chunks)


async def _chunks(source: AsyncIterator[int]) -> AsyncGenerator[list[int]]:
    """Batches of ``SIZE`` by hand: an async generator that fills a list."""
    buf: list[int] = []
    async for v in source:
        buf.append(v)
        if len(buf) == SIZE:
            yield buf
            buf = []
    if buf:
        yield buf


def hand_chunks(backend: str) -> Case:
    return counted(backend, lambda n: _drain_batches(aclosing(_chunks(numbers(n)))))


# ---------------------------------------------------------------- concurrent map


def _sleeper(delay: float) -> Callable[[int], Awaitable[int]]:
    async def call(v: int) -> int:
        await anyio.sleep(delay)
        return v

    return call


def bridges_cmap(backend: str, delay: float) -> Case:
    call = _sleeper(delay)
    return counted(backend, lambda n: drain(ops.map(numbers(n), call, concurrency=CALLS)))


def aiostream_map(delay: float) -> Case:
    call: Any = _sleeper(delay)  # (aiostream's typing of pipe.map wants a narrower callable)

    async def run(n: int) -> int:
        from aiostream import pipe, stream

        source: Any = numbers(n)
        xs: Any = stream.iterate(source) | pipe.map(call, task_limit=CALLS, ordered=True)
        return await drain(xs.stream())

    return counted("asyncio", run)


def trio_semaphore_map(delay: float) -> Case:
    """A task per value, at most CALLS at once (a semaphore); results kept by index."""
    call = _sleeper(delay)

    def case(n: int) -> float:
        return timed("trio", lambda: _semaphore_map(n, call))

    return case


async def _semaphore_map(n: int, call: Callable[[int], Awaitable[int]]) -> None:
    import trio

    limit = trio.Semaphore(CALLS)
    results: dict[int, int] = {}

    async def run(i: int, v: int) -> None:
        try:
            results[i] = await call(v)
        finally:
            limit.release()

    async with trio.open_nursery() as nursery:
        i = 0
        async for v in numbers(n):
            await limit.acquire()
            nursery.start_soon(run, i, v)
            i += 1
    assert [results[i] for i in range(n)] == list(range(n))


def _scenarios() -> list[Scenario]:
    merge_name = f"ops: merge of {SOURCES} sources"
    batch_name = f"ops: batch({SIZE})"
    within_name = f"ops: batch({SIZE}, within=1.0)"
    map_name = f"ops: map x{CALLS}"
    out = [
        Scenario(
            merge_name,
            "asyncio",
            200_000,
            bridges_merge("asyncio"),
            [Baseline("aiostream stream.merge", aiostream_merge, 1.0, "<= 1.0x")],
        ),
        Scenario(
            merge_name,
            "trio",
            200_000,
            bridges_merge("trio"),
            [Baseline("nursery + channel (by hand)", trio_nursery_merge, None, "reported")],
        ),
        Scenario(
            batch_name,
            "asyncio",
            1_000_000,
            bridges_batch("asyncio"),
            [
                Baseline("aiostream stream.chunks", aiostream_chunks, 1.0, "<= 1.0x"),
                Baseline("chunking agen (by hand)", hand_chunks("asyncio"), None, "reported"),
            ],
        ),
        Scenario(
            within_name,
            "asyncio",
            1_000_000,
            bridges_batch("asyncio", 1.0),
            [Baseline("aiostream stream.chunks", aiostream_chunks, 1.0, "<= 1.0x (no timer)")],
            note="a helper task reads the source; aiostream has no time-based chunks",
        ),
    ]
    for delay, n in ((0.0, 50_000), (0.001, 4_000)):
        name = f"{map_name}, sleep({delay:g})"
        out.append(
            Scenario(
                name,
                "asyncio",
                n,
                bridges_cmap("asyncio", delay),
                [Baseline("aiostream pipe.map ordered", aiostream_map(delay), 1.0, "<= 1.0x")],
                note=f"aiostream's task_limit={CALLS}",
            )
        )
        out.append(
            Scenario(
                name,
                "trio",
                n,
                bridges_cmap("trio", delay),
                [Baseline("task group + semaphore", trio_semaphore_map(delay), 1.0, "<= 1.0x")],
            )
        )
    for name, within in ((batch_name, None), (within_name, 1.0)):
        out.append(
            Scenario(
                name,
                "trio",
                1_000_000,
                bridges_batch("trio", within),
                [Baseline("chunking agen (by hand)", hand_chunks("trio"), None, "reported")],
            )
        )
    return out


SCENARIOS = _scenarios()
