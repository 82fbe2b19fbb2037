"""Channel rows: aiter -> channel -> consumer, and asyncio loop thread -> trio loop thread."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import anyio

import bridges
from bridges import channels

from . import END, Baseline, Case, Scenario, counted, drain, numbers, run_loop

#: the same capacity for the bridge and every peer
CAP = 64


# ---------------------------------------------------------------- aiter -> channel -> consumer


def bridge_from_aiter(backend: str) -> Case:
    return counted(backend, lambda n: drain(channels.from_aiter(numbers(n), buffer=CAP)))


#: a raw channel: (send, receive) of the given capacity
OpenPair = Callable[[int], tuple[Any, Any]]


def pumped_by_hand(backend: str, open_pair: OpenPair) -> Case:
    """A pump task sends an async generator's values into a raw channel; ``async for`` reads it."""

    async def run(n: int) -> int:
        send, receive = open_pair(CAP)

        async def produce() -> None:
            async with send:
                async for v in numbers(n):
                    await send.send(v)

        async with anyio.create_task_group() as tg:
            tg.start_soon(produce)
            count = await drain(receive)
        return count

    return counted(backend, run)


def _trio_channel(cap: int) -> tuple[Any, Any]:
    import trio

    return trio.open_memory_channel[int](cap)


def _anyio_stream(cap: int) -> tuple[Any, Any]:
    return anyio.create_memory_object_stream[int](cap)


trio_channel_by_hand = pumped_by_hand("trio", _trio_channel)


def anyio_stream_by_hand(backend: str) -> Case:
    return pumped_by_hand(backend, _anyio_stream)


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
                await put(END)

            thread = threading.Thread(target=asyncio.run, args=(produce_culsans(),))
            thread.start()
            count = 0
            get = q.async_q.get
            while (await get()) is not END:
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
                    "raw anyio memory stream",
                    pumped_by_hand("asyncio", _anyio_stream),
                    1.0,
                    "<= 1.0x",
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
