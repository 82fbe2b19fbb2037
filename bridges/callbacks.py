"""Callback APIs <-> async iterables: wrap a legacy API, or drive callbacks from a stream.

[`to_aiter`][bridges.callbacks.to_aiter] turns anything that calls you back (a ``logging.Handler``,
a thread pool, a timer, an ``asyncio.Protocol``, a C library's callback)
into a bounded async iterator.  Callbacks may come from any thread: a
foreign thread blocks in [`Emitter.send`][bridges.callbacks.Emitter.send] while the buffer is full;
a callback on the event-loop thread, which must never block, slows the source
down with its own pause/resume hooks, or else fails the stream with
[`BufferOverflowError`][bridges.BufferOverflowError] instead of deadlocking.

[`from_aiter`][bridges.callbacks.from_aiter] is the other direction: it drives an async iterable
into ``on_next`` / ``on_error`` / ``on_completed`` callbacks, pulling the next
value only after ``on_next`` has returned.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import AsyncIterable, Awaitable, Callable
from typing import Any, Generic, TypeVar

import anyio

from ._buffer import FULL, TAKEN, Handoff, Overflow, Result, validate_timeout
from ._hooks import is_async_callable, refuse_awaitable, require_sync
from ._iterator import BufferedIterator, log_cleanup_error
from ._pump import FAILED, FINISHED, PushSink, drive

T = TypeVar("T")

__all__ = ["Emitter", "from_aiter", "to_aiter"]


class Emitter(Generic[T]):
    """The producer's end of [`to_aiter`][bridges.callbacks.to_aiter], handed to
    ``subscribe(emit)``.

    Every method is thread-safe and may be called from any thread, from
    inside the legacy API's callbacks.  Calling the emitter itself,
    ``emit(value)``, is ``emit.send(value)``, so it can be registered
    directly as a one-argument callback.

    After the stream has ended (closed, failed, or the consumer left) every
    call is ignored and says so: ``send`` returns False, ``error`` and
    ``close`` return False.
    """

    __slots__ = ("__weakref__", "_h")

    def __init__(self, handoff: Handoff[T]) -> None:
        self._h = handoff

    def send(self, value: T, timeout: float | None = None) -> bool:
        """Hand ``value`` to the consumer.

        Under ``overflow="block"`` a full buffer makes a foreign thread wait
        here for room (at most ``timeout`` seconds); on an event-loop thread
        it never waits: with pause/resume hooks the value is kept and the
        source is paused, without them the stream fails with
        [`BufferOverflowError`][bridges.BufferOverflowError] (the consumer gets the values
        sent before, then the error) and this returns False.

        :param value: the value to deliver
        :param timeout: seconds a foreign thread may wait for room (None: no limit);
            ignored on an event-loop thread, which never waits
        :return: True if the value was taken (under ``drop_oldest`` an older
            value made room); False if it was dropped (``drop_newest``), or the
            stream has ended: closed, failed (``overflow="error"`` or R8
            tripped), or the consumer left (which also wakes a waiting call)
        :raises TimeoutError: no room within ``timeout`` seconds; the value was not sent
        :raises TypeError: ``timeout`` is not a number (or None)
        :raises ValueError: ``timeout`` is nan
        """
        if timeout is not None:
            timeout = validate_timeout(timeout)
        return self._h.put_sync(value, timeout) is TAKEN

    def __call__(self, value: T) -> bool:
        """``emit(value)`` is ``emit.send(value)``."""
        return self._h.put_sync(value) is TAKEN

    def error(self, exc: BaseException) -> bool:
        """End the stream with ``exc``: the consumer gets the buffered values, then ``exc`` itself.

        :return: False if the stream had already ended (then ``exc`` goes nowhere)
        :raises TypeError: ``exc`` is not an exception instance
        """
        if not isinstance(exc, BaseException):
            raise TypeError(f"emit.error() takes an exception instance, not {type(exc).__name__}")
        return self._h.fail(exc)

    def close(self) -> bool:
        """End the stream: the consumer gets the buffered values, then the end.

        :return: False if the stream had already ended
        """
        return self._h.close()

    @property
    def closed(self) -> bool:
        """True once the stream has ended: closed, failed, or the consumer left.

        A producer loop can stop early on it; ``send`` returning False says the same.
        """
        return not self._h.open

    @property
    def consumer_gone(self) -> bool:
        """True once the consumer has left (closed the iterator, was cancelled, or collected)."""
        return self._h.consumer_gone


_SUBSCRIBE_WHY = (
    "it is called synchronously, on the event-loop thread, and returns the unsubscribe "
    "function; register the callbacks in a plain function (start any async setup "
    "before the stream, or in a task), and return the unsubscribe, which may be async def"
)
_HOOK_WHY = (
    "it is called synchronously, on the thread of the callback that filled the buffer "
    "(pause) or of the consumer (resume), at the moment the buffer crosses its mark, "
    "where nothing can await it, and values would pile up while a coroutine waited; "
    "pass the source's own plain hooks (transport.pause_reading / transport.resume_reading), "
    "or a plain function that flips the flag your producer checks"
)
_UNSUBSCRIBE_WHY = (
    "declare the unsubscribe 'async def' (an async function, a partial of one, an object "
    "with an async __call__), which the iterator awaits, or make it a plain function"
)


def _guard(
    hook: Callable[[], object], what: str, handoff: list[Handoff[Any]]
) -> Callable[[], None]:
    """A pause/resume hook that fails the stream instead of raising into a producer or consumer."""

    def call() -> None:
        try:
            # a hook that returned a coroutine paused (or resumed) nothing: say so
            refuse_awaitable(hook(), what, _HOOK_WHY)
        except Exception as exc:
            # Raised into the producer it would be lost in the legacy API's
            # callback; raised into the consumer it would lose the value just
            # taken.  The stream carries it instead, after the buffered values.
            if not handoff[0].fail(exc):
                log_cleanup_error(exc, f"calling the {what} hook of an ended stream")

    return call


class _Unsubscriber(Generic[T]):
    """Subscribes and unsubscribes for a `_CallbackIterator` (no reference back to it).

    The iterator holds this, not the other way round (a weak reference
    only), so that an iterator dropped while running is collected, and its
    source released, at once.
    """

    __slots__ = ("awaits", "collected", "iterator", "pending", "subscribe", "unsubscribe")

    def __init__(self, subscribe: Callable[[Emitter[T]], Callable[[], object] | None]) -> None:
        self.subscribe: Callable[[Emitter[T]], Callable[[], object] | None] | None = subscribe
        self.unsubscribe: Callable[[], object] | None = None
        self.iterator: weakref.ref[_CallbackIterator[T]] | None = None
        #: an awaitable the unsubscribe returned, for the async caller on the stack
        self.pending: Any = None
        #: True while an async caller awaits ``pending`` right after the release
        self.awaits = False
        #: True once the iterator is being collected (nothing can await then)
        self.collected = False

    def start(self, h: Handoff[T]) -> Callable[[], object] | None:
        subscribe, self.subscribe = self.subscribe, None
        assert subscribe is not None
        unsubscribe = subscribe(Emitter(h))
        refuse_awaitable(unsubscribe, "subscribe", _SUBSCRIBE_WHY)
        if unsubscribe is None:
            return None
        if not callable(unsubscribe):
            raise TypeError(
                "subscribe(emit) must return the unsubscribe function or None, not "
                f"{type(unsubscribe).__name__} (return e.g. its .close or .cancel method)"
            )
        self.unsubscribe = unsubscribe
        it = self.iterator() if self.iterator is not None else None
        if it is not None and is_async_callable(unsubscribe):
            # layout-compatible (no slots of its own): only the methods change
            it.__class__ = _AsyncUnsubscribeIterator
            self.awaits = True
        return self.release

    def release(self) -> None:
        unsubscribe, self.unsubscribe = self.unsubscribe, None
        if unsubscribe is None:
            return
        result = unsubscribe()
        if not inspect.isawaitable(result):
            return
        if self.awaits and not self.collected:
            self.pending = result
            return
        where = (
            "the iterator was collected without aclose() or 'async with', and a "
            "finalizer cannot await; leave its 'async with' block instead"
            if self.collected
            else "it was not declared async, so the end of the stream could not await it; "
            + _UNSUBSCRIBE_WHY
        )
        refuse_awaitable(result, "the unsubscribe function subscribe(emit) returned", where)

    async def await_pending(self, pending_exc: BaseException | None) -> None:
        pending, self.pending = self.pending, None
        if pending is None:
            return
        try:
            # shielded: the consumer is often being cancelled here, and the
            # release must still run to its end before the exit completes (R6)
            with anyio.CancelScope(shield=True):
                await pending
        except BaseException as cleanup_exc:
            if pending_exc is None:
                raise
            log_cleanup_error(cleanup_exc, "releasing the source")


class _CallbackIterator(BufferedIterator[T]):
    """What [`to_aiter`][bridges.callbacks.to_aiter] returns: a BufferedIterator whose unsubscribe
    may be async.

    A plain unsubscribe is released by BufferedIterator itself.  An async one
    is awaited where an async caller is on the stack: in `aclose`
    (leaving ``async with``, cancellation) and, for one declared ``async``,
    in ``__anext__`` at the end of the stream.  Only a stream whose
    unsubscribe is declared async takes the slower ``__anext__`` of
    `_AsyncUnsubscribeIterator` (the class is switched when
    ``subscribe`` has returned it), so the hot path of every other stream
    stays BufferedIterator's own.
    """

    __slots__ = ("_unsubscriber",)

    def __init__(
        self, handoff: Handoff[T], subscribe: Callable[[Emitter[T]], Callable[[], object] | None]
    ) -> None:
        unsubscriber = _Unsubscriber(subscribe)
        super().__init__(handoff, unsubscriber.start)
        unsubscriber.iterator = weakref.ref(self)
        self._unsubscriber = unsubscriber

    async def aclose(self) -> None:
        """Leave: drop what is buffered, release the producers and the source (idempotent).

        An async unsubscribe is awaited, shielded from cancellation, before
        this returns.  An error raised by the unsubscribe is raised here.
        """
        u = self._unsubscriber
        awaits, u.awaits = u.awaits, True
        try:
            await super().aclose()
        finally:
            u.awaits = awaits
        await u.await_pending(None)

    def __del__(self) -> None:
        u = getattr(self, "_unsubscriber", None)
        if u is not None:
            u.collected = True
        super().__del__()


class _AsyncUnsubscribeIterator(_CallbackIterator[T]):
    """A `_CallbackIterator` whose unsubscribe is declared async: awaited at the end too."""

    __slots__ = ()

    async def __anext__(self) -> T:
        try:
            return await super().__anext__()
        except BaseException as exc:
            # the stream ended (the release ran) or the consumer was cancelled (it did not)
            await self._unsubscriber.await_pending(
                None if isinstance(exc, StopAsyncIteration) else exc
            )
            raise


def to_aiter(
    subscribe: Callable[[Emitter[T]], Callable[[], object] | None],
    *,
    buffer: int | None = 64,
    overflow: Overflow | str = Overflow.BLOCK,
    pause: Callable[[], object] | None = None,
    resume: Callable[[], object] | None = None,
    low_water: int | None = None,
) -> BufferedIterator[T]:
    """Wrap a callback API as an async iterator.

    ``subscribe(emit)`` is your function: it registers callbacks with the
    API that call ``emit.send(value)`` (or ``emit(value)``), ``emit.error(exc)``
    and ``emit.close()``, and returns the function that unregisters them
    (or None).  It is called lazily, on the event-loop thread, at the first
    ``__anext__`` or on entering ``async with``; the unsubscribe is called
    exactly once, on the consumer's thread, when the stream ends, fails, is
    closed (``aclose()``, leaving ``async with``, cancellation) or the
    iterator is collected.  If ``subscribe`` raises, the consumer gets that
    exception itself and later ``emit`` calls return False.

    Backpressure, by where the callback runs:

    * a foreign thread blocks in ``send`` until there is room (``block``),
      and is released, with False, when the consumer leaves;
    * the event-loop thread never blocks: with ``pause``/``resume`` the
      value that fills the buffer calls ``pause()``, values that arrive
      before the source honours it are kept (``stats.high_water`` shows the
      overshoot), and ``resume()`` is called once the consumer has drained
      to ``low_water``; without hooks a full buffer fails the stream with
      [`BufferOverflowError`][bridges.BufferOverflowError], whose message names the fixes.

    ``pause`` and ``resume`` alternate, starting with ``pause``.  A source
    that produces inside its ``resume()`` (as asyncio transports do) is
    paused again from inside that call as soon as the buffer fills, so the
    buffer still bounds it (R18).  ``pause`` runs on the thread of the callback
    that filled the buffer, ``resume`` on the consumer's thread (both the
    loop thread when the source lives on the consumer's loop, as a transport
    does).  A hook that raises fails the stream with its exception.

    Sync or async: ``subscribe``, ``pause`` and ``resume`` are called
    synchronously, so they must be plain functions; an ``async def`` (or a
    ``functools.partial`` of one, or an object with an async ``__call__``)
    is refused at once with ``TypeError``, and one that returns a coroutine
    all the same fails the stream with ``TypeError`` (the coroutine is
    closed, never run).  The unsubscribe may be plain or async: an async
    one is awaited, shielded from cancellation, by ``aclose()`` / leaving
    ``async with`` and by the ``__anext__`` that reaches the end, before
    they return.  A collected iterator cannot await it (use ``async with``).

    :param subscribe: ``subscribe(emit) -> unsubscribe | None``, a plain (not async)
        function; the unsubscribe it returns is a plain or an async function
    :param buffer: values held at most (0: hand each value straight to a
        waiting consumer; None: unbounded)
    :param overflow: what a full buffer does: ``"block"``, ``"drop_oldest"``,
        ``"drop_newest"`` or ``"error"`` (see [`Overflow`][bridges.Overflow])
    :param pause: the source's "stop calling me" hook, a plain function (needs
        ``resume``, ``overflow="block"`` and an int ``buffer``)
    :param resume: the source's "go on" hook, a plain function
    :param low_water: resume once at most this many values are held (default: ``buffer // 2``)
    :return: an async iterator and async context manager with ``stats``
    :raises TypeError: ``subscribe`` or a hook is not a plain callable (an async one included)
    :raises ValueError: a bad ``buffer``, ``overflow`` or ``low_water``, or hooks
        with a policy other than ``"block"``
    """
    if not callable(subscribe):
        raise TypeError(
            f"subscribe must be a function subscribe(emit) -> unsubscribe, "
            f"not {type(subscribe).__name__}"
        )
    require_sync(subscribe, "subscribe", _SUBSCRIBE_WHY)
    for name, hook in (("pause", pause), ("resume", resume)):
        if hook is not None:
            require_sync(hook, name, _HOOK_WHY)
    policy = Overflow.parse(overflow)
    if (pause is not None or resume is not None) and policy is not Overflow.BLOCK:
        raise ValueError(
            f"pause/resume hooks slow the source instead of dropping or failing: use them "
            f'with overflow="block", not {policy.value!r}'
        )
    cell: list[Handoff[T]] = []
    if pause is not None and resume is not None and callable(pause) and callable(resume):
        pause = _guard(pause, "pause", cell)
        resume = _guard(resume, "resume", cell)
    handoff: Handoff[T] = Handoff(buffer, policy, pause=pause, resume=resume, low_water=low_water)
    cell.append(handoff)
    return _CallbackIterator(handoff, subscribe)


class _CallbackSink(PushSink[T]):
    """``on_next`` as a sink of the pump: a sync callback takes the value at once; one
    that returns an awaitable has it awaited (``put``) before the next pull."""

    __slots__ = ("_on_next", "_pending")

    def __init__(self, on_next: Callable[[T], object]) -> None:
        self._on_next = on_next
        self._pending: Awaitable[object] | None = None

    def put_nowait(self, item: T) -> Result:
        result = self._on_next(item)
        if inspect.isawaitable(result):
            self._pending = result
            return FULL  # handed over: put() waits for the callback to finish
        return TAKEN

    async def put(self, item: T) -> Result:
        pending, self._pending = self._pending, None
        if pending is not None:
            await pending
        return TAKEN


async def _call(fn: Callable[..., object], *args: Any) -> None:
    result = fn(*args)
    if inspect.isawaitable(result):
        await result


async def from_aiter(
    source: AsyncIterable[T],
    on_next: Callable[[T], object],
    *,
    on_error: Callable[[Exception], object] | None = None,
    on_completed: Callable[[], object] | None = None,
) -> None:
    """Drive ``source`` into callbacks until it ends; return when it has.

    Each value goes to ``on_next(value)``; an ``on_next`` that returns an
    awaitable (an ``async def`` callback) is awaited before the next value is
    pulled, so the source never runs ahead of the callback (one value in
    flight).  Every callback may be sync or async.  The source is always
    closed (``aclose()``) before this returns or raises.

    * The source ends: ``on_completed()`` is called.
    * The source raises an ``Exception``: ``on_error(exc)`` gets the exception
      itself, once, and this returns normally; without ``on_error`` the
      exception propagates.
    * ``on_next`` (or ``on_error`` / ``on_completed``) raises: the source is
      closed and the exception propagates (a cleanup error of the source is
      logged to the ``bridges`` logger, never raised over it).
    * The calling task is cancelled: the source is closed and the
      cancellation propagates; no callback is called.

    Runs in the calling task: no task or thread is started.  A sync
    ``on_next`` over a source that never waits still lets other tasks run
    (a checkpoint every few dozen values).

    :param source: the async iterable to drive
    :param on_next: called with each value, in order (sync or async: awaited)
    :param on_error: called with the source's exception (else it propagates);
        sync or async
    :param on_completed: called once the source has ended normally; sync or async
    :raises TypeError: ``source`` is not an async iterable or a callback is not callable
    """
    if not hasattr(type(source), "__aiter__"):
        hint = (
            " (use bridges.threads for blocking iterables)" if hasattr(source, "__iter__") else ""
        )
        raise TypeError(f"from_aiter() takes an async iterable, not {type(source).__name__}{hint}")
    for name, fn in (("on_next", on_next), ("on_error", on_error), ("on_completed", on_completed)):
        if fn is not None and not callable(fn):
            raise TypeError(f"{name} must be callable, not {type(fn).__name__}")
    ending = await drive(source.__aiter__(), _CallbackSink(on_next), paced=False)
    if ending.how is not FAILED or on_error is None:
        # the source's error (without on_error), on_next's, a cancellation, a cleanup error
        ending.raise_error()
    elif ending.cleanup_error is not None:
        raise ending.cleanup_error
    if ending.how is FAILED:
        assert on_error is not None
        assert isinstance(ending.error, Exception)
        try:
            await _call(on_error, ending.error)
        finally:
            ending.error = None  # no reference cycle through the traceback
    elif ending.how is FINISHED and on_completed is not None:
        await _call(on_completed)
