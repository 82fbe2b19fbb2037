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

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio

from .. import ops
from . import Baseline, Case, Scenario, timed

SOURCES = 4
SIZE = 64
CALLS = 8


async def _gen(n: int) -> AsyncIterator[int]:
    for i in range(n):
        yield i


def _split(n: int) -> list[int]:
    per, extra = divmod(n, SOURCES)
    return [per + (1 if i < extra else 0) for i in range(SOURCES)]


# ---------------------------------------------------------------- merge


def bridges_merge(backend: str) -> Case:
    def case(n: int) -> float:
        async def go() -> None:
            count = 0
            async with ops.merge(*(_gen(k) for k in _split(n))) as it:
                async for _ in it:
                    count += 1
            assert count == n

        return timed(backend, go)

    return case


def aiostream_merge(n: int) -> float:
    from aiostream import stream

    async def go() -> None:
        count = 0
        xs = stream.merge(*(_gen(k) for k in _split(n)))
        async with xs.stream() as streamer:
            async for _ in streamer:
                count += 1
        assert count == n

    return timed("asyncio", go)


def trio_nursery_merge(n: int) -> float:
    async def go() -> None:
        import trio

        send, receive = trio.open_memory_channel[int](0)
        count = 0

        async def feed(k: int, send: trio.MemorySendChannel[int]) -> None:
            async with send:
                async for v in _gen(k):
                    await send.send(v)

        async with trio.open_nursery() as nursery:
            async with send:
                for k in _split(n):
                    nursery.start_soon(feed, k, send.clone())
            async with receive:
                async for _ in receive:
                    count += 1
        assert count == n

    return timed("trio", go)


# ---------------------------------------------------------------- batch


def bridges_batch(backend: str, within: float | None = None) -> Case:
    def case(n: int) -> float:
        async def go() -> None:
            count = 0
            async with ops.batch(_gen(n), SIZE, within=within) as it:
                async for b in it:
                    count += len(b)
            assert count == n

        return timed(backend, go)

    return case


def aiostream_chunks(n: int) -> float:
    from aiostream import stream

    async def go() -> None:
        count = 0
        source: Any = _gen(n)
        xs: Any = stream.chunks(source, SIZE)
        async with xs.stream() as streamer:
            async for b in streamer:
                count += len(b)
        assert count == n

    return timed("asyncio", go)


def hand_chunks(backend: str) -> Case:
    def case(n: int) -> float:
        async def chunks(source: AsyncIterator[int]) -> AsyncIterator[list[int]]:
            buf: list[int] = []
            async for v in source:
                buf.append(v)
                if len(buf) == SIZE:
                    yield buf
                    buf = []
            if buf:
                yield buf

        async def go() -> None:
            count = 0
            async for b in chunks(_gen(n)):
                count += len(b)
            assert count == n

        return timed(backend, go)

    return case


# ---------------------------------------------------------------- concurrent map


def _sleeper(delay: float) -> Callable[[int], Awaitable[int]]:
    async def call(v: int) -> int:
        await anyio.sleep(delay)
        return v

    return call


def bridges_cmap(backend: str, delay: float) -> Case:
    call = _sleeper(delay)

    def case(n: int) -> float:
        async def go() -> None:
            count = 0
            async with ops.map(_gen(n), call, concurrency=CALLS) as it:
                async for _ in it:
                    count += 1
            assert count == n

        return timed(backend, go)

    return case


def aiostream_map(delay: float) -> Case:
    call: Any = _sleeper(delay)  # (aiostream's typing of pipe.map wants a narrower callable)

    def case(n: int) -> float:
        from aiostream import pipe, stream

        async def go() -> None:
            count = 0
            source: Any = _gen(n)
            xs: Any = stream.iterate(source) | pipe.map(call, task_limit=CALLS, ordered=True)
            async with xs.stream() as streamer:
                async for _ in streamer:
                    count += 1
            assert count == n

        return timed("asyncio", go)

    return case


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
        async for v in _gen(n):
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
