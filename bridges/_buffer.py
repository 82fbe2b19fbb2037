"""The hand-off: a bounded, thread-safe buffer between producers and consumers.

This is the only module with locks and cross-thread wake-ups.  Every spoke
translates its ecosystem's signals into the four verbs here (put, close,
fail, consumer-gone) and back.

Design notes (why it is fast):

* ``collections.deque`` append/popleft are atomic under the GIL.  Producers
  take the lock (to keep the capacity exact with many producer threads);
  the consumer pops without it and takes the lock only to park.
* A parked party is woken only when somebody is actually parked: a busy
  consumer costs producers no wake-ups at all, and a parked consumer is woken
  once per batch, not once per value.
* Blocked producers resume when the buffer has drained to half its capacity
  (a low-water mark, like asyncio transports and Node streams), so a fast
  producer refills in bursts instead of one wake-up per freed slot.
"""

from __future__ import annotations

import enum
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar

import anyio

from ._backend import in_event_loop_thread, in_trio_run
from ._parking import Parked, ParkingLot, park_task, park_thread, wake_all

if TYPE_CHECKING:
    from collections.abc import Callable, Generator

    from ._parking import Waiter

T = TypeVar("T")

__all__ = [
    "BufferOverflowError",
    "Handoff",
    "Overflow",
    "Result",
    "State",
    "Stats",
    "WithdrawnError",
    "validate_buffer",
    "validate_timeout",
]


class Overflow(str, enum.Enum):
    """What a full buffer does with one more value.

    Accepts its plain string values wherever an ``overflow=`` argument is
    taken: ``overflow="drop_oldest"`` is ``overflow=Overflow.DROP_OLDEST``.
    """

    #: Make the producer wait for room (a foreign thread blocks, a task awaits);
    #: a producer on the event-loop thread, which must never block, uses the
    #: source's pause/resume hooks if it has them, else fails the stream with
    #: [`BufferOverflowError`][bridges.BufferOverflowError].
    BLOCK = "block"
    #: Discard the oldest buffered value to make room; the new value is taken.
    DROP_OLDEST = "drop_oldest"
    #: Discard the new value; the buffered ones stay.
    DROP_NEWEST = "drop_newest"
    #: Fail the stream: the consumer gets the buffered values, then
    #: [`BufferOverflowError`][bridges.BufferOverflowError].
    ERROR = "error"

    @classmethod
    def parse(cls, value: Overflow | str) -> Overflow:
        """Validate an ``overflow=`` argument (an [`Overflow`][bridges.Overflow] or its string)."""
        if isinstance(value, Overflow):
            return value
        if isinstance(value, str):
            try:
                return cls(value)
            except ValueError:
                pass
            raise ValueError(
                f"overflow={value!r} is not a policy; use one of "
                + ", ".join(repr(m.value) for m in cls)
            )
        raise TypeError(
            f"overflow must be an Overflow or one of its strings, not {type(value).__name__}"
        )


class BufferOverflowError(Exception):
    """A bounded buffer could not take a value and the policy forbids dropping it.

    Raised at the consumer (after the values buffered before the overflow)
    when ``overflow="error"`` trips, or when ``overflow="block"`` is asked of
    a producer that cannot wait (sync code on the event-loop thread with no
    pause/resume hooks).
    """


@dataclass(frozen=True)
class Stats:
    """A snapshot of a buffer's counters."""

    buffered: int
    """Values held right now (taken from the producer, not yet delivered)."""
    high_water: int
    """The most values ever held at once; never above the capacity, except
    after ``pause()`` when a source honours pause late (the overshoot shows here).
    """
    delivered: int
    """Values handed to the consumer."""
    dropped: int
    """Values discarded by ``drop_oldest`` / ``drop_newest``."""
    capacity: int | None
    """The capacity (``None``: unbounded)."""
    pauses: int = 0
    """How many times the source was asked to pause."""
    waiting_senders: int = 0
    """Producers parked for room right now (a blocked ``send``), in the order they wait."""
    waiting_receivers: int = 0
    """Consumers parked for a value right now (a waiting ``receive``)."""
    open_senders: int = 1
    """Send ends not yet closed (clones count one each; 0 once the stream ended)."""
    open_receivers: int = 1
    """Receive ends not yet closed (clones count one each; 0 once the consumer side left)."""


def validate_buffer(buffer: object, *, allow_none: bool = True) -> int | None:
    """Check a ``buffer=`` argument: an int >= 0, or None (unbounded) when allowed."""
    if buffer is None:
        if allow_none:
            return None
        raise ValueError("buffer=None (unbounded) is not allowed here; give an int >= 0")
    if isinstance(buffer, bool) or not isinstance(buffer, int):
        raise TypeError(
            f"buffer must be an int >= 0 or None for unbounded, not {type(buffer).__name__}"
        )
    if buffer < 0:
        raise ValueError(f"buffer must be >= 0 (0 is a rendezvous), not {buffer}")
    return buffer


def validate_timeout(timeout: object) -> float | None:
    """Check a ``timeout=`` argument: seconds as an int or float, or None (no limit).

    An infinite timeout is no limit (None); zero or less times out at once.
    """
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(
            "timeout must be a number of seconds, or None for no limit, "
            f"not {type(timeout).__name__}"
        )
    if timeout != timeout:
        raise ValueError("timeout must be a number of seconds, or None for no limit, not nan")
    if timeout == float("inf"):
        return None
    return float(timeout)


class Result(enum.IntEnum):
    """What an offer of one value to a `Handoff` did with it.

    Compare members by identity (``result is TAKEN``); ask the predicates
    (`refused`) instead of relying on the order of the values.  ``TAKEN`` is
    the only false member, so ``if result:`` singles out the rare paths.
    """

    #: The value is in the buffer (or handed to a waiting consumer).
    TAKEN = 0
    #: ``drop_newest``: the buffer was full and the value was discarded (counted).
    DROPPED = 1
    #: ``block``: no room now; only the no-wait calls return it (the waits park).
    FULL = 2
    #: The producer side closed or failed the stream: not sent.
    CLOSED = 3
    #: The consumer side left: not sent, and nothing will be delivered any more.
    GONE = 4
    #: ``overflow="error"`` tripped on this value (or R8 failed the stream): not sent.
    OVERFLOWED = 5
    #: The producer's own end was closed while it waited: not sent.
    WITHDRAWN = 6

    @property
    def refused(self) -> bool:
        """True when the stream takes no more values: the producer should stop.

        ``CLOSED``, ``GONE``, ``OVERFLOWED`` and ``WITHDRAWN``; not ``TAKEN``,
        ``DROPPED`` (a drop policy at work) or ``FULL`` (wait and retry).
        """
        return self in _REFUSED


class State(enum.IntEnum):
    """Where a `Handoff` is in its life; only ever moves forward (``OPEN`` is the only
    false member)."""

    #: Values are taken.
    OPEN = 0
    #: Completed or failed by the producer side; buffered values are still delivered.
    CLOSED = 1
    #: The consumer side left; nothing will be delivered any more.
    GONE = 2


TAKEN: Final = Result.TAKEN
DROPPED: Final = Result.DROPPED
FULL: Final = Result.FULL
CLOSED: Final = Result.CLOSED
GONE: Final = Result.GONE
OVERFLOWED: Final = Result.OVERFLOWED
WITHDRAWN: Final = Result.WITHDRAWN
_REFUSED: Final = frozenset({CLOSED, GONE, OVERFLOWED, WITHDRAWN})

# module-level aliases: the hot paths compare without an attribute lookup
_OPEN: Final = State.OPEN
_CLOSED: Final = State.CLOSED
_GONE: Final = State.GONE


class WithdrawnError(Exception):
    """A parked consumer's own end was closed while it waited (see `Handoff.withdraw`)."""


#: the "value" of a producer parked for room only (``wait_room``), which has none yet
_ROOM: Any = object()
#: what a consumer's steps return at the end of the stream (each driver raises its own stop)
_END: Any = object()


def _r8_message(capacity: int | None) -> str:
    return (
        f'buffer full ({capacity} values) under overflow="block", and the producer runs on '
        "the event-loop thread, which must never block. Fixes: give pause/resume hooks "
        "so the source can be slowed, produce from another thread (it will block "
        'there), raise buffer=, or choose overflow="drop_oldest"/"drop_newest"'
    )


class Handoff(Generic[T]):
    """A bounded buffer between any number of producers and consumers.

    Producers may be async tasks on any loop (`put`), sync code on
    another thread (`put_sync`, blocking under ``block``), or sync code
    on an event-loop thread (`put_sync`, never blocking: R8).
    Consumers are async tasks on any loop (`get`) or plain threads
    (`get_sync`).

    Waiting is first come, first served: parked consumers are handed values
    in the order they parked (a value put while a consumer waits goes to that
    consumer), and parked producers' values enter the buffer in the order
    they parked, before any value put later.

    ``linger`` (seconds, bounded buffers only) is for a producer that hands
    values over in bursts from another thread: a consumer that ran dry right
    after a wake-up that found more than one value waits up to ``linger``
    seconds while the producer appends without waking it, and is woken early
    when the buffer fills or the stream ends.  After a wake-up that found one
    value (the producer is slow) the next value wakes it at once.  Every value
    is in the buffer the moment it is put, so a producer that stalls in the
    middle of a burst holds nothing back for longer than ``linger``.
    """

    __slots__ = (
        "__weakref__",
        "_cap",
        "_debt",
        "_delivered",
        "_dropped",
        "_ended",
        "_exc",
        "_gate",
        "_getters",
        "_gone_hooks",
        "_handed",
        "_high_water",
        "_items",
        "_linger",
        "_linger_next",
        "_lingering",
        "_lock",
        "_low",
        "_low_water",
        "_overflow",
        "_pause",
        "_paused",
        "_pauses",
        "_putters",
        "_receivers",
        "_resume",
        "_senders",
        "_slots",
        "_state",
    )

    def __init__(
        self,
        buffer: int | None = 64,
        overflow: Overflow | str = Overflow.BLOCK,
        *,
        pause: Callable[[], object] | None = None,
        resume: Callable[[], object] | None = None,
        low_water: int | None = None,
        linger: float | None = None,
    ) -> None:
        self._cap = validate_buffer(buffer)
        self._overflow = Overflow.parse(overflow)
        if self._cap == 0 and self._overflow is Overflow.DROP_OLDEST:
            raise ValueError(
                'overflow="drop_oldest" needs buffer >= 1 (buffer=1 keeps only the latest)'
            )
        if (pause is None) != (resume is None):
            raise ValueError("pause and resume hooks come as a pair: give both or neither")
        if pause is not None and not (callable(pause) and callable(resume)):
            raise TypeError("pause and resume must be callables taking no arguments")
        if pause is not None and self._cap is None:
            raise ValueError("pause/resume hooks need a bounded buffer (an int buffer=)")
        if low_water is None:
            low_water = (self._cap or 0) // 2
        elif isinstance(low_water, bool) or not isinstance(low_water, int):
            raise TypeError(f"low_water must be an int, not {type(low_water).__name__}")
        elif not 0 <= low_water < max(self._cap or 0, 1):
            raise ValueError(
                f"low_water must be >= 0 and below buffer ({self._cap}), not {low_water}"
            )
        self._low_water = low_water
        if linger is not None and (
            isinstance(linger, bool) or not isinstance(linger, (int, float)) or not linger > 0
        ):
            raise ValueError(f"linger must be a number of seconds > 0, or None, not {linger!r}")
        self._linger = linger
        self._linger_next = False  # the last wait found the producer fast: linger next time
        self._lingering = False  # a consumer is parked and collecting a chunk
        # parked producers' values enter the buffer at or below this many values
        self._low = -1 if self._cap is None else self._cap // 2
        # the consumer looks at producers / the pause state only at or below this
        self._gate = max(self._low, self._low_water)
        self._items: deque[T] = deque()
        # One token per free place (``None`` when unbounded).  Producers pop a
        # token before appending and the consumer returns one after popping a
        # value: both atomic, so the capacity holds with no lock on either side.
        self._slots: deque[None] | None = None if self._cap is None else deque([None] * self._cap)
        # values taken without a token (pause overshoot, rendezvous hand-off):
        # the consumer repays these first
        self._debt = 0
        self._lock = threading.Lock()
        self._getters = ParkingLot()  # consumers waiting for a value
        self._putters = ParkingLot()  # producers waiting for room, with their values
        # consumers served with a value they have not returned yet (it still
        # holds its place: R3), in the order they were served
        self._handed: deque[Parked] = deque()
        self._state = _OPEN
        self._exc: BaseException | None = None
        self._high_water = 0
        self._delivered = 0
        self._dropped = 0
        self._pause = pause
        self._resume = resume
        self._paused = False
        self._pauses = 0
        self._gone_hooks: list[Callable[[], object]] = []
        self._senders = 1
        self._receivers = 1
        #: set once get() has raised the end (or the error) to a consumer
        self._ended = False

    # ------------------------------------------------------------------ info

    @property
    def capacity(self) -> int | None:
        return self._cap

    @property
    def overflow(self) -> Overflow:
        return self._overflow

    @property
    def stats(self) -> Stats:
        return Stats(
            buffered=len(self._items) + len(self._handed),
            high_water=self._high_water,
            delivered=self._delivered,
            dropped=self._dropped,
            capacity=self._cap,
            pauses=self._pauses,
            waiting_senders=len(self._putters),
            waiting_receivers=len(self._getters),
            open_senders=self._senders if self._state == _OPEN else 0,
            open_receivers=self._receivers if self._state != _GONE else 0,
        )

    @property
    def state(self) -> State:
        """Where the stream is: `State` ``OPEN``, ``CLOSED`` or ``GONE``."""
        return self._state

    @property
    def ended(self) -> bool:
        """True once a consumer has been given the end (or the producer's error)."""
        return self._ended

    def take_end(self) -> BaseException | None:
        """The end, for a consumer that found no value after the stream closed (no waiting).

        Returns the producer's exception, once (its later calls return None),
        or None for a clean end; from then on `ended` is True.  The no-wait
        counterpart of the end that `get` raises.
        """
        with self._lock:
            exc, self._exc = self._exc, None
            self._ended = True
        return exc

    @property
    def open(self) -> bool:
        """True until the producer side closes or fails it, or the consumer leaves."""
        return self._state == _OPEN

    def is_open(self) -> bool:
        """[`open`][bridges.testing.PushHarness.open], as a call: for loops whose own calls may end
        the stream meanwhile."""
        return self._state == _OPEN

    @property
    def consumer_gone(self) -> bool:
        return self._state == _GONE

    def on_consumer_gone(self, hook: Callable[[], object]) -> None:
        """Call ``hook()`` once when the consumer side leaves (on the thread that leaves)."""
        with self._lock:
            if self._state != _GONE:
                self._gone_hooks.append(hook)
                return
        hook()

    # ------------------------------------------------------------ the ends

    def add_sender(self) -> None:
        """One more producer end (a clone): the stream ends when the last one is dropped."""
        with self._lock:
            self._senders += 1

    def drop_sender(self, exc: BaseException | None = None) -> bool:
        """One producer end is done; the last one ends the stream (with ``exc``, if given).

        True when this ended the stream.
        """
        with self._lock:
            self._senders -= 1
            last = self._senders <= 0
        return last and self._finish(exc)

    def add_receiver(self) -> None:
        """One more consumer end (a clone): the consumer side leaves when the last one does."""
        with self._lock:
            self._receivers += 1

    def drop_receiver(self) -> bool:
        """One consumer end is done; the last one leaves (`leave`). True if it left."""
        with self._lock:
            self._receivers -= 1
            last = self._receivers <= 0
        return last and self.leave()

    def withdraw(self, owner: object) -> None:
        """``owner``'s end was closed: its parked calls wake up withdrawn, their values not sent.

        A parked `put` of ``owner`` returns ``WITHDRAWN``; a parked
        `get` raises `WithdrawnError`.  Values already taken stay taken.
        """
        with self._lock:
            woken = self._getters.withdraw(owner) + self._putters.withdraw(owner)
        wake_all(woken)

    # ------------------------------------------------------------- producers

    def _offer(self, item: T, parked: Parked | None) -> Result:
        """Try to take ``item``; on FULL park ``parked`` (if given) atomically."""
        # Fast path, no lock: take a slot token (an atomic deque.pop), then append.
        # Producers parked before this one go first: then the locked path.
        slots = self._slots
        if slots and not self._putters:
            try:
                slots.pop()
            except IndexError:
                took = False
            else:
                took = self._state == _OPEN
                if not took:
                    slots.append(None)
        else:
            took = self._cap is None and self._state == _OPEN
        if took:
            items = self._items
            items.append(item)
            n = len(items)
            if n > self._high_water:
                self._high_water = n
            if self._getters:
                self._wake_getters()
            return TAKEN
        while True:
            result = self._offer_locked(item, parked)
            if result is not None:
                return result
            # A slot token is on its way back: the consumer popped a value on
            # another thread and is between two steps.  Let it finish.
            time.sleep(0)

    def _offer_locked(self, item: T, parked: Parked | None) -> Result | None:
        woken: list[Waiter] = []
        with self._lock:
            state = self._state
            if state != _OPEN:
                return GONE if state == _GONE else CLOSED
            items = self._items
            cap = self._cap
            slots = self._slots
            if self._putters and self._overflow is Overflow.BLOCK:
                if parked is not None:  # behind the producers that parked first
                    self._putters.append(parked)
                return FULL
            try:
                if slots is not None:
                    slots.pop()
            except IndexError:
                assert cap is not None  # only bounded buffers have slot tokens
                if self._getters and not items:
                    # a consumer waits for this very value (rendezvous, or every
                    # place held by values handed out): it is not buffered
                    self._debt += 1
                elif len(items) + len(self._handed) - self._debt < cap:
                    return None  # not full: a token is in flight (see the caller)
                elif self._overflow is Overflow.BLOCK:
                    if parked is not None:
                        self._putters.append(parked)
                    return FULL
                elif self._overflow is Overflow.DROP_OLDEST:
                    if items:
                        items.popleft()  # the new value takes the dropped one's place
                    elif self._handed:
                        # every place is held by a value handed to a consumer that
                        # has not run yet: that one is the oldest; it gets this instead
                        self._handed[0].item = item
                        self._dropped += 1
                        return TAKEN
                    else:
                        return None  # the consumer took it just now: retry
                    self._dropped += 1
                elif self._overflow is Overflow.DROP_NEWEST:
                    self._dropped += 1
                    return DROPPED
                else:
                    self._state = _CLOSED
                    self._exc = BufferOverflowError(
                        f'buffer full ({cap} values) under overflow="error"; raise buffer= '
                        'or choose overflow="block", "drop_oldest" or "drop_newest"'
                    )
                    woken = self._getters.release_all()
                    wake_all(woken)
                    return OVERFLOWED
            items.append(item)
            n = len(items)
            if n > self._high_water and (cap != 0 or not self._getters):
                # a rendezvous hand-off goes straight to a waiting consumer: not held
                self._high_water = n
            if self._getters:
                woken = self._serve_locked()
        wake_all(woken)
        return TAKEN

    def _serve_locked(self) -> list[Waiter]:
        """Hand buffered values to parked consumers, first come first served (lock held)."""
        woken: list[Waiter] = []
        getters = self._getters
        items = self._items
        while getters and items:
            g = getters.popleft()
            g.item = items.popleft()
            g.served = True
            self._handed.append(g)
            woken.append(g.waiter)
        return woken

    def _wake_getters(self) -> None:
        """After values were appended without the lock: serve the parked consumers."""
        if self._lingering and self._slots:
            return  # a lingering consumer is woken by its timer, a full buffer or the end
        with self._lock:
            woken = self._serve_locked()
        wake_all(woken)

    def put_nowait(self, item: T) -> Result:
        """Offer ``item`` without waiting: TAKEN, DROPPED, FULL, CLOSED, GONE or OVERFLOWED."""
        return self._offer(item, None)

    def put_sync(self, item: T, timeout: float | None = None, owner: object = None) -> Result:
        """Offer ``item`` from sync code on any thread.

        On an event-loop thread this never blocks: with pause/resume hooks
        the value that fills the buffer calls the pause hook (values that
        still arrive are kept), and without them a full buffer under
        ``block`` fails the stream with [`BufferOverflowError`][bridges.BufferOverflowError] (R8).
        On any other thread it parks (behind the producers parked before it)
        until its value is taken, raising ``TimeoutError`` after ``timeout``
        seconds (the value withdrawn).
        """
        slots = self._slots  # the fast path of _offer, inlined: the hot loop of threads
        if slots and not self._putters:
            try:
                slots.pop()
            except IndexError:
                pass
            else:
                if self._state != _OPEN:  # looked at after the token: leave() may reset it
                    slots.append(None)
                    return GONE if self._state == _GONE else CLOSED
                items = self._items
                items.append(item)
                n = len(items)
                if n > self._high_water:
                    self._high_water = n
                if self._getters:
                    self._wake_getters()
                if not slots and self._pause is not None:
                    self._filled_on_loop()
                return TAKEN
        result = self._offer(item, None)
        if result is not FULL:
            if result is TAKEN and self._pause is not None and not self._slots:
                self._filled_on_loop()
            return result
        if in_event_loop_thread():
            return self._full_on_loop(item)
        return park_thread(self._put_steps(item, owner, Parked.thread, timeout), timeout)

    def put_then_wait_room_sync(self, item: T) -> bool:
        """Put ``item`` from the one producer thread of a bounded ``block`` buffer that
        pulled it only once there was room, then block until there is room for the next.

        The hot loop of a thread that pulls its source on demand (at most ``buffer``
        values pulled ahead): start with `wait_room_sync`, then call this per value.
        False once the stream takes no more values: stop pulling.
        """
        slots = self._slots
        assert slots is not None, "put_then_wait_room_sync() needs a bounded buffer"
        try:
            slots.pop()  # the place waited for
        except IndexError:  # rendezvous, or a place still on its way back
            if self.put_sync(item) is not TAKEN and self._state:
                return False
        else:
            items = self._items
            items.append(item)
            n = len(items)
            if n > self._high_water:
                self._high_water = n
            if self._getters:
                self._wake_getters()
        if not slots:
            self.wait_room_sync()
        return not self._state

    def _filled_on_loop(self) -> None:
        """A loop-thread producer took the last free place: pause the source now.

        Pausing at the fill rather than at the first value that finds no
        room means a source that honours pause at once never makes the
        buffer overshoot; only values a source delivers late are kept
        beyond the capacity.  Producer threads are not paused: they block.
        A source that produces inside its ``resume()`` hook is paused from
        inside that call, as soon as it fills the buffer (R18).
        """
        if not in_event_loop_thread():
            return
        with self._lock:
            if self._paused or self._state != _OPEN:
                return
            self._paused = True
            self._pauses += 1
        self._call_hook(self._pause)

    def _full_on_loop(self, item: T) -> Result:
        """R8: a full buffer, ``block``, and a producer that must not block."""
        if self._pause is not None:
            with self._lock:
                if self._state != _OPEN:
                    return GONE if self._state == _GONE else CLOSED
                self._items.append(item)  # kept: the source honours pause late
                self._debt += 1
                n = len(self._items)
                if n > self._high_water:
                    self._high_water = n
                need_pause = not self._paused
                if need_pause:
                    self._paused = True
                    self._pauses += 1
                woken = self._serve_locked()
            wake_all(woken)
            if need_pause:
                self._call_hook(self._pause)
            return TAKEN
        self.fail(BufferOverflowError(_r8_message(self._cap)))
        return OVERFLOWED

    @staticmethod
    def _call_hook(hook: Callable[[], object] | None) -> None:
        if hook is not None:
            hook()

    async def put(self, item: T, owner: object = None) -> Result:
        """Offer ``item`` from an async task on any loop, waiting for room under ``block``.

        The task parks behind the producers parked before it; its value
        enters the buffer in that order.  Cancellation while it waits
        withdraws the value (it was not sent); on trio a cancellation that
        arrives after the value was taken is left to the next checkpoint
        (the value was sent), as trio's own channels do.
        """
        result = self._offer(item, None)
        if result is not FULL:
            return result
        return await park_task(self._put_steps(item, owner, Parked.task))

    def _put_steps(
        self,
        item: T,
        owner: object,
        party: Callable[[Any, object], Parked],
        timeout: float | None = None,
    ) -> Generator[Parked, bool, Result]:
        """`put` and `put_sync` once room is short: park behind the producers parked
        first until the value is taken (``TAKEN``), withdrawn (``WITHDRAWN``) or the
        stream ends (offer again: the offer says how)."""
        while True:
            parked = party(item, owner)
            result = self._offer(item, parked)
            if result is not FULL:
                return result
            try:
                woke = yield parked
            except BaseException:
                if not self._abandon_put(parked) and parked.served and in_trio_run():
                    return TAKEN  # sent: trio re-raises the cancellation at the next checkpoint
                raise
            if not woke and self._abandon_put(parked):
                raise TimeoutError(
                    f"no room in the buffer within {timeout} seconds "
                    "(the consumer is slower than the producer)"
                )
            if parked.served:
                return TAKEN
            if parked.withdrawn:
                return WITHDRAWN

    def _abandon_put(self, parked: Parked) -> bool:
        """A parked producer gives up (cancelled, timed out): True if it was still parked.

        False when it was woken first (served, withdrawn or the stream ended):
        then its flags say what happened.
        """
        with self._lock:
            return self._putters.unpark(parked)

    def has_room(self) -> bool:
        """True when a put would not wait: a free place, a consumer waiting for a
        value (rendezvous), an unbounded buffer, a policy other than ``block``
        (its put never waits), or an ended stream (the put says so)."""
        if self._state != _OPEN or self._cap is None or self._overflow is not Overflow.BLOCK:
            return True
        if self._putters:
            return False  # producers parked first go first
        return (
            bool(self._slots)
            or len(self._items) + len(self._handed) - self._debt < self._cap
            or bool(self._getters)
        )

    async def wait_room(self) -> None:
        """Wait in the caller's loop until `has_room`.

        For a producer that pulls its own source only once the consumer side
        can take the value (pull -> push adapters, R10).  Woken like a parked
        `put`, in its turn.  Cancellation takes nothing.
        """
        if not self.has_room():
            await park_task(self._room_steps(Parked.task))

    def _room_steps(self, party: Callable[[Any], Parked]) -> Generator[Parked, bool, None]:
        """`wait_room` and `wait_room_sync`: park in the producers' turn until there is room."""
        while True:
            parked = party(_ROOM)
            with self._lock:
                if self.has_room():
                    return
                self._putters.append(parked)
            try:
                yield parked
            except BaseException:
                self._abandon_put(parked)
                raise

    def wait_room_sync(self) -> None:
        """Block this thread (one that runs no event loop) until `has_room`.

        The blocking twin of `wait_room`, for a producer thread that
        pulls its own source only once the value can be taken, so that at most
        ``buffer`` values are pulled ahead.  Woken like a blocked
        `put_sync`: at the low-water mark, when a consumer starts
        waiting, when the stream ends or the consumer leaves.
        """
        if (self._slots and not self._putters) or self._cap is None or self._state != _OPEN:
            return  # the hot path of a producer thread: a free place
        park_thread(self._room_steps(Parked.thread))

    def close(self) -> bool:
        """End the stream: buffered values are delivered, then the end. False if already ended."""
        return self._finish(None)

    def fail(self, exc: BaseException) -> bool:
        """End the stream with ``exc``: raised at the consumer after the buffered values."""
        return self._finish(exc)

    def _finish(self, exc: BaseException | None) -> bool:
        with self._lock:
            if self._state != _OPEN:
                return False
            self._state = _CLOSED
            self._exc = exc
            # parked producers look again, see the end, and their values are not sent
            woken = self._getters.release_all() + self._putters.release_all()
        wake_all(woken)
        return True

    # ------------------------------------------------------------- consumers

    def leave(self) -> bool:
        """The consumer side is gone: drop what is held, release every producer.

        Producers parked for room wake up and see GONE; later offers return
        GONE.  The consumer-gone hooks run here, once.  False if already gone.
        """
        with self._lock:
            if self._state == _GONE:
                return False
            self._state = _GONE
            self._items.clear()
            self._handed.clear()  # values handed out: their places are not given back
            if self._cap is not None:
                self._slots = deque([None] * self._cap)
            self._debt = 0
            self._exc = None
            woken = self._getters.release_all() + self._putters.release_all()
            hooks = self._gone_hooks
            self._gone_hooks = []
        wake_all(woken)
        for hook in hooks:
            hook()
        return True

    def _after_pop(self) -> None:
        """Let parked producers in (low-water) and resume a paused source; consumer side only."""
        n = len(self._items)
        if self._putters and n <= self._low:
            self._admit_putters()
        if self._paused and n <= self._low_water:
            self._do_resume()

    def _admit_putters(self) -> None:
        """Move parked producers' values into the free places, in the order they parked."""
        woken: list[Waiter] = []
        with self._lock:
            putters = self._putters
            items = self._items
            slots = self._slots
            while putters:
                p = putters[0]
                if p.item is not _ROOM:
                    try:
                        slots.pop()  # type: ignore[union-attr]  # bounded: producers park
                    except IndexError:
                        break
                    items.append(p.item)
                    p.item = None
                    p.served = True
                    n = len(items)
                    if n > self._high_water:
                        self._high_water = n
                putters.popleft()
                woken.append(p.waiter)  # a room waiter puts its value itself
            if self._getters:
                woken.extend(self._serve_locked())
        wake_all(woken)

    def _do_resume(self) -> None:
        with self._lock:
            if not self._paused or self._state != _OPEN:
                return
            self._paused = False
        self._call_hook(self._resume)

    def _repay(self) -> None:
        """After the consumer popped a value: repay a credit, or return its slot token."""
        if self._debt:
            with self._lock:
                if self._debt:
                    self._debt -= 1
                    return
        slots = self._slots
        if slots is not None:
            slots.append(None)

    def _take_parked_locked(self) -> Parked | None:
        """The first parked producer that carries a value, taken off the queue (lock held)."""
        for p in self._putters:
            if p.item is not _ROOM:
                self._putters.remove(p)
                p.served = True
                return p
        return None

    def _next_locked(self, parked: Parked | None) -> tuple[bool, T | None]:
        """The consumer's slow path, lock held: ``(True, value)``, the end raised, or parked.

        A parked producer's value is taken directly (a rendezvous, or its
        turn); otherwise ``parked`` (when given) joins the consumers' queue
        and ``(False, None)`` is returned.  At the end ``StopIteration`` is
        raised (the async caller turns it into ``StopAsyncIteration``), or
        the producer's exception, once.
        """
        p = self._take_parked_locked() if self._putters else None
        if p is not None:
            item = p.item
            p.item = None
            self._delivered += 1
            p.waiter.wake()
            return True, item
        state = self._state
        if state != _OPEN:
            self._ended = True
            exc = self._exc
            if state == _CLOSED and exc is not None:
                self._exc = None
                raise exc
            raise StopIteration
        if parked is not None:
            self._getters.append(parked)
            room = [p for p in self._putters if p.item is _ROOM]
            for p in room:  # producers waiting for room: the buffer is empty, let them in
                self._putters.remove(p)
                p.waiter.wake()
            # Producers append without the lock, then look for parked consumers;
            # a consumer parks, then looks at the buffer once more.  One of the
            # two always sees the other: no value is left behind a parked consumer.
            if self._items:
                for w in self._serve_locked():
                    w.wake()
        return False, None

    def _pop_ready(self) -> tuple[bool, T | None]:
        """A buffered value, with its place given back (no lock), or ``(False, None)``."""
        items = self._items
        try:
            item = items.popleft()
        except IndexError:
            return False, None
        self._delivered += 1
        self._repay()
        if (self._putters or self._paused) and len(items) <= self._gate:
            self._after_pop()
        return True, item

    def _received(self, parked: Parked) -> T:
        """A parked consumer was served: its value is delivered and its place given back."""
        with self._lock:
            try:
                self._handed.remove(parked)
            except ValueError:
                owed = False  # the consumer side left meanwhile: the place was reset
            else:
                owed = True
            self._delivered += 1
            item: T = parked.item  # read under the lock: a cancelled consumer may pass values on
            parked.item = None
        if owed:
            self._repay()
            if (self._putters or self._paused) and len(self._items) <= self._gate:
                self._after_pop()
        return item

    def _abandon_get(self, parked: Parked) -> None:
        """A parked consumer gave up (cancelled); a value handed to it goes to the next one."""
        woken: list[Waiter] = []
        with self._lock:
            if not parked.served:
                self._getters.unpark(parked)  # False: woken by the end, or withdrawn
                return
            handed = self._handed
            try:
                at = handed.index(parked)
            except ValueError:
                return  # the consumer side left meanwhile: nothing to give back
            del handed[at]
            # Nothing lost, order kept: each consumer served after this one takes
            # the value before its own, and the newest goes back in front.
            carry = parked.item
            parked.item = None
            for later in list(handed)[at:]:
                later.item, carry = carry, later.item
            self._items.appendleft(carry)
            if self._getters:
                woken = self._serve_locked()
        wake_all(woken)

    def get_nowait(self) -> tuple[bool, T | None]:
        """(True, value) if one is ready, else (False, None). Terminal states are not raised.

        A value parked with a producer (rendezvous) counts as ready.
        """
        ok, item = self._pop_ready()
        if ok or not self._putters:
            return ok, item
        with self._lock:
            p = self._take_parked_locked()
            if p is None:
                return False, None
            item = p.item
            p.item = None
            self._delivered += 1
        p.waiter.wake()
        return True, item

    async def get(self, owner: object = None) -> T:
        """The next value, waiting for one in the caller's loop.

        Consumers that wait are served in the order they started waiting.
        Raises ``StopAsyncIteration`` at the end (or once the consumer left),
        the producer's exception once if it failed (then the end), and
        `WithdrawnError` if ``owner``'s end was withdrawn while it waited.
        Cancellation while waiting takes nothing: a value handed to a consumer
        cancelled before it ran goes to the next consumer, in order.  With
        ``linger``, a consumer that runs dry may wait for a burst (see the class).
        """
        # with linger=: a consumer that ran dry waits for a burst (see the class)
        watch = self._linger is not None and not self._items and self._cap and not self._state
        try:
            item = await park_task(
                self._get_steps(owner, Parked.task),
                self._linger_wait if watch and self._linger_next else None,
            )
        finally:
            if watch:
                # more than the one value that woke us: the producer is fast, collect bursts
                self._linger_next = bool(self._items)
        if item is _END:
            raise StopAsyncIteration
        return item  # type: ignore[no-any-return]

    async def _linger_wait(self, parked: Parked) -> bool:
        """Wait for ``parked`` to be served at most ``linger`` seconds, while producers
        append without waking it (a full buffer or the end still does).

        False when the timer ran out: ``parked`` is out of the queue then, and
        from then on this consumer waits as any other (a value wakes it).
        """
        if not self._linger_next:
            await parked.waiter.wait()
            return True
        self._lingering = True
        try:
            with anyio.move_on_after(self._linger):
                await parked.waiter.wait()
                return True
            self._abandon_get(parked)
            self._linger_next = False
            return False
        finally:
            # after the waiter is withdrawn: from here on a value wakes the consumer
            self._lingering = False

    def _get_steps(
        self, owner: object, party: Callable[[Any, object], Parked]
    ) -> Generator[Parked, bool, Any]:
        """`get` and `get_sync`: the next value, parking in the consumers' turn when
        there is none; ``_END`` at the end, the producer's exception once if it failed."""
        while True:
            ok, item = self._pop_ready()
            if ok:
                return item
            parked = party(None, owner)
            with self._lock:
                if self._items:
                    continue  # values arrived meanwhile: look again
                try:
                    ok, item = self._next_locked(parked)
                except StopIteration:
                    return _END
            if ok:
                return item
            if self._paused:
                self._do_resume()
            try:
                woke = yield parked
            except BaseException:
                self._abandon_get(parked)
                raise
            if not woke:
                continue  # the linger timer ran out (parked is out of the queue): look again
            if parked.served:
                return self._received(parked)
            if parked.withdrawn:
                raise WithdrawnError

    def get_sync(self, owner: object = None) -> T:
        """The next value, blocking this thread (one that runs no event loop) until there is one.

        The blocking twin of `get`, for a sync consumer on a plain
        thread: raises ``StopIteration`` at the end (or once the consumer
        left), the producer's exception once if it failed (then the end).
        Producers on any loop or thread wake it like they wake `get`.
        """
        item = park_thread(self._get_steps(owner, Parked.thread))
        if item is _END:
            raise StopIteration
        return item  # type: ignore[no-any-return]
