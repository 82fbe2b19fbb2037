"""``open_channel``: the hand-off's public face, usable from any thread and any loop."""

from __future__ import annotations

from threading import get_ident
from types import TracebackType
from typing import TYPE_CHECKING, Generic, TypeVar

import anyio
from anyio.lowlevel import checkpoint

from ._backend import in_event_loop_thread
from ._buffer import (
    CLOSED,
    DROPPED,
    FULL,
    GONE,
    OVERFLOWED,
    TAKEN,
    BufferOverflowError,
    Handoff,
    Overflow,
    Stats,
    validate_timeout,
)
from ._iterator import CHECKPOINT_EVERY, BufferedIterator

if TYPE_CHECKING:
    from typing_extensions import Self

    from ._buffer import _Result

T = TypeVar("T")

__all__ = ["ChannelReceiver", "ChannelSender", "open_channel"]


class ChannelSender(Generic[T]):
    """The send end of :func:`open_channel`; usable from any thread and any event loop.

    Closing it (``close()``, ``aclose()``, leaving ``with`` / ``async with``)
    ends the stream once the receiver has taken what is buffered; with
    :meth:`clone` the stream ends when the last clone closes.
    """

    __slots__ = ("__weakref__", "_closed", "_h", "_plain_thread", "_shared", "_tick")

    def __init__(self, handoff: Handoff[T], shared: list[int]) -> None:
        self._h = handoff
        self._shared = shared  # [number of open senders]
        self._closed = False
        self._tick = CHECKPOINT_EVERY
        self._plain_thread = -1  # the last thread seen to run no event loop

    @property
    def stats(self) -> Stats:
        """A snapshot of the channel's counters."""
        return self._h.stats

    def _check(self, result: _Result) -> None:
        if result is GONE:
            raise anyio.BrokenResourceError(
                "the receiving end of this channel was closed; nobody will take the value"
            )
        if result is CLOSED:
            if self._closed:
                raise anyio.ClosedResourceError(
                    "this sender was closed; values can no longer be sent"
                )
            raise anyio.BrokenResourceError("this channel has already ended (closed or failed)")
        if result is OVERFLOWED:
            raise BufferOverflowError(
                f'channel full ({self._h.capacity} values) under overflow="error"; the '
                "receiver gets the values sent before, then this error"
            )

    async def send(self, item: T) -> None:
        """Send ``item``, waiting in the caller's own event loop for room (``block``).

        Under ``drop_oldest`` / ``drop_newest`` it never waits (see ``stats.dropped``).
        Cancellation while waiting withdraws the value: it was not sent.

        :raises anyio.BrokenResourceError: the receiver was closed (also wakes a waiting send)
        :raises anyio.ClosedResourceError: this sender was closed
        :raises BufferOverflowError: ``overflow="error"`` tripped on this value
        """
        if self._closed:
            raise anyio.ClosedResourceError("this sender was closed; values can no longer be sent")
        tick = self._tick - 1
        if tick:
            self._tick = tick
        else:
            # a sender that always finds room must still let other tasks run
            self._tick = CHECKPOINT_EVERY
            await checkpoint()
        h = self._h
        # the hand-off's lock-free fast path, inlined: this is the hot loop
        slots = h._slots
        if slots and h._state == 0:
            try:
                slots.pop()
            except IndexError:
                pass
            else:
                items = h._items
                items.append(item)
                n = len(items)
                if n > h._high_water:
                    h._high_water = n
                if h._getters:
                    h._wake_getters()
                return
        result = h._offer(item, None)
        if result is not TAKEN:
            if result is FULL:
                result = await self._h.put(item)
            if result is not TAKEN and result is not DROPPED:
                self._check(result)

    def send_nowait(self, item: T) -> None:
        """Send ``item`` if that needs no waiting.

        :raises anyio.WouldBlock: the channel is full under ``block``
        :raises anyio.BrokenResourceError: the receiver was closed
        :raises anyio.ClosedResourceError: this sender was closed
        """
        if self._closed:
            raise anyio.ClosedResourceError("this sender was closed; values can no longer be sent")
        result = self._h.put_nowait(item)
        if result is FULL:
            raise anyio.WouldBlock
        self._check(result)

    def send_blocking(self, item: T, timeout: float | None = None) -> None:
        """Send ``item`` from a plain thread, blocking it until there is room.

        Only for threads that run no event loop (a blocked loop could not run
        the consumer); in a loop use ``await send()``.

        :raises TimeoutError: no room within ``timeout`` seconds (the value was not sent)
        :raises anyio.BrokenResourceError: the receiver was closed (also wakes a blocked call)
        :raises anyio.ClosedResourceError: this sender was closed
        :raises RuntimeError: called on an event-loop thread
        :raises TypeError: ``timeout`` is not a number (or None)
        :raises ValueError: ``timeout`` is nan
        """
        if timeout is not None:
            timeout = validate_timeout(timeout)
        ident = get_ident()
        if ident != self._plain_thread:
            # checked once per calling thread (the check is not free); should this
            # thread start a loop later, a full buffer still never blocks it (R8)
            if in_event_loop_thread():
                raise RuntimeError(
                    "send_blocking() would block this thread's event loop; "
                    "use 'await sender.send(item)' here (or send_nowait())"
                )
            self._plain_thread = ident
        if self._closed:
            raise anyio.ClosedResourceError("this sender was closed; values can no longer be sent")
        result = self._h.put_sync(item, timeout)
        if result is not TAKEN and result is not DROPPED:
            self._check(result)

    def fail(self, exc: BaseException) -> None:
        """End the stream with ``exc``: the receiver raises it itself, after the values before.

        Closes this sender (and every clone: the error ends the stream for all).
        """
        if not isinstance(exc, BaseException):
            raise TypeError(f"fail() takes an exception instance, not {type(exc).__name__}")
        self._closed = True
        self._h.fail(exc)

    def clone(self) -> ChannelSender[T]:
        """Another send end of the same channel; the stream ends when all are closed."""
        if self._closed:
            raise anyio.ClosedResourceError("cannot clone a closed sender")
        self._shared[0] += 1
        return ChannelSender(self._h, self._shared)

    def close(self) -> None:
        """Close this end (idempotent); the last open clone to close ends the stream."""
        if self._closed:
            return
        self._closed = True
        self._shared[0] -= 1
        if self._shared[0] <= 0:
            self._h.close()

    async def aclose(self) -> None:
        """Same as :meth:`close`."""
        self.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class ChannelReceiver(BufferedIterator[T]):
    """The receive end of :func:`open_channel`; an async iterator on any event loop.

    ``async for`` ends when every sender closed (after the buffered values);
    a sender's ``fail(exc)`` raises ``exc`` once, after the values before it.
    Closing it (``aclose()``, leaving ``async with``) drops what is buffered and
    releases every sender: a waiting ``send`` raises ``anyio.BrokenResourceError``.
    """

    __slots__ = ()

    async def receive(self) -> T:
        """The next value, waiting in the caller's loop.

        :raises anyio.EndOfStream: every sender closed and the buffer is empty
        :raises anyio.ClosedResourceError: this receiver was closed
        """
        if self._phase == 2 and not self._h._ended:
            raise anyio.ClosedResourceError("this receiver was closed")
        try:
            return await self.__anext__()
        except StopAsyncIteration:
            raise anyio.EndOfStream from None

    def receive_nowait(self) -> T:
        """A value if one is buffered.

        :raises anyio.WouldBlock: none is buffered yet
        :raises anyio.EndOfStream: the stream ended
        :raises anyio.ClosedResourceError: this receiver was closed
        """
        if self._phase == 2 and not self._h._ended:
            raise anyio.ClosedResourceError("this receiver was closed")
        ok, item = self._h.get_nowait()
        if ok:
            return item  # type: ignore[return-value]
        if self._h.open:
            raise anyio.WouldBlock
        raise anyio.EndOfStream


class open_channel(tuple[ChannelSender[T], ChannelReceiver[T]]):  # noqa: N801
    """Open a channel whose two ends work from any thread and any event loop.

    ``sender, receiver = bridges.open_channel[int](buffer=64)``

    The sender may ``await send()`` on one loop (asyncio, uvloop or trio) while
    the receiver iterates on another loop in another thread, or
    ``send_blocking()`` from a plain thread; each waiting party is woken on
    its own loop.  At most ``buffer`` values are held (``0``: each send waits
    for a receiver; ``None``: unbounded).  ``overflow`` says what a full
    channel does (:class:`Overflow`).  ``sender.fail(exc)`` carries an error
    in-band.  Closing the receiver releases blocked senders with
    ``anyio.BrokenResourceError``.

    :raises ValueError: a bad ``buffer`` / ``overflow``
    :raises TypeError: ``buffer`` / ``overflow`` of the wrong type
    """

    def __new__(  # type: ignore[misc]
        cls, buffer: int | None = 64, overflow: Overflow | str = Overflow.BLOCK
    ) -> tuple[ChannelSender[T], ChannelReceiver[T]]:
        handoff: Handoff[T] = Handoff(buffer, overflow)
        receiver = ChannelReceiver(handoff)
        receiver._begin()  # nothing to start lazily: the channel exists already
        return ChannelSender(handoff, [1]), receiver
