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
from .core import CAP, call_soon_threadsafe_thread, culsans_thread, janus_thread, start_thread

_END = object()


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


def trio_run_sync_soon_thread(n: int) -> float:
    """The hand-written trio pattern: ``token.run_sync_soon(send_nowait, v)`` per value."""

    async def go() -> None:
        import trio

        send, receive = trio.open_memory_channel[object](math.inf)
        token = trio.lowlevel.current_trio_token()

        def produce() -> None:
            put = send.send_nowait
            for i in range(n):
                token.run_sync_soon(put, i)
            token.run_sync_soon(put, _END)

        t = start_thread(produce)
        while (await receive.receive()) is not _END:
            pass
        t.join()

    return timed("trio", go)


SCENARIOS = [
    Scenario(
        "callbacks: foreign thread -> aiter",
        "asyncio",
        300_000,
        bridge_callback_thread("asyncio"),
        [
            Baseline("janus", janus_thread, 0.2, ">= 5x janus"),
            Baseline("culsans", culsans_thread("asyncio"), 0.5, ">= 2x culsans"),
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
            Baseline("culsans", culsans_thread("trio"), 0.5, ">= 2x culsans"),
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
