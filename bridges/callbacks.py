"""Callback APIs <-> async iterables: wrap a legacy API, or drive callbacks from a stream.

:func:`to_aiter` turns anything that calls you back (a ``logging.Handler``,
a thread pool, a timer, an ``asyncio.Protocol``, a C library's callback)
into a bounded async iterator.  Callbacks may come from any thread: a
foreign thread blocks in :meth:`Emitter.send` while the buffer is full; a
callback on the event-loop thread, which must never block, slows the source
down with its own pause/resume hooks, or else fails the stream with
:class:`~bridges.BufferOverflowError` instead of deadlocking.

:func:`from_aiter` is the other direction: it drives an async iterable into
``on_next`` / ``on_error`` / ``on_completed`` callbacks, pulling the next
value only after ``on_next`` has returned.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any, Generic, TypeVar

import anyio
from anyio.lowlevel import checkpoint

from ._buffer import TAKEN, Handoff, Overflow, validate_timeout
from ._iterator import CHECKPOINT_EVERY, BufferedIterator, log_cleanup_error

T = TypeVar("T")

__all__ = ["Emitter", "from_aiter", "to_aiter"]


class Emitter(Generic[T]):
    """The producer's end of :func:`to_aiter`, handed to ``subscribe(emit)``.

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
        :class:`~bridges.BufferOverflowError` (the consumer gets the values
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


def _guard(
    hook: Callable[[], object], what: str, handoff: list[Handoff[Any]]
) -> Callable[[], None]:
    """A pause/resume hook that fails the stream instead of raising into a producer or consumer."""

    def call() -> None:
        try:
            hook()
        except Exception as exc:
            # Raised into the producer it would be lost in the legacy API's
            # callback; raised into the consumer it would lose the value just
            # taken.  The stream carries it instead, after the buffered values.
            if not handoff[0].fail(exc):
                log_cleanup_error(exc, f"calling the {what} hook of an ended stream")

    return call


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
      :class:`~bridges.BufferOverflowError`, whose message names the fixes.

    ``pause`` and ``resume`` alternate, starting with ``pause``, and are
    never called re-entrantly.  ``pause`` runs on the thread of the callback
    that filled the buffer, ``resume`` on the consumer's thread (both the
    loop thread when the source lives on the consumer's loop, as a transport
    does).  A hook that raises fails the stream with its exception.

    :param subscribe: ``subscribe(emit) -> unsubscribe | None``, a plain (not async) function
    :param buffer: values held at most (0: hand each value straight to a
        waiting consumer; None: unbounded)
    :param overflow: what a full buffer does: ``"block"``, ``"drop_oldest"``,
        ``"drop_newest"`` or ``"error"`` (see :class:`~bridges.Overflow`)
    :param pause: the source's "stop calling me" hook (needs ``resume``,
        ``overflow="block"`` and an int ``buffer``)
    :param resume: the source's "go on" hook
    :param low_water: resume once at most this many values are held (default: ``buffer // 2``)
    :return: an async iterator and async context manager with ``stats``
    :raises TypeError: ``subscribe`` or a hook is not a plain callable
    :raises ValueError: a bad ``buffer``, ``overflow`` or ``low_water``, or hooks
        with a policy other than ``"block"``
    """
    if not callable(subscribe):
        raise TypeError(
            f"subscribe must be a function subscribe(emit) -> unsubscribe, "
            f"not {type(subscribe).__name__}"
        )
    if inspect.iscoroutinefunction(subscribe):
        raise TypeError(
            "subscribe must be a plain function, not an async one: it runs synchronously "
            "on the event-loop thread and returns the unsubscribe function"
        )
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
    emitter = Emitter(handoff)

    def start(h: Handoff[T]) -> Callable[[], object] | None:
        unsubscribe = subscribe(emitter)
        if unsubscribe is not None and not callable(unsubscribe):
            raise TypeError(
                "subscribe(emit) must return the unsubscribe function or None, not "
                f"{type(unsubscribe).__name__} (return e.g. its .close or .cancel method)"
            )
        return unsubscribe

    return BufferedIterator(handoff, start)


async def _call(fn: Callable[..., object], *args: Any) -> None:
    result = fn(*args)
    if inspect.isawaitable(result):
        await result


async def _aclose(aclose: Callable[[], Any]) -> None:
    # shielded: the calling task is often being cancelled here, and a cleanup of
    # the source that awaits (closing a connection) must still run to the end (R11)
    with anyio.CancelScope(shield=True):
        await aclose()


async def _close_source(it: AsyncIterator[Any], pending: BaseException | None) -> None:
    aclose = getattr(it, "aclose", None)
    if aclose is None:
        return
    if pending is None:
        await _aclose(aclose)
        return
    try:
        await _aclose(aclose)
    except BaseException as cleanup_exc:
        # the exception already on its way wins; a cleanup error is not lost
        if not isinstance(cleanup_exc, anyio.get_cancelled_exc_class()):
            log_cleanup_error(cleanup_exc, "closing the source")


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
    :param on_next: called with each value, in order
    :param on_error: called with the source's exception (else it propagates)
    :param on_completed: called once the source has ended normally
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
    it = source.__aiter__()
    next_value = type(it).__anext__
    source_error: Exception | None = None
    tick = 0
    try:
        while True:
            try:
                value = await next_value(it)
            except StopAsyncIteration:
                break
            except Exception as exc:
                if on_error is None:
                    raise
                source_error = exc
                break
            result = on_next(value)
            if inspect.isawaitable(result):
                await result
            else:
                tick += 1
                if tick >= CHECKPOINT_EVERY:
                    # a source that never waits and a sync callback must not starve the loop
                    tick = 0
                    await checkpoint()
    except BaseException as exc:
        await _close_source(it, exc)
        raise
    await _close_source(it, None)
    if source_error is not None:
        assert on_error is not None
        try:
            await _call(on_error, source_error)
        finally:
            source_error = None  # no reference cycle through the traceback
    elif on_completed is not None:
        await _call(on_completed)
