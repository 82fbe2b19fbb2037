"""trio memory channels and anyio memory object streams <-> async iterables.

* [`to_aiter`][bridges.channels.to_aiter] - a receive channel (trio) or receive stream (anyio) -> an
  async iterator of this library.
* [`from_aiter`][bridges.channels.from_aiter] - an async iterable -> a receive side that is a
  ``trio.abc.ReceiveChannel`` and an ``anyio.abc.ObjectReceiveStream``, fed by
  a pump task that the ``async with`` owns.
* [`pump`][bridges.channels.pump] - an async iterable -> a send side you already have, above all
  the send end of [`bridges.open_channel`][bridges.open_channel], the bridge across threads and
  event loops.

Exception classes: under trio the receive side of [`from_aiter`][bridges.channels.from_aiter] raises
classes that are trio's *and* anyio's at once (``EndOfChannel`` is both a
``trio.EndOfChannel`` and an ``anyio.EndOfStream``), so code written against
either catches them; on asyncio it raises anyio's.
"""

from __future__ import annotations

import functools
import math
import sys
import warnings
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast, overload

import anyio
from anyio.abc import ObjectReceiveStream, ObjectSendStream, UnreliableObjectReceiveStream
from anyio.lowlevel import checkpoint
from anyio.streams.memory import MemoryObjectReceiveStream

from ._backend import async_waiter, library_name, loaded, trio_exceptions, under_trio
from ._buffer import FULL, GONE, TAKEN, Handoff, Result, Stats, validate_buffer
from ._cancel import CancelProbe, cancel_point
from ._channel import ChannelReceiver, ChannelSender, handoff_of
from ._enter import ExcType, MustEnter, Tb
from ._iterator import CHECKPOINT_EVERY, DONE, NEW, RUNNING, BridgeIterator, log_cleanup_error
from ._pump import (
    FAILED,
    FINISHED,
    INTERRUPTED,
    STOPPED,
    Ending,
    cancelled_now,
    close_source,
    drive,
    is_cancellation,
)

if TYPE_CHECKING:
    import trio
    from trio.abc import ReceiveChannel as _TrioReceiveChannel
    from typing_extensions import Self

    from ._backend import AsyncWaiter
else:

    class _TrioReceiveChannel(Generic[TypeVar("T")]):
        # The receive side becomes a ``trio.abc.ReceiveChannel`` by registration
        # (see _register_trio) once trio is in use: importing trio here would
        # cost every asyncio program that imports this module ~150 ms.
        __slots__ = ()


if sys.version_info >= (3, 11):
    import builtins

    _BaseExceptionGroup = builtins.BaseExceptionGroup
else:  # pragma: no cover - anyio brings the backport
    from exceptiongroup import (  # type: ignore[import-not-found, unused-ignore]
        BaseExceptionGroup as _BaseExceptionGroup,
    )

T = TypeVar("T")

__all__ = ["ChannelIterator", "PumpedReceiver", "from_aiter", "pump", "to_aiter"]


# ----------------------------------------------------------------- exception classes


@functools.cache
def _trio_classes() -> tuple[type[Exception], type[Exception], type[Exception]]:
    """Exception classes that are trio's and anyio's at once (created on first use)."""
    import trio

    class ClosedResourceError(trio.ClosedResourceError, anyio.ClosedResourceError):
        """This receive side was closed (a ``trio`` and an ``anyio`` ClosedResourceError)."""

    class EndOfChannel(trio.EndOfChannel, anyio.EndOfStream):
        """The stream ended (a ``trio.EndOfChannel`` and an ``anyio.EndOfStream``)."""

    class WouldBlock(trio.WouldBlock, anyio.WouldBlock):
        """Nothing to take without waiting (a ``trio`` and an ``anyio`` WouldBlock)."""

    classes = (ClosedResourceError, EndOfChannel, WouldBlock)
    for cls in classes:
        cls.__module__ = __name__
        cls.__qualname__ = cls.__name__
    return classes


def _closed_error(message: str) -> anyio.ClosedResourceError:
    if under_trio():  # the class is anyio's too
        return cast("anyio.ClosedResourceError", _trio_classes()[0](message))
    return anyio.ClosedResourceError(message)


def _end_error() -> Exception:
    return _trio_classes()[1]() if under_trio() else anyio.EndOfStream()


def _would_block() -> Exception:
    return _trio_classes()[2]() if under_trio() else anyio.WouldBlock()


_trio_registered = False


def _register_trio() -> None:
    """Make [`PumpedReceiver`][bridges.channels.PumpedReceiver] a virtual
    ``trio.abc.ReceiveChannel`` (idempotent)."""
    global _trio_registered
    if _trio_registered or loaded("trio") is None:
        return
    import trio

    trio.abc.ReceiveChannel.register(PumpedReceiver)
    _trio_registered = True


def _end_classes() -> tuple[type[BaseException], ...]:
    return (anyio.EndOfStream, *trio_exceptions("EndOfChannel"))


def _would_block_classes() -> tuple[type[BaseException], ...]:
    return (anyio.WouldBlock, *trio_exceptions("WouldBlock"))


def _broken_classes() -> tuple[type[BaseException], ...]:
    return (anyio.BrokenResourceError, *trio_exceptions("BrokenResourceError"))


def _is_trio_receive(obj: object) -> bool:
    trio = loaded("trio")
    return trio is not None and isinstance(obj, trio.abc.ReceiveChannel)


def _is_trio_send(obj: object) -> bool:
    trio = loaded("trio")
    return trio is not None and isinstance(obj, trio.abc.SendChannel)


def _is_trio_memory_receive(obj: object) -> bool:
    trio = loaded("trio")
    return trio is not None and type(obj) is trio.MemoryReceiveChannel


def _is_trio_only(obj: object, trio_check: Any) -> bool:
    """A trio channel that is not also an anyio stream: it works only in a trio run."""
    return bool(trio_check(obj)) and not isinstance(
        obj, (UnreliableObjectReceiveStream, ObjectSendStream)
    )


def _require_trio(what: str, *, lazy: bool = False) -> None:
    """Raise ``RuntimeError`` naming the fix when the running async library is not trio.

    :param lazy: no async library running (a call from sync code) is no error: the
        check is made again where the channel is first used
    """
    library = library_name()
    if library is None:
        if lazy:
            return
        library = "no event loop"
    if library != "trio":
        raise RuntimeError(
            f"{what} needs trio, but this runs under {library}; on every backend use an "
            "anyio memory object stream (anyio.create_memory_object_stream()) or "
            "bridges.open_channel() instead"
        )


def _is_async_iterable(obj: object) -> bool:
    return hasattr(type(obj), "__aiter__")


# ----------------------------------------------------------------- channel -> aiter


class ChannelIterator(BridgeIterator[T]):
    """An async iterator over a trio receive channel or an anyio receive stream.

    Made by [`to_aiter`][bridges.channels.to_aiter].  Each ``__anext__`` takes the next value from
    the channel; the end of the channel (``trio.EndOfChannel`` /
    ``anyio.EndOfStream``) ends iteration and closes the receive side.
    Leaving ``async with``, ``aclose()``, ``break`` then collection (with a
    ``ResourceWarning``) close the receive side, so that blocked and later
    senders get ``BrokenResourceError`` (the last open clone decides, as the
    channel's own rules say).  Errors of the channel itself propagate as the
    channel raises them.

    :ivar stats: ``delivered`` counts the values taken; ``buffered``,
        ``high_water`` and ``capacity`` are what the channel's ``statistics()``
        reports (``current_buffer_used``, trio's ``peak_buffer_used``,
        ``max_buffer_size``) when it has one.  The iterator holds no value
        itself: the channel is the buffer.
    """

    __slots__ = (
        "_delivered",
        "_end",
        "_nowait",
        "_probe",
        "_receive",
        "_state",
        "_tick",
        "_trio_only",
        "_wouldblock",
    )

    def __init__(self, receive: Any) -> None:
        self._receive = receive
        self._state = NEW  # then RUNNING, then DONE (closed)
        self._trio_only = _is_trio_only(receive, _is_trio_receive)
        self._delivered = 0
        self._tick = 0
        self._end = _end_classes()
        self._wouldblock = _would_block_classes()
        # memory channels can hand over buffered values with no scheduler
        # round-trip; checkpoints are then taken every CHECKPOINT_EVERY values,
        # and the probe makes every call a cancel point all the same (R19)
        self._probe = CancelProbe()
        self._nowait = (
            receive.receive_nowait
            if isinstance(receive, MemoryObjectReceiveStream) or _is_trio_memory_receive(receive)
            else None
        )

    @property
    def stats(self) -> Stats:
        """Counters: values delivered, and the channel's fill as it reports it."""
        statistics = getattr(self._receive, "statistics", None)
        buffered = high_water = 0
        capacity: int | None = None
        if statistics is not None:
            s = statistics()
            buffered = s.current_buffer_used
            high_water = getattr(s, "peak_buffer_used", buffered)
            cap = s.max_buffer_size
            capacity = None if cap == math.inf else int(cap)
        return Stats(
            buffered=buffered,
            high_water=high_water,
            delivered=self._delivered,
            dropped=0,
            capacity=capacity,
        )

    def _check_backend(self) -> None:
        if self._trio_only:
            _require_trio("a trio receive channel given to channels.to_aiter()")

    async def __aenter__(self) -> Self:
        if self._state == NEW:
            self._check_backend()
        return self

    async def __anext__(self) -> T:
        if self._state != RUNNING:
            if self._state == DONE:
                raise StopAsyncIteration
            self._check_backend()
            self._state = RUNNING
        nowait = self._nowait
        if nowait is not None:
            if self._probe.cancelled():  # a cancelled scope takes nothing (R19)
                await cancel_point(self._probe)
            self._tick = tick = (self._tick + 1) % CHECKPOINT_EVERY
            if not tick:  # a schedule point every CHECKPOINT_EVERY values
                await checkpoint()
            try:
                item: T = nowait()
            except self._wouldblock:
                pass
            except self._end:
                self._close()
                raise StopAsyncIteration from None
            else:
                self._delivered += 1
                return item
        try:
            item = await self._receive.receive()
        except self._end:
            self._close()
            raise StopAsyncIteration from None
        self._tick = 0  # receive() took a checkpoint
        self._delivered += 1
        return item

    def _close(self) -> bool:
        """Close a memory channel at once; False when only ``await aclose()`` can."""
        self._state = DONE
        close = getattr(self._receive, "close", None)
        if close is None:
            return False
        close()
        return True

    async def aclose(self) -> None:
        """Close the receive side (idempotent): senders then get ``BrokenResourceError``.

        A channel with a synchronous ``close()`` (trio's and anyio's memory
        channels) is closed without waiting; any other is closed with its
        ``aclose()``, whose errors are raised here.
        """
        if self._state == DONE:
            return
        if not self._close():
            await self._receive.aclose()

    def __del__(self) -> None:
        if getattr(self, "_state", DONE) != RUNNING:
            return
        self._state = DONE
        warnings.warn(
            f"{type(self).__name__} was dropped while iterating; use 'async with' or "
            "aclose() to close its channel deterministically",
            ResourceWarning,
            stacklevel=1,
            source=self,
        )
        close = getattr(self._receive, "close", None)
        if close is not None:
            try:
                close()
            except Exception as exc:  # nowhere to raise it from a finalizer
                log_cleanup_error(exc, "closing a collected iterator's channel")


@overload
def to_aiter(receive: ChannelReceiver[T]) -> ChannelReceiver[T]: ...


@overload
def to_aiter(
    receive: UnreliableObjectReceiveStream[T] | _TrioReceiveChannel[T],
) -> ChannelIterator[T]: ...


def to_aiter(receive: Any) -> BridgeIterator[Any]:
    """Iterate a trio receive channel or an anyio receive stream with this library's iterator.

    Accepts a ``trio.MemoryReceiveChannel`` (or any ``trio.abc.ReceiveChannel``),
    an anyio ``MemoryObjectReceiveStream`` (or any ``ObjectReceiveStream``),
    and the receive end of [`bridges.open_channel`][bridges.open_channel] or of
    [`from_aiter`][bridges.channels.from_aiter], which are returned as they are (they already are
    such iterators).

    Backpressure is the channel's own: senders wait while it is full.  The end
    of the channel ends iteration.  Early exit (leaving ``async with``,
    ``aclose()``, an exception or a cancellation in the loop) closes the
    receive side before it completes, so senders see ``BrokenResourceError``
    (R6).  A cancellation caught around one ``__anext__`` takes no value, and
    every ``__anext__`` is a cancel point: in a scope that is already
    cancelled it raises the cancellation and takes nothing, even when the
    channel holds a value (R19).

    A trio channel works only in a trio run: under another backend
    ``to_aiter()`` raises ``RuntimeError`` at once when called in a running
    event loop, else at the first ``async with`` / ``__anext__``.

    :param receive: the receive side to iterate; the iterator owns it from now on
    :return: a [`ChannelIterator`][bridges.channels.ChannelIterator] (an async context manager with
        ``aclose()``),
        or the [`bridges.ChannelReceiver`][bridges.ChannelReceiver] given
    :raises TypeError: ``receive`` is not a receive channel or stream
    :raises RuntimeError: ``receive`` is a trio channel and this is not a trio run
    """
    if isinstance(receive, ChannelReceiver):
        return receive
    if isinstance(receive, UnreliableObjectReceiveStream) or _is_trio_receive(receive):
        if _is_trio_only(receive, _is_trio_receive):
            _require_trio("a trio receive channel given to channels.to_aiter()", lazy=True)
        return ChannelIterator(receive)
    raise TypeError(
        "channels.to_aiter() takes a trio ReceiveChannel, an anyio ObjectReceiveStream "
        f"or a bridges.ChannelReceiver, not {type(receive).__name__}; for any other "
        "async iterable use bridges.iterate()"
    )


# ----------------------------------------------------------------- aiter -> channel


class _Pump(Generic[T]):
    """One run of a source into a hand-off: the state shared by the receive clones."""

    __slots__ = ("cleanup_error", "gone", "handoff", "open_ends", "pump_scope", "shut")

    def __init__(self, handoff: Handoff[T]) -> None:
        self.handoff = handoff
        self.open_ends = 0
        self.shut = False
        self.cleanup_error: BaseException | None = None
        self.pump_scope: anyio.CancelScope | None = None
        self.gone: AsyncWaiter | None = None

    def end_closed(self) -> None:
        """One receive end closed; the last one leaves the hand-off (the pump stops)."""
        self.open_ends -= 1
        if self.open_ends <= 0:
            self.handoff.leave()

    async def run(self, source: AsyncIterator[T], *, task_status: Any) -> None:
        with anyio.CancelScope() as scope:
            self.pump_scope = scope
            task_status.started()
            # Stepped and closed in this task, in one scope that the source's own
            # scopes nest in (trio's as_safe_channel case: see drive)
            ending = await drive(source, self.handoff)
            if ending.cleanup_error is not None:
                if self.cleanup_error is None:
                    self.cleanup_error = ending.cleanup_error
                else:
                    log_cleanup_error(ending.cleanup_error, "closing the source")
            if ending.how is FINISHED:
                self.handoff.close()
            elif ending.how is FAILED:
                assert ending.error is not None
                self.handoff.fail(ending.error)  # in-band: the receiver raises it after the values
            elif ending.how is INTERRUPTED:
                assert ending.error is not None
                if not is_cancellation(ending.error) or scope.cancel_called or cancelled_now():
                    raise ending.error  # ours (the block ended) or from outside
                # A cancel scope of the source's own (its task group, after one of its
                # tasks failed; a timeout it keeps across yield) cancelled the pump
                # while the source waited at a yield.  That scope is closed now, so
                # nothing would catch the cancellation: the stream ends in-band with
                # the source's error instead.
                self._source_cancelled_itself()

    def _source_cancelled_itself(self) -> None:
        error, self.cleanup_error = self.cleanup_error, None
        if error is None:
            error = RuntimeError(
                "the source of from_aiter() was cancelled by a cancel scope of its own (a "
                "timeout or task group it keeps open across yield) while it waited at a "
                "yield, and was closed there: the stream was cut short"
            )
        self.handoff.fail(error)

    async def watch(self, gone: AsyncWaiter, *, task_status: Any) -> None:
        """Cancel the pump as soon as every receive end closed (on any thread)."""
        task_status.started()
        await gone.wait()  # also woken when the block ends
        if self.pump_scope is not None:
            self.pump_scope.cancel()


class PumpedReceiver(ChannelReceiver[T], ObjectReceiveStream[T], _TrioReceiveChannel[T]):
    """The receive side of [`from_aiter`][bridges.channels.from_aiter]: a receive channel fed by a
    pump task.

    It is an ``anyio.abc.ObjectReceiveStream`` on every backend, a
    ``trio.abc.ReceiveChannel`` under trio, and a
    [`bridges.ChannelReceiver`][bridges.ChannelReceiver] (any thread, any loop; ``stats``).

    * [`receive`][bridges.channels.PumpedReceiver.receive] / ``async for`` give the source's values
      in order; the
      source's end ends the stream; an error the source raised is raised here
      once, itself, after the values before it, and then the stream ends.
    * [`clone`][bridges.channels.PumpedReceiver.clone] makes another receive end for fan-out: each
      value goes to
      one of them; the pump stops and the source is closed when the last
      open end closes (or when the ``async with`` ends).
    * Closing an end (``close()``, ``aclose()``, ``async with``), or the end of
      the ``from_aiter`` block, makes ``receive()``, ``receive_nowait()`` and
      ``async for`` on it raise ``ClosedResourceError``, also in a task that
      was waiting on it (never a quiet end of the loop).

    Under trio the exceptions are trio's (and anyio's: see the module docs),
    elsewhere anyio's.
    """

    __slots__ = ("_closed", "_pump")

    def __init__(self, pump: _Pump[T]) -> None:
        super().__init__(pump.handoff)
        self.begin()
        self._closed = False
        self._pump = pump
        pump.open_ends += 1

    async def __anext__(self) -> T:
        """The next value for ``async for``; the source's end ends the loop.

        Cancellation while waiting takes no value.

        :raises ClosedResourceError: this end was closed, or its ``from_aiter``
            block has ended (also when that happens while the loop waits here)
        :raises Exception: the source's own error, once, after the values before it
        """
        if self._closed:
            raise _closed_error(self._closed_message())
        try:
            return await super().__anext__()
        except StopAsyncIteration:
            # woken by the close, not by the source's end: say so, as receive() does
            if self._closed or self.handoff.consumer_gone:
                raise _closed_error(self._closed_message()) from None
            raise

    def _closed_error(self) -> anyio.ClosedResourceError:
        return _closed_error(self._closed_message())

    def _closed_message(self) -> str:
        if self._pump.shut:
            return "the from_aiter() block this receive side belongs to has ended"
        return "this receive side was closed"

    async def receive(self) -> T:
        """The next value of the source, waiting in the caller's loop for one.

        Cancellation while waiting takes no value.

        :raises EndOfChannel: the source ended (``trio.EndOfChannel`` under trio,
            ``anyio.EndOfStream`` elsewhere; under trio the class is both)
        :raises ClosedResourceError: this end was closed, or its ``from_aiter``
            block has ended
        :raises Exception: the source's own error, once, after the values before it
        """
        try:
            return await self.__anext__()
        except StopAsyncIteration:  # the source's end (a closed end raised its own error)
            raise _end_error() from None

    def receive_nowait(self) -> T:
        """A value if one is ready.

        :raises WouldBlock: none is ready yet
        :raises EndOfChannel: the source ended
        :raises ClosedResourceError: this end was closed
        :raises Exception: the source's error, once, after the values before it
        """
        if self._closed:
            raise _closed_error(self._closed_message())
        h = self.handoff
        ok, item = h.get_nowait()
        if ok:
            return item  # type: ignore[return-value]
        if h.open:
            raise _would_block()
        ok, item = h.get_nowait()  # a value put just before the end
        if ok:
            return item  # type: ignore[return-value]
        if h.consumer_gone:
            raise _closed_error(self._closed_message())
        exc = h.take_end()  # the source's error, once, or None for its end
        if exc is not None:
            raise exc
        raise _end_error()

    def clone(self) -> PumpedReceiver[T]:
        """Another receive end of the same stream (fan-out: each value goes to one end).

        :raises ClosedResourceError: this end is closed
        """
        if self._closed or self._pump.shut:
            raise _closed_error(self._closed_message())
        return PumpedReceiver(self._pump)

    def close(self) -> None:
        """Close this end (idempotent); closing the last one stops the pump.

        The values it had not taken are dropped, and so is a source error
        queued behind them.  The source is closed by the pump, at the latest
        when the ``async with`` of [`from_aiter`][bridges.channels.from_aiter] ends.
        """
        if self._closed:
            return
        self._closed = True
        self.retire()
        self._pump.end_closed()

    async def aclose(self) -> None:
        """Same as [`close`][bridges.channels.PumpedReceiver.close]."""
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        # no warning: the from_aiter block closes every end when it ends
        if getattr(self, "_closed", True):
            return
        self._closed = True
        self.retire()
        if not self._pump.shut:
            self._pump.end_closed()


class _FromAiter(MustEnter, AbstractAsyncContextManager[PumpedReceiver[T]]):
    __slots__ = ("_active", "_buffer", "_source", "_tg", "_used")

    what = "channels.from_aiter()"
    usage = "async with channels.from_aiter(source) as receive: async for v in receive: ..."
    handed_out = frozenset(n for n in dir(PumpedReceiver) if not n.startswith("_"))

    def __init__(self, source: AsyncIterable[T], buffer: int | None) -> None:
        self._source = source
        self._buffer = buffer
        self._used = False  # a one-shot iterator was already run
        self._active: _Pump[T] | None = None
        self._tg: anyio.abc.TaskGroup | None = None

    async def __aenter__(self) -> PumpedReceiver[T]:
        if self._active is not None:
            raise RuntimeError(
                "this from_aiter() is already entered; for a second receive end use "
                "receive.clone(), or call from_aiter() again"
            )
        source = self._source.__aiter__()
        if source is self._source:
            if self._used:
                raise RuntimeError(
                    f"the {type(source).__name__} given to from_aiter() is a one-shot async "
                    "iterator that an earlier 'async with' already ran; pass a re-iterable "
                    "(whose __aiter__ returns a fresh iterator) or a fresh iterator"
                )
            self._used = True
        _register_trio()
        handoff: Handoff[T] = Handoff(self._buffer)
        pump = _Pump(handoff)
        gone = async_waiter()
        handoff.on_consumer_gone(gone.wake)
        tg = anyio.create_task_group()
        await tg.__aenter__()
        try:
            await tg.start(pump.run, source)
            pump.gone = gone
            await tg.start(pump.watch, gone)
        except BaseException as exc:
            pump.shut = True
            handoff.leave()
            if pump.pump_scope is not None:
                pump.pump_scope.cancel()
            tg.cancel_scope.cancel()
            try:
                suppressed = await tg.__aexit__(type(exc), exc, exc.__traceback__)
            except _BaseExceptionGroup as group:
                # exc itself (a cancellation, say) plus the cancellations it caused in
                # the tasks: exc alone, as itself
                cancelled = anyio.get_cancelled_exc_class()
                own = _own(exc)
                if any(id(e) not in own and not isinstance(e, cancelled) for e in _leaves(group)):
                    raise
                suppressed = False
            if not suppressed:
                raise
        self._tg = tg
        self._active = pump
        return PumpedReceiver(pump)

    async def __aexit__(self, exc_type: ExcType, exc: BaseException | None, tb: Tb) -> bool:
        pump, tg = self._active, self._tg
        assert pump is not None
        assert tg is not None
        self._active = self._tg = None
        pump.shut = True
        pump.handoff.leave()  # every receive end: closed; parked consumers wake
        if pump.pump_scope is not None:
            pump.pump_scope.cancel()
        if pump.gone is not None:
            pump.gone.wake()  # the watcher ends
        try:
            suppress = await tg.__aexit__(exc_type, exc, tb)
        except _BaseExceptionGroup as group:
            _log_cleanup(pump)
            leaves = _leaves(group)
            # a cancellation from outside that reached the pump or the watcher is the
            # one the block raises or will raise: not an error of its own (under trio
            # each cancelled task adds its Cancelled to the nursery's group)
            cancelled = anyio.get_cancelled_exc_class()
            own = _own(exc)
            others = [e for e in leaves if id(e) not in own and not isinstance(e, cancelled)]
            if not others:
                if exc is not None:
                    return False  # the block's own exception (or cancellation), as itself
                # the block ended just as a cancellation from outside came: that
                # cancellation, unchanged, never a group of them
                raise next(e for e in leaves if isinstance(e, cancelled)) from None
            if len(others) == 1:
                if exc is not None and not isinstance(exc, anyio.get_cancelled_exc_class()):
                    log_cleanup_error(exc, "running the from_aiter() block")
                raise others[0] from None
            raise
        except BaseException:
            _log_cleanup(pump)
            raise
        if exc is not None:
            _log_cleanup(pump)
            return bool(suppress)
        if pump.cleanup_error is not None:
            error, pump.cleanup_error = pump.cleanup_error, None
            raise error
        return False


def _log_cleanup(pump: _Pump[Any]) -> None:
    if pump.cleanup_error is not None:
        error, pump.cleanup_error = pump.cleanup_error, None
        log_cleanup_error(error, "closing the source of from_aiter()")


def _leaves(group: Any) -> list[BaseException]:
    out: list[BaseException] = []
    for e in group.exceptions:
        if isinstance(e, _BaseExceptionGroup):
            out.extend(_leaves(e))
        else:
            out.append(e)
    return out


def _own(exc: BaseException | None) -> set[int]:
    """Ids of the exceptions the block raised: ``exc``, or its leaves when it is a group.

    A task group puts the block's exception into its own group, and may rebuild
    an ExceptionGroup the block raised (trio splits the cancellations out of
    it): its leaves are still the block's own exception objects.
    """
    if exc is None:
        return set()
    if isinstance(exc, _BaseExceptionGroup):
        return {id(e) for e in _leaves(exc)}
    return {id(exc)}


def from_aiter(
    source: AsyncIterable[T], *, buffer: int | None = 0
) -> AbstractAsyncContextManager[PumpedReceiver[T]]:
    """Run an async iterable into a receive channel, inside ``async with``.

    ``async with channels.from_aiter(source, buffer=0) as receive:`` starts a
    pump task in a task group that the ``async with`` owns and yields a
    [`PumpedReceiver`][bridges.channels.PumpedReceiver]: a ``trio.abc.ReceiveChannel`` under trio
    and an ``anyio.abc.ObjectReceiveStream`` on every backend.

    * Backpressure (R10): the source is pulled only when the channel can take
      the value: at most ``buffer`` values wait in it; with ``buffer=0`` (the
      default) the source is pulled only while a consumer waits in
      ``receive()``, so nothing is computed ahead.  ``None`` is unbounded.
    * Errors (R12): an error of the source is raised by ``receive()`` /
      ``async for``, once, as the original exception, after the values before
      it; never as an ExceptionGroup out of the ``async with``.
    * Early exit (R11, R14): closing every receive end, leaving the block, or
      cancelling it stops the pump and closes the source (``aclose()``, its
      ``finally``) before the block exits, shielded from the cancellation, so
      a cleanup that awaits runs to its end.  An exception from the block
      comes out as itself (an ExceptionGroup the block raised too), and so
      does a cancellation (never an ExceptionGroup of the block's error and
      the cancelled tasks').  An error the source
      raises while being closed comes out of the ``async with`` when the block
      ended normally, and is logged (logger ``"bridges"``) when the block is
      already raising.
    * Sources that keep a task group (or a cancel scope) open across
      ``yield``, the case trio's ``as_safe_channel`` is for, are safe: the
      pump task steps the source and closes it, inside one cancel scope that
      the source's scopes nest in, so every way out of the block closes it
      cleanly.  Should one of the source's own scopes cancel it while it waits
      at a ``yield`` (a task of its task group failed), the source is closed
      there and the stream fails with what closing it raised (its task
      group's ExceptionGroup, less the ``GeneratorExit`` that closing threw
      in), or with ``RuntimeError`` when that was nothing: the stream was cut
      short.
    * Each ``async with`` runs the source afresh (a re-iterable starts a new
      iteration); a one-shot iterator cannot be run twice (``RuntimeError``).

    :param source: the async iterable to pump
    :param buffer: values the pump may get ahead of the consumers (int >= 0, or None)
    :raises TypeError: ``source`` is not an async iterable, or ``buffer`` is not an int
    :raises ValueError: ``buffer`` is negative
    """
    if not _is_async_iterable(source):
        raise TypeError(
            f"channels.from_aiter() takes an async iterable, not {type(source).__name__}; "
            "for a blocking iterable use bridges.threads"
        )
    return _FromAiter(source, validate_buffer(buffer))


# ----------------------------------------------------------------- aiter -> a send side


async def pump(
    source: AsyncIterable[T],
    send: ChannelSender[T] | ObjectSendStream[T] | trio.abc.SendChannel[T],
) -> None:
    """Send every value of ``source`` into a send side, then close it.

    The send side is the send end of [`bridges.open_channel`][bridges.open_channel] (the
    receiver may iterate on another thread or event loop), a
    ``trio.abc.SendChannel`` or an ``anyio.abc.ObjectSendStream``.  ``pump``
    runs in the calling task and returns when the source is done.

    * Backpressure: each value is sent with ``await send(...)``, which waits
      for room; with an ``open_channel`` sender the source is pulled only once
      the channel has room (R10).
    * End: the send side is closed; the receiver gets the buffered values, then the end.
    * Source error: an ``open_channel`` sender carries it in-band with
      ``fail(exc)`` (the receiver raises it after the values before it) and
      ``pump`` returns; a trio or anyio send side cannot carry it, so it is
      closed and the error is raised here.
    * Receiver gone (``BrokenResourceError``): the source is closed and
      ``pump`` returns.  With an ``open_channel`` sender this is noticed even
      while the source is waiting, from any thread.
    * Cancellation of ``pump``: the source is closed (shielded from the
      cancellation, so a cleanup that awaits runs to its end) and the cancellation
      propagates; an ``open_channel`` receiver then gets
      ``anyio.BrokenResourceError`` after the buffered values, not a clean
      end (the stream was cut short); a trio or anyio send side is closed.
    * An error the source raises while being closed is raised here, or
      logged when another exception is already on its way.
    * Wrong arguments (``TypeError``, a trio send channel outside trio) are
      rejected before ``pump`` takes the source, which is left untouched.
      Once it has taken it, ``pump`` closes the source on every exit,
      including an ``open_channel`` sender found already closed
      (``anyio.ClosedResourceError``, raised before the source is pulled).

    :param source: the async iterable to drain
    :param send: the send side; ``pump`` closes it
    :raises TypeError: ``source`` is not an async iterable or ``send`` not a send side
    :raises RuntimeError: ``send`` is a trio channel and this is not a trio run
    :raises anyio.ClosedResourceError: ``send`` is an ``open_channel`` sender
        that was already closed
    """
    if not _is_async_iterable(source):
        raise TypeError(
            f"channels.pump() takes an async iterable as its source, not {type(source).__name__}"
        )
    if isinstance(send, ChannelSender):
        if send.closed:
            # checked before the source is pulled: nothing is computed for nobody
            closed = anyio.ClosedResourceError(
                "channels.pump() got a ChannelSender that was already closed; pass an open "
                "sender (pump() closes it when the source ends) or a clone() taken before "
                "closing"
            )
            await close_source(source.__aiter__(), closed)
            raise closed
        try:
            await _pump_open_channel(source.__aiter__(), send)
        finally:
            send.close()  # on every exit (a no-op after fail()): the sender is pump's now
    elif isinstance(send, ObjectSendStream) or _is_trio_send(send):
        if _is_trio_only(send, _is_trio_send):
            _require_trio("a trio send channel given to channels.pump()")
        await _pump_send_channel(source.__aiter__(), send)
    else:
        raise TypeError(
            "channels.pump() sends into a bridges.ChannelSender, a trio SendChannel or an "
            f"anyio ObjectSendStream, not {type(send).__name__}"
        )


class _SendSink(Generic[T]):
    """A send side as a sink of the pump: each value is sent with ``await send.send(v)``,
    paced by the hand-off of an ``open_channel`` sender (R10); a broken one stops it."""

    __slots__ = ("_broken", "_h", "_send")

    def __init__(self, send: Any, handoff: Handoff[T] | None) -> None:
        self._send = send
        self._h = handoff
        self._broken = _broken_classes()

    def has_room(self) -> bool:
        return self._h is None or self._h.has_room()

    async def wait_room(self) -> None:
        if self._h is not None:
            await self._h.wait_room()

    def is_open(self) -> bool:
        return self._h is None or self._h.open

    def put_nowait(self, item: T) -> Result:
        return FULL  # every value is sent by put()

    async def put(self, item: T) -> Result:
        try:
            await self._send.send(item)
        except self._broken:
            return GONE  # the receiver left (or the stream was ended through a clone)
        return TAKEN


async def _pump_open_channel(source: AsyncIterator[T], send: ChannelSender[T]) -> None:
    h = handoff_of(send)
    gone = async_waiter()
    h.on_consumer_gone(gone.wake)
    ending = Ending(STOPPED)
    try:
        async with anyio.create_task_group() as tg:
            watch_scope = anyio.CancelScope()

            async def watch() -> None:
                with watch_scope:
                    await gone.wait()
                    tg.cancel_scope.cancel()  # the receiver left: stop pulling at once

            tg.start_soon(watch)
            try:
                ending = await drive(source, _SendSink(send, h))
            finally:
                watch_scope.cancel()
            if ending.how is INTERRUPTED and not isinstance(ending.error, Exception):
                # a cancellation (ours, when the receiver left, ends in the task group)
                raise ending.error  # type: ignore[misc]
    except BaseException as exc:  # a cancellation from outside, KeyboardInterrupt, ...
        if not h.consumer_gone:
            send.fail(
                anyio.BrokenResourceError(
                    "the sending side stopped before the end of its source "
                    f"({type(exc).__name__}); the stream was cut short"
                )
            )
        if isinstance(ending.error, Exception) and ending.error is not exc:
            log_cleanup_error(ending.error, "pumping into the channel")
        if ending.cleanup_error is not None:
            log_cleanup_error(ending.cleanup_error, "closing the source")
        raise
    if ending.how is FINISHED:
        send.close()
    elif ending.how is FAILED:
        assert ending.error is not None
        # in-band: the receiver raises it after the values; a receiver that left while
        # the source was in its step (from another thread) takes nothing more, this
        # error included (one raised while the source was being closed is its cleanup
        # error, raised below)
        if not h.consumer_gone:
            send.fail(ending.error)
    elif ending.how is INTERRUPTED and not isinstance(ending.error, Exception):
        ending.how = STOPPED  # our own cancellation: the receiver left
    ending.raise_interruption()  # the sink's error (a closed sender)
    if ending.cleanup_error is not None:
        raise ending.cleanup_error


async def _pump_send_channel(source: AsyncIterator[T], send: Any) -> None:
    try:
        ending = await drive(source, _SendSink(send, None), paced=False)
    finally:
        close = getattr(send, "close", None)
        if close is not None:
            close()
        else:
            await send.aclose()
    ending.raise_error()  # a trio or anyio send side cannot carry the source's error
