"""The long run (``nox -s soak``): tens of millions of values, memory and speed over time.

50M values from a foreign thread through the core (``open_channel``, a
bounded buffer of 1024) and 5M through one representative of every other
spoke, each with a bounded buffer.  The consumer checks every value (order
and count) and samples, a hundred times per run, the process's resident
memory (``VmRSS`` from ``/proc/self/status``) and its clocks.

What must hold, per bridge:

* **memory flat**: after the first tenth of the run (the warm-up: caches,
  free lists and the allocator's arenas fill up there), resident memory never
  grows by more than 10 MB above what it was at the end of that tenth;
* **no slowdown over time**: the throughput of the last tenth is at least
  90% of that of the second tenth.  The second, not the first, because the
  first includes the warm-up.  Throughput is measured in values per second
  of the process's CPU time (all its threads), not of the wall clock: this
  machine is shared, and another process stealing a core for a while would
  look like a slowdown of the wall clock that the bridge did not cause.  A
  bridge that slows down over time (a structure that grows, a scan that gets
  longer) costs more CPU per value and fails this.  The wall-clock figures
  are reported next to the CPU ones.

  The throughput of a tenth is the median of the throughputs of its ten
  hundredths: a hundredth that happened to be scheduled badly (the other
  thread of a two-thread bridge preempted, a collection of the garbage)
  does not decide the comparison, a slowdown that lasts does.

The figures are printed per bridge as it finishes (with or without ``-s``).
``BRIDGES_SOAK_SCALE`` scales every count (``0.01`` for a quick check; the
default is 1: 50M and 5M values).  A tenth that lasts less than 0.1 s of CPU
time is too short to judge its speed (scheduling noise dominates): then the
speed is reported and not judged (quick checks; at the full scale every
bridge's tenths last longer).
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import os
import statistics
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest

import bridges
from bridges import callbacks, channels, ops, streams, threads

SCALE = float(os.environ.get("BRIDGES_SOAK_SCALE", "1"))
CORE_VALUES = max(int(50_000_000 * SCALE), 1000)
SPOKE_VALUES = max(int(5_000_000 * SCALE), 1000)
BUFFER = 1024
#: samples per run (every tenth is a multiple of these)
SAMPLES = 100
MEMORY_BUDGET = 10 * 1024 * 1024
SLOWDOWN_BUDGET = 0.9
#: a tenth shorter than this (CPU seconds) is too short to judge its speed
MIN_TENTH = 0.1

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.soak,
    pytest.mark.timeout(max(3600, int(7200 * SCALE))),
]


def _rss() -> int:
    """The process's resident memory in bytes (``VmRSS``)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


@dataclass
class Meter:
    """Samples (values, wall time, CPU time, RSS) at every hundredth of a run; any thread."""

    total: int
    step: int = 0
    next: int = 0
    points: list[tuple[int, float, float, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.step = max(self.total // SAMPLES, 1)
        self.next = self.step
        self.points.append((0, time.perf_counter(), time.process_time(), _rss()))

    def mark(self, n: int) -> None:
        self.points.append((n, time.perf_counter(), time.process_time(), _rss()))
        self.next += self.step


@dataclass
class Figures:
    name: str
    values: int
    #: values per second, per tenth (see _figures): by the wall clock and by CPU time
    wall: list[float]
    cpu: list[float]
    #: CPU seconds per tenth
    seconds: list[float]
    #: RSS at the end of the first tenth, and the most it grew above that after
    baseline: int
    growth: int

    @property
    def ratio(self) -> float:
        """CPU throughput of the last tenth over that of the second."""
        return self.cpu[-1] / self.cpu[1]

    @property
    def judged(self) -> bool:
        """The second and the last tenth lasted long enough to compare their speeds."""
        return min(self.seconds[1], self.seconds[-1]) >= MIN_TENTH

    def line(self) -> str:
        return (
            f"{self.name:38} {self.values:>11,} values  "
            f"memory +{self.growth / 2**20:5.2f} MB after warm-up "
            f"(rss {self.baseline / 2**20:.0f} MB)  "
            f"cpu/s 2nd {self.cpu[1]:>10,.0f} last {self.cpu[-1]:>10,.0f} ({self.ratio:.2f}x)  "
            f"wall/s 2nd {self.wall[1]:>10,.0f} last {self.wall[-1]:>10,.0f} "
            f"({self.wall[-1] / self.wall[1]:.2f}x)"
            + ("" if self.judged else f"  [speed not judged: tenths under {MIN_TENTH} s]")
        )


def _figures(name: str, meter: Meter) -> Figures:
    """Per tenth, the median of the throughputs of its ten hundredths; memory after warm-up."""
    points = meter.points
    assert len(points) == SAMPLES + 1, f"{name}: {len(points) - 1} samples, expected {SAMPLES}"
    wall, cpu = [], []
    for (n0, w0, c0, _), (n1, w1, c1, _) in itertools.pairwise(points):
        wall.append((n1 - n0) / max(w1 - w0, 1e-9))
        cpu.append((n1 - n0) / max(c1 - c0, 1e-9))
    tenth = SAMPLES // 10
    baseline = points[tenth][3]
    growth = max(rss for _, _, _, rss in points[tenth:]) - baseline
    edges = points[::tenth]
    return Figures(
        name,
        meter.total,
        [statistics.median(wall[i : i + tenth]) for i in range(0, SAMPLES, tenth)],
        [statistics.median(cpu[i : i + tenth]) for i in range(0, SAMPLES, tenth)],
        [c1 - c0 for (_, _, c0, _), (_, _, c1, _) in itertools.pairwise(edges)],
        baseline,
        max(growth, 0),
    )


class _InOrder:
    """Checks that the values arrive in order; samples the meter at every hundredth."""

    def __init__(self, meter: Meter) -> None:
        self.meter = meter
        self.expected = 0
        self.mark = meter.next

    def take(self, v: int) -> None:
        if v != self.expected:
            raise AssertionError(f"value {v} arrived where {self.expected} was due")
        self.expected += 1
        if self.expected == self.mark:
            self.meter.mark(self.expected)
            self.mark = self.meter.next

    def check_all_came(self) -> None:
        total = self.meter.total
        assert self.expected == total, f"{self.expected} values arrived, {total} were sent"


async def _consume(it: AsyncIterator[int], meter: Meter) -> None:
    """Take every value, checking the order; sample the meter at every hundredth."""
    check = _InOrder(meter)
    async for v in it:
        check.take(v)
    check.check_all_came()


async def _numbers(n: int) -> AsyncIterator[int]:
    for i in range(n):
        yield i


# ----------------------------------------------------------------- the bridges


async def _core_open_channel(meter: Meter) -> None:
    """A foreign thread sends with send_blocking; the loop iterates the receiver."""
    send, receive = bridges.open_channel[int](BUFFER)

    def produce() -> None:
        put = send.send_blocking
        with send:
            for i in range(meter.total):
                put(i)

    producer = threading.Thread(target=produce, name="soak-producer")
    async with receive:
        producer.start()
        await _consume(receive, meter)
    await anyio.to_thread.run_sync(producer.join)


async def _callbacks_to_aiter(meter: Meter) -> None:
    """A legacy API calling back from its own thread (emit.send blocks while full)."""
    producers: list[threading.Thread] = []

    def subscribe(emit: callbacks.Emitter[int]) -> Callable[[], None]:
        def produce() -> None:
            send = emit.send
            for i in range(meter.total):
                if not send(i):
                    return
            emit.close()

        producer = threading.Thread(target=produce, name="soak-callback-api")
        producers.append(producer)
        producer.start()
        return lambda: None

    async with callbacks.to_aiter(subscribe, buffer=BUFFER) as it:
        await _consume(it, meter)
    await anyio.to_thread.run_sync(producers[0].join)


async def _rx_to_aiter(meter: Meter) -> None:
    """A cold synchronous Observable run on a thread-pool worker (subscribe_on)."""
    import reactivex
    from reactivex.scheduler import ThreadPoolScheduler

    from bridges import rx

    scheduler = ThreadPoolScheduler(1)
    try:
        obs = reactivex.range(meter.total)
        async with rx.to_aiter(obs, buffer=BUFFER, subscribe_on=scheduler) as it:
            await _consume(it, meter)
    finally:
        await anyio.to_thread.run_sync(scheduler.executor.shutdown)


async def _channels_from_aiter(meter: Meter) -> None:
    """An async generator pumped into a receive channel (the pump task is the block's)."""
    async with channels.from_aiter(_numbers(meter.total), buffer=BUFFER) as receive:
        await _consume(receive, meter)


async def _threads_to_aiter(meter: Meter) -> None:
    """A blocking iterable iterated in a worker thread."""
    async with threads.to_aiter(iter(range(meter.total)), buffer=BUFFER) as it:
        await _consume(it, meter)


async def _threads_from_aiter(meter: Meter) -> None:
    """Sync code (a plain thread) iterating an async generator run in a helper loop."""

    def consume() -> None:
        check = _InOrder(meter)
        with threads.from_aiter(_numbers(meter.total), buffer=BUFFER) as it:
            for v in it:
                check.take(v)
        check.check_all_came()

    await anyio.to_thread.run_sync(consume)


async def _streams_queue(meter: Meter) -> None:
    """queue_from_aiter into an asyncio.Queue(maxsize=1024), queue_to_aiter out of it."""
    queue: asyncio.Queue[int] = asyncio.Queue(BUFFER)
    async with anyio.create_task_group() as tg:
        tg.start_soon(streams.queue_from_aiter, _numbers(meter.total), queue)
        async with streams.queue_to_aiter(queue) as it:
            await _consume(it, meter)


async def _ops_merge(meter: Meter) -> None:
    """Two sources merged (a helper task each); each source's order is checked."""
    half = meter.total // 2

    async def evens() -> AsyncIterator[int]:
        for i in range(half):
            yield 2 * i

    async def odds() -> AsyncIterator[int]:
        for i in range(meter.total - half):
            yield 2 * i + 1

    last = [-2, -1]
    count = 0
    mark = meter.next
    async with ops.merge(evens(), odds()) as it:
        async for v in it:
            parity = v & 1
            if v != last[parity] + 2:
                raise AssertionError(f"value {v} arrived after {last[parity]}")
            last[parity] = v
            count += 1
            if count == mark:
                meter.mark(count)
                mark = meter.next
    assert count == meter.total


@dataclass(frozen=True)
class Bridge:
    name: str
    run: Callable[[Meter], Awaitable[None]]
    values: int
    backends: Iterable[str] = ("asyncio", "trio")


BRIDGES = [
    Bridge("core: open_channel (thread -> loop)", _core_open_channel, CORE_VALUES),
    Bridge("callbacks.to_aiter (thread)", _callbacks_to_aiter, SPOKE_VALUES),
    Bridge("rx.to_aiter (subscribe_on pool)", _rx_to_aiter, SPOKE_VALUES),
    Bridge("channels.from_aiter", _channels_from_aiter, SPOKE_VALUES),
    Bridge("threads.to_aiter", _threads_to_aiter, SPOKE_VALUES),
    Bridge("threads.from_aiter", _threads_from_aiter, SPOKE_VALUES),
    Bridge("streams.queue_{from,to}_aiter", _streams_queue, SPOKE_VALUES, ("asyncio",)),
    Bridge("ops.merge (2 sources)", _ops_merge, SPOKE_VALUES),
]


def _cases() -> list[Any]:
    return [
        pytest.param(bridge, backend, id=f"{bridge.name.split(' ')[0].rstrip(':')}-{backend}")
        for bridge in BRIDGES
        for backend in bridge.backends
    ]


@pytest.mark.parametrize(("bridge", "anyio_backend"), _cases())
async def test_soak(bridge: Bridge, anyio_backend: str, capsys: pytest.CaptureFixture[str]) -> None:
    # The test runner's own objects go to the permanent generation: a full
    # collection then costs what the bridge allocates, not what pytest holds
    # (otherwise one of them landing in a tenth can show as a slowdown).
    gc.collect()
    gc.freeze()
    try:
        meter = Meter(bridge.values)
        await bridge.run(meter)
    finally:
        gc.unfreeze()
    figures = _figures(f"{bridge.name} [{anyio_backend}]", meter)
    with capsys.disabled():
        print(f"\nsoak: {figures.line()}", flush=True)
    assert figures.growth <= MEMORY_BUDGET, (
        f"{bridge.name}: memory grew {figures.growth / 2**20:.1f} MB after the warm-up "
        f"(budget {MEMORY_BUDGET / 2**20:.0f} MB)"
    )
    assert not figures.judged or figures.ratio >= SLOWDOWN_BUDGET, (
        f"{bridge.name}: the last tenth ran at {figures.ratio:.2f}x the throughput of the "
        f"second (CPU time; budget {SLOWDOWN_BUDGET}x); per tenth: "
        f"{[round(x) for x in figures.cpu]}"
    )
