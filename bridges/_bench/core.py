"""Core rows: in-loop hand-off, foreign-thread producers, peak memory."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable

import anyio
from anyio.lowlevel import checkpoint_if_cancelled

import bridges

from . import END, Baseline, Case, Scenario, numbers, timed

CAP = 1024


# ---------------------------------------------------------------- in-loop


def bridge_in_loop(backend: str) -> Case:
    def case(n: int) -> float:
        async def go() -> None:
            send, receive = bridges.open_channel[int](CAP)

            async def produce() -> None:
                for i in range(n):
                    await send.send(i)
                send.close()

            async with anyio.create_task_group() as tg:
                tg.start_soon(produce)
                async for _ in receive:
                    pass

        return timed(backend, go)

    return case


def asyncio_queue_in_loop(n: int) -> float:
    async def go() -> None:
        q: asyncio.Queue[object] = asyncio.Queue(CAP)

        async def produce() -> None:
            for i in range(n):
                await q.put(i)
            await q.put(END)

        task = asyncio.ensure_future(produce())
        while (await q.get()) is not END:
            pass
        await task

    return timed("asyncio", go)


def checked_asyncio_queue_in_loop(n: int) -> float:
    """``asyncio.Queue`` with the bridge's cancel point per call (R19) written by hand:
    ``await anyio.lowlevel.checkpoint_if_cancelled()`` before each ``put`` and ``get``."""

    async def go() -> None:
        q: asyncio.Queue[object] = asyncio.Queue(CAP)

        async def produce() -> None:
            for i in range(n):
                await checkpoint_if_cancelled()
                await q.put(i)
            await q.put(END)

        task = asyncio.ensure_future(produce())
        while True:
            await checkpoint_if_cancelled()
            if (await q.get()) is END:
                break
        await task

    return timed("asyncio", go)


def trio_channel_in_loop(n: int) -> float:
    async def go() -> None:
        import trio

        send, receive = trio.open_memory_channel[int](CAP)

        async def produce() -> None:
            async with send:
                for i in range(n):
                    await send.send(i)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce)
            async with receive:
                async for _ in receive:
                    pass

    return timed("trio", go)


def bare_agen(backend: str) -> Case:
    def case(n: int) -> float:
        async def go() -> None:
            async for _ in numbers(n):
                pass

        return timed(backend, go)

    return case


# ---------------------------------------------------------------- foreign thread


def start_thread(target: Callable[[], None]) -> threading.Thread:
    """A started thread running ``target`` (a producer or consumer of a case)."""
    t = threading.Thread(target=target)
    t.start()
    return t


def bridge_thread(backend: str, cap: int | None = CAP) -> Case:
    def case(n: int) -> float:
        async def go() -> None:
            send, receive = bridges.open_channel[int](cap)

            def produce() -> None:
                for i in range(n):
                    send.send_blocking(i)
                send.close()

            t = start_thread(produce)
            async for _ in receive:
                pass
            t.join()

        return timed(backend, go)

    return case


#: a thread-safe queue as (put from a thread, await get, close or None)
QueueEnds = tuple[
    Callable[[object], object],
    Callable[[], Awaitable[object]],
    Callable[[], Awaitable[None]] | None,
]


def _thread_queue_case(backend: str, open_queue: Callable[[], QueueEnds]) -> Case:
    """A producer thread puts n values, then an end marker; the consumer awaits each."""

    def case(n: int) -> float:
        async def go() -> None:
            put, get, close = open_queue()

            def produce() -> None:
                for i in range(n):
                    put(i)
                put(END)

            t = start_thread(produce)
            while (await get()) is not END:
                pass
            t.join()
            if close is not None:
                await close()

        return timed(backend, go)

    return case


def _janus() -> QueueEnds:
    import janus

    q: janus.Queue[object] = janus.Queue(CAP)

    async def close() -> None:
        q.close()
        await q.wait_closed()

    return q.sync_q.put, q.async_q.get, close


def _culsans() -> QueueEnds:
    import culsans

    q: culsans.Queue[object] = culsans.Queue(CAP)
    return q.sync_q.put, q.async_q.get, None


def _aiologic() -> QueueEnds:
    import aiologic

    q: aiologic.SimpleQueue[object] = aiologic.SimpleQueue()
    return q.put, q.async_get, None


janus_thread = _thread_queue_case("asyncio", _janus)


def culsans_thread(backend: str) -> Case:
    return _thread_queue_case(backend, _culsans)


def aiologic_thread(backend: str) -> Case:
    return _thread_queue_case(backend, _aiologic)


#: a loop's thread-safe "run this soon" (``call_soon_threadsafe``, ``run_sync_soon``),
#: the put it runs on the loop, and the await that takes a value
ScheduledEnds = tuple[
    Callable[[Callable[[object], object], object], object],
    Callable[[object], object],
    Callable[[], Awaitable[object]],
]


def scheduled_per_value(backend: str, open_ends: Callable[[], ScheduledEnds]) -> Case:
    """The hand-written unbounded pattern: a producer thread schedules a put on the loop per
    value, then an end marker; the consumer awaits each (``open_ends`` runs on the loop)."""

    def case(n: int) -> float:
        async def go() -> None:
            schedule, put, get = open_ends()

            def produce() -> None:
                for i in range(n):
                    schedule(put, i)
                schedule(put, END)

            t = start_thread(produce)
            while (await get()) is not END:
                pass
            t.join()

        return timed(backend, go)

    return case


def _call_soon_threadsafe() -> ScheduledEnds:
    q: asyncio.Queue[object] = asyncio.Queue()
    return asyncio.get_running_loop().call_soon_threadsafe, q.put_nowait, q.get


call_soon_threadsafe_thread = scheduled_per_value("asyncio", _call_soon_threadsafe)


def bounded_thread_peers(backend: str) -> list[Baseline]:
    """The bounded sync->async queues a foreign-thread row is held to (janus: asyncio only)."""
    janus = [Baseline("janus", janus_thread, 0.2, ">= 5x janus")] if backend == "asyncio" else []
    return [*janus, Baseline("culsans", culsans_thread(backend), 0.5, ">= 2x culsans")]


# ---------------------------------------------------------------- memory

_MEMORY_SCRIPT = r"""
import resource, sys, threading, anyio, bridges
n, backend = int(sys.argv[1]), sys.argv[2]
def rss_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
async def main():
    send, receive = bridges.open_channel(1024)
    def produce():
        for i in range(n):
            send.send_blocking(i)
        send.close()
    await anyio.sleep(0)
    before = rss_kb()
    t = threading.Thread(target=produce); t.start()
    k = 0
    async for _ in receive:
        k += 1
        if k % 16 == 0:
            await anyio.sleep(0)  # a slow consumer: the producer spends its time blocked
    t.join()
    assert k == n
    print(before, rss_kb(), receive.stats.high_water)
anyio.run(main, backend=backend)
"""


def memory_case(backend: str) -> Callable[[int], dict[str, object]]:
    def measure(n: int) -> dict[str, object]:
        out = subprocess.run(
            [sys.executable, "-c", _MEMORY_SCRIPT, str(n), backend],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
        before, after, high_water = (int(x) for x in out)
        growth_mb = (after - before) / 1024
        return {
            "peak_growth_mb": round(growth_mb, 2),
            "high_water": high_water,
            "budget": "<= 10 MB",
            "ok": growth_mb <= 10,
        }

    return measure


def _scenarios() -> list[Scenario]:
    out = [
        *(
            Scenario(
                "in-loop task -> task",
                backend,
                1_000_000,
                bridge_in_loop(backend),
                [
                    peer,
                    *(
                        [
                            Baseline(
                                "Queue + cancel check/call",
                                checked_asyncio_queue_in_loop,
                                None,
                                "reported (same R19)",
                            )
                        ]
                        if backend == "asyncio"
                        else []
                    ),
                    Baseline("bare async generator", bare_agen(backend), None, "floor (~4x)"),
                ],
            )
            for backend, peer in [
                (
                    "asyncio",
                    Baseline("asyncio.Queue", asyncio_queue_in_loop, 1.0, "<= 1.0x (aim 0.5x)"),
                ),
                (
                    "trio",
                    Baseline(
                        "trio memory channel", trio_channel_in_loop, 0.25, "<= 0.25x (aim 0.1x)"
                    ),
                ),
            ]
        ),
        Scenario(
            "foreign thread -> aiter",
            "asyncio",
            300_000,
            bridge_thread("asyncio"),
            [
                *bounded_thread_peers("asyncio"),
                Baseline(
                    "aiologic SimpleQueue (unb.)",
                    aiologic_thread("asyncio"),
                    1.0,
                    "level (both unbounded)",
                    bridge_thread("asyncio", None),
                ),
                Baseline(
                    "call_soon_threadsafe (unb.)",
                    call_soon_threadsafe_thread,
                    None,
                    "reported",
                    bridge_thread("asyncio", None),
                ),
            ],
        ),
        Scenario(
            "foreign thread -> aiter",
            "trio",
            300_000,
            bridge_thread("trio"),
            [
                *bounded_thread_peers("trio"),
                Baseline(
                    "aiologic SimpleQueue (unb.)",
                    aiologic_thread("trio"),
                    1.0,
                    "level (both unbounded)",
                    bridge_thread("trio", None),
                ),
            ],
        ),
    ]
    for backend in ("asyncio", "trio"):
        out.append(
            Scenario(
                "memory: slow consumer, buffer 1024",
                backend,
                10_000_000,
                bridge_in_loop(backend),
                measure=memory_case(backend),
                note="peak RSS growth in a fresh process",
            )
        )
    return out


SCENARIOS = _scenarios()
