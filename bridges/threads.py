"""Blocking iterables and sync consumers <-> async iterables.

[`to_aiter`][bridges.threads.to_aiter] iterates a blocking iterable (a database cursor, a file, a
generator that does I/O) in a worker thread, so that async code can
``async for`` over it without blocking its event loop.  The worker pulls
ahead at most ``buffer`` values and then waits; rows are handed over in
chunks, so a fast source costs the event loop one wake-up per chunk, not
one per row.

[`from_aiter`][bridges.threads.from_aiter] is the other direction: it gives sync code (a plain
thread, a legacy library, a CSV writer) an ordinary iterator over an async
iterable, which runs in an event loop on a helper thread or in an anyio
``BlockingPortal`` you already have.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
import warnings
from collections import deque
from collections.abc import AsyncIterable, Callable, Iterable, Iterator
from concurrent.futures import CancelledError as FutureCancelledError
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Generic, TypeVar, final, overload

import anyio
from anyio.from_thread import BlockingPortal

from ._backend import async_waiter, in_event_loop_thread
from ._buffer import TAKEN, Handoff, Overflow, Stats, validate_buffer
from ._enter import ExcType, Tb
from ._hooks import refuse_awaitable, require_sync
from ._iterator import DONE, NEW, RUNNING, BufferedIterator, log_cleanup_error
from ._pump import FAILED, FINISHED, INTERRUPTED, drive, is_cancellation
from ._workers import GRACE, describe, validate_grace, wait_returned, warn_left_behind

if TYPE_CHECKING:
    from typing_extensions import Self

T = TypeVar("T")

__all__ = [
    "LINGER",
    "BlockingIterator",
    "ConsumerGone",
    "PrefetchIterator",
    "consumer_gone",
    "from_aiter",
    "to_aiter",
]

logger = logging.getLogger("bridges")

#: How long a consumer that has run dry lets the worker collect a chunk before
#: it takes what is there (seconds).  A full buffer or the end of the stream
#: wakes it earlier; a source slower than one row per wake-up is handed over
#: row by row with no added latency (see [`PrefetchIterator`][bridges.threads.PrefetchIterator]).
LINGER = 0.001

_WORKER_NAME = "bridges-threads-worker"
_LOOP_NAME = "bridges-threads-loop"


# ------------------------------------------------------------------ to_aiter


@final
class ConsumerGone:
    """Tells a blocking source, in its worker thread, that its consumer has left.

    [`consumer_gone`][bridges.threads.consumer_gone] returns it, in the worker thread of a
    [`to_aiter`][bridges.threads.to_aiter] stream (in the factory, or in the source's own code
    that ``next()`` runs).  A source that waits for something that may never
    come (an idle subscription, a queue) can poll it
    ([`is_set`][bridges.threads.ConsumerGone.is_set],
    [`wait`][bridges.threads.ConsumerGone.wait]) between short waits of its own, or register a
    callback that wakes it ([`add_callback`][bridges.threads.ConsumerGone.add_callback]), and
    return: the worker then closes the source and the consumer's exit, which waits for that
    (``grace``), completes at once.
    """

    __slots__ = ("_callbacks", "_event", "_lock")

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], object]] | None = []

    def is_set(self) -> bool:
        """True once the consumer has left (closed the iterator, was cancelled or collected)."""
        return self._event.is_set()

    def __bool__(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the consumer has left, at most ``timeout`` seconds; True if it has."""
        return self._event.wait(timeout)

    def add_callback(self, fn: Callable[[], object]) -> None:
        """Call ``fn()`` once when the consumer leaves (at once if it has left).

        It runs on the thread the consumer leaves from (often the event
        loop's), so it must not block: wake the source (put a sentinel on
        the queue it reads, publish to the channel it listens to), and let
        the worker close it.  An exception it raises is logged to the
        ``"bridges"`` logger.

        :raises TypeError: ``fn`` is not callable, or is an async function
        """
        if not callable(fn):
            raise TypeError(f"add_callback() takes a function, not {type(fn).__name__}")
        require_sync(fn, "the callback given to ConsumerGone.add_callback()", _CALLBACK_WHY)
        with self._lock:
            if self._callbacks is not None:
                self._callbacks.append(fn)
                return
        _call_logged(fn)

    def _set(self) -> None:
        """Mark the consumer as gone and run the callbacks (the worker's hook)."""
        with self._lock:
            callbacks, self._callbacks = self._callbacks, None
            self._event.set()
        for fn in callbacks or ():
            _call_logged(fn)


_CALLBACK_WHY = (
    "it is called synchronously on the thread the consumer leaves from, where nothing "
    "can await it; wake the source with a plain function"
)


def _call_logged(fn: Callable[[], object]) -> None:
    try:
        refuse_awaitable(fn(), "the callback given to ConsumerGone.add_callback()", _CALLBACK_WHY)
    except Exception as exc:
        logger.error("a ConsumerGone callback failed", exc_info=exc)


_local = threading.local()


def consumer_gone() -> ConsumerGone:
    """The [`ConsumerGone`][bridges.threads.ConsumerGone] of the
    [`to_aiter`][bridges.threads.to_aiter] stream this worker thread serves.

    Call it in the source's own code: in the factory, or in a generator that
    the worker iterates:

        def messages():
            gone = threads.consumer_gone()
            while not gone.is_set():
                message = subscription.get(timeout=0.1)  # short waits: see the exit soon
                if message is not None:
                    yield message

    :raises RuntimeError: called outside a worker thread of [`to_aiter`][bridges.threads.to_aiter]
    """
    gone: ConsumerGone | None = getattr(_local, "gone", None)
    if gone is None:
        raise RuntimeError(
            "threads.consumer_gone() is called from the worker thread of threads.to_aiter(): "
            "in the factory, or in the source's code that next() runs (a generator); "
            "call it there, not on the event loop or another thread"
        )
    return gone


class _Worker(Generic[T]):
    """The worker thread of one [`to_aiter`][bridges.threads.to_aiter] stream.

    Holds no reference to the iterator, so that an iterator dropped without
    ``aclose()`` is collected (and its source released) while the worker waits.
    """

    __slots__ = (
        "_claim",
        "cleanup_error",
        "done",
        "factory",
        "gone",
        "grace",
        "h",
        "in_call",
        "left_because",
        "source",
        "thread",
    )

    def __init__(
        self, source: Any, factory: bool, handoff: Handoff[T], grace: float | None
    ) -> None:
        self.source = source
        self.factory = factory
        self.h = handoff
        self.grace = grace
        #: True while the worker is inside a call of the source (the factory,
        #: ``iter()``, ``next()``), which nothing can interrupt
        self.in_call = False
        #: what the source's code in the worker sees through consumer_gone()
        self.gone = ConsumerGone()
        handoff.on_consumer_gone(self.gone._set)
        #: why nobody waits for a close() error after the consumer left (for the log)
        self.left_because = "the iterator was collected while running"
        #: closed when the worker has closed the source and is about to end
        self.done: Handoff[None] = Handoff(0)
        #: a close() error after the consumer left, for an aclose() that waits
        self.cleanup_error: BaseException | None = None
        # One token: whoever takes it first decides who reports a close() error
        # after the consumer left.  The worker takes it to hand the error to an
        # aclose() that waits; an aclose() that does not wait (or a finalizer)
        # takes it to leave the error to the worker, which then logs it.
        self._claim: deque[None] = deque([None])
        self.thread: threading.Thread | None = None

    def start(self, h: Handoff[T]) -> Callable[[], None]:
        thread = threading.Thread(target=self.run, name=_WORKER_NAME, daemon=True)
        thread.start()
        self.thread = thread
        return self.release

    def release(self) -> None:
        """BufferedIterator's release hook: at the end of the stream, join the worker.

        It has closed the source by then (``done``), so joining is immediate
        and no thread outlives the stream.  (On early exit, `wait_closed`
        does the waiting, without blocking the event loop.)
        """
        if self.h.ended and not self.done.open and self.thread is not None:
            self.thread.join()

    def run(self) -> None:
        h = self.h
        _local.gone = self.gone
        it: Iterator[T] | None = None
        owned: object = None
        error: BaseException | None = None
        exhausted = False
        try:
            self.in_call = True
            if self.factory:
                if h.is_open():
                    owned = self.source()
                    refuse_awaitable(owned, _FACTORY, _FACTORY_WHY)
                    it = _iter(owned, self.source)
            elif h.is_open():
                it = iter(self.source)
            self.in_call = False
            if it is not None:
                exhausted = self._pump(it)
        except BaseException as exc:
            error = exc
        finally:
            self.in_call = False
        cleanup_error = _close(it, owned)
        end: BaseException | None = None  # what the stream ends with, if it is ours to end
        try:
            if error is not None:
                if cleanup_error is not None:
                    log_cleanup_error(cleanup_error, "closing a blocking source that failed")
                if h.consumer_gone:
                    logger.debug("a blocking source failed after its consumer left", exc_info=error)
                end = error
            elif exhausted:
                end = cleanup_error  # the values came first; then this, once (R5)
            elif cleanup_error is not None:
                self.cleanup_error = cleanup_error
                try:
                    self._claim.pop()
                except IndexError:  # nobody waits for it: do not lose it
                    self.cleanup_error = None
                    logger.error(
                        "closing the blocking source %s failed after its consumer had left "
                        "without waiting for the close (%s)",
                        describe(self.source),
                        self.left_because,
                        exc_info=cleanup_error,
                    )
        finally:
            # The source is closed and no user code runs any more in this
            # thread: whoever waits for ``done`` may join it at once.
            self.done.close()
            if end is not None:
                h.fail(end)
            elif exhausted:
                h.close()

    def _pump(self, it: Iterator[T]) -> bool:
        """Move rows until the source ends (True) or the stream does (False)."""
        h = self.h
        put = h.put_sync
        # Under "block" wait for room *before* pulling, so that at most
        # ``buffer`` rows are ever pulled ahead (buffer=0: next() runs only on
        # demand).  A drop policy, or an unbounded buffer, never waits.
        wait = h.overflow is Overflow.BLOCK and h.capacity is not None
        put_next = h.put_then_wait_room_sync
        is_open = h.is_open
        if wait:
            h.wait_room_sync()  # room for the first row
        while True:
            # Announce the call, then look at the state: aclose() leaves, then
            # looks at in_call, so one of the two always sees the other.
            self.in_call = True
            if not is_open():
                return False
            try:
                row = next(it)
            except StopIteration:
                return True
            self.in_call = False
            if wait:
                if not put_next(row):
                    return False
            elif put(row) is not TAKEN and not is_open():
                return False

    def detach(self, because: str) -> bool:
        """The consumer leaves without waiting: a later close() error is the worker's to log.

        ``because`` says why, for that log.  False when the worker has
        already handed over such an error (then wait and take it).
        """
        try:
            self._claim.pop()
        except IndexError:
            return False
        self.left_because = because
        return True

    async def wait_closed(self) -> None:
        """After the consumer left: wait until the worker has closed the source (R21).

        A call of the source in progress (a ``next()`` on a slow read) cannot
        be interrupted: this waits, shielded from cancellation, for it to
        return and for the worker to close the source, at most ``grace``
        seconds (without a call in progress, until the source is closed).
        A call still running then is left to the worker, which closes the
        source as soon as it returns (a ``RuntimeWarning`` says so).  Raises
        the error ``close()`` raised, if any.
        """
        # not in a call: the worker sees that the consumer left and closes the
        # source at once (it does not start another call)
        if not await wait_returned(self.done, self.grace if self.in_call else None):
            because = f"a call of the source outlasted grace={self.grace:g} s"
            if self.detach(because):
                warn_left_behind(
                    "threads.to_aiter()",
                    self.source,
                    self.grace,
                    "the worker thread closes the source when that call returns",
                )
                return
            await wait_returned(self.done, None)  # it is past the source's code: at once
        if self.thread is not None:
            self.thread.join()  # past ``done`` it runs no user code: this is immediate
        exc, self.cleanup_error = self.cleanup_error, None
        if exc is not None:
            raise exc


_FACTORY = "the factory given to threads.to_aiter()"
_FACTORY_WHY = (
    "it is called in the worker thread, where nothing can await it; for an async source "
    "iterate it directly, or wrap it with bridges.iterate()"
)


def _iter(obj: object, factory: object) -> Iterator[Any]:
    try:
        return iter(obj)  # type: ignore[call-overload,no-any-return]
    except TypeError:
        if hasattr(type(obj), "__iter__"):
            raise
        raise TypeError(
            f"the factory {factory!r} given to threads.to_aiter() returned a "
            f"{type(obj).__name__}, which is not iterable; it must return an iterable"
        ) from None


def _close(it: object, owned: object) -> BaseException | None:
    """Close the iterator, and the object a factory returned if it is another one."""
    error: BaseException | None = None
    for obj in (it, owned) if owned is not it else (it,):
        close = getattr(obj, "close", None)
        if obj is None or not callable(close):
            continue
        try:
            close()
        except BaseException as exc:
            if error is None:
                error = exc
            else:
                log_cleanup_error(exc, "closing a blocking source")
    return error


class PrefetchIterator(BufferedIterator[T]):
    """The async iterator [`to_aiter`][bridges.threads.to_aiter] returns: a worker thread prefetches
    the rows.

    Besides what every [`BufferedIterator`][bridges.BufferedIterator] does (lazy start,
    ``async with``, ``aclose()``, ``stats``, a ``ResourceWarning`` when
    dropped while running), leaving it waits for the worker to close the
    source, so that the generator's ``finally`` or the cursor's ``close()``
    has run when ``async with`` exits.  A call of the source in progress (a
    ``next()`` blocked on I/O), which nothing can interrupt, is waited for
    first, at most ``grace`` seconds: only a call that outlasts that is left
    behind (with a ``RuntimeWarning``), and the worker closes the source and
    ends as soon as it returns.

    Hand-over: every row enters the buffer as soon as the worker has it.  A
    consumer that has run dry is woken by the next row, except right after a
    wake-up that found several rows (a fast source): then it lets the worker
    collect a chunk, and is woken when the buffer is full, the stream ends,
    or after at most `LINGER` seconds.
    """

    __slots__ = ("_worker",)

    def __init__(self, worker: _Worker[T]) -> None:
        super().__init__(worker.h, worker.start)
        self._worker = worker

    async def aclose(self) -> None:
        """Leave: stop the worker and close the source (idempotent).

        A worker waiting for room is woken and closes the source (its
        ``close()``; a generator's ``finally`` runs in the worker thread);
        this waits for that, shielded from cancellation, and raises the error
        ``close()`` raised, if any.  A worker inside a call of the source,
        which nothing can interrupt, closes it as soon as the call returns:
        this waits for that too, at most ``grace`` seconds.  A call still
        running then is left behind with a ``RuntimeWarning`` that names the
        source; the worker closes it when the call returns (logging a
        ``close()`` error to the ``"bridges"`` logger).
        """
        started = self.phase == RUNNING
        await super().aclose()
        if started:
            await self._worker.wait_closed()

    def __del__(self) -> None:
        running = getattr(self, "phase", DONE) == RUNNING
        try:
            super().__del__()  # warns, and leaves: the worker stops
        finally:
            if running and not self._worker.detach("the iterator was collected while running"):
                exc, self._worker.cleanup_error = self._worker.cleanup_error, None
                if exc is not None:
                    log_cleanup_error(exc, "closing the source of a collected iterator")


@overload
def to_aiter(
    iterable: Iterable[T],
    *,
    buffer: int | None = 64,
    overflow: Overflow | str = Overflow.BLOCK,
    grace: float | None = GRACE,
) -> PrefetchIterator[T]: ...


@overload
def to_aiter(
    iterable: Callable[[], Iterable[T]],
    *,
    buffer: int | None = 64,
    overflow: Overflow | str = Overflow.BLOCK,
    grace: float | None = GRACE,
) -> PrefetchIterator[T]: ...


def to_aiter(
    iterable: Iterable[T] | Callable[[], Iterable[T]],
    *,
    buffer: int | None = 64,
    overflow: Overflow | str = Overflow.BLOCK,
    grace: float | None = GRACE,
) -> PrefetchIterator[T]:
    """Iterate a blocking iterable in a worker thread, as an async iterator.

    ``async with threads.to_aiter(cursor, buffer=256) as rows: async for row in rows: ...``

    One worker thread per stream, started at the first ``__anext__`` (or on
    entering ``async with``), calls ``iter()`` and ``next()`` on the source;
    the event loop only takes the rows from the buffer.  Works on asyncio
    (and uvloop) and trio.

    :param iterable: a blocking iterable (a DB-API cursor, a file, a
        generator), or a zero-argument callable returning one, which is called
        in the worker thread: thread-bound resources, such as an sqlite3
        connection with its default ``check_same_thread=True``, are then
        made in the thread that uses them (and the object it returned is
        closed at the end too); a plain function only, not ``async def``
    :param buffer: how many rows the worker pulls ahead at most (it waits for
        room *before* calling ``next()``; ``0``: it calls ``next()`` only when
        the consumer asks; ``None``: unbounded)
    :param overflow: what a full buffer does ([`Overflow`][bridges.Overflow]); the
        default ``"block"`` makes the worker wait, the others never make it
        wait (``"drop_oldest"`` keeps the latest rows)
    :param grace: how long leaving waits for a call of the source in
        progress (a ``next()`` on a slow read) to return, so that the worker
        closes the source before the exit completes (seconds; ``None``: as
        long as it takes).  A call still running then is left to the worker,
        with a ``RuntimeWarning``
    :return: a [`PrefetchIterator`][bridges.threads.PrefetchIterator]; leaving its ``async with``
        (or
        ``aclose()``, or cancellation) stops the worker and closes the source:
        ``close()`` is called on the iterator if it has one (a generator's
        ``finally`` runs in the worker thread, a cursor is closed) after the
        call in progress returned, before the exit completes; the same
        happens at the end of the stream, before the consumer sees the end
    :raises TypeError: ``iterable`` is neither iterable nor callable (or is
        an async iterable, or an async function); ``buffer`` / ``overflow`` /
        ``grace`` of the wrong type.  A factory that returns a coroutine all the same (a
        lambda around an async call) fails the stream with ``TypeError``
    :raises ValueError: a bad ``buffer`` / ``overflow`` / ``grace``

    The source's own code can see that the consumer left:
    [`consumer_gone`][bridges.threads.consumer_gone], called in the worker thread.

    An exception raised by the source (or by the factory) is raised by the
    iterator once, as itself, after the rows before it; an error from
    ``close()`` at the end of the stream likewise.
    """
    if hasattr(type(iterable), "__aiter__"):
        raise TypeError(
            f"threads.to_aiter() takes a blocking iterable; a {type(iterable).__name__} "
            "is already async: iterate it directly (or wrap it with bridges.iterate())"
        )
    if hasattr(type(iterable), "__iter__"):
        factory = False
    elif callable(iterable):
        require_sync(iterable, _FACTORY, _FACTORY_WHY)
        factory = True
    else:
        raise TypeError(
            "threads.to_aiter() takes a blocking iterable or a zero-argument callable "
            f"returning one, not a {type(iterable).__name__}"
        )
    # a parked consumer is woken once per chunk of rows while the source is fast
    handoff: Handoff[T] = Handoff(validate_buffer(buffer), Overflow.parse(overflow), linger=LINGER)
    return PrefetchIterator(_Worker(iterable, factory, handoff, validate_grace(grace)))


# ---------------------------------------------------------------- from_aiter


class _Pump(Generic[T]):
    """Runs the async source in its event loop and fills the hand-off (pull -> push)."""

    __slots__ = ("cleanup_error", "h", "orphaned", "source")

    def __init__(self, source: AsyncIterable[T], handoff: Handoff[T]) -> None:
        self.source = source
        self.h = handoff
        #: an aclose() error after the consumer left, raised by close()
        self.cleanup_error: BaseException | None = None
        #: the iterator was collected without close(): cleanup errors are logged
        self.orphaned = False

    def run_loop(self, backend: str) -> None:
        """The helper thread: a fresh event loop that runs `main`."""
        try:
            anyio.run(self.main, backend=backend)
        except BaseException as exc:  # the loop itself failed: tell the consumer
            if not self.h.fail(exc):
                log_cleanup_error(exc, f"running the {backend} loop of threads.from_aiter()")

    async def main(self) -> None:
        h = self.h
        gone = async_waiter()
        # runs on the consumer's thread when it leaves: the wake is thread-safe
        h.on_consumer_gone(gone.wake)
        async with anyio.create_task_group() as tg:

            async def cancel_when_gone() -> None:
                await gone.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(cancel_when_gone)
            try:
                await self.pump()
            finally:
                tg.cancel_scope.cancel()

    async def pump(self) -> None:
        h = self.h
        try:
            it = self.source.__aiter__()
        except BaseException as exc:
            h.fail(exc)  # raised by the consumer as itself
            return
        # closed shielded: the pump is usually being cancelled then (the consumer
        # left, the portal stopped), and a cleanup that awaits must run to the end
        ending = await drive(it, h)
        error, cleanup_error = ending.error, ending.cleanup_error
        cancelled = ending.how is INTERRUPTED and is_cancellation(error)  # type: ignore[arg-type]
        if ending.how is FAILED or (ending.how is INTERRUPTED and not cancelled):
            assert error is not None
            if cleanup_error is not None:
                log_cleanup_error(cleanup_error, "closing an async source that failed")
            h.fail(error)  # raised by the consumer as itself, once
        elif ending.how is FINISHED:
            if cleanup_error is None:
                h.close()
            else:
                h.fail(cleanup_error)
        else:
            # the consumer left (or the loop is being torn down)
            if cleanup_error is not None:
                if self.orphaned:  # nobody will call close(): do not lose it
                    log_cleanup_error(cleanup_error, "closing the source of a dropped iterator")
                else:
                    self.cleanup_error = cleanup_error
            h.fail(
                RuntimeError(
                    "the async source was cancelled before it ended "
                    "(its event loop or portal was stopped)"
                )
            )
        if cancelled:
            assert error is not None
            raise error


class BlockingIterator(Iterator[T]):
    """The iterator [`from_aiter`][bridges.threads.from_aiter] returns: sync code iterates an async
    source.

    A plain iterator and a context manager.  ``next()`` blocks the calling
    thread (one that runs no event loop) until the source, running in its
    own event loop, has produced a value; that loop pulls ahead at most
    ``buffer`` values.  A source error is raised by ``next()`` as itself,
    once, after the values before it.  Leaving ``with`` (or ``close()``, or
    ``break`` then ``close()``) cancels the source, runs its cleanup and
    joins the helper thread before it returns.
    """

    __slots__ = (
        "__weakref__",
        "_backend",
        "_future",
        "_h",
        "_lifecycle",
        "_phase",
        "_portal",
        "_pump",
        "_thread",
    )

    def __init__(
        self,
        source: AsyncIterable[T],
        buffer: int | None,
        backend: str,
        portal: BlockingPortal | None,
    ) -> None:
        self._h: Handoff[T] = Handoff(buffer)
        self._pump = _Pump(source, self._h)
        self._backend = backend
        self._portal = portal
        self._thread: threading.Thread | None = None
        self._future: Future[None] | None = None
        self._phase = NEW
        self._lifecycle = threading.Lock()

    @property
    def stats(self) -> Stats:
        """A snapshot of the buffer's counters ([`bridges.Stats`][bridges.Stats])."""
        return self._h.stats

    def _begin(self) -> None:
        if in_event_loop_thread():
            raise RuntimeError(
                "threads.from_aiter() blocks the calling thread, and this thread runs an "
                "event loop; in async code iterate the source directly ('async for'), or "
                "call the sync code in a worker thread (anyio.to_thread.run_sync)"
            )
        # close() may come from another thread at any time: starting and
        # closing exclude each other, so that close() joins what was started
        with self._lifecycle:
            if self._phase != NEW:
                return
            self._phase = RUNNING
            try:
                if self._portal is not None:
                    try:
                        self._future = self._portal.start_task_soon(self._pump.main)
                    except RuntimeError as exc:  # anyio's words name no fix
                        raise RuntimeError(
                            f"the portal given to threads.from_aiter() is not running ({exc}); "
                            "pass one inside its 'async with BlockingPortal()' block, or one "
                            "from anyio.from_thread.start_blocking_portal()"
                        ) from exc
                else:
                    thread = threading.Thread(
                        target=self._pump.run_loop,
                        args=(self._backend,),
                        name=_LOOP_NAME,
                        daemon=True,
                    )
                    thread.start()
                    self._thread = thread
            except BaseException:
                self._phase = DONE
                self._h.leave()
                raise

    def __enter__(self) -> Self:
        if self._phase == NEW:
            self._begin()
        return self

    def __exit__(self, exc_type: ExcType, exc: BaseException | None, tb: Tb) -> None:
        if exc is None:
            self.close()
            return
        try:
            self.close()
        except BaseException as cleanup_exc:
            # the consumer's own exception wins; the cleanup error is not lost
            log_cleanup_error(cleanup_exc, "closing threads.from_aiter()")

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> T:
        if self._phase != RUNNING:
            if self._phase == DONE:
                raise StopIteration
            self._begin()
        try:
            return self._h.get_sync()
        except BaseException:
            if self._h.ended and self._phase == RUNNING:
                # the end or the source's error: the loop has finished, join it
                self._phase = DONE
                self._join()
            raise

    def _join(self) -> None:
        if self._thread is not None:
            self._thread.join()
        elif self._future is not None:
            try:
                self._future.result()
            except FutureCancelledError:
                pass  # the portal was stopped: the task is gone either way

    def close(self) -> None:
        """Cancel the source, run its cleanup and join its thread (idempotent).

        Drops the values pulled ahead.  Waits until the source's ``aclose()``
        has run and the helper thread has ended (or the portal task has
        finished), then raises the error ``aclose()`` raised, if any.  May be
        called from another thread to stop a consumer blocked in ``next()``,
        which then ends (``StopIteration``).  On a thread that runs an event
        loop, which must not block, it cancels the source without waiting.
        """
        with self._lifecycle:
            started = self._phase != NEW
            self._phase = DONE
        self._h.leave()
        if started and not in_event_loop_thread():
            self._join()  # idempotent: a thread joined, a future done, returns at once
        exc, self._pump.cleanup_error = self._pump.cleanup_error, None
        if exc is not None:
            raise exc

    def __del__(self) -> None:
        if getattr(self, "_phase", DONE) != RUNNING:
            return
        self._phase = DONE
        self._pump.orphaned = True
        try:
            warnings.warn(
                "threads.from_aiter() iterator was dropped while running; use 'with' or "
                "close() to stop its source deterministically",
                ResourceWarning,
                stacklevel=1,
                source=self,
            )
        finally:
            self._h.leave()  # the source is cancelled and the helper thread ends by itself


_BACKENDS = ("asyncio", "trio")


def from_aiter(
    source: AsyncIterable[T],
    *,
    buffer: int | None = 64,
    backend: str = "asyncio",
    portal: BlockingPortal | None = None,
) -> BlockingIterator[T]:
    """Give sync code a plain iterator over an async iterable.

    ``with threads.from_aiter(agen(), backend="trio") as it: for x in it: ...``

    The source runs in an event loop on a helper thread (named
    ``bridges-threads-loop``), or, with ``portal``, as a task in the event
    loop of an anyio ``BlockingPortal`` (for example the one of the
    application that called this sync code in a worker thread).  Nothing
    starts before entering ``with`` or the first ``next()``.

    :param source: an async iterable; ``__aiter__`` is called in its loop
    :param buffer: how many values the loop pulls ahead at most (it waits for
        room before pulling; ``0``: only while ``next()`` waits; ``None``: unbounded)
    :param backend: the loop of the helper thread: ``"asyncio"`` or ``"trio"``
        (ignored with ``portal``)
    :param portal: run the source in this portal's loop instead of a new thread
    :return: a [`BlockingIterator`][bridges.threads.BlockingIterator]; use it in ``with`` so that
        leaving
        (by the end, ``break``, ``return`` or an exception) cancels the source,
        runs its cleanup and joins the thread before the block exits
    :raises TypeError: ``source`` is not an async iterable; ``portal`` is not a
        ``BlockingPortal``; ``buffer`` of the wrong type
    :raises ValueError: a bad ``buffer`` or ``backend``
    :raises RuntimeError: ``backend="trio"`` without trio installed; iterating
        on a thread that runs an event loop (it would block that loop); a
        ``portal`` that is not running (at the first ``next()`` or ``with``)
    """
    if not hasattr(type(source), "__aiter__"):
        hint = (
            " (for a blocking iterable, iterate it directly)"
            if hasattr(type(source), "__iter__")
            else ""
        )
        raise TypeError(
            f"threads.from_aiter() takes an async iterable, not a {type(source).__name__}{hint}"
        )
    buffer = validate_buffer(buffer)
    if portal is not None:
        if not isinstance(portal, BlockingPortal):
            raise TypeError(
                f"portal must be an anyio.from_thread.BlockingPortal, not {type(portal).__name__}"
            )
    elif backend not in _BACKENDS:
        raise ValueError(f"backend must be 'asyncio' or 'trio', not {backend!r}")
    elif backend == "trio" and importlib.util.find_spec("trio") is None:
        raise RuntimeError("backend='trio' needs trio: pip install 'streambridges[trio]'")
    return BlockingIterator(source, buffer, backend, portal)
