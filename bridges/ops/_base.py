"""The machinery every pipeline helper shares: argument checks, the operator base
(`Op`: one source, closed on exit) and its hosted variant (`Hosted`: a helper task
in a task group the operator owns between entering and leaving its block)."""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Generic, NoReturn, TypeVar

import anyio
import anyio.lowlevel

from .._enter import ExcType, Tb, not_entered
from .._iterator import BridgeIterator, enter_foreign_context, log_cleanup_error
from .._pump import aclose_shielded

if TYPE_CHECKING:
    from anyio.abc import TaskGroup
    from typing_extensions import Self


T = TypeVar("T")


def require_aiterable(source: object, what: str = "source") -> None:
    if not hasattr(source, "__aiter__"):
        hint = ""
        if hasattr(source, "__iter__"):
            hint = " (a sync iterable: wrap it in an async generator first)"
        raise TypeError(
            f"{what} must be an async iterable (an object with __aiter__), "
            f"not {type(source).__name__}{hint}"
        )


def require_callable(fn: object, what: str) -> None:
    if not callable(fn):
        raise TypeError(f"{what} must be a function (sync or async), not {type(fn).__name__}")


def require_count(n: object, what: str, minimum: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"{what} must be an int >= {minimum}, not {type(n).__name__}")
    if n < minimum:
        raise ValueError(f"{what} must be >= {minimum}, not {n}")
    return n


def require_seconds(x: object, what: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise TypeError(f"{what} must be a number of seconds > 0, not {type(x).__name__}")
    if not x > 0 or x != x or x == float("inf"):
        raise ValueError(f"{what} must be a finite number of seconds > 0, not {x!r}")
    return float(x)


def is_async_callable(fn: object) -> bool:
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - an object with an async __call__
    return call is not None and inspect.iscoroutinefunction(call)


def cancelled_class() -> type[BaseException]:
    return anyio.get_cancelled_exc_class()


#: result types seen not to be awaitable (a type's __await__ decides, so the
#: answer holds for all its instances; generators are checked one by one)
_PLAIN_TYPES: set[type] = {int, float, str, bytes, bool, tuple, list, dict, type(None)}


def is_awaitable(result: object) -> bool:
    """``inspect.isawaitable(result)``, cheaper for the types seen before."""
    t = type(result)
    if t in _PLAIN_TYPES:
        return False
    if inspect.isawaitable(result):
        return True
    if t is not types.GeneratorType and len(_PLAIN_TYPES) < 512:
        _PLAIN_TYPES.add(t)
    return False


def log_cleanup(exc: BaseException, what: str) -> None:
    """Log a cleanup error that lost to another exception; a cancellation is no error."""
    if not isinstance(exc, cancelled_class()):
        log_cleanup_error(exc, what)


class Upstream(Generic[T]):
    """One source of an op: opened at the first pull, entered with the op, closed once."""

    __slots__ = ("closed", "entered", "it", "source")

    def __init__(self, source: AsyncIterable[T]) -> None:
        self.source = source
        self.it: AsyncIterator[T] | None = None
        self.entered = False
        self.closed = False

    async def open(self) -> AsyncIterator[T]:
        it = self.it
        if it is None:
            it = self.it = self.source.__aiter__()
            await enter_foreign_context(it)
        return it

    async def close(self) -> None:
        """Close the source (idempotent); a source never opened is closed if it can be."""
        if self.closed:
            return
        self.closed = True
        await aclose_shielded(self.it if self.it is not None else self.source)


class Op(BridgeIterator[T]):
    """An iterator that owns its sources.

    Entering it enters every source that is an iterator of this library
    (starting it, opening its task group); closing it closes every source
    (``aclose()``) before it returns; leaving its ``async with`` exits them.
    """

    __slots__ = ("_closed", "_entered", "_nxt", "_ups")

    _done: bool  # a slot of each subclass: the consumer was given the end

    def __init__(self, *sources: AsyncIterable[Any]) -> None:
        self._ups: list[Upstream[Any]] = [Upstream(s) for s in sources]
        self._entered = False
        self._closed = False
        #: the first source's bound __anext__ once it is open (the hot path of
        #: the single-source ops); None before, and again once closed
        self._nxt: Callable[[], Awaitable[Any]] | None = None

    async def __aenter__(self) -> Self:
        if self._entered:
            raise RuntimeError(f"this {type(self).__name__} was already entered")
        self._entered = True
        done: list[Upstream[Any]] = []
        try:
            for up in self._ups:
                if isinstance(up.source, BridgeIterator):
                    await up.source.__aenter__()
                    up.entered = True
                    done.append(up)
            await self._enter_host()
        except BaseException as exc:
            for up in reversed(done):
                try:
                    await up.source.__aexit__(type(exc), exc, exc.__traceback__)
                except BaseException as cleanup_exc:
                    log_cleanup(cleanup_exc, "exiting a source after a failed enter")
            raise
        return self

    async def __aexit__(self, exc_type: ExcType, exc: BaseException | None, tb: Tb) -> None:
        pending = exc
        try:
            await self.aclose()
        except BaseException as cleanup_exc:
            if pending is None:
                pending = cleanup_exc
            else:  # the consumer's own exception wins
                log_cleanup(cleanup_exc, f"closing {type(self).__name__}")
        try:
            await self._exit_host()
        except BaseException as cleanup_exc:
            cancelled = anyio.get_cancelled_exc_class()
            if pending is None:
                pending = cleanup_exc
            elif not (isinstance(cleanup_exc, cancelled) and isinstance(pending, cancelled)):
                # (a cancellation from outside reaches the helper tasks too: that
                # second cancellation is the same event, not a cleanup error)
                log_cleanup_error(cleanup_exc, "exiting a task group")
        for up in reversed(self._ups):
            if up.entered:
                up.entered = False
                try:
                    await up.source.__aexit__(
                        None if pending is None else type(pending),
                        pending,
                        None if pending is None else pending.__traceback__,
                    )
                except BaseException as cleanup_exc:
                    if pending is None:
                        pending = cleanup_exc
                    else:
                        log_cleanup(cleanup_exc, "exiting a source")
        if pending is not None and pending is not exc:
            raise pending

    async def _enter_host(self) -> None:
        pass

    async def _exit_host(self) -> None:
        pass

    async def _shutdown(self) -> None:
        """Stop whatever runs on the op's behalf (helper tasks); called once by aclose()."""

    async def aclose(self) -> None:
        """Close this iterator and every source it owns (idempotent).

        An error raised while closing a source is raised here (the first one;
        any others are logged to the ``bridges`` logger).
        """
        if self._closed:
            return
        self._closed = True
        self._nxt = None
        await self._shutdown()
        await self._close_ups(None)

    async def _close_ups(self, pending: BaseException | None) -> None:
        """Close every source; raise the first cleanup error unless ``pending`` is on its way."""
        first: BaseException | None = None
        for up in self._ups:
            try:
                await up.close()
            except BaseException as exc:
                if first is None and pending is None:
                    first = exc
                else:
                    log_cleanup(exc, "closing a source")
        if first is not None:
            raise first

    async def _end(self, error: BaseException | None) -> BaseException | None:
        """The op is finished (source ended or failed): close the sources.

        Returns the error to raise at the consumer (the source's, else a cleanup error).
        """
        self._closed = True
        self._nxt = None
        await self._shutdown()
        try:
            await self._close_ups(error)
        except BaseException as cleanup_exc:
            if isinstance(cleanup_exc, cancelled_class()):
                raise
            return cleanup_exc
        return error

    # the protocol of single-source ops; subclasses declare ``_done`` in their slots

    async def _pull_source(self) -> Any:
        """The next value of a single-source op's source; ends or fails the op with it.

        The ops inline the hot path (``self._nxt`` set: the source is open) and call
        this for the first pull and after the end.
        """
        if self._closed:  # closed by the consumer, or ended
            self._done = True
            raise StopAsyncIteration
        nxt = self._nxt
        if nxt is None:
            nxt = self._nxt = (await self._ups[0].open()).__anext__
        try:
            return await nxt()
        except StopAsyncIteration:
            await self._source_ended()
        except BaseException as exc:
            await self._source_failed(exc)

    async def _source_failed(self, exc: BaseException) -> NoReturn:
        """The source raised: a cancellation passes (nothing released), else the op ends."""
        if isinstance(exc, cancelled_class()):
            raise exc
        await self._end_with(exc)

    async def _source_ended(self) -> NoReturn:
        """The source ended: close it and end the op (a cleanup error is raised instead)."""
        self._done = True
        error = await self._end(None)
        if error is not None:
            raise error
        raise StopAsyncIteration

    async def _end_with(self, exc: BaseException) -> NoReturn:
        """Raise ``exc`` at the consumer, once, after closing the source (its errors logged)."""
        self._done = True
        await self._end(exc)
        raise exc


class Hosted(Op[T]):
    """An op that reads its sources in helper tasks, in a task group it owns.

    The task group is opened on entering ``async with`` and closed on leaving
    it; each helper runs in its own cancel scope so that ``aclose()`` (also in
    the middle of the block) can stop the helpers without cancelling the
    consumer's own code.  Helpers report errors in-band and never raise.
    """

    __slots__ = ("_cleanup_errors", "_idle", "_running", "_scopes", "_tg")

    def __init__(self, *sources: AsyncIterable[Any]) -> None:
        super().__init__(*sources)
        self._tg: TaskGroup | None = None
        self._scopes: list[anyio.CancelScope] = []
        self._running = 0
        self._idle: anyio.Event | None = None
        self._cleanup_errors: list[BaseException] = []

    def _cleanup_error(self, exc: BaseException) -> None:
        """A helper failed to close a source after the consumer closed: aclose() raises it."""
        self._cleanup_errors.append(exc)

    async def aclose(self) -> None:
        """Stop the helper tasks and close every source (idempotent).

        An error raised while closing a source is raised here (the first one;
        any others are logged to the ``bridges`` logger).
        """
        pending: BaseException | None = None
        try:
            await super().aclose()
        except BaseException as exc:
            pending = exc
        errors, self._cleanup_errors = self._cleanup_errors, []
        for error in errors:
            if pending is None:
                pending = error
            else:
                log_cleanup_error(error, "closing a source")
        if pending is not None:
            raise pending

    async def _enter_host(self) -> None:
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg

    async def _exit_host(self) -> None:
        tg, self._tg = self._tg, None
        if tg is not None:
            await self._shutdown()  # nothing left running: the exit cannot wait or fail
            await tg.__aexit__(None, None, None)

    def _what(self) -> str:
        return type(self).__name__

    def _spawn(self, fn: Callable[[anyio.CancelScope], Awaitable[None]]) -> anyio.CancelScope:
        tg = self._tg
        if tg is None:
            raise not_entered(
                self._what(),
                f"async with {self._what()} as it: async for v in it: ...",
                "it reads its source in a helper task, which needs an owner; entering an "
                "iterator chained on it, or to_list()/reduce()/for_each(), enters it too",
            )
        # the scope exists (and can be cancelled) before the task first runs
        scope = anyio.CancelScope()
        self._scopes.append(scope)
        self._running += 1
        tg.start_soon(self._host, scope, fn)
        return scope

    async def _host(
        self, scope: anyio.CancelScope, fn: Callable[[anyio.CancelScope], Awaitable[None]]
    ) -> None:
        try:
            with scope:
                await fn(scope)
        finally:
            self._scopes.remove(scope)
            self._running -= 1
            if not self._running and self._idle is not None:
                self._idle.set()

    def _cancel_helpers(self, but: anyio.CancelScope | None = None) -> None:
        for scope in self._scopes:
            if scope is not but:
                scope.cancel()

    async def _shutdown(self) -> None:
        self._cancel_helpers()
        if self._running:
            # cleanup must finish even when the consumer is being cancelled
            with anyio.CancelScope(shield=True):
                while self._running:
                    self._idle = anyio.Event()
                    await self._idle.wait()
            self._idle = None


STRINGS = (str, bytes, bytearray, memoryview)


def enter_if_needed(it: BridgeIterator[Any]) -> Any:
    """``async with it`` unless the consumer is already inside one (an op entered once)."""
    if isinstance(it, Op) and it._entered:
        return NoEnter(it)
    return it


class NoEnter:
    __slots__ = ("_it",)

    def __init__(self, it: BridgeIterator[Any]) -> None:
        self._it = it

    async def __aenter__(self) -> BridgeIterator[Any]:
        return self._it

    async def __aexit__(self, *exc_info: object) -> None:
        if exc_info[1] is None:
            await self._it.aclose()
            return
        try:
            await self._it.aclose()
        except BaseException as cleanup_exc:
            log_cleanup_error(cleanup_exc, "closing an iterator")
