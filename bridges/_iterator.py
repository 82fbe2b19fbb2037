"""The async iterators this library returns: async context managers with ``aclose()``."""

from __future__ import annotations

import enum
import logging
import warnings
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Generic, NoReturn, TypeVar, overload

import anyio
from anyio.lowlevel import checkpoint

from ._backend import CancelProbe, loaded
from ._buffer import Handoff, Stats, WithdrawnError
from ._enter import ExcType, Tb
from ._hooks import refuse_awaitable, require_sync

if TYPE_CHECKING:
    from typing_extensions import Self

T = TypeVar("T")
U = TypeVar("U")

#: "no value given" (reduce() without an initial value, a slot holding nothing)
NOTHING: Any = object()

logger = logging.getLogger("bridges")

#: A consumer that finds values ready takes this many before it yields to the
#: scheduler (which is also where it notices cancellation): no scheduler
#: round-trip per value, yet other tasks still run regularly.
CHECKPOINT_EVERY = 64

_START_WHY = (
    "it is called synchronously when iteration begins and returns the release "
    "function; start async work in it with a task group you own, or use callbacks.to_aiter"
)


class Phase(enum.IntEnum):
    """Where an iterator of this library is in its life; only ever moves forward."""

    #: Not started: nothing is subscribed or started yet (R1).
    NEW = 0
    #: Iterating: the source is started.
    RUNNING = 1
    #: Released: the stream ended, or the consumer left; ``__anext__`` ends at once.
    DONE = 2


# module-level aliases: the hot paths compare without an attribute lookup
NEW = Phase.NEW
RUNNING = Phase.RUNNING
DONE = Phase.DONE


def log_cleanup_error(exc: BaseException, what: str) -> None:
    """Report an error raised while cleaning up when another exception is already on its way."""
    logger.error("error while %s (another exception is propagating)", what, exc_info=exc)


async def enter_foreign_context(it: object) -> None:
    """Enter an iterator that must be iterated inside its own context (aiostream's streamers).

    aiostream's ``Streamer`` warns when it is iterated outside ``async with``;
    entering it only marks it as in use, and its ``aclose()`` leaves it.
    """
    aiter_utils = loaded("aiostream.aiter_utils")
    if aiter_utils is None:
        return
    context = getattr(aiter_utils, "AsyncIteratorContext", None)
    if context is not None and isinstance(it, context) and it._state == it._STANDBY:
        await it.__aenter__()


class BridgeIterator(AsyncIterator[T]):
    """Base of every async iterator this library returns.

    Besides ``async for``, each one is an async context manager: leaving the
    ``async with`` block (normally, by ``break``/``return``, by an exception
    or by cancellation) releases the source before the block exits, on every
    backend.  ``aclose()`` does the same by hand and is idempotent.  An
    iterator dropped without either releases its source when it is garbage
    collected and emits a ``ResourceWarning``.
    """

    __slots__ = ("__weakref__",)

    def __aiter__(self) -> Self:
        return self

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: ExcType, exc: BaseException | None, tb: Tb) -> None:
        if exc is None:
            await self.aclose()
            return
        try:
            await self.aclose()
        except BaseException as cleanup_exc:
            # the consumer's own exception wins; the cleanup error is not lost (a
            # cancellation is the one already on its way, or is delivered again)
            if not isinstance(cleanup_exc, anyio.get_cancelled_exc_class()):
                log_cleanup_error(cleanup_exc, f"closing {type(self).__name__}")

    async def aclose(self) -> None:
        """Release the source (idempotent). Cleanup errors are raised here."""

    # ------------------------------------------------------------------
    # Chainable helpers, after TC39's iterator helpers.  Each takes a sync or
    # an async function (an awaitable result is awaited) and returns another
    # iterator of this library that owns this one: entering, closing or
    # leaving it does the same to this one.  They are thin: the work is
    # done in bridges.ops (imported here lazily: ops imports this module).

    @overload
    def map(
        self, fn: Callable[[T], Awaitable[U]], /, *, concurrency: int = 1, ordered: bool = True
    ) -> BridgeIterator[U]: ...

    @overload
    def map(
        self, fn: Callable[[T], U], /, *, concurrency: int = 1, ordered: bool = True
    ) -> BridgeIterator[U]: ...

    def map(
        self, fn: Callable[[T], Any], /, *, concurrency: int = 1, ordered: bool = True
    ) -> BridgeIterator[Any]:
        """Each value passed through ``fn`` (sync or async), in order; ``concurrency`` at once.

        With ``concurrency=1`` (the default): one call at a time, in the
        consumer's task.  Lazy: a value is pulled only when one is asked for.
        If ``fn`` raises, this iterator's source is closed and the error
        raised, once.  If a call of an async ``fn`` is cancelled (a timeout
        around ``__anext__``), the value is kept and ``fn`` is called again for
        it on the next request.

        With ``concurrency=n`` > 1: up to ``n`` calls at once in helper tasks,
        at most ``n`` values pulled ahead of the consumer, results in the
        source's order (``ordered=True``) or as they complete (``False``); it
        needs ``async with``.  See [`bridges.ops.map`][bridges.ops.map].

        :raises TypeError: ``fn`` is not callable; ``concurrency`` is not an int,
            ``ordered`` not a bool
        :raises ValueError: ``concurrency`` < 1
        """
        from .ops._cmap import concurrent_map

        return concurrent_map(self, fn, concurrency, ordered)

    def filter(self, fn: Callable[[T], object], /) -> BridgeIterator[T]:
        """The values for which ``fn`` (sync or async) returns something true.

        Errors and cancellation as for [`map`][bridges.BridgeIterator.map].

        :raises TypeError: ``fn`` is not callable
        """
        from .ops._chain import Filter

        return Filter(self, fn)

    def take(self, n: int, /) -> BridgeIterator[T]:
        """The first ``n`` values; the source is closed as soon as it has given them.

        The source is closed right after its ``n``-th value is pulled, before
        that value is handed over (an error closing it is raised on the next
        request); ``take(0)`` closes it at the first request without pulling.

        :raises TypeError: ``n`` is not an int
        :raises ValueError: ``n`` < 0
        """
        from .ops._chain import Take

        return Take(self, n)

    def drop(self, n: int, /) -> BridgeIterator[T]:
        """All values but the first ``n``, which are pulled and discarded at the first request.

        :raises TypeError: ``n`` is not an int
        :raises ValueError: ``n`` < 0
        """
        from .ops._chain import Drop

        return Drop(self, n)

    @overload
    def flat_map(
        self, fn: Callable[[T], Awaitable[Iterable[U] | AsyncIterable[U]]], /
    ) -> BridgeIterator[U]: ...

    @overload
    def flat_map(
        self, fn: Callable[[T], Iterable[U] | AsyncIterable[U]], /
    ) -> BridgeIterator[U]: ...

    def flat_map(self, fn: Callable[[T], Any], /) -> BridgeIterator[Any]:
        """The values of the iterables ``fn`` returns, one value of the source after the other.

        ``fn`` (sync or async) returns an iterable or an async iterable (not a
        string); each is exhausted before the next source value is pulled.
        Closing closes the inner iterator in progress, then the source.

        :raises TypeError: ``fn`` is not callable (at once); it returned
            something that is not an iterable, or a string (at the consumer)
        """
        from .ops._chain import FlatMap

        return FlatMap(self, fn)

    def indexed(self, start: int = 0, /) -> BridgeIterator[tuple[int, T]]:
        """Each value with its index, ``(start, v0), (start + 1, v1), ...``, like ``enumerate``.

        A thin [`map`][bridges.BridgeIterator.map]: lazy, in order, closing it closes the source.

        :raises TypeError: ``start`` is not an int
        """
        from .ops._seek import indexed

        return indexed(self, start)

    @overload
    async def reduce(self, fn: Callable[[T, T], T | Awaitable[T]], /) -> T: ...

    @overload
    async def reduce(self, fn: Callable[[U, T], U | Awaitable[U]], initial: U, /) -> U: ...

    async def reduce(self, fn: Callable[[Any, T], Any], /, *initial: Any) -> Any:
        """Fold every value into one with ``fn(accumulated, value)`` (sync or async).

        Called as ``reduce(fn)`` or ``reduce(fn, initial)``.  Without ``initial``
        the first value starts the fold.  Consumes this iterator and closes it
        (also on error or cancellation).

        :param fn: called as ``fn(accumulated, value)``; an awaitable result is awaited
        :param initial: at most one value, the start of the fold
        :raises TypeError: the iterator was empty and no ``initial`` was given, or more
            than one ``initial`` was given
        """
        # *initial, not a sentinel default: a private sentinel would show in the signature
        if len(initial) > 1:
            raise TypeError(f"reduce() takes at most one initial value, got {len(initial)}")
        from .ops._chain import reduce_op

        return await reduce_op(self, fn, initial[0] if initial else NOTHING)

    async def to_list(self) -> list[T]:
        """Every value, in a list; consumes this iterator and closes it."""
        from .ops._chain import collect_list

        return await collect_list(self)

    async def for_each(self, fn: Callable[[T], object], /) -> None:
        """Call ``fn`` (sync or async) with each value, in order; consumes and closes this iterator.

        An async ``fn`` is awaited before the next value is pulled.

        :raises TypeError: ``fn`` is not callable
        """
        from .ops._chain import for_each_op

        await for_each_op(self, fn)

    async def some(self, fn: Callable[[T], object], /) -> bool:
        """True as soon as ``fn`` (sync or async) returns something true for a value.

        Consumes this iterator up to that value and closes it there (the rest
        of the source is never pulled); False if no value matches (an empty
        iterator included).  Errors of ``fn`` or the source close it and are
        raised, as themselves.

        :raises TypeError: ``fn`` is not callable
        """
        from .ops._seek import first_where

        found, _ = await first_where(self, fn, True, "some")
        return found

    async def every(self, fn: Callable[[T], object], /) -> bool:
        """False as soon as ``fn`` (sync or async) returns something false for a value.

        Consumes this iterator up to that value and closes it there; True if
        every value passes (an empty iterator included).  Errors as for
        [`some`][bridges.BridgeIterator.some].

        :raises TypeError: ``fn`` is not callable
        """
        from .ops._seek import first_where

        found, _ = await first_where(self, fn, False, "every")
        return not found

    async def find(self, fn: Callable[[T], object], /) -> T | None:
        """The first value for which ``fn`` (sync or async) returns something true, else None.

        Consumes this iterator up to that value and closes it there (the rest
        of the source is never pulled).  When None is itself a value of the
        iterator, ``filter(fn).take(1).to_list()`` tells "found None" from
        "not found".  Errors as for [`some`][bridges.BridgeIterator.some].

        :raises TypeError: ``fn`` is not callable
        """
        from .ops._seek import first_where

        _, value = await first_where(self, fn, True, "find")
        return value  # type: ignore[no-any-return]


class BufferedIterator(BridgeIterator[T], Generic[T]):
    """The consumer end of a bounded hand-off buffer.

    Values are produced by whatever fills the buffer (a callback, a thread,
    a subscription, another loop) and delivered in order.  The source is
    started lazily, at the first ``__anext__`` or on entering ``async with``,
    and released exactly once: at the end of the stream, on an error, on
    ``aclose()``, on leaving ``async with``, or when collected.

    :ivar stats: counters of the buffer ([`bridges.Stats`][bridges.Stats]).
    """

    __slots__ = ("_h", "_phase", "_probe", "_release", "_start", "_tick")

    def __init__(
        self,
        handoff: Handoff[T],
        start: Callable[[Handoff[T]], Callable[[], object] | None] | None = None,
    ) -> None:
        if start is not None:
            require_sync(start, "start", _START_WHY)
        self._h = handoff
        self._start = start
        self._release: Callable[[], object] | None = None
        self._phase = NEW
        self._tick = 0
        self._probe = CancelProbe()

    @property
    def stats(self) -> Stats:
        """A snapshot of the buffer's counters: buffered, high_water, delivered, dropped."""
        return self._h.stats

    @property
    def handoff(self) -> Handoff[T]:
        """The hand-off this iterator consumes (for subclasses that add receive calls)."""
        return self._h

    @property
    def phase(self) -> Phase:
        """`Phase.NEW` before the source started, `Phase.RUNNING`, then `Phase.DONE`."""
        return self._phase

    def begin(self) -> None:
        """Start the source now, as the first ``__anext__`` or entering ``async with`` does.

        Does nothing once started.  An error of the start hook is raised here,
        and the iterator is then done.
        """
        if self._phase == NEW:
            self._begin()

    def retire(self) -> None:
        """Mark this end done without leaving the hand-off: ``__anext__`` ends at once.

        For subclasses whose own ``close()`` leaves in another way (one clone
        of several closing, say); the source is not released here.
        """
        self._phase = DONE

    def _begin(self) -> None:
        start = self._start
        self._start = None
        self._phase = RUNNING
        if start is not None:
            try:
                release = start(self._h)
                refuse_awaitable(release, "start", _START_WHY)
                self._release = release
            except BaseException:
                self._phase = DONE
                self._detach()
                raise

    async def __aenter__(self) -> Self:
        if self._phase == NEW:
            self._begin()
        return self

    def _no_more(self) -> NoReturn:
        """What ``__anext__`` raises once this end is done (a closed channel end says so)."""
        raise StopAsyncIteration

    async def __anext__(self) -> T:
        if self._phase != RUNNING:
            if self._phase == DONE:
                self._no_more()
            self._begin()
        h = self._h
        if self._probe.cancelled():  # a cancel point per call (R19): nothing is taken
            await checkpoint()
            while self._probe.cancelled():
                await checkpoint()
        if h._items:
            self._tick = tick = (self._tick + 1) % CHECKPOINT_EVERY
            if not tick:  # a schedule point every CHECKPOINT_EVERY values
                await checkpoint()
            try:
                item = h._items.popleft()
            except IndexError:
                pass
            else:
                h._delivered += 1
                if h._debt:
                    h._repay()
                elif h._slots is not None:
                    h._slots.append(None)
                if (h._putters or h._paused) and len(h._items) <= h._gate:
                    h._after_pop()
                return item
        try:
            return await h.get(self)
        except WithdrawnError:
            self._no_more()  # this end was closed while it waited
        except BaseException as exc:
            if h._ended and self._phase == RUNNING:
                self._phase = DONE
                self._run_release(None if isinstance(exc, StopAsyncIteration) else exc)
            raise

    def _run_release(self, pending: BaseException | None) -> None:
        release = self._release
        self._release = None
        if release is None:
            return
        try:
            release()
        except BaseException as cleanup_exc:
            if pending is None:
                raise
            log_cleanup_error(cleanup_exc, "releasing the source")

    async def aclose(self) -> None:
        """Leave: drop what is buffered, release the producers and the source (idempotent).

        Producers blocked for room are woken and told the consumer is gone.
        An error raised by the source's release is raised here.
        """
        self._close_now()

    def _close_now(self) -> None:
        """What ``aclose()`` does; it needs no waiting, so ends that close synchronously use it."""
        if self._phase == DONE:
            return
        started = self._phase == RUNNING
        self._phase = DONE
        self._start = None
        self._detach()
        if started:
            self._run_release(None)

    def _detach(self) -> None:
        """This consumer end is done: the hand-off's consumer side leaves."""
        self._h.leave()

    #: what the ``ResourceWarning`` of an end collected while running tells the user to do
    _drop_advice = "use 'async with' or aclose() to release its source deterministically"

    def __del__(self) -> None:
        if getattr(self, "_phase", DONE) != RUNNING:
            return
        self._phase = DONE
        try:
            warnings.warn(
                f"{type(self).__name__} was dropped while running; {self._drop_advice}",
                ResourceWarning,
                stacklevel=1,
                source=self,
            )
        finally:
            self._detach()
            try:
                self._run_release(None)
            except Exception as exc:  # nowhere to raise it from a finalizer
                log_cleanup_error(exc, "releasing a collected iterator's source")


class WrappedIterator(BridgeIterator[T]):
    """A plain async iterable behind the common interface (lazy, closable)."""

    __slots__ = ("_done", "_it", "_source")

    def __init__(self, source: Any) -> None:
        self._source = source
        self._it: Any = None
        self._done = False

    async def __anext__(self) -> T:
        it = self._it
        if it is None:
            if self._done:
                raise StopAsyncIteration
            it = self._it = self._source.__aiter__()
            await enter_foreign_context(it)
        return await it.__anext__()  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        self._done = True
        it, self._it = self._it, None
        if it is not None:
            aclose = getattr(it, "aclose", None)
            if aclose is not None:
                await aclose()
