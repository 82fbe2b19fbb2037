"""Interleavings of the hand-off that a storm hits only rarely, forced step by step.

Each test stops one party at a chosen point (a hook that runs while the other
party finishes a step on its own thread), then checks that nobody is left
waiting.  Threads meet on events, never on sleeps, and every wait has a
deadline: a lost wake-up fails the test instead of hanging it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import anyio
import pytest

import bridges
from bridges._buffer import TAKEN, Handoff
from bridges._parking import ParkingLot

#: how long a step may take before the test calls it lost (the steps take microseconds)
DEADLINE = 5.0


class _PauseOnRegister(ParkingLot):
    """A waiter list that runs ``hook`` when the first waiter is added to it.

    Put in place of ``Handoff._getters``, the hook runs in the consumer
    after it has found the buffer empty and decided to park, at the moment it
    makes its waiter visible to producers (with the hand-off's lock held).
    Producer fast paths take no lock, so a producer can run its whole put in
    that window: on CPython 3.10 the interpreter may hand the GIL to another
    thread right there (the jump after ``self._state != _OPEN`` checks for a
    thread switch), which is how a thread storm got there.
    """

    def __init__(self, hook: Callable[[], None]) -> None:
        super().__init__()
        self._hook: Callable[[], None] | None = hook

    def append(self, waiter: Any) -> None:
        hook, self._hook = self._hook, None
        if hook is not None:
            hook()
        super().append(waiter)


def _run_in_thread(fn: Callable[[], None]) -> tuple[threading.Thread, threading.Event]:
    done = threading.Event()

    def run() -> None:
        try:
            fn()
        finally:
            done.set()

    return threading.Thread(target=run), done


@pytest.mark.anyio
async def test_get_takes_a_value_put_while_it_registers() -> None:
    """A value put (lock-free) while ``get()`` registers its waiter is delivered."""
    h: Handoff[str] = Handoff(1, "block")
    results: list[object] = []
    producer, produced = _run_in_thread(lambda: results.append(h.put_sync("v")))

    def hook() -> None:
        producer.start()
        assert produced.wait(DEADLINE), "the producer did not finish its put"

    h._getters = _PauseOnRegister(hook)
    try:
        with anyio.fail_after(DEADLINE):
            value = await h.get()
    except TimeoutError:
        pytest.fail("get() stayed parked with a value in the buffer (lost wake-up)")
    finally:
        producer.join(DEADLINE)
    assert results == [TAKEN]
    assert value == "v"


def test_get_sync_takes_a_value_put_while_it_registers() -> None:
    """The same window in the blocking consumer, ``get_sync()``."""
    h: Handoff[str] = Handoff(1, "block")
    results: list[object] = []
    got: list[object] = []
    producer, produced = _run_in_thread(lambda: results.append(h.put_sync("v")))

    def hook() -> None:
        producer.start()
        assert produced.wait(DEADLINE), "the producer did not finish its put"

    def consume() -> None:
        try:
            got.append(h.get_sync())
        except StopIteration:
            got.append(StopIteration)

    h._getters = _PauseOnRegister(hook)
    consumer, consumed = _run_in_thread(consume)
    consumer.start()
    lost = not consumed.wait(DEADLINE)
    if lost:
        h.leave()  # release the parked consumer so that the test ends
    consumer.join(DEADLINE)
    producer.join(DEADLINE)
    assert not lost, "get_sync() stayed parked with a value in the buffer (lost wake-up)"
    assert results == [TAKEN]
    assert got == ["v"]


@pytest.mark.anyio
async def test_storm_deadlock_receiver_parked_senders_blocked() -> None:
    """The shape the thread storm hung in, through ``open_channel``.

    The receiver parks just as a blocking sender fills the one free place;
    the sender's next value then finds the channel full and blocks.  Before
    the fix both stayed parked for good: the value in the channel was never
    announced to the receiver, and only the receiver could make room.
    """
    send, receive = bridges.open_channel[int](1, "block")
    first_in = threading.Event()
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            with send:
                send.send_blocking(1)  # the free place: lock-free, sees no waiter
                first_in.set()
                send.send_blocking(2)  # full: blocks until the receiver makes room
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    producer, _ = _run_in_thread(produce)

    def hook() -> None:
        producer.start()
        assert first_in.wait(DEADLINE), "the sender did not put its first value"

    receive._h._getters = _PauseOnRegister(hook)
    got: list[int] = []
    try:
        with anyio.fail_after(DEADLINE):
            async for item in receive:
                got.append(item)
    except TimeoutError:
        pytest.fail(
            f"receiver parked with {len(receive._h._items)} value(s) in the channel and "
            f"{len(receive._h._putters)} sender(s) blocked (lost wake-up); got {got}"
        )
    finally:
        await receive.aclose()  # releases a blocked sender if the test failed
        await anyio.to_thread.run_sync(producer.join, DEADLINE)
    assert not producer.is_alive()
    assert got == [1, 2]
    assert not errors
