"""Which event loop is running here, and thread-safe wake-ups for each kind.

A *waiter* is a one-shot signal that one party parks on and another party,
possibly on another thread or another event loop, fires.  Every waiter's
``wake()`` is thread-safe and idempotent; ``wait()`` runs on the loop (or
thread) that created the waiter.  The hand-off in ``_buffer.py`` parks
consumers and producers on these and never needs to know which loop it is
talking to.

A *parker* (`loop_parker`) is the same-thread counterpart for the pipeline
helpers' hot paths, where a task waits for another task of its own loop: not
thread-safe, reused for wait after wait, and parked on the loop's cheapest
primitive (a bare future on asyncio, trio's ``wait_task_rescheduled``).
"""

from __future__ import annotations

import asyncio
import sys
import threading
import weakref
from typing import TYPE_CHECKING, Any, Protocol

import sniffio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from types import ModuleType

_get_ident = threading.get_ident
_get_running_loop = asyncio._get_running_loop  # C-level, no exception when absent
if sys.version_info >= (3, 12):
    _task_of: Callable[[Any], Any] = asyncio.current_task  # C, given the loop
else:  # the pure-Python current_task() looks the loop up again: go to its table
    _task_of = asyncio.tasks._current_tasks.get  # type: ignore[attr-defined]


class AsyncWaiter(Protocol):
    def wake(self) -> None: ...

    async def wait(self) -> None: ...


_trio_in_run: Callable[[], bool] | None = None


def in_trio_run() -> bool:
    global _trio_in_run
    check = _trio_in_run
    if check is None:
        trio = sys.modules.get("trio")
        if trio is None:
            return False  # trio was never imported: no trio run anywhere
        check = getattr(trio.lowlevel, "in_trio_run", None)
        if check is None:  # pragma: no cover - trio < 0.24
            return _in_trio_run_by_token()
        _trio_in_run = check
    return check()


def _in_trio_run_by_token() -> bool:  # pragma: no cover - trio < 0.24
    trio = sys.modules["trio"]
    try:
        trio.lowlevel.current_trio_token()
    except RuntimeError:
        return False
    return True


def in_event_loop_thread() -> bool:
    """True when the calling thread is running an event loop (asyncio or trio).

    Code on such a thread must never block: a blocked loop cannot run the
    consumer that would make room.  Cheap: it sits on producers' hot paths.
    """
    return _get_running_loop() is not None or in_trio_run()


def current_library() -> str:
    """The async library running the current task: ``"asyncio"`` or ``"trio"``."""
    try:
        return sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        raise RuntimeError(
            "this call needs a running event loop (asyncio or trio); "
            "from a plain thread use the blocking form of the call"
        ) from None


def loaded(module: str) -> ModuleType | None:
    """``module`` if something has imported it already, else None; never imports it.

    For "is this a trio channel?" and the like: when trio was never imported
    nothing can be one, and the question costs no import.
    """
    return sys.modules.get(module)


def library_name() -> str | None:
    """The async library running the calling task (``"asyncio"``, ``"trio"``), or None."""
    try:
        return sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        return None


def under_trio() -> bool:
    """True when the calling task runs under trio (False outside any async library)."""
    if sys.modules.get("trio") is None:
        return False
    try:
        return sniffio.current_async_library() == "trio"
    except sniffio.AsyncLibraryNotFoundError:
        return False


def running_asyncio_loop() -> asyncio.AbstractEventLoop | None:
    """The asyncio loop running on this thread, or None (no exception when there is none)."""
    return _get_running_loop()


def loop_kind() -> str | None:
    """``"asyncio"`` or ``"trio"`` when this thread runs that loop, else None.

    Unlike sniffio this also answers in loop callbacks that run outside any task.
    """
    if _get_running_loop() is not None:
        return "asyncio"
    if in_trio_run():
        return "trio"
    return None


def clock() -> Callable[[], float]:
    """The running loop's clock function (what ``anyio.current_time()`` reads), looked up once."""
    if current_library() == "trio":
        import trio

        return trio.current_time
    return asyncio.get_running_loop().time


def trio_exceptions(*names: str) -> tuple[type[BaseException], ...]:
    """trio's exception classes of these names, or none when trio was never imported."""
    trio = sys.modules.get("trio")
    if trio is None:
        return ()
    return tuple(getattr(trio, name) for name in names)


def _set_future(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class AsyncioWaiter:
    """Parks one asyncio task; woken from any thread."""

    __slots__ = ("_fut", "_loop", "_thread")

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._fut: asyncio.Future[None] = self._loop.create_future()
        self._thread = _get_ident()

    def wake(self) -> None:
        if _get_ident() == self._thread:
            _set_future(self._fut)
        else:
            try:
                self._loop.call_soon_threadsafe(_set_future, self._fut)
            except RuntimeError:  # the loop is closed: nobody is left to wake
                pass

    async def wait(self) -> None:
        await self._fut


class TrioWaiter:
    """Parks one trio task; woken from any thread."""

    __slots__ = ("_event", "_thread", "_token")

    def __init__(self) -> None:
        import trio

        self._event = trio.Event()
        self._token = trio.lowlevel.current_trio_token()
        self._thread = _get_ident()

    def wake(self) -> None:
        if _get_ident() == self._thread:
            self._event.set()
        else:
            import trio

            try:
                self._token.run_sync_soon(self._event.set)
            except trio.RunFinishedError:  # the run is over: nobody is left to wake
                pass

    async def wait(self) -> None:
        await self._event.wait()


def async_waiter() -> AsyncWaiter:
    """A waiter for the task that calls this, on whatever loop runs it."""
    if current_library() == "trio":
        return TrioWaiter()
    return AsyncioWaiter()


class LoopParker(Protocol):
    def park(self) -> Awaitable[None]: ...

    def wake(self) -> None: ...


class AsyncioParker:
    """Parks one asyncio task at a time; woken by another task of the same loop.

    Unlike a waiter it is not thread-safe and is reused: each `park` is one
    wait, and the `wake` after it ends that wait.  A `wake` with nobody
    parked (or after the parked task was cancelled) does nothing.  `park`
    returns the future to await, with no coroutine around it.
    """

    __slots__ = ("_fut", "_new")

    def __init__(self) -> None:
        self._new = asyncio.get_running_loop().create_future
        self._fut: asyncio.Future[None] | None = None

    def park(self) -> asyncio.Future[None]:
        fut = self._fut = self._new()
        return fut

    def wake(self) -> None:
        fut = self._fut
        if fut is not None:
            self._fut = None
            if not fut.done():  # not cancelled
                fut.set_result(None)


class TrioParker:
    """Parks one trio task at a time; woken by another task of the same run.

    As `AsyncioParker`: not thread-safe, reused, and a `wake` with nobody
    parked does nothing.  It parks on trio's lowest-level primitive (no
    Event per wait); a cancellation unparks the task.
    """

    __slots__ = ("_current_task", "_reschedule", "_succeeded", "_task", "_wait")

    def __init__(self) -> None:
        import trio

        self._task: Any = None
        self._current_task = trio.lowlevel.current_task
        self._reschedule = trio.lowlevel.reschedule
        self._wait: Callable[[Any], Awaitable[None]] = trio.lowlevel.wait_task_rescheduled
        self._succeeded = trio.lowlevel.Abort.SUCCEEDED

    def park(self) -> Awaitable[None]:
        self._task = self._current_task()
        return self._wait(self._aborted)

    def _aborted(self, raise_cancel: object) -> Any:
        self._task = None  # cancelled: a later wake() finds nobody
        return self._succeeded

    def wake(self) -> None:
        task = self._task
        if task is not None:
            self._task = None
            self._reschedule(task)


def loop_parker() -> LoopParker:
    """A reusable parking place for tasks of the loop that calls this (same thread only)."""
    if current_library() == "trio":
        return TrioParker()
    return AsyncioParker()


class ThreadWaiter:
    """Parks one plain thread (no event loop); woken from any thread."""

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()

    def wake(self) -> None:
        try:
            self._lock.release()
        except RuntimeError:  # already woken
            pass

    def wait(self, timeout: float | None) -> bool:
        """Block until woken; False if ``timeout`` seconds passed first."""
        if timeout is None:
            return self._lock.acquire()
        return self._lock.acquire(timeout=max(timeout, 0.0))


def _anyio_task_states() -> Any:
    """anyio's per-task cancel-scope records on asyncio (None if its layout is unknown)."""
    try:
        from anyio._backends._asyncio import _task_states
    except ImportError:  # pragma: no cover - a future anyio
        return None
    return _task_states


class CancelProbe:
    """A cheap "is the calling task's scope already cancelled?" for hot paths (R19).

    Every ``send``/``receive``/``__anext__`` asks it before moving a value,
    so a call made in a cancelled scope raises the cancellation and moves
    nothing, even when it would not otherwise wait.  On trio it reads the
    task's cancel status; on asyncio the task's pending ``cancel()`` and the
    anyio cancel scopes around it (anyio delivers a scope's cancellation only
    at the next wait, which a call that finds room never reaches).  One
    probe belongs to one end; it remembers the last task it saw and the
    chain of its scopes up to the first shield, so a look is a few
    attribute reads.
    """

    __slots__ = ("_chain", "_ident", "_loop", "_ref", "_state", "_task", "_top")

    _states: Any = None

    def __init__(self) -> None:
        self._ident = -1  # the thread of the last look
        self._loop: Any = None  # the asyncio loop it ran then (None: trio)
        self._task: Any = None
        self._ref: Any = None
        self._state: Any = None
        self._top: Any = None  # the task's innermost scope when the chain was taken
        self._chain: tuple[Any, ...] = ()

    def cancelled(self) -> bool:
        # Same thread as the last look: the loop it ran is running here now if it
        # has a current task (asyncio.get_running_loop() asks the OS for the pid).
        if _get_ident() != self._ident:
            return self._look()
        loop = self._loop
        if loop is None:
            return self._trio_cancelled()
        task = _task_of(loop)
        if task is not self._task or task is None:
            return self._look()
        if task._must_cancel:  # a Task.cancel() not delivered yet
            return True
        state = self._state
        if state is None:  # no anyio scope around this task when last looked
            state = CancelProbe._states.data.get(self._ref)
            if state is None:
                return False
            self._state = state
        if state.cancel_scope is not self._top:
            self._take_chain()
        for scope in self._chain:  # noqa: SIM110 - a loop is cheaper than any() here
            if scope._cancel_called:
                return True
        return False

    def _look(self) -> bool:
        """The first look from this thread or task: find the loop, the task, its anyio record."""
        self._ident = _get_ident()
        loop = self._loop = _get_running_loop()
        self._task = None
        if loop is None:
            return self._trio_cancelled()
        task = _task_of(loop)
        if task is None:
            return False
        if getattr(task, "_must_cancel", False):
            return True
        states = CancelProbe._states
        if states is None:
            states = CancelProbe._states = _anyio_task_states()
            if states is None:
                return False
        # a task keeps its record from its first scope to its end; one without a
        # record yet is looked up by a kept reference (no new weakref per call)
        self._task = task
        self._ref = weakref.ref(task)
        self._state = states.get(task)
        self._top = None
        return self.cancelled()

    def _trio_cancelled(self) -> bool:
        """The calling trio task's scope is cancelled (False outside a trio run)."""
        global _trio_current_task
        current = _trio_current_task
        if current is None:
            trio = sys.modules.get("trio")
            if trio is None:
                self._ident = -1
                return False
            current = _trio_current_task = trio.lowlevel.current_task
        try:
            task = current()
        except RuntimeError:
            self._ident = -1  # no trio run here (any more): look again next time
            return False
        status = getattr(task, "_cancel_status", None)
        return bool(status is not None and status.effectively_cancelled)

    def _take_chain(self) -> None:
        top = self._state.cancel_scope
        chain = []
        scope = top
        while scope is not None:
            chain.append(scope)
            if scope._shield:
                break
            scope = scope._parent_scope
        self._top = top
        self._chain = tuple(chain)


_trio_current_task: Callable[[], Any] | None = None
