"""Thread storms: 16 producer threads against one consumer with buffer 1.

Under each policy the consumer is cancelled mid-storm: no producer thread
stays blocked, nothing is delivered after the cancellation, no producer sees
anything but the documented outcomes, and every value a send took in is
accounted for (delivered, dropped by the policy, or the one left in the
buffer when the consumer left), each thread's in order.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import anyio
import pytest

import bridges

from .conftest import STRESS

pytestmark = pytest.mark.anyio

THREADS = 16
ROUNDS = 20 if STRESS else 3
PER_THREAD = 5_000
#: one storm takes about a second; this is for a machine under heavy load
ROUND_DEADLINE = 60


@pytest.mark.parametrize("overflow", ["block", "drop_oldest", "drop_newest", "error"])
@pytest.mark.parametrize("stop_after", [1, 500, 5_000])
async def test_storm_cancel_mid_flight(overflow: str, stop_after: int) -> None:
    for _ in range(ROUNDS):
        await _one_storm(overflow, stop_after)


async def _one_storm(overflow: str, stop_after: int) -> None:
    send, receive = bridges.open_channel[tuple[int, int]](1, overflow)
    senders = [send.clone() for _ in range(THREADS)]
    send.close()
    unexpected: list[BaseException] = []
    outcomes: list[str] = []
    lock = threading.Lock()
    go = threading.Event()

    accepted = [0] * THREADS  # per thread: sends that returned (the value was taken in)

    def produce(k: int, s: bridges.ChannelSender[tuple[int, int]]) -> None:
        outcome = "finished"
        go.wait()
        try:
            with s:
                for i in range(PER_THREAD):
                    s.send_blocking((k, i))
                    accepted[k] += 1
        except anyio.BrokenResourceError:
            outcome = "broken"  # documented: the receiver left
        except bridges.BufferOverflowError:
            outcome = "overflow"  # documented: overflow="error" tripped on this value
        except BaseException as exc:
            with lock:
                unexpected.append(exc)
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=produce, args=(k, s)) for k, s in enumerate(senders)]
    for t in threads:
        t.start()
    got: list[tuple[int, int]] = []
    after_cancel: list[tuple[int, int]] = []
    try:
        # each storm has a deadline of its own: a lost wake-up fails here, named,
        # however long the other rounds took on a loaded machine
        with anyio.fail_after(ROUND_DEADLINE), anyio.CancelScope() as scope:
            async with receive:
                go.set()
                try:
                    async for item in receive:
                        got.append(item)
                        if len(got) == stop_after:
                            scope.cancel()  # the consumer is cancelled mid-storm
                except bridges.BufferOverflowError:
                    pass
    except TimeoutError:
        raise AssertionError(
            f"the consumer waited {ROUND_DEADLINE} s with {len(got)} values (a lost "
            f"wake-up?): {receive.stats}"
        ) from None
    # after leaving, the receiver is closed: it says so and yields nothing more
    with pytest.raises(anyio.ClosedResourceError):
        async for item in receive:
            after_cancel.append(item)
    await anyio.to_thread.run_sync(_join_all, threads)
    assert not [t for t in threads if t.is_alive()], "a producer thread stayed blocked"
    assert not unexpected, unexpected
    assert not after_cancel
    assert len(outcomes) == THREADS
    per_thread: dict[int, list[int]] = {k: [] for k in range(THREADS)}
    for k, i in got:
        per_thread[k].append(i)
    stats = receive.stats
    # what was taken in and never delivered: at most the one value the buffer held
    # when the consumer left (and, under the drop policies, the values dropped)
    missing = sum(accepted) - len(got) - stats.dropped
    assert 0 <= missing <= 1, (sum(accepted), len(got), stats.dropped)
    for k, values in per_thread.items():
        if overflow in {"block", "error"}:  # nothing lost: each thread's values are a prefix
            assert values == list(range(len(values))), f"thread {k}: {values[:20]}"
        else:  # values are dropped, never reordered or repeated
            assert values == sorted(set(values)), f"thread {k}: {values[:20]}"
    if overflow == "block":
        assert stats.dropped == 0
    assert stats.high_water <= 1


def _join_all(threads: list[threading.Thread], timeout: float = 10) -> None:
    for t in threads:
        t.join(timeout)


async def test_storm_through_the_core_put_sync() -> None:
    """The hand-off verbs the spokes use, under the same storm."""
    from bridges._buffer import CLOSED, DROPPED, GONE, OVERFLOWED, TAKEN, Handoff
    from bridges._iterator import BufferedIterator

    allowed = {TAKEN, DROPPED, GONE, CLOSED, OVERFLOWED}
    for overflow in ("block", "drop_oldest", "drop_newest", "error"):
        h: Handoff[int] = Handoff(1, overflow)
        seen: set[Any] = set()
        errors: list[BaseException] = []

        remaining = [THREADS]
        lock = threading.Lock()

        def produce(
            put: Callable[[int], Any] = h.put_sync,
            h: Handoff[int] = h,
            seen: set[Any] = seen,
            errors: list[BaseException] = errors,
            remaining: list[int] = remaining,
            lock: threading.Lock = lock,
        ) -> None:
            try:
                for i in range(PER_THREAD):
                    r = put(i)
                    seen.add(r)
                    if r in (GONE, CLOSED):
                        break
            except BaseException as exc:
                errors.append(exc)
            with lock:
                remaining[0] -= 1
                if remaining[0] == 0:
                    h.close()  # the last producer ends the stream

        threads = [threading.Thread(target=produce) for _ in range(THREADS)]
        it = BufferedIterator(h)
        for t in threads:
            t.start()
        n = 0
        async with it:
            try:
                async for _ in it:
                    n += 1
                    if n == 200:
                        break
            except bridges.BufferOverflowError:
                pass
        await anyio.to_thread.run_sync(_join_all, threads)
        assert not errors
        assert seen <= allowed
