"""Concurrent map: ``map(fn, concurrency=n)``, at most ``n`` calls in flight, bounded.

Worker tasks (at most ``n``, started as the work needs them) share the
source: one of them pulls at a time (an async iterator cannot be pulled
twice at once), then calls ``fn`` on its value while another pulls the
next.  A window bounds everything between the source and the consumer: a
value is pulled only while fewer than ``n`` values are pulled and not yet
delivered, so at most ``n`` calls run and at most ``n`` results wait for a
slow consumer, whose pace then paces the source.

In order (``ordered=True``) each pulled value gets a slot at the tail of a
queue and its worker fills the slot; the consumer takes filled slots from
the head.  Unordered, a result is queued when its call completes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterable, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar, overload

import anyio
from anyio.lowlevel import checkpoint

from .._backend import async_waiter
from .._iterator import CHECKPOINT_EVERY, BridgeIterator, log_cleanup_error
from ._base import (
    Hosted,
    is_async_callable,
    is_awaitable,
    require_aiterable,
    require_callable,
    require_count,
)
from ._chain import Map

if TYPE_CHECKING:
    from .._backend import AsyncWaiter

T = TypeVar("T")
U = TypeVar("U")

#: an ordered slot whose call has not completed yet
_PENDING: Any = object()


class _ConcurrentMap(Hosted[U]):
    """``fn`` over the source with up to ``limit`` calls in flight (see `concurrent_map`)."""

    __slots__ = (
        "_async",
        "_delivered",
        "_done",
        "_error",
        "_fn",
        "_limit",
        "_ordered",
        "_parked",
        "_pull",
        "_pullers",
        "_pulling",
        "_ready",
        "_source_done",
        "_source_error",
        "_started",
        "_taken",
        "_tick",
        "_waiter",
        "_workers",
    )

    def __init__(
        self, source: AsyncIterable[Any], fn: Callable[[Any], Any], limit: int, ordered: bool
    ) -> None:
        super().__init__(source)
        self._fn = fn
        self._async = is_async_callable(fn)
        self._limit = limit
        self._ordered = ordered
        #: ordered: one slot per value pulled and not delivered (a result, or _PENDING);
        #: unordered: the results completed and not delivered
        self._ready: deque[Any] = deque()
        self._taken = 0  # pulls started (minus the one that found the end)
        self._delivered = 0
        self._pulling = False
        self._pull: Callable[[], Awaitable[Any]] | None = None
        self._pullers: deque[AsyncWaiter] = deque()  # workers waiting for their turn to pull
        self._parked = 0  # workers waiting for their turn (they will take the next value)
        self._workers = 0
        self._source_done = False
        self._source_error: BaseException | None = None
        self._error: BaseException | None = None
        self._waiter: AsyncWaiter | None = None
        self._started = False
        self._done = False
        self._tick = 0

    def _what(self) -> str:
        return f"map(fn, concurrency={self._limit})"

    # ------------------------------------------------------------ the workers' side

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.wake()

    def _next_puller(self) -> None:
        """The turn to pull may have come: wake the worker that waited longest."""
        if self._pullers:
            self._pullers.popleft().wake()

    def _grow(self) -> None:
        """A worker starts a call: start another to pull meanwhile, up to ``limit``."""
        if not self._parked and self._workers < self._limit and not self._source_done:
            self._workers += 1
            self._spawn(self._work)

    def _fail(self, exc: BaseException, scope: anyio.CancelScope) -> None:
        """A call raised: the first such error cancels the other calls and stops the pulls."""
        if self._closed:
            self._cleanup_error(exc)  # raised while being cancelled: aclose() raises it
        elif self._error is None:
            self._error = exc
            self._source_done = True
            self._cancel_helpers(but=scope)
            self._wake()
        else:
            log_cleanup_error(exc, "mapping concurrently (another error came first)")

    def _note_source_end(self, error: BaseException | None) -> None:
        self._pulling = False
        self._source_done = True
        self._source_error = error
        while self._pullers:
            self._pullers.popleft().wake()
        self._wake()

    async def _work(self, scope: anyio.CancelScope) -> None:
        ready = self._ready
        ordered = self._ordered
        fn = self._fn
        is_async = self._async
        while True:
            while self._pulling or self._taken - self._delivered >= self._limit:
                if self._source_done:
                    return
                waiter = async_waiter()
                self._pullers.append(waiter)
                self._parked += 1
                try:
                    await waiter.wait()
                finally:
                    self._parked -= 1
            pull = self._pull
            if self._source_done or pull is None:
                return
            self._pulling = True
            self._taken += 1
            try:
                value = await pull()
            except StopAsyncIteration:
                self._taken -= 1
                self._note_source_end(None)
                return
            except Exception as exc:
                self._taken -= 1
                if self._closed:
                    self._cleanup_error(exc)  # the source's cleanup, run by the cancelled pull
                elif self._error is None:
                    self._note_source_end(exc)
                else:
                    log_cleanup_error(exc, "mapping concurrently (another error came first)")
                return
            except BaseException:
                self._pulling = False  # cancelled: the op is closing
                raise
            self._pulling = False
            slot, first = len(ready), self._delivered
            if ordered:
                ready.append(_PENDING)
            self._next_puller()
            self._grow()
            try:
                result = fn(value)
                if is_async or is_awaitable(result):
                    result = await result
            except Exception as exc:
                self._fail(exc, scope)
                return
            if ordered:
                # the slot moved towards the head by what was delivered meanwhile
                ready[slot - (self._delivered - first)] = result
                if ready[0] is _PENDING:
                    continue  # an earlier call is still running: the consumer waits for it
            else:
                ready.append(result)
            self._wake()

    # ------------------------------------------------------------ the consumer's side

    async def __anext__(self) -> U:
        ready = self._ready
        if ready and ready[0] is not _PENDING:
            self._tick += 1
            if self._tick < CHECKPOINT_EVERY:
                return self._deliver()  # type: ignore[no-any-return]
            self._tick = 0
            await checkpoint()  # results ready for long: let other tasks run now and then
        return await self._wait_next()

    def _deliver(self) -> Any:
        result = self._ready.popleft()
        self._delivered += 1
        if self._pullers:
            self._pullers.popleft().wake()  # the window has room again
        return result

    async def _wait_next(self) -> U:
        ready = self._ready
        if not self._started:
            if self._closed:
                self._done = True
                raise StopAsyncIteration
            self._started = True
            if self._tg is not None:  # (else _spawn says how to use it, touching nothing)
                self._pull = (await self._ups[0].open()).__anext__
            self._workers = 1
            self._spawn(self._work)
        while True:
            if ready and ready[0] is not _PENDING:
                return self._deliver()  # type: ignore[no-any-return]
            if self._done or self._closed:
                self._done = True
                raise StopAsyncIteration
            error = self._error
            if error is not None:
                # a call failed: the others are cancelled; the source is closed first
                self._error = None
                self._done = True
                if self._source_error is not None:
                    log_cleanup_error(self._source_error, "mapping concurrently (a call failed)")
                    self._source_error = None
                await self._end(error)
                ready.clear()  # (once the workers are gone: one may still be storing a result)
                raise error
            if self._source_done and not self._pulling and self._delivered == self._taken:
                self._done = True
                error = await self._end(self._source_error)
                self._source_error = None
                if error is not None:
                    raise error
                raise StopAsyncIteration
            # (a waiter left here by a cancelled wait is replaced; waking it is harmless)
            self._waiter = waiter = async_waiter()
            await waiter.wait()

    async def aclose(self) -> None:
        """Cancel the calls in flight and close the source (idempotent).

        Results not yet delivered are dropped.  An error raised while closing
        the source is raised here.
        """
        self._done = True
        self._source_done = True
        self._pull = None
        try:
            await super().aclose()
        finally:
            self._ready.clear()


def concurrent_map(
    source: AsyncIterable[T], fn: Callable[[T], Any], concurrency: object, ordered: object
) -> BridgeIterator[Any]:
    """``map(fn)`` over ``source``: one call at a time, or up to ``concurrency`` in helper tasks.

    The implementation behind [`bridges.ops.map`][bridges.ops.map] and
    [`BridgeIterator.map`][bridges.BridgeIterator.map]; it checks the arguments.
    """
    require_callable(fn, "map()'s function")
    limit = require_count(concurrency, "concurrency", 1)
    if not isinstance(ordered, bool):
        raise TypeError(f"ordered must be True or False, not {type(ordered).__name__}")
    if limit == 1:
        return Map(source, fn)
    return _ConcurrentMap(source, fn, limit, ordered)


@overload
def map(
    source: AsyncIterable[T],
    fn: Callable[[T], Awaitable[U]],
    *,
    concurrency: int = 1,
    ordered: bool = True,
) -> BridgeIterator[U]: ...


@overload
def map(
    source: AsyncIterable[T], fn: Callable[[T], U], *, concurrency: int = 1, ordered: bool = True
) -> BridgeIterator[U]: ...


def map(
    source: AsyncIterable[T],
    fn: Callable[[T], Any],
    *,
    concurrency: int = 1,
    ordered: bool = True,
) -> BridgeIterator[Any]:
    """Each value of ``source`` through ``fn`` (sync or async), up to ``concurrency`` calls at once.

    With ``concurrency=1`` (the default) this is
    [`BridgeIterator.map`][bridges.BridgeIterator.map]: one call at a time in the
    consumer's task, lazy, no helper task.

    With ``concurrency=n`` > 1, helper tasks call ``fn`` on up to ``n`` values at
    once, in a task group the iterator owns: use it as
    ``async with ops.map(source, fn, concurrency=n) as results: async for r in results: ...``
    (iterated without being entered, it raises a ``RuntimeError`` saying so).

    - Bounded: at most ``n`` values are between the source and the consumer
      (pulled and not yet delivered: calls in flight plus results waiting),
      so at most ``n`` calls run and at most ``n`` results are held; a slow
      consumer stops the source from being pulled.  The source is pulled by
      one task at a time, never concurrently, and only once a value is asked for.
    - Order: ``ordered=True`` yields the results in the source's order (a
      slow call holds back the results after it, which count against the
      ``n``); ``ordered=False`` yields them as the calls complete.
    - A call's error: the first one cancels the calls in flight and stops the
      pulls; the results already completed that can be delivered (in order,
      for ``ordered=True``) come first, then the source is closed and the
      error raised, once, as itself (never in an ExceptionGroup).  Later
      errors are logged to the ``bridges`` logger.
    - The source's end or error: the calls in flight finish and their
      results are delivered, then the iteration ends, or the source's error
      is raised once, as itself.
    - Early exit (``aclose()``, leaving ``async with``, cancellation of the
      consumer) cancels the calls in flight and closes the source before it
      returns; undelivered results are dropped.  A timeout caught around one
      ``__anext__`` loses nothing: the calls go on and the next request gets
      the next result.

    :param source: any async iterable
    :param fn: called with each value; an awaitable result is awaited
    :param concurrency: the most calls in flight, and results held (an int >= 1)
    :param ordered: results in the source's order (True) or as they complete (False)
    :raises TypeError: ``source`` is not an async iterable, ``fn`` is not callable,
        ``concurrency`` is not an int or ``ordered`` not a bool
    :raises ValueError: ``concurrency`` < 1
    :raises RuntimeError: with ``concurrency`` > 1, iterated without entering
        its ``async with`` block
    """
    require_aiterable(source)
    return concurrent_map(source, fn, concurrency, ordered)
