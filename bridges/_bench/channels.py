"""Channel rows: aiter -> channel -> consumer, and asyncio loop thread -> trio loop thread."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator

import anyio

import bridges
from bridges import channels

from . import Baseline, Case, Scenario, run_loop, timed

#: the same capacity for the bridge and every peer
CAP = 64
_END = object()


async def _numbers(n: int) -> AsyncIterator[int]:
    for i in range(n):
        yield i


# ---------------------------------------------------------------- aiter -> channel -> consumer


def bridge_from_aiter(backend: str) -> Case:
    def case(n: int) -> float:
        async def go() -> None:
            count = 0
            async with channels.from_aiter(_numbers(n), buffer=CAP) as receive:
                async for _ in receive:
                    count += 1
            assert count == n

        return timed(backend, go)

    return case


def trio_channel_by_hand(n: int) -> float:
    """A pump task sends an async generator's values into a trio memory channel."""

    async def go() -> None:
        import trio

        send, receive = trio.open_memory_channel[int](CAP)

        async def produce() -> None:
            async with send:
                async for v in _numbers(n):
                    await send.send(v)

        count = 0
        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce)
            async with receive:
                async for _ in receive:
                    count += 1
        assert count == n

    return timed("trio", go)


def anyio_stream_by_hand(backend: str) -> Case:
    """A pump task sends an async generator's values into an anyio memory object stream."""

    def case(n: int) -> float:
        async def go() -> None:
            send, receive = anyio.create_memory_object_stream[int](CAP)

            async def produce() -> None:
                async with send:
                    async for v in _numbers(n):
                        await send.send(v)

            count = 0
            async with anyio.create_task_group() as tg:
                tg.start_soon(produce)
                async with receive:
                    async for _ in receive:
                        count += 1
            assert count == n

        return timed(backend, go)

    return case


# ---------------------------------------------------------------- asyncio thread -> trio thread


def _cross_loop(n: int, make_pair: str) -> float:
    """An asyncio loop in a thread produces ``n`` values; a trio loop here consumes them."""

    async def consume() -> float:
        t0 = time.perf_counter()
        if make_pair == "bridge":
            send, receive = bridges.open_channel[int](CAP)

            async def produce_bridge() -> None:
                async with send:
                    for i in range(n):
                        await send.send(i)

            thread = threading.Thread(target=asyncio.run, args=(produce_bridge(),))
            thread.start()
            count = 0
            async with receive:
                async for _ in receive:
                    count += 1
        else:
            import culsans

            q: culsans.Queue[object] = culsans.Queue(CAP)

            async def produce_culsans() -> None:
                put = q.async_q.put
                for i in range(n):
                    await put(i)
                await put(_END)

            thread = threading.Thread(target=asyncio.run, args=(produce_culsans(),))
            thread.start()
            count = 0
            get = q.async_q.get
            while (await get()) is not _END:
                count += 1
        thread.join()
        assert count == n
        return time.perf_counter() - t0

    return run_loop("trio", consume)


def bridge_cross_loop(n: int) -> float:
    return _cross_loop(n, "bridge")


def culsans_cross_loop(n: int) -> float:
    return _cross_loop(n, "culsans")


def _scenarios() -> list[Scenario]:
    return [
        Scenario(
            "aiter -> channel -> consumer",
            "trio",
            1_000_000,
            bridge_from_aiter("trio"),
            [
                Baseline("raw trio memory channel", trio_channel_by_hand, 1.0, "<= 1.0x"),
                Baseline("raw anyio memory stream", anyio_stream_by_hand("trio"), 1.0, "<= 1.0x"),
            ],
            note=f"capacity {CAP}; the peers are driven by hand (pump task + async for)",
        ),
        Scenario(
            "aiter -> channel -> consumer",
            "asyncio",
            1_000_000,
            bridge_from_aiter("asyncio"),
            [
                Baseline(
                    "raw anyio memory stream", anyio_stream_by_hand("asyncio"), 1.0, "<= 1.0x"
                ),
            ],
            note=f"capacity {CAP}",
        ),
        Scenario(
            "asyncio thread -> trio thread",
            "trio",
            100_000,
            bridge_cross_loop,
            [Baseline("culsans (same use)", culsans_cross_loop, 0.2, ">= 5x culsans")],
            note=f"open_channel, capacity {CAP}; asyncio producer thread, trio consumer",
        ),
    ]


SCENARIOS = _scenarios()
