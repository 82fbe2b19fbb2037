"""Pipeline helper rows: merge and batch against aiostream (asyncio) and by hand (trio).

Every case consumes the same sources: plain async generators of ints that
never suspend, so what is measured is the helper's own cost per value.
aiostream runs on asyncio only; on trio the baseline is what one writes by
hand (a nursery feeding a rendezvous memory channel for merge, a chunking
async generator for batch), reported without a budget.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from .. import ops
from . import Baseline, Case, Scenario, timed

SOURCES = 4
SIZE = 64


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


def _scenarios() -> list[Scenario]:
    merge_name = f"ops: merge of {SOURCES} sources"
    batch_name = f"ops: batch({SIZE})"
    within_name = f"ops: batch({SIZE}, within=1.0)"
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
