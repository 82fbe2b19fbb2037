"""reactivex Observables <-> async iterables, and a reactivex scheduler for trio.

Needs the ``rx`` extra (``pip install "streambridges[rx]"``).

* [`to_aiter`][bridges.rx.to_aiter] turns an Observable into an async iterator.  reactivex
  has no backpressure: an Observable pushes.  The iterator buffers what the
  consumer has not taken yet (unbounded by default), or, with ``buffer=``,
  holds at most that many values and applies an overflow policy; with
  ``subscribe_on=`` a cold synchronous Observable runs on a worker thread
  where ``overflow="block"`` really slows it down.
* [`from_aiter`][bridges.rx.from_aiter] turns an async iterable into a cold Observable whose
  pump task pulls the next value only after ``on_next`` returned.
* [`open_trio_scheduler`][bridges.rx.open_trio_scheduler] gives a reactivex scheduler that runs its
  actions (and therefore Rx time operators) in a trio run.
"""

from __future__ import annotations

import asyncio
import heapq
import inspect
import itertools
import math
import sys
import threading
from abc import update_abstractmethods
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import anyio
import anyio.abc
from reactivex import Observable, abc
from reactivex import typing as rx_typing
from reactivex.disposable import CompositeDisposable, Disposable, SingleAssignmentDisposable
from reactivex.scheduler import CurrentThreadScheduler
from reactivex.scheduler.periodicscheduler import PeriodicScheduler

from ._backend import (
    in_event_loop_thread,
    loaded,
    loop_kind,
    name_asyncio_in_loop_callback,
    running_asyncio_loop,
)
from ._buffer import (
    FULL,
    GONE,
    OVERFLOWED,
    TAKEN,
    BufferOverflowError,
    Handoff,
    Overflow,
    Result,
    validate_buffer,
)
from ._enter import MustEnter
from ._hooks import refuse_awaitable, require_sync
from ._iterator import BufferedIterator, log_cleanup_error, logger
from ._pump import FAILED, FINISHED, INTERRUPTED, STOPPED, PushSink, aclose_shielded, drive

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]

if TYPE_CHECKING:
    import trio

    from ._buffer import Result

T = TypeVar("T")
_TState = TypeVar("_TState")

__all__ = ["TrioScheduler", "from_aiter", "open_trio_scheduler", "to_aiter"]

_get_ident = threading.get_ident


class _Hop:
    """Runs a callback on one event loop from any thread, without waiting for it."""

    __slots__ = ("_loop", "_token", "thread")

    def __init__(self) -> None:
        self.thread = _get_ident()
        self._loop = running_asyncio_loop()
        self._token: trio.lowlevel.TrioToken | None = None
        if self._loop is None:
            import trio

            self._token = trio.lowlevel.current_trio_token()

    @classmethod
    def here(cls) -> _Hop | None:
        """The loop running on this thread, if any."""
        return cls() if in_event_loop_thread() else None

    def current_task(self) -> object:
        """The task running on this thread's loop now (None in a plain callback)."""
        if self._loop is not None:
            return asyncio.current_task(self._loop)
        import trio

        try:
            return trio.lowlevel.current_task()
        except RuntimeError:
            return None

    def call_soon(self, fn: Callable[[], object]) -> bool:
        """Queue ``fn()`` on the loop; False when the loop has ended.

        ``fn`` must not raise: on trio an exception in such a callback ends the run.
        """
        try:
            if self._loop is not None:
                self._loop.call_soon_threadsafe(fn)
            else:
                assert self._token is not None
                self._token.run_sync_soon(fn)
        except RuntimeError:  # asyncio: the loop is closed; trio.RunFinishedError
            return False
        return True


# --------------------------------------------------------------------- to_aiter


class _StopSourceError(Exception):
    """Raised out of ``on_next`` to stop a synchronous source that is still subscribing.

    Only ever raised inside our own ``subscribe`` call on the same thread,
    where we catch it: it never reaches user code.
    """


class _Subscription:
    """The Rx subscription of one iterator: disposed exactly once, from any thread."""

    __slots__ = ("_disposable", "_lock", "_scheduled", "disposed")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._disposable: abc.DisposableBase | None = None
        self._scheduled: abc.DisposableBase | None = None
        self.disposed = False

    @property
    def subscribed(self) -> bool:
        return self._disposable is not None

    def set(self, disposable: abc.DisposableBase) -> None:
        with self._lock:
            if not self.disposed:
                self._disposable = disposable
                return
        disposable.dispose()  # released while it was subscribing: its one dispose

    def set_scheduled(self, scheduled: abc.DisposableBase) -> None:
        with self._lock:
            if not self.disposed:
                self._scheduled = scheduled
                return
        scheduled.dispose()

    def dispose(self) -> None:
        with self._lock:
            if self.disposed:
                return
            self.disposed = True
            disposable, self._disposable = self._disposable, None
            scheduled, self._scheduled = self._scheduled, None
        if scheduled is not None:  # a subscribe_on action that has not run yet never will
            scheduled.dispose()
        if disposable is not None:
            disposable.dispose()


def _r8_message(capacity: int | None) -> str:
    return (
        f'buffer full ({capacity} values) under overflow="block", and on_next runs on the '
        "event-loop thread, which must never block (an Observable cannot be paused). "
        "Fixes: subscribe_on=ThreadPoolScheduler() so that the Observable runs, and waits, "
        'on a worker thread; raise buffer= (buffer=None is unbounded); or choose overflow="'
        'drop_oldest" / "drop_newest"'
    )


class _HandoffObserver(abc.ObserverBase[T]):
    """Feeds an Observable's notifications into a hand-off; callable from any thread."""

    __slots__ = ("_h", "_observable", "_put", "_sub", "_subscribing")

    def __init__(self, observable: abc.ObservableBase[T], handoff: Handoff[T]) -> None:
        self._observable = observable
        self._h = handoff
        self._put = handoff.put_nowait
        self._sub = _Subscription()
        self._subscribing: int | None = None

    def on_next(self, value: T) -> None:
        result = self._put(value)
        if result:  # anything but TAKEN: the rare paths
            if result is FULL:
                result = self._wait(value)
            if result.refused:
                self._refused()

    def _wait(self, value: T) -> Result:
        if in_event_loop_thread():
            # R8: a loop thread must not block, and an Observable has no pause hook
            self._h.fail(BufferOverflowError(_r8_message(self._h.capacity)))
            return OVERFLOWED
        return self._h.put_sync(value)  # a foreign thread blocks here: the backpressure

    def _refused(self) -> None:
        """The stream is over (completed, failed, or the consumer left): stop the source."""
        if not self._sub.subscribed and self._subscribing == _get_ident():
            # a source emitting inside subscribe() has not handed out its
            # subscription yet: the only way to stop it is to raise
            raise _StopSourceError
        self._sub.dispose()

    def on_error(self, error: Exception) -> None:
        if not isinstance(error, _StopSourceError):
            self._h.fail(error)

    def on_completed(self) -> None:
        self._h.close()

    def run_subscription(self, _scheduler: object = None, _state: object = None) -> None:
        """Subscribe on this thread, inside a trampoline (a ScheduledAction for subscribe_on).

        In a trampoline the Observable returns its subscription before a
        trampolined source (``range``, ``from_iterable``, ``of`` ...) emits
        its first value, so that the source can be disposed while it runs.
        """
        try:
            trampoline = CurrentThreadScheduler.singleton()
            if trampoline.schedule_required():
                trampoline.schedule(self._subscribe)
            else:
                self._subscribe()
        except _StopSourceError:  # a synchronous source stopped after the stream ended
            pass
        except Exception as exc:  # a source's scheduled action raised: never lose it
            self._h.fail(exc)
            self._sub.dispose()

    def _subscribe(self, _scheduler: object = None, _state: object = None) -> None:
        if self._sub.disposed:
            return
        self._subscribing = _get_ident()
        try:
            disposable = self._observable.subscribe(self)
        except _StopSourceError:
            return
        finally:
            self._subscribing = None
        self._sub.set(disposable)


def to_aiter(
    observable: abc.ObservableBase[T],
    *,
    buffer: int | None = None,
    overflow: Overflow | str = Overflow.BLOCK,
    subscribe_on: abc.SchedulerBase | None = None,
) -> BufferedIterator[T]:
    """Iterate over an Observable's values: ``async for v in rx.to_aiter(obs)``.

    Nothing is subscribed before the first ``__anext__`` (or entering
    ``async with``).  Values arrive in order; ``on_completed`` ends the
    iteration after the buffered values; ``on_error`` raises the original
    exception object once, after the values emitted before it.  The
    subscription is disposed exactly once: at the end, on an error, on
    ``aclose()``, on leaving ``async with`` (by ``break``, an exception or
    cancellation), or when a forgotten iterator is collected (with a
    ``ResourceWarning``).

    Backpressure: an Observable only pushes, so by default (``buffer=None``)
    everything the consumer has not taken yet is buffered, without bound.
    With ``buffer=n`` at most ``n`` values are held and ``overflow`` says what
    happens to one more: ``"block"`` blocks ``on_next`` when it runs on a
    foreign thread (a reactivex thread-pool, new-thread or timeout scheduler)
    until the consumer makes room, and fails the stream with
    [`BufferOverflowError`][bridges.BufferOverflowError] when it runs on the event-loop thread
    (which must never block); ``"drop_oldest"`` / ``"drop_newest"`` drop and
    count (``stats.dropped``); ``"error"`` ends the stream with
    [`BufferOverflowError`][bridges.BufferOverflowError] after the buffered values.  Once the
    stream has ended or the consumer left, the subscription is disposed and
    a blocked ``on_next`` returns at once.

    :param observable: the Observable to subscribe to
    :param buffer: the most values held (``None``: unbounded, the default)
    :param overflow: what a full buffer does ([`Overflow`][bridges.Overflow] or its string)
    :param subscribe_on: a reactivex scheduler to subscribe on, e.g.
        ``ThreadPoolScheduler()``: a cold synchronous Observable (``range``,
        ``from_iterable``) then emits on that scheduler's thread, where
        ``overflow="block"`` makes it wait for the consumer instead of failing
    :raises TypeError: ``observable`` is not an Observable, or ``subscribe_on`` not a scheduler
    :raises ValueError: a bad ``buffer`` / ``overflow``
    """
    if not isinstance(observable, abc.ObservableBase):
        raise TypeError(
            f"rx.to_aiter() takes a reactivex Observable, not {type(observable).__name__}; "
            "for an async iterable use bridges.iterate()"
        )
    validate_buffer(buffer)
    overflow = Overflow.parse(overflow)
    if subscribe_on is not None and not isinstance(subscribe_on, abc.SchedulerBase):
        raise TypeError(
            "subscribe_on must be a reactivex scheduler (e.g. ThreadPoolScheduler()), "
            f"not {type(subscribe_on).__name__}"
        )
    handoff: Handoff[T] = Handoff(buffer, overflow)
    observer = _HandoffObserver(observable, handoff)

    def start(_h: Handoff[T]) -> Callable[[], object]:
        if subscribe_on is None:
            observer.run_subscription()
        else:
            observer._sub.set_scheduled(subscribe_on.schedule(observer.run_subscription))
        return observer._sub.dispose

    return BufferedIterator(handoff, start)


# ------------------------------------------------------------------- from_aiter

#: pumps started on asyncio without a task group: strong references until they end
_UNOWNED_PUMPS: set[asyncio.Task[None]] = set()


def _is_task_group(obj: object) -> bool:
    if isinstance(obj, anyio.abc.TaskGroup):
        return True
    trio = loaded("trio")
    return trio is not None and isinstance(obj, trio.Nursery)


class _Pump(abc.DisposableBase, PushSink[T]):
    """One subscription of [`from_aiter`][bridges.rx.from_aiter]: a pump task and its disposable."""

    __slots__ = (
        "_disposed",
        "_failure",
        "_finished",
        "_hop",
        "_lock",
        "_observer",
        "_one_shot",
        "_open",
        "_scope",
        "_task",
        "_task_group",
    )

    def __init__(
        self,
        open_: Callable[[], Any],
        observer: abc.ObserverBase[T],
        task_group: Any,
        one_shot: AsyncIterator[T] | None,
    ) -> None:
        self._open = open_
        self._observer = observer
        self._task_group = task_group
        self._one_shot = one_shot
        self._lock = threading.Lock()
        self._disposed = False
        self._finished = False
        self._failure: BaseException | None = None
        self._task: object = None  # the pump's task, once it runs
        self._scope: anyio.CancelScope | None = None
        self._hop: _Hop | None = None

    # ---------------------------------------------------------- starting

    def start_here(self) -> None:
        """Start the pump on this thread's loop (raises when it cannot)."""
        kind = loop_kind()
        name_asyncio_in_loop_callback()  # anyio's start_soon must know the library
        if self._task_group is not None:
            self._task_group.start_soon(self._run_owned)
            return
        if kind != "asyncio":
            raise RuntimeError(
                "rx.from_aiter() under trio needs a task group for its pump: "
                "rx.from_aiter(source, task_group=nursery_or_anyio_task_group)"
            )
        loop = asyncio.get_running_loop()
        task = loop.create_task(self._run_unowned(loop))
        _UNOWNED_PUMPS.add(task)
        task.add_done_callback(_UNOWNED_PUMPS.discard)

    def start_hopped(self) -> None:
        """``start_here`` as a loop callback (from a subscription on another thread)."""
        try:
            self.start_here()
        except Exception as exc:  # a loop callback must not raise (trio would crash)
            self._notify(self._observer.on_error, exc, report=True)

    # ---------------------------------------------------------- the pump

    async def _run_owned(self) -> None:
        failure = await self._pump()
        if failure is not None:
            raise failure  # out of the task group that owns the pump (R12)

    async def _run_unowned(self, loop: asyncio.AbstractEventLoop) -> None:
        failure = await self._pump()
        if failure is not None:
            loop.call_exception_handler(
                {
                    "message": "an observer of rx.from_aiter() raised; its source was closed",
                    "exception": failure,
                    "observer": self._observer,
                }
            )

    async def _pump(self) -> BaseException | None:
        """Run the subscription; return the observer's own exception, if it raised one."""
        try:
            with anyio.CancelScope() as scope:
                hop = _Hop()
                with self._lock:
                    self._scope = scope
                    self._hop = hop
                    self._task = hop.current_task()
                    disposed = self._disposed
                if disposed:  # unsubscribed before the pump started
                    if self._one_shot is not None:
                        await aclose_shielded(self._one_shot)
                    return None
                try:
                    it = self._open()
                    if inspect.isawaitable(it):  # an async factory, awaited here (cancellable)
                        it = await it
                except Exception as exc:
                    self._notify(self._observer.on_error, exc)
                else:
                    await self._iterate(it)
        finally:
            self._finished = True
        # kept even when a dispose() from another thread cancelled the cleanup
        return self._failure

    async def _iterate(self, it: AsyncIterator[T]) -> None:
        observer = self._observer
        # R10: pulled after on_next returned; stopped once disposed (from inside
        # on_next, as take(n) does, or from another thread while the source is pulled)
        ending = await drive(it, self, paced=False, push=observer.on_next)
        if ending.how is INTERRUPTED and isinstance(ending.error, Exception):
            # the observer's own mistake: not its on_error (R12)
            self._failure, ending.how = ending.error, STOPPED
        ending.raise_interruption("closing the source of rx.from_aiter()")
        error = ending.error if ending.how is FAILED else None
        cleanup_error = ending.cleanup_error
        if self._stopped() or self._failure is not None or error is not None:
            if cleanup_error is not None:
                log_cleanup_error(cleanup_error, "closing the source of rx.from_aiter()")
            if error is not None and not self._disposed and self._failure is None:
                self._notify(observer.on_error, error)
        elif cleanup_error is not None:
            self._notify(observer.on_error, cleanup_error)
        elif ending.how is FINISHED:
            self._notify(observer.on_completed)

    # ---------------------------------------------------------- the pump's sink

    def is_open(self) -> bool:
        """False once disposed: the pump stops."""
        return not self._disposed

    def put_nowait(self, item: T) -> Result:
        """Give ``item`` to ``on_next`` (what the pump's ``push`` does): GONE once disposed.

        What ``on_next`` raises propagates: the observer's own mistake, which
        stops the pump and is not its ``on_error`` (R12).
        """
        if self._disposed:
            return GONE
        self._observer.on_next(item)
        return GONE if self._stopped() else TAKEN

    async def put(self, item: T) -> Result:
        """Same as `put_nowait` (``on_next`` never waits)."""
        return self.put_nowait(item)

    def _notify(self, method: Callable[..., None], *args: Any, report: bool = False) -> None:
        """Call a terminal method of the observer; keep what it raises as the failure."""
        try:
            method(*args)
        except Exception as exc:
            if report:  # no pump to raise it from: log it, never lose it
                logger.error("an observer of rx.from_aiter() raised", exc_info=exc)
            else:
                self._failure = exc

    # ---------------------------------------------------------- disposing

    def _stopped(self) -> bool:
        return self._disposed  # may change across an await (dispose from another task)

    def dispose(self) -> None:
        """Unsubscribe: cancel the pump, which closes the source (from any thread, idempotent)."""
        with self._lock:
            if self._disposed:
                return
            self._disposed = True
            scope, hop = self._scope, self._hop
        if scope is None or hop is None:
            return  # not started yet: the pump sees the flag and does not start
        if self._finished:
            return
        if hop.thread == _get_ident():
            if hop.current_task() is not self._task:
                scope.cancel()
            # else: disposed by the observer, on the pump (take(n) and friends):
            # the pump stops when it returns and closes the source uncancelled
        else:
            hop.call_soon(self._cancel_hopped)

    def _cancel_hopped(self) -> None:
        scope = self._scope
        if scope is not None and not self._finished:
            scope.cancel()


def _aiter_of(made: object) -> AsyncIterator[Any]:
    if not hasattr(made, "__aiter__"):
        raise TypeError(
            "the factory given to rx.from_aiter() must return an async iterable, "
            f"not {type(made).__name__}"
        )
    return made.__aiter__()  # type: ignore[no-any-return]


async def _aiter_of_awaited(made: Awaitable[object]) -> AsyncIterator[Any]:
    return _aiter_of(await made)


class _FromAiter:
    """The subscribe function of the Observable that [`from_aiter`][bridges.rx.from_aiter]
    returns."""

    __slots__ = ("_home", "_kind", "_lock", "_source", "_task_group", "_used")

    def __init__(self, source: Any, kind: str, task_group: Any, home: _Hop | None) -> None:
        self._source = source
        self._kind = kind
        self._task_group = task_group
        self._home = home
        self._lock = threading.Lock()
        self._used = False

    def _opener(self) -> tuple[Callable[[], Any], AsyncIterator[Any] | None]:
        source = self._source
        if self._kind == "one-shot":
            with self._lock:
                used, self._used = self._used, True
            if used:
                raise RuntimeError(
                    f"this Observable was made from a one-shot async iterator "
                    f"({type(source).__name__}), which is already being or has been iterated; "
                    "for a fresh iteration per subscription pass a re-iterable or a "
                    "zero-argument factory: rx.from_aiter(lambda: make_agen())"
                )
            return (lambda: source), source
        if self._kind == "re-iterable":
            return (lambda: source.__aiter__()), None

        def open_factory() -> Any:
            made = source()
            if inspect.isawaitable(made):
                return _aiter_of_awaited(made)  # an async factory: the pump awaits it
            return _aiter_of(made)

        return open_factory, None

    def __call__(
        self, observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        open_, one_shot = self._opener()
        pump: _Pump[Any] = _Pump(open_, observer, self._task_group, one_shot)
        home = self._home
        if home is not None and home.thread != _get_ident():
            if not home.call_soon(pump.start_hopped):
                raise RuntimeError(
                    "the event loop this Observable was made in has ended; "
                    "make it with rx.from_aiter() in the loop that subscribes"
                )
        elif in_event_loop_thread():
            pump.start_here()
        else:
            raise RuntimeError(
                "this Observable was made outside an event loop and is subscribed from a "
                "thread without one; make it with rx.from_aiter() inside the event loop "
                "(then any thread may subscribe), or subscribe on the loop's thread"
            )
        return pump


def from_aiter(
    source: AsyncIterable[T] | Callable[[], AsyncIterable[T]], *, task_group: Any = None
) -> Observable[T]:
    """An Observable that emits the values of an async iterable.

    Cold: each subscription gets a fresh iteration when ``source`` is a
    re-iterable (an async iterable without ``__anext__``) or a zero-argument
    function returning an async iterable; a one-shot async iterator (an
    async generator, say) can be subscribed once, and a second subscription
    gets a ``RuntimeError`` (through ``on_error``).

    Each subscription starts a pump task that pulls the next value only
    after ``on_next`` returned (the observer's pace is the source's pace),
    then calls ``on_completed``, or ``on_error`` with the source's exception.
    Disposing the subscription (from any thread) cancels the pump, which
    closes the source (``aclose()``, its ``finally`` blocks) before the task
    group exits; the close is shielded from that cancellation (and from one
    of the task group), so a cleanup that awaits runs to its end.  The
    observer hears nothing more.  Disposing it from inside
    ``on_next`` (as ``take(n)`` does) closes the source without a
    cancellation as soon as ``on_next`` returns.

    When the observer itself raises (from ``on_next``, ``on_error`` or
    ``on_completed``), the pump stops, closes the source and reports the
    exception exactly once: it is raised out of the task group that owns the
    pump (which, like any task's error there, cancels the group and comes
    out in its ``ExceptionGroup``) or, on asyncio without one, passed to the
    loop's exception handler.  The observer's ``on_error`` is not called for
    its own mistake.

    Where the pump runs: in ``task_group`` (an anyio task group or a trio
    nursery, any backend); on asyncio without one, in a task of the running
    loop that the bridge keeps and cancels on dispose.  Subscribing from
    another thread is safe: the pump starts on the loop ``from_aiter()`` was
    called in.  Values are delivered on that loop's thread.

    :param source: an async iterable, or a function of no arguments returning one,
        sync or async (an async factory is awaited in the pump, which a
        dispose cancels like the iteration)
    :param task_group: the anyio task group (or trio nursery) to run each pump in
    :raises TypeError: ``source`` is neither an async iterable nor a callable,
        or ``task_group`` is not a task group
    :raises RuntimeError: under trio without a task group
    """
    if hasattr(source, "__aiter__"):
        kind = "one-shot" if hasattr(source, "__anext__") else "re-iterable"
    elif callable(source):
        kind = "factory"
    else:
        raise TypeError(
            "rx.from_aiter() takes an async iterable or a zero-argument function returning "
            f"one, not {type(source).__name__}"
        )
    if task_group is not None and not _is_task_group(task_group):
        raise TypeError(
            "task_group must be an anyio task group or a trio nursery, "
            f"not {type(task_group).__name__}"
        )
    home = _Hop.here()
    if task_group is None and loop_kind() == "trio":
        raise RuntimeError(
            "rx.from_aiter() under trio needs a task group for its pump: "
            "rx.from_aiter(source, task_group=nursery_or_anyio_task_group)"
        )
    return Observable(_FromAiter(source, kind, task_group, home))


# ---------------------------------------------------------------- trio scheduler


_ACTION_WHY = (
    "reactivex calls a scheduled action synchronously, on the trio thread, and takes the "
    "disposable it returns, so nothing would await a coroutine; do the work in a plain "
    "function, and start async work from it in a task (nursery.start_soon)"
)


class _Item:
    """One scheduled action."""

    __slots__ = ("action", "cancelled", "sad", "state")

    def __init__(self, action: abc.ScheduledAction[Any], state: Any) -> None:
        self.action = action
        self.state = state
        self.sad = SingleAssignmentDisposable()
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True  # lazily removed: the runner skips it


class TrioScheduler(PeriodicScheduler):
    """A reactivex scheduler whose actions run in a trio run.

    Made by [`open_trio_scheduler`][bridges.rx.open_trio_scheduler], which owns the task that runs
    the actions.  Like reactivex's ``AsyncIOThreadSafeScheduler``, every method
    may be called from any thread; actions always run on the trio thread,
    in the order they fall due (first scheduled, first run for equal times).
    ``now`` follows trio's clock, so under a ``MockClock`` (autojump) Rx
    time operators run in virtual time.  Disposing what a ``schedule*``
    method returned cancels the action if it has not run yet.  After the
    ``async with`` block has ended, actions are no longer run.
    """

    def __init__(self, token: trio.lowlevel.TrioToken, clock: trio.abc.Clock) -> None:
        """Use [`open_trio_scheduler`][bridges.rx.open_trio_scheduler] instead, which owns the task
        that runs the actions.

        :param token: the trio run's ``trio.lowlevel.current_trio_token()``
        :param clock: the trio run's ``trio.lowlevel.current_clock()``
        :raises TypeError: ``token`` is not a ``TrioToken`` or ``clock`` not a trio ``Clock``
        """
        import trio

        if not isinstance(token, trio.lowlevel.TrioToken) or not isinstance(clock, trio.abc.Clock):
            raise TypeError(
                "TrioScheduler(token, clock) takes a trio.lowlevel.TrioToken and a "
                f"trio.abc.Clock, not {type(token).__name__} and {type(clock).__name__}; "
                "use 'async with rx.open_trio_scheduler() as scheduler:' in a trio run, "
                "which makes one and runs its actions"
            )
        super().__init__()
        self._token = token
        self._clock = clock
        self._thread = _get_ident()
        self._t0 = clock.current_time()
        self._wall0 = datetime.now(timezone.utc)  # what reactivex's schedulers use
        self._lock = threading.Lock()
        self._ready: deque[_Item] = deque()
        self._timers: list[tuple[float, int, _Item]] = []
        self._seq = itertools.count()
        self._sleep: trio.CancelScope | None = None
        self._wake_pending = False
        self._closed = False

    @property
    def now(self) -> datetime:
        """The scheduler's time: the wall clock at the start, advanced by trio's clock."""
        return self._wall0 + timedelta(seconds=self._clock.current_time() - self._t0)

    def schedule(
        self, action: abc.ScheduledAction[_TState], state: _TState | None = None
    ) -> abc.DisposableBase:
        """Run ``action(scheduler, state)`` soon on the trio thread.

        :param action: a plain function (reactivex calls it synchronously); an async
            one is refused with ``TypeError``, and one returning a coroutine ends
            the scheduler's block with ``TypeError``
        :returns: a disposable that cancels the action if it has not run yet
        """
        return self._add(None, action, state)

    def schedule_relative(
        self,
        duetime: rx_typing.RelativeTime,
        action: abc.ScheduledAction[_TState],
        state: _TState | None = None,
    ) -> abc.DisposableBase:
        """Run ``action(scheduler, state)`` on the trio thread after ``duetime``.

        :param duetime: seconds (a float) or a ``timedelta``; <= 0 runs it soon
        :param action: a plain function (reactivex calls it synchronously); an async
            one is refused with ``TypeError``, and one returning a coroutine ends
            the scheduler's block with ``TypeError``
        :returns: a disposable that cancels the action if it has not run yet
        """
        seconds = self.to_seconds(duetime)
        if seconds <= 0:
            return self._add(None, action, state)
        return self._add(self._clock.current_time() + seconds, action, state)

    def schedule_absolute(
        self,
        duetime: rx_typing.AbsoluteTime,
        action: abc.ScheduledAction[_TState],
        state: _TState | None = None,
    ) -> abc.DisposableBase:
        """Run ``action(scheduler, state)`` on the trio thread at ``duetime`` (see ``now``).

        :param action: a plain function (reactivex calls it synchronously); an async
            one is refused with ``TypeError``, and one returning a coroutine ends
            the scheduler's block with ``TypeError``
        :returns: a disposable that cancels the action if it has not run yet
        """
        return self.schedule_relative(self.to_datetime(duetime) - self.now, action, state)

    def invoke_action(
        self, action: abc.ScheduledAction[_TState], state: _TState | None = None
    ) -> abc.DisposableBase:
        """Run ``action(self, state)``; return the disposable it returned, or a no-op one.

        :raises TypeError: the action returned an awaitable (nothing would await it)
        """
        ret = action(self, state)
        if isinstance(ret, abc.DisposableBase):
            return ret
        refuse_awaitable(ret, "a scheduled action", _ACTION_WHY)
        return Disposable()

    def _add(
        self, deadline: float | None, action: abc.ScheduledAction[Any], state: Any
    ) -> abc.DisposableBase:
        require_sync(action, "a scheduled action", _ACTION_WHY)
        item = _Item(action, state)
        with self._lock:
            if self._closed:  # the block has ended: nothing runs any more
                item.cancelled = True
                return Disposable()
            if deadline is None:
                self._ready.append(item)
            else:
                heapq.heappush(self._timers, (deadline, next(self._seq), item))
            sleep = self._sleep
            hop = False
            if sleep is not None and _get_ident() != self._thread and not self._wake_pending:
                self._wake_pending = hop = True
        if sleep is not None:
            if _get_ident() == self._thread:
                # the runner is asleep (it is not running while we are): wake or re-arm it
                if deadline is None:
                    sleep.cancel()
                elif deadline < sleep.deadline:
                    sleep.deadline = deadline
            elif hop:
                try:
                    self._token.run_sync_soon(self._wake)
                except RuntimeError:  # trio.RunFinishedError: the run is over
                    pass
        return CompositeDisposable(item.sad, Disposable(item.cancel))

    def _wake(self) -> None:
        with self._lock:
            self._wake_pending = False
            sleep = self._sleep
        if sleep is not None:
            sleep.cancel()

    async def _run(self) -> None:
        """Run the actions as they fall due; an action's exception ends this task."""
        import trio

        timers = self._timers
        while True:
            now = trio.current_time()
            with self._lock:
                batch = self._ready
                self._ready = deque()
                while timers and (timers[0][0] <= now or timers[0][2].cancelled):
                    _, _, item = heapq.heappop(timers)
                    if not item.cancelled:
                        batch.append(item)
                if not batch:
                    deadline = timers[0][0] if timers else math.inf
                    self._sleep = trio.CancelScope(deadline=deadline)
            if batch:
                for item in batch:
                    if not item.cancelled:
                        item.sad.disposable = self.invoke_action(item.action, item.state)
                await trio.lowlevel.checkpoint()
                continue
            assert self._sleep is not None
            with self._sleep:
                await trio.sleep_forever()
            with self._lock:
                self._sleep = None

    def _close(self) -> None:
        with self._lock:
            self._closed = True
            self._ready.clear()
            self._timers.clear()


def _raise_saving_context(exc: BaseException) -> NoReturn:
    context = exc.__context__
    try:
        raise exc
    finally:
        exc.__context__ = context
        del exc, context


if TYPE_CHECKING:

    class _LooksLikeAScheduler:
        """To a checker, no scheduler until entered."""

else:
    # reactivex asks isinstance(scheduler, PeriodicScheduler) before it uses one; passing
    # that check lets the use itself raise the error that names the fix
    _LooksLikeAScheduler = PeriodicScheduler


class _OpenTrioScheduler(
    MustEnter, _LooksLikeAScheduler, AbstractAsyncContextManager[TrioScheduler]
):
    """What ``open_trio_scheduler()`` returns: it is not a scheduler until entered."""

    what = "rx.open_trio_scheduler()"
    usage = "async with rx.open_trio_scheduler() as scheduler: ... scheduler=scheduler ..."
    handed_out = frozenset(n for n in dir(TrioScheduler) if not n.startswith("_"))

    def __init__(self) -> None:
        self._cm = _trio_scheduler_block()

    async def __aenter__(self) -> TrioScheduler:
        return await self._cm.__aenter__()

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        return await self._cm.__aexit__(*exc_info)


# every scheduler name, inherited ones included, raises on access (none is abstract then)
for _name in _OpenTrioScheduler.handed_out:
    setattr(_OpenTrioScheduler, _name, property(MustEnter._not_entered))
update_abstractmethods(_OpenTrioScheduler)
del _name


def open_trio_scheduler() -> AbstractAsyncContextManager[TrioScheduler]:
    """A reactivex scheduler for trio, for the duration of an ``async with`` block.

    ``async with rx.open_trio_scheduler() as scheduler:`` — pass ``scheduler``
    to Rx operators (``interval``, ``debounce``, ``delay``, ``observe_on``,
    ``subscribe(..., scheduler=...)``) so that their timers and actions run
    in this trio run, in a nursery the block owns.  Safe to call from any
    thread (see [`TrioScheduler`][bridges.rx.TrioScheduler]).

    Leaving the block cancels whatever is still scheduled.  An exception
    raised by a scheduled action cancels the block and comes out of it
    as itself (not in an ``ExceptionGroup``); when the block's own
    exception and an action's coincide, the block's comes out and the
    action's is logged on the ``bridges`` logger.

    :raises RuntimeError: not running under trio (on entering), or used without
        ``async with``
    """
    return _OpenTrioScheduler()


@asynccontextmanager
async def _trio_scheduler_block() -> AsyncIterator[TrioScheduler]:
    if loop_kind() != "trio":
        raise RuntimeError(
            "rx.open_trio_scheduler() needs trio; on asyncio use reactivex's "
            "AsyncIOThreadSafeScheduler(asyncio.get_running_loop())"
        )
    import trio

    scheduler = TrioScheduler(trio.lowlevel.current_trio_token(), trio.lowlevel.current_clock())
    body_exc: BaseException | None = None
    single: BaseException | None = None
    try:
        async with trio.open_nursery(strict_exception_groups=True) as nursery:
            nursery.start_soon(scheduler._run, name="bridges.rx trio scheduler")
            try:
                yield scheduler
            except BaseException as exc:
                body_exc = exc
                raise
            finally:
                scheduler._close()
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # the nursery is ours: never show its group for a single error
        if body_exc is not None and any(e is body_exc for e in group.exceptions):
            # the block's own exception wins; an action's error is not lost
            for e in group.exceptions:
                if e is not body_exc:
                    for leaf in _leaves(e):
                        if not isinstance(leaf, trio.Cancelled):
                            log_cleanup_error(leaf, "running an action of the trio scheduler")
            single = body_exc
        else:
            leaves = _leaves(group)
            real = [e for e in leaves if not isinstance(e, trio.Cancelled)]
            if len(real) > 1:
                raise
            single = real[0] if real else leaves[0]
    if single is not None:
        _raise_saving_context(single)


def _leaves(exc: BaseException) -> list[BaseException]:
    if not isinstance(exc, BaseExceptionGroup):
        return [exc]
    out: list[BaseException] = []
    for e in exc.exceptions:
        out.extend(_leaves(e))
    return out
