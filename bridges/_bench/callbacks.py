"""Callback rows: a foreign thread calling back into ``callbacks.to_aiter``.

The producer is the same in every case: one plain thread that calls a
callback once per value.  The bridge and its bounded peers get the same
capacity; the unbounded hand-written pattern is compared with the bridge
made unbounded too (same capacity).
"""

from __future__ import annotations

import math
import threading

from bridges import callbacks
from bridges.callbacks import Emitter

from . import Baseline, Case, Scenario, timed
from .core import (
    CAP,
    ScheduledEnds,
    bounded_thread_peers,
    call_soon_threadsafe_thread,
    scheduled_per_value,
    start_thread,
)


def bridge_callback_thread(backend: str, cap: int | None = CAP) -> Case:
    def case(n: int) -> float:
        async def go() -> None:
            threads: list[threading.Thread] = []

            def subscribe(emit: Emitter[int]) -> None:
                def produce() -> None:
                    send = emit.send
                    for i in range(n):
                        send(i)
                    emit.close()

                threads.append(start_thread(produce))

            async for _ in callbacks.to_aiter(subscribe, buffer=cap):
                pass
            threads[0].join()

        return timed(backend, go)

    return case


def _run_sync_soon() -> ScheduledEnds:
    import trio

    send, receive = trio.open_memory_channel[object](math.inf)
    return trio.lowlevel.current_trio_token().run_sync_soon, send.send_nowait, receive.receive


#: the hand-written trio pattern: ``token.run_sync_soon(send_nowait, v)`` per value
trio_run_sync_soon_thread = scheduled_per_value("trio", _run_sync_soon)


SCENARIOS = [
    Scenario(
        "callbacks: foreign thread -> aiter",
        "asyncio",
        300_000,
        bridge_callback_thread("asyncio"),
        [
            *bounded_thread_peers("asyncio"),
            Baseline(
                "call_soon_threadsafe (unb.)",
                call_soon_threadsafe_thread,
                1.0,
                "level (both unbounded)",
                bridge_callback_thread("asyncio", None),
            ),
        ],
        note="one producer thread calling emit.send per value, capacity 1024",
    ),
    Scenario(
        "callbacks: foreign thread -> aiter",
        "trio",
        300_000,
        bridge_callback_thread("trio"),
        [
            *bounded_thread_peers("trio"),
            Baseline(
                "run_sync_soon (unb.)",
                trio_run_sync_soon_thread,
                1.0,
                "level (both unbounded)",
                bridge_callback_thread("trio", None),
            ),
        ],
        note="one producer thread calling emit.send per value, capacity 1024",
    ),
]
