"""The parking lot: where a party that cannot go on now waits for its turn.

Every blocking operation of the core has one shape: *the no-wait call, then
park until woken*.  A producer offers its value; if there is no room it
parks, carrying the value.  A consumer looks for a value; if there is none it
parks.  Whoever changes the state (a consumer that frees a place, a producer
that brings a value, the end of the stream) takes parked parties out of the
lot, in the order they parked, decides under the hand-off's lock what each
one gets (a value, its value taken, a withdrawal), and wakes them after the
lock is released.  A woken party never races a newcomer for what it was
given: the waker has handed it over already.  That is how first come, first
served (R20) holds with no extra bookkeeping, and why it lives here, once.

A party parks with the waiter of its own kind: an async task on any loop
(asyncio, uvloop, trio) gets one from `_backend.async_waiter`, a plain
thread a `ThreadWaiter` (with a timeout).  Wake-ups are thread-safe and
idempotent, so the waker never needs to know which kind it wakes.

A blocking operation is written once, as *steps*: a generator that makes
the no-wait call, parks a party when it must wait and yields it.  A driver
waits on each yielded party and sends back whether it was woken (False:
a thread's timeout ran out); `park_task` drives the steps for an async task,
`park_thread` for a plain thread.  An exception while waiting (a
cancellation, a ``KeyboardInterrupt``) is thrown into the steps at the
``yield``, so they take their party out of the lot.

`ParkingLot` is a ``deque``: the hot paths ask ``if lot:`` at C speed, and
the lot's own methods are for the slow paths only.  `Slot` is the one-party
case (a consumer waiting for its own helper task), used by the pipeline
helpers.
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ._backend import ThreadWaiter, async_waiter

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Generator, Iterable
    from typing import TypeAlias

    from ._backend import AsyncWaiter

    #: what a parked party waits on: its own kind (a task on any loop, or a thread)
    Waiter: TypeAlias = "AsyncWaiter | ThreadWaiter"

__all__ = ["Parked", "ParkingLot", "Slot", "park_task", "park_thread", "wake_all"]

R = TypeVar("R")


class Parked:
    """One party parked in a `ParkingLot`.

    A parked consumer is *served* with a value (`item`); a parked producer
    carries its value in `item` and is served when the value is taken.
    Either is *withdrawn* when its own end (`owner`) is closed while it
    waits, and otherwise woken when the stream ends, to look again.
    """

    __slots__ = ("item", "owner", "served", "waiter", "withdrawn")

    def __init__(self, waiter: Waiter, item: Any, owner: object) -> None:
        # Any: a task awaits ``wait()``, a thread calls ``wait(timeout)``; each
        # party knows its own kind, the wakers only call ``wake()``
        self.waiter: Any = waiter
        self.item = item
        self.owner = owner
        self.served = False
        self.withdrawn = False

    @classmethod
    def task(cls, item: Any = None, owner: object = None) -> Parked:
        """A party for the calling async task (on whatever loop runs it)."""
        return cls(async_waiter(), item, owner)

    @classmethod
    def thread(cls, item: Any = None, owner: object = None) -> Parked:
        """A party for the calling thread (one that runs no event loop)."""
        return cls(ThreadWaiter(), item, owner)


class _Run(Generic[R]):
    """The steps of one blocking operation: the party they parked, or their result."""

    __slots__ = ("parked", "result", "steps")

    def __init__(self, steps: Generator[Parked, bool, R]) -> None:
        self.steps = steps
        self.parked: Parked | None = None
        self.result: R
        self.go_on(None)

    def go_on(self, outcome: bool | BaseException | None) -> None:
        """Resume the steps after a wait: woken (True), timed out (False), or the
        exception that interrupted it, raised at their ``yield`` (None: start)."""
        try:
            if outcome is None:
                self.parked = next(self.steps)
            elif isinstance(outcome, BaseException):
                self.parked = self.steps.throw(outcome)
            else:
                self.parked = self.steps.send(outcome)
        except StopIteration as done:
            self.parked = None
            self.result = done.value


async def park_task(
    steps: Generator[Parked, bool, R],
    wait: Callable[[Parked], Awaitable[bool]] | None = None,
) -> R:
    """Run a blocking operation's ``steps`` in the calling async task (any loop).

    Each party the steps yield waits on its waiter (or on ``wait(party)``,
    which says whether it was woken); what the steps return is returned.
    """
    run = _Run(steps)
    while run.parked is not None:
        outcome: bool | BaseException = True
        try:
            if wait is None:
                await run.parked.waiter.wait()
            else:
                outcome = await wait(run.parked)
        except BaseException as exc:
            outcome = exc
        run.go_on(outcome)
    return run.result


def park_thread(steps: Generator[Parked, bool, R], timeout: float | None = None) -> R:
    """Run a blocking operation's ``steps`` on this thread (one that runs no event loop).

    Each party the steps yield waits on its waiter; the steps are sent False
    once ``timeout`` seconds (for the whole operation) have run out.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    run = _Run(steps)
    while run.parked is not None:
        remaining = None if deadline is None else deadline - time.monotonic()
        try:
            outcome: bool | BaseException = run.parked.waiter.wait(remaining)
        except BaseException as exc:
            outcome = exc
        run.go_on(outcome)
    return run.result


def wake_all(waiters: Iterable[Waiter]) -> None:
    """Wake each waiter (after the lock that chose them is released)."""
    for w in waiters:
        w.wake()


class ParkingLot(deque[Parked]):
    """Parties waiting in the order they parked; every method is called under the
    owner's lock and returns the waiters to wake, for `wake_all` after the lock."""

    __slots__ = ()

    def unpark(self, parked: Parked) -> bool:
        """Take ``parked`` out (it gave up: cancelled, timed out). False if it was woken first."""
        try:
            self.remove(parked)
        except ValueError:
            return False
        return True

    def release_all(self) -> list[Waiter]:
        """Empty the lot: every party wakes to look again (the stream ended)."""
        woken = [p.waiter for p in self]
        self.clear()
        return woken

    def withdraw(self, owner: object) -> list[Waiter]:
        """Take out the parties of ``owner``, marked withdrawn (their end was closed)."""
        mine = [p for p in self if p.owner is owner]
        for p in mine:
            self.remove(p)
            p.withdrawn = True
        return [p.waiter for p in mine]


class Slot:
    """A parking place for one async task, woken by another task of the same loop.

    For a consumer that waits for its own helper task (a prefetched page, a
    batch that fills): `park` until the helper calls `wake`.  A `wake` with
    nobody parked does nothing, so the consumer looks at its state before it
    parks again.  (`merge`, which parks once per value, uses the reusable
    `_backend.loop_parker` instead.)
    """

    __slots__ = ("_waiter",)

    def __init__(self) -> None:
        self._waiter: AsyncWaiter | None = None

    def wake(self) -> None:
        """Wake the parked task, if there is one."""
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.wake()

    async def park(self) -> None:
        """Wait until `wake` is called; cancellation leaves the slot empty."""
        waiter = self._waiter = async_waiter()
        try:
            await waiter.wait()
        finally:
            if self._waiter is waiter:
                self._waiter = None
