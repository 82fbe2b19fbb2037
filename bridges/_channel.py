"""``open_channel``: the hand-off's public face, usable from any thread and any loop."""

from __future__ import annotations

import warnings
from threading import get_ident
from typing import TYPE_CHECKING, Generic, NoReturn, TypeVar

import anyio
from anyio.lowlevel import checkpoint

from ._backend import CancelProbe, in_event_loop_thread
from ._buffer import (
    CLOSED,
    DROPPED,
    FULL,
    GONE,
    OVERFLOWED,
    TAKEN,
    WITHDRAWN,
    BufferOverflowError,
    Handoff,
    Overflow,
    Stats,
    validate_timeout,
)
from ._enter import ExcType, Tb
from ._iterator import CHECKPOINT_EVERY, BufferedIterator

if TYPE_CHECKING:
    from typing_extensions import Self

    from ._buffer import Result

T = TypeVar("T")

__all__ = ["ChannelReceiver", "ChannelSender", "open_channel"]


_DROPPED_ALL = (
    "every sender of this channel was dropped without close() (a producer that crashed, "
    "or one that forgot 'with sender:'); the values sent before it arrived, nothing more will"
)


def exit_error(exc: BaseException) -> BaseException:
    """What a producer block left by ``exc`` fails the stream with (R16).

    An error is delivered as itself.  A cancellation, ``KeyboardInterrupt``
    or ``SystemExit`` belongs to the producer's task, not to the consumer's:
    the consumer gets ``anyio.BrokenResourceError`` naming it instead.
    """
    if isinstance(exc, Exception):
        return exc
    error = anyio.BrokenResourceError(
        f"the producer's block was left by {type(exc).__name__} before it closed the channel"
    )
    error.__cause__ = exc
    return error


def handoff_of(sender: ChannelSender[T]) -> Handoff[T]:
    """The hand-off behind ``sender``, for pumps that wait for room before they pull (R10)."""
    return sender._h


class ChannelSender(Generic[T]):
    """The send end of [`open_channel`][bridges.open_channel]; usable from any thread and any event
    loop.

    Closing it (``close()``, ``aclose()``, leaving ``with`` / ``async with``
    normally) ends the stream once the receiver has taken what is buffered;
    with [`clone`][bridges.ChannelSender.clone] the stream ends when the last clone closes.  Leaving
    ``with`` / ``async with`` by an exception fails the stream with it
    instead ([`fail`][bridges.ChannelSender.fail]): the receiver gets the values sent before, then
    that exception.  A sender collected while it and the stream are still
    open emits a ``ResourceWarning``; when every sender is gone that way, the
    receiver ends with ``anyio.BrokenResourceError`` after the values sent
    before, instead of waiting forever.
    """

    __slots__ = ("__weakref__", "_closed", "_h", "_plain_thread", "_probe", "_tick")

    def __init__(self, handoff: Handoff[T]) -> None:
        self._h = handoff
        self._closed = False
        self._tick = CHECKPOINT_EVERY
        self._plain_thread = -1  # the last thread seen to run no event loop
        self._probe = CancelProbe()

    @property
    def stats(self) -> Stats:
        """A snapshot of the channel's counters ([`Stats`][bridges.Stats])."""
        return self._h.stats

    @property
    def closed(self) -> bool:
        """True once this end was closed (``close()``, ``fail()``, leaving its block).

        Other clones may still be open; ``stats.open_senders`` counts them.
        """
        return self._closed

    def _check(self, result: Result) -> None:
        if result is GONE:
            raise anyio.BrokenResourceError(
                "the receiving end of this channel was closed; nobody will take the value"
            )
        if result is CLOSED or result is WITHDRAWN:
            if self._closed:
                raise anyio.ClosedResourceError(
                    "this sender was closed; values can no longer be sent"
                    if result is CLOSED
                    else "this sender was closed while the send waited; the value was not sent"
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
        Waiting senders are served in the order they started waiting, before
        any value sent later.  Every call is a cancel point: in a cancelled
        scope it raises the cancellation and sends nothing.  Cancellation
        while waiting withdraws the value: it was not sent.

        :raises anyio.BrokenResourceError: the receiver was closed (also wakes a waiting send)
        :raises anyio.ClosedResourceError: this sender was closed (also wakes a waiting send)
        :raises BufferOverflowError: ``overflow="error"`` tripped on this value
        """
        if self._closed:
            raise anyio.ClosedResourceError("this sender was closed; values can no longer be sent")
        tick = self._tick - 1
        if tick and not self._probe.cancelled():
            self._tick = tick
        else:
            # a sender that always finds room must still let other tasks run,
            # and one in a cancelled scope raises here, before it sends
            self._tick = CHECKPOINT_EVERY
            await checkpoint()
            while self._probe.cancelled():  # delivered at a later checkpoint (anyio on asyncio)
                await checkpoint()
        h = self._h
        # the hand-off's lock-free fast path, inlined: this is the hot loop
        slots = h._slots
        if slots and not h._putters:
            try:
                slots.pop()
            except IndexError:
                pass
            else:
                if h._state:  # ended: looked at after the token (leave() may reset it)
                    slots.append(None)
                    self._check(h.put_nowait(item))
                    return
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
                result = await h.put(item, self)
            if result is not TAKEN and result is not DROPPED:
                self._check(result)

    def send_nowait(self, item: T) -> None:
        """Send ``item`` if that needs no waiting.

        With a receiver waiting, the value goes to the one that waited longest.

        :raises anyio.WouldBlock: the channel is full under ``block`` (or senders wait already)
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
        :raises anyio.ClosedResourceError: this sender was closed (also wakes a blocked call)
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
        result = self._h.put_sync(item, timeout, self)
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
        self._h.add_sender()
        return ChannelSender(self._h)

    def close(self) -> None:
        """Close this end (idempotent); the last open clone to close ends the stream.

        A ``send`` of this end still waiting raises ``anyio.ClosedResourceError``;
        its value is not sent.
        """
        if self._closed:
            return
        self._closed = True
        self._h.withdraw(self)
        self._h.drop_sender()

    async def aclose(self) -> None:
        """Same as [`close`][bridges.ChannelSender.close]."""
        self.close()

    def _exit(self, exc: BaseException | None) -> None:
        if exc is None:
            self.close()
        elif not self._closed:
            self.fail(exit_error(exc))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: ExcType, exc: BaseException | None, tb: Tb) -> None:
        self._exit(exc)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: ExcType, exc: BaseException | None, tb: Tb) -> None:
        self._exit(exc)

    def __del__(self) -> None:
        if getattr(self, "_closed", True):
            return
        self._closed = True
        if not self._h.open:
            return  # the stream ended already (failed, or the receiver left): nobody waits
        try:
            warnings.warn(
                f"{self!r} was dropped without close(); close it (or use 'with sender:') "
                "so that the receiver sees the end of the stream",
                ResourceWarning,
                stacklevel=1,
                source=self,
            )
        finally:
            self._h.drop_sender(anyio.BrokenResourceError(_DROPPED_ALL))


class ChannelReceiver(BufferedIterator[T]):
    """The receive end of [`open_channel`][bridges.open_channel]; an async iterator on any event
    loop.

    ``async for`` ends when every sender closed (after the buffered values);
    a sender's ``fail(exc)`` raises ``exc`` once, after the values before it.
    Receivers that wait are served in the order they started waiting.
    Closing it (``aclose()``, leaving ``async with``) makes every later use
    of this end raise ``anyio.ClosedResourceError`` (a ``receive`` waiting on
    it too); when the last clone closes, what is buffered is dropped and
    every sender is released: a waiting ``send`` raises
    ``anyio.BrokenResourceError``.
    """

    __slots__ = ("_closed",)

    _drop_advice = (
        "close it (close(), aclose() or a with block) so that its senders learn nobody receives"
    )

    def __init__(self, handoff: Handoff[T]) -> None:
        super().__init__(handoff)
        self._closed = False

    @property
    def closed(self) -> bool:
        """True once this end was closed (``close()``, ``aclose()``, leaving its block).

        Other clones may still be open; ``stats.open_receivers`` counts them.
        """
        return self._closed

    def _closed_error(self) -> anyio.ClosedResourceError:
        return anyio.ClosedResourceError("this receiver was closed")

    async def __aenter__(self) -> Self:
        if self._closed:
            raise self._closed_error()
        return await super().__aenter__()

    def _no_more(self) -> NoReturn:
        if self._closed:
            raise self._closed_error()
        raise StopAsyncIteration

    async def receive(self) -> T:
        """The next value, waiting in the caller's loop.

        Every call is a cancel point: in a cancelled scope it raises the
        cancellation and takes nothing.

        :raises anyio.EndOfStream: every sender closed and the buffer is empty
        :raises anyio.ClosedResourceError: this receiver was closed (also while waiting)
        """
        try:
            return await self.__anext__()
        except StopAsyncIteration:
            raise anyio.EndOfStream from None

    def receive_nowait(self) -> T:
        """A value if one is buffered (or a sender waits with one).

        :raises anyio.WouldBlock: none is buffered yet
        :raises anyio.EndOfStream: the stream ended
        :raises anyio.ClosedResourceError: this receiver was closed
        """
        if self._closed:
            raise self._closed_error()
        ok, item = self._h.get_nowait()
        if ok:
            return item  # type: ignore[return-value]
        if self._h.open:
            raise anyio.WouldBlock
        raise anyio.EndOfStream

    def clone(self) -> ChannelReceiver[T]:
        """Another receive end of the same channel; the receivers share the values.

        The consumer side leaves (senders see ``anyio.BrokenResourceError``)
        when the last clone closes.

        :raises anyio.ClosedResourceError: this receiver was closed
        """
        if self._closed:
            raise self._closed_error()
        self._h.add_receiver()
        receiver = ChannelReceiver(self._h)
        receiver._begin()
        return receiver

    def close(self) -> None:
        """Close this end now (idempotent); every later use raises ``anyio.ClosedResourceError``.

        The last open clone to close drops what is buffered and releases every
        sender.  It needs no event loop: any thread may call it, and a
        ``receive`` waiting on this end (on any loop) raises
        ``anyio.ClosedResourceError``.  ``with receiver:`` closes it on the way out.
        """
        if self._closed:
            return
        self._close_now()
        if not self._closed:  # the stream had ended already: this end closes all the same
            self._detach()

    async def aclose(self) -> None:
        """Same as [`close`][bridges.ChannelReceiver.close]."""
        self.close()

    def __enter__(self) -> Self:
        if self._closed:
            raise self._closed_error()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _detach(self) -> None:
        self._closed = True
        self._h.withdraw(self)
        self._h.drop_receiver()


class open_channel(tuple[ChannelSender[T], ChannelReceiver[T]]):  # noqa: N801
    """Open a channel whose two ends work from any thread and any event loop.

    ``sender, receiver = bridges.open_channel[int](buffer=64)``

    The sender may ``await send()`` on one loop (asyncio, uvloop or trio) while
    the receiver iterates on another loop in another thread, or
    ``send_blocking()`` from a plain thread; each waiting party is woken on
    its own loop.  At most ``buffer`` values are held (``0``: each send waits
    for a receiver; ``None``: unbounded).  ``overflow`` says what a full
    channel does ([`Overflow`][bridges.Overflow]).  ``sender.fail(exc)`` carries an error
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
        return ChannelSender(handoff), receiver
