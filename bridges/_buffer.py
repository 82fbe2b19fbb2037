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
from typing import TYPE_CHECKING, Final, Generic, TypeVar

from ._backend import ThreadWaiter, async_waiter, in_event_loop_thread

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._backend import AsyncWaiter

T = TypeVar("T")

__all__ = [
    "BufferOverflowError",
    "Handoff",
    "Overflow",
    "Stats",
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
    #: :class:`BufferOverflowError`.
    BLOCK = "block"
    #: Discard the oldest buffered value to make room; the new value is taken.
    DROP_OLDEST = "drop_oldest"
    #: Discard the new value; the buffered ones stay.
    DROP_NEWEST = "drop_newest"
    #: Fail the stream: the consumer gets the buffered values, then
    #: :class:`BufferOverflowError`.
    ERROR = "error"

    @classmethod
    def parse(cls, value: Overflow | str) -> Overflow:
        """Validate an ``overflow=`` argument (an :class:`Overflow` or its string)."""
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

    #: Values held right now (taken from the producer, not yet delivered).
    buffered: int
    #: The most values ever held at once; never above the capacity, except
    #: after ``pause()`` when a source honours pause late (the overshoot shows here).
    high_water: int
    #: Values handed to the consumer.
    delivered: int
    #: Values discarded by ``drop_oldest`` / ``drop_newest``.
    dropped: int
    #: The capacity (``None``: unbounded).
    capacity: int | None
    #: How many times the source was asked to pause.
    pauses: int = 0


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


class _Result(enum.IntEnum):
    TAKEN = 0
    DROPPED = 1
    FULL = 2
    CLOSED = 3  # the producer side closed or failed it
    GONE = 4  # the consumer left
    OVERFLOWED = 5  # overflow="error" tripped just now


TAKEN: Final = _Result.TAKEN
DROPPED: Final = _Result.DROPPED
FULL: Final = _Result.FULL
CLOSED: Final = _Result.CLOSED
GONE: Final = _Result.GONE
OVERFLOWED: Final = _Result.OVERFLOWED

_OPEN: Final = 0
_CLOSED: Final = 1  # completed or failed by the producer side; values may remain
_GONE: Final = 2  # the consumer side left; nothing will be delivered any more


def _r8_message(capacity: int | None) -> str:
    return (
        f'buffer full ({capacity} values) under overflow="block", and the producer runs on '
        "the event-loop thread, which must never block. Fixes: give pause/resume hooks "
        "so the source can be slowed, produce from another thread (it will block "
        'there), raise buffer=, or choose overflow="drop_oldest"/"drop_newest"'
    )


class Handoff(Generic[T]):
    """A bounded buffer between any number of producers and consumers.

    Producers may be async tasks on any loop (:meth:`put`), sync code on
    another thread (:meth:`put_sync`, blocking under ``block``), or sync code
    on an event-loop thread (:meth:`put_sync`, never blocking: R8).
    Consumers are async tasks on any loop (:meth:`get`).
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
        "_high_water",
        "_in_hook",
        "_items",
        "_lock",
        "_low",
        "_low_water",
        "_overflow",
        "_pause",
        "_pause_pending",
        "_paused",
        "_pauses",
        "_putters",
        "_resume",
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
        # producers parked on a full buffer resume at or below this many values
        self._low = -1 if self._cap is None else self._cap // 2
        # the consumer looks at producers / the pause state only at or below this
        self._gate = max(self._low, self._low_water)
        self._items: deque[T] = deque()
        # One token per free place (``None`` when unbounded).  Producers pop a
        # token before appending and the consumer returns one after popping a
        # value: both atomic, so the capacity holds with no lock on either side.
        self._slots: deque[None] | None = None if self._cap is None else deque([None] * self._cap)
        # values appended without a token (pause overshoot, rendezvous hand-off,
        # a token still on its way back): the consumer repays these first
        self._debt = 0
        self._lock = threading.Lock()
        self._getters: list[AsyncWaiter | ThreadWaiter] = []
        self._putters: list[AsyncWaiter | ThreadWaiter] = []
        self._state = _OPEN
        self._exc: BaseException | None = None
        self._high_water = 0
        self._delivered = 0
        self._dropped = 0
        self._pause = pause
        self._resume = resume
        self._paused = False
        self._pauses = 0
        self._in_hook = False
        self._pause_pending = False
        self._gone_hooks: list[Callable[[], object]] = []
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
            buffered=len(self._items),
            high_water=self._high_water,
            delivered=self._delivered,
            dropped=self._dropped,
            capacity=self._cap,
            pauses=self._pauses,
        )

    @property
    def open(self) -> bool:
        """True until the producer side closes or fails it, or the consumer leaves."""
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

    # ------------------------------------------------------------- producers

    def _offer(self, item: T, waiter: AsyncWaiter | ThreadWaiter | None) -> _Result:
        """Try to take ``item``; on FULL register ``waiter`` (if given) atomically."""
        # Fast path, no lock: take a slot token (an atomic deque.pop), then append.
        slots = self._slots
        if slots:
            try:
                slots.pop()
            except IndexError:
                pass
            else:
                if self._state == _OPEN:
                    items = self._items
                    items.append(item)
                    n = len(items)
                    if n > self._high_water:
                        self._high_water = n
                    if self._getters:
                        self._wake_getters()
                    return TAKEN
                slots.append(None)
        elif self._cap is None and self._state == _OPEN:
            items = self._items
            items.append(item)
            n = len(items)
            if n > self._high_water:
                self._high_water = n
            if self._getters:
                self._wake_getters()
            return TAKEN
        return self._offer_locked(item, waiter)

    def _offer_locked(self, item: T, waiter: AsyncWaiter | ThreadWaiter | None) -> _Result:
        while True:
            result = self._offer_locked_once(item, waiter)
            if result is not None:
                return result
            # A slot token is on its way back: the consumer popped a value on
            # another thread and is between two steps.  Let it finish.
            time.sleep(0)

    def _offer_locked_once(
        self, item: T, waiter: AsyncWaiter | ThreadWaiter | None
    ) -> _Result | None:
        getters: list[AsyncWaiter | ThreadWaiter] | None = None
        with self._lock:
            state = self._state
            if state != _OPEN:
                return GONE if state == _GONE else CLOSED
            items = self._items
            cap = self._cap
            try:
                if self._slots is not None:
                    self._slots.pop()
            except IndexError:
                assert cap is not None  # only bounded buffers have slot tokens
                if cap == 0 and self._getters:
                    # rendezvous: a consumer is waiting for this very value
                    self._debt += 1
                elif len(items) - self._debt < cap:
                    return None  # not full: a token is in flight (see the caller)
                elif self._overflow is Overflow.BLOCK:
                    if waiter is not None:
                        self._putters.append(waiter)
                    return FULL
                elif self._overflow is Overflow.DROP_OLDEST:
                    try:
                        items.popleft()  # the new value takes the dropped one's place
                    except IndexError:
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
                    getters = self._getters
                    self._getters = []
                    for g in getters:
                        g.wake()
                    return OVERFLOWED
            items.append(item)
            n = len(items)
            if cap != 0 and n > self._high_water:
                # a rendezvous hand-off goes straight to a waiting consumer: not held
                self._high_water = n
            if self._getters:
                getters = self._getters
                self._getters = []
        if getters:
            for g in getters:
                g.wake()
        return TAKEN

    def _forget(self, waiters: list[AsyncWaiter | ThreadWaiter], waiter: object) -> None:
        """Unregister a waiter that gave up (cancelled, timed out); fine if already woken."""
        with self._lock:
            try:
                waiters.remove(waiter)  # type: ignore[arg-type]
            except ValueError:
                pass

    def _wake_getters(self) -> None:
        with self._lock:
            getters = self._getters
            self._getters = []
        for g in getters:
            g.wake()

    def put_nowait(self, item: T) -> _Result:
        """Offer ``item`` without waiting: TAKEN, DROPPED, FULL, CLOSED, GONE or OVERFLOWED."""
        return self._offer(item, None)

    def put_sync(self, item: T, timeout: float | None = None) -> _Result:
        """Offer ``item`` from sync code on any thread.

        On an event-loop thread this never blocks: with pause/resume hooks
        the value that fills the buffer calls the pause hook (values that
        still arrive are kept), and without them a full buffer under
        ``block`` fails the stream with :class:`BufferOverflowError` (R8).
        On any other thread
        it blocks until there is room, raising ``TimeoutError`` after
        ``timeout`` seconds.
        """
        slots = self._slots  # the fast path of _offer, inlined: the hot loop of threads
        if slots and self._state == _OPEN:
            try:
                slots.pop()
            except IndexError:
                pass
            else:
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
        deadline = None
        if timeout is not None:
            import time

            deadline = time.monotonic() + timeout
        while True:
            waiter = ThreadWaiter()
            result = self._offer(item, waiter)
            if result is not FULL:
                return result
            remaining = None
            if deadline is not None:
                import time

                remaining = deadline - time.monotonic()
            if not waiter.wait(remaining):
                with self._lock:
                    try:
                        self._putters.remove(waiter)
                    except ValueError:
                        pass  # woken just as the time ran out: one more try
                    else:
                        raise TimeoutError(
                            f"no room in the buffer within {timeout} seconds "
                            "(the consumer is slower than the producer)"
                        )

    def _filled_on_loop(self) -> None:
        """A loop-thread producer took the last free place: pause the source now.

        Pausing at the fill rather than at the first value that finds no
        room means a source that honours pause at once never makes the
        buffer overshoot; only values a source delivers late are kept
        beyond the capacity.  Producer threads are not paused: they block.
        """
        if not in_event_loop_thread():
            return
        with self._lock:
            if self._paused or self._state != _OPEN:
                return
            self._paused = True
            self._pauses += 1
        if self._in_hook:
            self._pause_pending = True
        else:
            self._call_hook(self._pause)

    def _full_on_loop(self, item: T) -> _Result:
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
                getters = self._getters
                self._getters = []
            for g in getters:
                g.wake()
            if need_pause:
                if self._in_hook:
                    self._pause_pending = True
                else:
                    self._call_hook(self._pause)
            return TAKEN
        self.fail(BufferOverflowError(_r8_message(self._cap)))
        return OVERFLOWED

    def _call_hook(self, hook: Callable[[], object] | None) -> None:
        if hook is None:
            return
        self._in_hook = True
        try:
            hook()
        finally:
            self._in_hook = False

    async def put(self, item: T) -> _Result:
        """Offer ``item`` from an async task on any loop, waiting for room under ``block``.

        Cancellation while waiting withdraws the value (it was not sent).
        """
        while True:
            result = self._offer(item, None)
            if result is not FULL:
                return result
            waiter = async_waiter()
            result = self._offer(item, waiter)
            if result is not FULL:
                return result
            try:
                await waiter.wait()
            except BaseException:
                self._forget(self._putters, waiter)
                raise

    def has_room(self) -> bool:
        """True when a put would not wait: a free place, a consumer waiting for a
        value (rendezvous), an unbounded buffer, a policy other than ``block``
        (its put never waits), or an ended stream (the put says so)."""
        return (
            self._state != _OPEN
            or self._cap is None
            or self._overflow is not Overflow.BLOCK
            or bool(self._slots)
            or len(self._items) - self._debt < self._cap
            or bool(self._getters)
        )

    async def wait_room(self) -> None:
        """Wait in the caller's loop until :meth:`has_room`.

        For a producer that pulls its own source only once the consumer side
        can take the value (pull -> push adapters, R10).  Woken like a parked
        :meth:`put`.  Cancellation takes nothing.
        """
        while not self.has_room():
            waiter = async_waiter()
            with self._lock:
                if self.has_room():
                    return
                self._putters.append(waiter)
            try:
                await waiter.wait()
            except BaseException:
                self._forget(self._putters, waiter)
                raise

    def wait_room_sync(self) -> None:
        """Block this thread (one that runs no event loop) until :meth:`has_room`.

        The blocking twin of :meth:`wait_room`, for a producer thread that
        pulls its own source only once the value can be taken, so that at most
        ``buffer`` values are pulled ahead.  Woken like a blocked
        :meth:`put_sync`: at the low-water mark, when a consumer starts
        waiting, when the stream ends or the consumer leaves.
        """
        if self._slots or self._cap is None or self._state != _OPEN:
            return  # the hot path of a producer thread: a free place
        while True:
            waiter = ThreadWaiter()
            with self._lock:
                if self.has_room():
                    return
                self._putters.append(waiter)
            try:
                waiter.wait(None)
            except BaseException:
                self._forget(self._putters, waiter)
                raise

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
            getters = self._getters
            self._getters = []
            putters = self._putters
            self._putters = []
        for w in getters:
            w.wake()
        for p in putters:
            p.wake()
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
            if self._cap is not None:
                self._slots = deque([None] * self._cap)
            self._debt = 0
            self._exc = None
            getters = self._getters
            self._getters = []
            putters = self._putters
            self._putters = []
            hooks = self._gone_hooks
            self._gone_hooks = []
        for w in getters:
            w.wake()
        for p in putters:
            p.wake()
        for hook in hooks:
            hook()
        return True

    def _after_pop(self) -> None:
        """Wake producers (low-water) and resume a paused source; consumer side only."""
        n = len(self._items)
        if self._putters and n <= self._low:
            self._wake_putters()
        if self._paused and n <= self._low_water:
            self._do_resume()

    def _wake_putters(self) -> None:
        with self._lock:
            putters = self._putters
            self._putters = []
        for p in putters:
            p.wake()

    def _do_resume(self) -> None:
        with self._lock:
            if not self._paused or self._state != _OPEN:
                return
            self._paused = False
        self._call_hook(self._resume)
        if self._pause_pending:
            self._pause_pending = False
            with self._lock:
                again = self._paused
            if again:
                self._call_hook(self._pause)

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

    def get_nowait(self) -> tuple[bool, T | None]:
        """(True, value) if one is ready, else (False, None). Terminal states are not raised."""
        try:
            item = self._items.popleft()
        except IndexError:
            return False, None
        self._delivered += 1
        self._repay()
        self._after_pop()
        return True, item

    async def get(self) -> T:
        """The next value, waiting for one in the caller's loop.

        Raises ``StopAsyncIteration`` at the end (or once the consumer left),
        the producer's exception once if it failed (then the end).
        Cancellation while waiting takes nothing.
        """
        items = self._items
        while True:
            try:
                item = items.popleft()
            except IndexError:
                pass
            else:
                self._delivered += 1
                self._repay()
                if (self._putters or self._paused) and len(items) <= self._gate:
                    self._after_pop()
                return item
            waiter: AsyncWaiter | None = None
            putters: list[AsyncWaiter | ThreadWaiter] = []
            with self._lock:
                if items:
                    continue
                state = self._state
                if state == _GONE:
                    self._ended = True
                    raise StopAsyncIteration
                if state == _CLOSED:
                    self._ended = True
                    exc = self._exc
                    if exc is not None:
                        self._exc = None
                        raise exc
                    raise StopAsyncIteration
            # register, then re-check under the lock (producers append under it)
            waiter = async_waiter()
            with self._lock:
                if items or self._state != _OPEN:
                    continue
                self._getters.append(waiter)
                if self._putters:  # parked producers: the buffer is empty, let them in
                    putters = self._putters
                    self._putters = []
            for p in putters:
                p.wake()
            if self._paused:
                self._do_resume()
            try:
                await waiter.wait()
            except BaseException:
                self._forget(self._getters, waiter)
                raise

    def get_sync(self) -> T:
        """The next value, blocking this thread (one that runs no event loop) until there is one.

        The blocking twin of :meth:`get`, for a sync consumer on a plain
        thread: raises ``StopIteration`` at the end (or once the consumer
        left), the producer's exception once if it failed (then the end).
        Producers on any loop or thread wake it like they wake :meth:`get`.
        """
        items = self._items
        while True:
            try:
                item = items.popleft()
            except IndexError:
                pass
            else:
                self._delivered += 1
                self._repay()
                if (self._putters or self._paused) and len(items) <= self._gate:
                    self._after_pop()
                return item
            waiter = ThreadWaiter()
            putters: list[AsyncWaiter | ThreadWaiter] = []
            with self._lock:
                if items:
                    continue
                state = self._state
                if state != _OPEN:
                    self._ended = True
                    exc = self._exc
                    if state == _CLOSED and exc is not None:
                        self._exc = None
                        raise exc
                    raise StopIteration
                self._getters.append(waiter)
                if self._putters:  # parked producers: the buffer is empty, let them in
                    putters = self._putters
                    self._putters = []
            for p in putters:
                p.wake()
            if self._paused:
                self._do_resume()
            try:
                waiter.wait(None)
            except BaseException:
                self._forget(self._getters, waiter)
                raise
