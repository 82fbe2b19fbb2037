"""The parking lot: FIFO, release, withdrawal, the one-party slot, the loop parker, per backend."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from bridges._backend import loop_parker
from bridges._parking import Parked, ParkingLot, Slot, wake_all

from .sources import cancel_once_waiting

pytestmark = pytest.mark.anyio


def test_a_lot_releases_in_the_order_parties_parked() -> None:
    lot = ParkingLot()
    parties = [Parked.thread(i) for i in range(3)]
    lot.extend(parties)
    assert lot.unpark(parties[1])
    assert not lot.unpark(parties[1])  # already out: it was woken (or gave up) before
    woken = lot.release_all()
    assert woken == [parties[0].waiter, parties[2].waiter]
    assert not lot
    wake_all(woken)
    assert parties[0].waiter.wait(0) and parties[2].waiter.wait(0)
    assert not parties[1].waiter.wait(0)


def test_withdraw_takes_out_only_the_owners_parties_marked() -> None:
    lot = ParkingLot()
    mine, theirs = object(), object()
    a, b, c = Parked.thread(1, mine), Parked.thread(2, theirs), Parked.thread(3, mine)
    lot.extend([a, b, c])
    assert lot.withdraw(mine) == [a.waiter, c.waiter]
    assert list(lot) == [b]
    assert a.withdrawn and c.withdrawn and not b.withdrawn


def test_a_thread_party_wakes_from_another_thread() -> None:
    party = Parked.thread()
    threading.Timer(0, party.waiter.wake).start()
    assert party.waiter.wait(5.0)


async def _parks_until_woken(waiter: Any) -> None:
    """A task parked on ``waiter`` stays parked until ``waiter.wake()``, which wakes it."""
    woken = anyio.Event()

    async def parked() -> None:
        await waiter.park()
        woken.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(parked)
            await anyio.wait_all_tasks_blocked()
            assert not woken.is_set(), "woken without a wake()"
            waiter.wake()
    assert woken.is_set()


async def test_a_slot_wakes_its_parked_task_and_ignores_a_wake_with_nobody_there() -> None:
    slot = Slot()
    slot.wake()  # nobody parked: nothing happens, and no wake-up is kept for later
    await _parks_until_woken(slot)


@pytest.mark.parametrize("make", [Slot, loop_parker], ids=["slot", "loop_parker"])
async def test_a_wake_after_a_cancelled_park_is_not_kept_for_the_next_one(
    make: Callable[[], Any],
) -> None:
    waiter = make()
    with anyio.fail_after(5):
        await cancel_once_waiting(waiter.park)
    waiter.wake()  # the cancelled task is gone: this wakes nobody (and does not fail)
    await _parks_until_woken(waiter)  # the earlier wake() was not kept


async def test_a_loop_parker_serves_wait_after_wait_and_ignores_a_wake_with_nobody_there() -> None:
    parker = loop_parker()
    parker.wake()  # nobody parked: nothing happens, and no wake-up is kept for later
    rounds: list[int] = []

    async def waiter() -> None:
        for i in range(3):
            await parker.park()
            rounds.append(i)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            for i in range(3):
                await anyio.wait_all_tasks_blocked()
                assert rounds == list(range(i))
                parker.wake()
                parker.wake()  # a second wake before the task ran wakes nothing more
    assert rounds == [0, 1, 2]
