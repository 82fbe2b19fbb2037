"""Pipeline helpers from the async-iterator playbook, on asyncio and trio alike.

* [`paginate`][bridges.ops.paginate] - a paginated API as one flat async iterator.
* [`batch`][bridges.ops.batch] - lists of up to ``size`` values, optionally flushed after ``within``
  seconds.
* [`merge`][bridges.ops.merge] - values from many sources as they arrive, one in flight per source.
* [`share`][bridges.ops.share] - multicast one source to many subscribers, each with its own buffer.
* [`rate_limit`][bridges.ops.rate_limit] - a token bucket.
* [`map`][bridges.ops.map] - a function over each value, up to ``concurrency`` calls at once.
* [`chain`][bridges.ops.chain] - the sources one after the other.
* [`zip`][bridges.ops.zip] - tuples of one value per source, until the shortest ends.

The chainable TC39-style methods (``map``, ``filter``, ``take``, ``drop``,
``flat_map``, ``indexed``, ``reduce``, ``to_list``, ``for_each``, ``some``, ``every``,
``find``) live on every iterator
this library returns ([`bridges.BridgeIterator`][bridges.BridgeIterator]); their implementations
are here too.

Every iterator returned is an async context manager with ``aclose()``: it
owns its sources, and closing it (``aclose()``, leaving ``async with``)
closes them before it returns.  The helpers that read a source in a helper
task (``batch(within=...)``, ``merge``, ``paginate(prefetch=True)``,
``map(concurrency=n)`` with ``n`` > 1) and
[`share`][bridges.ops.share] run that task in a task group they own, which lives between
entering and leaving their ``async with`` block: use them as
``async with merge(a, b) as it: async for v in it: ...``.  (A task group
cannot be opened inside one ``__anext__`` call and closed in a later one
without breaking structured concurrency on trio, so they fail with a clear
``RuntimeError`` when iterated without being entered.)
"""

from __future__ import annotations

import functools
import inspect
import types
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, NoReturn, TypeVar, overload

import anyio
import anyio.lowlevel
from anyio.lowlevel import checkpoint

from ._backend import async_waiter, current_library
from ._buffer import FULL, Handoff, Overflow, validate_buffer
from ._enter import not_entered
from ._iterator import (
    _NOTHING,
    CHECKPOINT_EVERY,
    BridgeIterator,
    BufferedIterator,
    enter_foreign_context,
    log_cleanup_error,
)
from ._workers import GRACE, WorkerCall, validate_grace, wait_returned, warn_left_behind

if TYPE_CHECKING:
    from anyio.abc import TaskGroup
    from typing_extensions import Self

    from ._backend import AsyncWaiter

T = TypeVar("T")
U = TypeVar("U")

__all__ = ["Shared", "batch", "chain", "map", "merge", "paginate", "rate_limit", "share", "zip"]


# --------------------------------------------------------------------------- helpers


def _require_aiterable(source: object, what: str = "source") -> None:
    if not hasattr(source, "__aiter__"):
        hint = ""
        if hasattr(source, "__iter__"):
            hint = " (a sync iterable: wrap it in an async generator first)"
        raise TypeError(
            f"{what} must be an async iterable (an object with __aiter__), "
            f"not {type(source).__name__}{hint}"
        )


def _require_callable(fn: object, what: str) -> None:
    if not callable(fn):
        raise TypeError(f"{what} must be a function (sync or async), not {type(fn).__name__}")


def _require_count(n: object, what: str, minimum: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"{what} must be an int >= {minimum}, not {type(n).__name__}")
    if n < minimum:
        raise ValueError(f"{what} must be >= {minimum}, not {n}")
    return n


def _require_seconds(x: object, what: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise TypeError(f"{what} must be a number of seconds > 0, not {type(x).__name__}")
    if not x > 0 or x != x or x == float("inf"):
        raise ValueError(f"{what} must be a finite number of seconds > 0, not {x!r}")
    return float(x)


def _is_async_callable(fn: object) -> bool:
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - an object with an async __call__
    return call is not None and inspect.iscoroutinefunction(call)


def _cancelled() -> type[BaseException]:
    return anyio.get_cancelled_exc_class()


#: result types seen not to be awaitable (a type's __await__ decides, so the
#: answer holds for all its instances; generators are checked one by one)
_PLAIN_TYPES: set[type] = {int, float, str, bytes, bool, tuple, list, dict, type(None)}


def _awaitable(result: object) -> bool:
    """``inspect.isawaitable(result)``, cheaper for the types seen before."""
    t = type(result)
    if t in _PLAIN_TYPES:
        return False
    if inspect.isawaitable(result):
        return True
    if t is not types.GeneratorType and len(_PLAIN_TYPES) < 512:
        _PLAIN_TYPES.add(t)
    return False


def _clock() -> Callable[[], float]:
    """The running loop's clock (what ``anyio.current_time()`` reads), looked up once."""
    if current_library() == "trio":
        import trio

        return trio.current_time
    import asyncio

    return asyncio.get_running_loop().time


def _log_cleanup(exc: BaseException, what: str) -> None:
    """Log a cleanup error that lost to another exception; a cancellation is no error."""
    if not isinstance(exc, _cancelled()):
        log_cleanup_error(exc, what)


async def _aclose(obj: object) -> None:
    aclose = getattr(obj, "aclose", None)
    if aclose is not None:
        # shielded: a source is often closed while the consumer or a helper task is
        # being cancelled, and a cleanup that awaits must still run to the end (R11)
        with anyio.CancelScope(shield=True):
            await aclose()


class _Up(Generic[T]):
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
        await _aclose(self.it if self.it is not None else self.source)


class _Op(BridgeIterator[T]):
    """An iterator that owns its sources.

    Entering it enters every source that is an iterator of this library
    (starting it, opening its task group); closing it closes every source
    (``aclose()``) before it returns; leaving its ``async with`` exits them.
    """

    __slots__ = ("_closed", "_entered", "_nxt", "_ups")

    def __init__(self, *sources: AsyncIterable[Any]) -> None:
        self._ups: list[_Up[Any]] = [_Up(s) for s in sources]
        self._entered = False
        self._closed = False
        #: the first source's bound __anext__ once it is open (the hot path of
        #: the single-source ops); None before, and again once closed
        self._nxt: Callable[[], Awaitable[Any]] | None = None

    async def __aenter__(self) -> Self:
        if self._entered:
            raise RuntimeError(f"this {type(self).__name__} was already entered")
        self._entered = True
        done: list[_Up[Any]] = []
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
                    _log_cleanup(cleanup_exc, "exiting a source after a failed enter")
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        pending = exc
        try:
            await self.aclose()
        except BaseException as cleanup_exc:
            if pending is None:
                pending = cleanup_exc
            else:  # the consumer's own exception wins
                _log_cleanup(cleanup_exc, f"closing {type(self).__name__}")
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
                        _log_cleanup(cleanup_exc, "exiting a source")
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
                    _log_cleanup(exc, "closing a source")
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
            if isinstance(cleanup_exc, _cancelled()):
                raise
            return cleanup_exc
        return error


class _Hosted(_Op[T]):
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


# --------------------------------------------------------------------------- TC39 helpers


class _Map(_Op[U]):
    __slots__ = ("_async", "_done", "_fn", "_held")

    def __init__(self, source: AsyncIterable[T], fn: Callable[[T], Any]) -> None:
        _require_callable(fn, "map()'s argument")
        super().__init__(source)
        self._fn = fn
        self._async = _is_async_callable(fn)
        self._held: Any = _NOTHING
        self._done = False

    async def __anext__(self) -> U:
        if self._done:
            raise StopAsyncIteration
        value = self._held
        if value is _NOTHING:
            nxt = self._nxt
            if nxt is None:
                value = await _pull(self)
            else:
                try:
                    value = await nxt()
                except StopAsyncIteration:
                    await _finish(self)
                except BaseException as exc:
                    await _pull_failed(self, exc)
            self._held = value
        try:
            result = self._fn(value)
            if self._async or _awaitable(result):
                result = await result
        except BaseException as exc:
            if isinstance(exc, _cancelled()):
                raise  # the value stays held: the next request calls the function again
            self._held = _NOTHING
            await _fail(self, exc)
        self._held = _NOTHING
        return result  # type: ignore[no-any-return]


class _Filter(_Op[T]):
    __slots__ = ("_async", "_done", "_fn", "_held")

    def __init__(self, source: AsyncIterable[T], fn: Callable[[T], Any]) -> None:
        _require_callable(fn, "filter()'s argument")
        super().__init__(source)
        self._fn = fn
        self._async = _is_async_callable(fn)
        self._held: Any = _NOTHING
        self._done = False

    async def __anext__(self) -> T:
        while True:
            if self._done:
                raise StopAsyncIteration
            value = self._held
            if value is _NOTHING:
                nxt = self._nxt
                if nxt is None:
                    value = await _pull(self)
                else:
                    try:
                        value = await nxt()
                    except StopAsyncIteration:
                        await _finish(self)
                    except BaseException as exc:
                        await _pull_failed(self, exc)
                self._held = value
            try:
                keep = self._fn(value)
                if self._async or _awaitable(keep):
                    keep = await keep
            except BaseException as exc:
                if isinstance(exc, _cancelled()):
                    raise
                self._held = _NOTHING
                await _fail(self, exc)
            self._held = _NOTHING
            if keep:
                return value  # type: ignore[no-any-return]


class _Take(_Op[T]):
    __slots__ = ("_done", "_error", "_held", "_left")

    def __init__(self, source: AsyncIterable[T], n: int) -> None:
        self._left = _require_count(n, "take()'s count", 0)
        super().__init__(source)
        self._held: Any = _NOTHING
        self._error: BaseException | None = None
        self._done = False

    async def __anext__(self) -> T:
        if self._held is not _NOTHING:  # a close cancelled last time: finish it first
            return await self._close_and_give()
        if self._done:
            error, self._error = self._error, None
            if error is not None:
                raise error
            raise StopAsyncIteration
        if self._left <= 0:
            await _finish(self)
        value = await _pull(self)
        self._left -= 1
        if self._left <= 0:
            # the last value: close the source before handing it over
            self._held = value
            return await self._close_and_give()
        return value  # type: ignore[no-any-return]

    async def _close_and_give(self) -> T:
        self._done = True
        self._error = await self._end(None)  # a cleanup error comes on the next request
        value, self._held = self._held, _NOTHING
        return value  # type: ignore[no-any-return]


class _Drop(_Op[T]):
    __slots__ = ("_done", "_left")

    def __init__(self, source: AsyncIterable[T], n: int) -> None:
        self._left = _require_count(n, "drop()'s count", 0)
        super().__init__(source)
        self._done = False

    async def __anext__(self) -> T:
        if self._done:
            raise StopAsyncIteration
        while self._left > 0:
            await _pull(self)
            self._left -= 1
        return await _pull(self)  # type: ignore[no-any-return]


_STRINGS = (str, bytes, bytearray, memoryview)


class _FlatMap(_Op[U]):
    __slots__ = ("_async", "_done", "_fn", "_held", "_inner", "_inner_async")

    def __init__(self, source: AsyncIterable[T], fn: Callable[[T], Any]) -> None:
        _require_callable(fn, "flat_map()'s argument")
        super().__init__(source)
        self._fn = fn
        self._async = _is_async_callable(fn)
        self._held: Any = _NOTHING
        self._inner: Any = None
        self._inner_async = False
        self._done = False

    async def __anext__(self) -> U:
        while True:
            if self._done:
                raise StopAsyncIteration
            inner = self._inner
            if inner is not None:
                try:
                    if self._inner_async:
                        return await inner.__anext__()  # type: ignore[no-any-return]
                    return next(inner)  # type: ignore[no-any-return]
                except (StopAsyncIteration, StopIteration):
                    self._inner = None
                    continue
                except BaseException as exc:
                    if isinstance(exc, _cancelled()):
                        raise
                    self._inner = None
                    await _fail(self, exc)
            value = self._held
            if value is _NOTHING:
                value = await _pull(self)
                self._held = value
            try:
                result = self._fn(value)
                if self._async or _awaitable(result):
                    result = await result
                self._inner, self._inner_async = _flattenable(result)
            except BaseException as exc:
                if isinstance(exc, _cancelled()):
                    raise
                self._held = _NOTHING
                await _fail(self, exc)
            self._held = _NOTHING

    async def aclose(self) -> None:
        inner, self._inner = self._inner, None
        self._done = True
        try:
            if inner is not None:
                if self._inner_async:
                    await _aclose(inner)
                else:
                    close = getattr(inner, "close", None)
                    if close is not None:
                        close()
        finally:
            await super().aclose()


def _flattenable(result: object) -> tuple[Any, bool]:
    if isinstance(result, _STRINGS):
        raise TypeError(
            f"flat_map()'s function returned a {type(result).__name__}; return an iterable "
            "or async iterable of values (wrap a single string in a list)"
        )
    if hasattr(result, "__aiter__"):
        return result.__aiter__(), True
    if isinstance(result, Iterable):
        return iter(result), False
    raise TypeError(
        "flat_map()'s function must return an iterable or an async iterable, "
        f"not {type(result).__name__}"
    )


async def _pull(op: Any) -> Any:
    """The next value of a single-source op's source; ends or fails the op with it.

    The ops inline the hot path (``op._nxt`` set: the source is open) and call
    this for the first pull and after the end.
    """
    if op._closed:  # closed by the consumer, or ended
        op._done = True
        raise StopAsyncIteration
    nxt = op._nxt
    if nxt is None:
        nxt = op._nxt = (await op._ups[0].open()).__anext__
    try:
        return await nxt()
    except StopAsyncIteration:
        await _finish(op)
    except BaseException as exc:
        await _pull_failed(op, exc)


async def _pull_failed(op: Any, exc: BaseException) -> NoReturn:
    """The source raised: a cancellation passes (nothing released), anything else ends the op."""
    if isinstance(exc, _cancelled()):
        raise exc
    await _fail(op, exc)


async def _finish(op: Any) -> NoReturn:
    """The source ended: close it and end the op (a cleanup error is raised instead)."""
    op._done = True
    error = await op._end(None)
    if error is not None:
        raise error
    raise StopAsyncIteration


async def _fail(op: Any, exc: BaseException) -> NoReturn:
    """Raise ``exc`` at the consumer, once, after closing the source (its errors logged)."""
    op._done = True
    await op._end(exc)
    raise exc


def _enter_if_needed(it: BridgeIterator[Any]) -> Any:
    """``async with it`` unless the consumer is already inside one (an op entered once)."""
    if isinstance(it, _Op) and it._entered:
        return _NoEnter(it)
    return it


class _NoEnter:
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


async def _to_list(it: BridgeIterator[T]) -> list[T]:
    async with _enter_if_needed(it) as src:
        return [v async for v in src]


async def _for_each(it: BridgeIterator[T], fn: Callable[[T], Any]) -> None:
    _require_callable(fn, "for_each()'s argument")
    is_async = _is_async_callable(fn)
    async with _enter_if_needed(it) as src:
        async for v in src:
            result = fn(v)
            if is_async or _awaitable(result):
                await result


async def _reduce(it: BridgeIterator[T], fn: Callable[[Any, T], Any], initial: Any) -> Any:
    _require_callable(fn, "reduce()'s function")
    is_async = _is_async_callable(fn)
    acc = initial
    async with _enter_if_needed(it) as src:
        async for v in src:
            if acc is _NOTHING:
                acc = v
                continue
            acc = fn(acc, v)
            if is_async or _awaitable(acc):
                acc = await acc
    if acc is _NOTHING:
        raise TypeError("reduce() of an empty iterator with no initial value")
    return acc


# --------------------------------------------------------------------------- paginate


class _Paginate(_Hosted[T]):
    __slots__ = (
        "_async",
        "_call",
        "_done",
        "_error",
        "_fetch",
        "_fetching",
        "_grace",
        "_items",
        "_more",
        "_next",
        "_prefetch",
        "_tick",
        "_token",
        "_waiter",
    )

    def __init__(
        self, fetch_page: Callable[[Any], Any], start: Any, prefetch: bool, grace: float | None
    ) -> None:
        super().__init__()
        self._fetch = fetch_page
        self._grace = grace
        #: the sync fetch in a worker thread whose page nobody has taken yet (R21)
        self._call: WorkerCall[Any] | None = None
        self._async = _is_async_callable(fetch_page)
        self._prefetch = prefetch
        self._token = start
        self._more = True  # a page is still to be fetched (for self._token)
        self._items: deque[T] = deque()
        self._done = False
        self._error: BaseException | None = None
        # prefetch: the page fetched ahead (items, next token), or the error it raised
        self._next: tuple[list[T], Any] | BaseException | None = None
        self._waiter: AsyncWaiter | None = None
        self._fetching = False
        self._tick = 0

    def _what(self) -> str:
        return "paginate(..., prefetch=True)"

    async def __anext__(self) -> T:
        items = self._items
        if items:
            tick = self._tick + 1
            if tick >= CHECKPOINT_EVERY:
                self._tick = 0
                await checkpoint()
            else:
                self._tick = tick
            return items.popleft()
        while True:
            if items:
                return items.popleft()
            if self._done or self._closed:
                self._done = True
                error, self._error = self._error, None
                if error is not None:
                    raise error
                raise StopAsyncIteration
            if not self._more:
                await self._finish(None)
                continue
            if self._prefetch:
                page = await self._take_prefetched()
            else:
                try:
                    page = await self._fetch_page()
                except BaseException as exc:
                    if isinstance(exc, _cancelled()):
                        # a sync fetch runs on and the next request takes its page;
                        # an async one is made again with the same token
                        raise
                    await self._finish(exc)
                    continue
            if isinstance(page, BaseException):
                await self._finish(page)
                continue
            page_items, self._token = page
            self._more = self._token is not None
            items.extend(page_items)
            if self._prefetch and self._more:
                self._start_fetch()

    async def _finish(self, error: BaseException | None) -> None:
        self._done = True
        self._more = False
        self._error = await self._end(error)

    async def _fetch_page(self) -> tuple[list[T], Any]:
        """The page of the current token: awaited, or taken from the sync call in its worker.

        A sync ``fetch_page`` runs in a worker thread as one `WorkerCall`
        per token: a cancelled wait leaves it running, and the next request
        waits for that same call, so there is never a second call at once and
        no page is lost (R21).
        """
        if self._async:
            return _check_page(await self._fetch(self._token))
        call = self._call
        if call is None:
            call = self._call = WorkerCall(_fetch_in_thread, self._fetch, self._token)
        try:
            result = await call.outcome()
        except BaseException as exc:
            if not isinstance(exc, _cancelled()):
                self._call = None
            raise
        self._call = None
        if isinstance(result, _ToAwait):
            result = await result.awaitable
        return _check_page(result)

    async def aclose(self) -> None:
        """Close the iterator (idempotent); a sync fetch in progress is waited for first.

        A sync ``fetch_page`` cannot be interrupted: this waits, shielded from
        cancellation, until it has returned (its page is dropped), at most
        ``grace`` seconds; after that it leaves it running, with a
        ``RuntimeWarning``.
        """
        self._items.clear()
        self._more = False
        self._done = True
        try:
            await super().aclose()
        finally:
            call, self._call = self._call, None
            if (
                call is not None
                and not call.forgo()
                and not await wait_returned(call.done, self._grace)
            ):
                warn_left_behind(
                    "ops.paginate()", self._fetch, self._grace, "its page will be dropped"
                )

    def _start_fetch(self) -> None:
        self._fetching = True
        self._next = None
        self._spawn(self._fetch_ahead)

    async def _take_prefetched(self) -> tuple[list[T], Any] | BaseException:
        if not self._fetching and self._next is None:
            self._start_fetch()  # the first page
        while self._next is None:
            waiter = self._waiter = async_waiter()
            try:
                await waiter.wait()
            finally:
                self._waiter = None
        page, self._next = self._next, None
        self._fetching = False
        return page

    async def _fetch_ahead(self, scope: anyio.CancelScope) -> None:
        try:
            self._next = await self._fetch_page()
        except Exception as exc:
            self._next = exc
        finally:
            waiter = self._waiter
            if waiter is not None:
                waiter.wake()


def _check_page(result: object) -> tuple[list[Any], Any]:
    if not (isinstance(result, tuple) and len(result) == 2):
        raise TypeError(
            "fetch_page(token) must return a pair (items, next_token), with next_token "
            f"None on the last page; it returned {type(result).__name__}"
        )
    items, token = result
    if isinstance(items, _STRINGS) or not isinstance(items, Iterable):
        raise TypeError(
            f"fetch_page(token) returned items of type {type(items).__name__}; "
            "the items must be an iterable such as a list"
        )
    return list(items), token


class _ToAwait:
    """An awaitable a sync-looking ``fetch_page`` returned in the worker, for the loop to await.

    Wrapped, because trio refuses a worker function that returns a coroutine.
    """

    __slots__ = ("awaitable",)

    def __init__(self, awaitable: Any) -> None:
        self.awaitable = awaitable


def _fetch_in_thread(fetch: Callable[[Any], Any], token: Any) -> Any:
    result = fetch(token)
    if inspect.isawaitable(result):
        # a plain function that returned a coroutine (a lambda around an async
        # call): the loop awaits it
        return _ToAwait(result)
    return _check_page(result)


@overload
def paginate(
    fetch_page: Callable[[Any], Awaitable[tuple[Iterable[T], Any]]],
    *,
    start: Any = None,
    prefetch: bool = False,
    grace: float | None = GRACE,
) -> BridgeIterator[T]: ...


@overload
def paginate(
    fetch_page: Callable[[Any], tuple[Iterable[T], Any]],
    *,
    start: Any = None,
    prefetch: bool = False,
    grace: float | None = GRACE,
) -> BridgeIterator[T]: ...


def paginate(
    fetch_page: Callable[[Any], Any],
    *,
    start: Any = None,
    prefetch: bool = False,
    grace: float | None = GRACE,
) -> BridgeIterator[Any]:
    """A paginated API as one flat async iterator.

    ``fetch_page(token)`` returns ``(items, next_token)``; the first call gets
    ``start``, each next call the token the previous page returned, and the
    iteration ends after the page whose ``next_token`` is None.  An ``async``
    ``fetch_page`` is awaited; a sync one runs in a worker thread so that it
    cannot block the event loop.

    Demand: nothing is fetched before the first value is asked for, and the
    next page only when the consumer has taken every item of the current
    one.  With ``prefetch=True`` a helper task fetches the next page while the
    current one is consumed (one page ahead at most); it needs the iterator's
    ``async with`` block, which owns that task.

    One call at a time (R21): a sync ``fetch_page`` runs in a worker thread,
    where nothing can interrupt it.  A cancellation caught around one
    ``__anext__`` (a timeout) leaves that call running, and the next
    ``__anext__`` waits for the same call and takes its page: a second call
    is never started while one runs, no page is skipped or fetched twice,
    and a page slower than the consumer's timeout still arrives.  (An async
    ``fetch_page`` is cancelled, and fetched again with the same token on
    the next request.)  Early exit (``aclose()``, leaving ``async with``,
    cancellation) cancels an async fetch and waits, shielded, for a sync
    call in progress to return (its page is dropped), so that the source
    may be closed right after the exit; a call still running after
    ``grace`` seconds is left behind, with a ``RuntimeWarning``.

    Errors: an exception raised by ``fetch_page`` is raised at the consumer
    once, after the items of the pages before it; then the iteration ends.

    :param fetch_page: ``token -> (items, next_token)``, sync or async
    :param start: the token of the first page
    :param prefetch: fetch one page ahead in a helper task
    :param grace: how long an early exit waits for a sync ``fetch_page`` in
        progress to return (seconds; ``None``: as long as it takes)
    :raises TypeError: ``fetch_page`` is not callable (at once); it returned
        something other than a pair whose first item is an iterable (at the
        consumer); ``grace`` is not a number or None
    :raises ValueError: ``grace`` is negative
    """
    _require_callable(fetch_page, "fetch_page")
    if not isinstance(prefetch, bool):
        raise TypeError(f"prefetch must be True or False, not {type(prefetch).__name__}")
    return _Paginate(fetch_page, start, prefetch, validate_grace(grace))


# --------------------------------------------------------------------------- batch


class _Batch(_Op[list[T]]):
    """Batches pulled by the consumer itself (no time limit)."""

    __slots__ = ("_buf", "_done", "_error", "_size")

    def __init__(self, source: AsyncIterable[T], size: int) -> None:
        super().__init__(source)
        self._size = size
        self._buf: list[T] = []
        self._done = False
        self._error: BaseException | None = None

    async def __anext__(self) -> list[T]:
        buf = self._buf
        if not self._done:
            if self._closed:  # closed by the consumer: what was collected goes too
                self._done = True
                self._buf = []
                raise StopAsyncIteration
            up = self._ups[0]
            it = up.it
            if it is None:
                it = await up.open()
            size = self._size
            nxt = it.__anext__
            while len(buf) < size:
                try:
                    value = await nxt()
                except StopAsyncIteration:
                    self._done = True
                    self._error = await self._end(None)
                    break
                except BaseException as exc:
                    if isinstance(exc, _cancelled()):
                        raise  # the values collected so far stay for the next request
                    self._done = True
                    self._error = await self._end(exc)
                    break
                buf.append(value)
        if buf:
            self._buf = []
            return buf
        error, self._error = self._error, None
        if error is not None:
            raise error
        raise StopAsyncIteration


class _BatchWithin(_Hosted[list[T]]):
    """Batches built by a helper task; flushed when full or ``within`` seconds old."""

    __slots__ = (
        "_current",
        "_deadline",
        "_ended",
        "_error",
        "_finished",
        "_room",
        "_sealed",
        "_size",
        "_started",
        "_waiter",
        "_within",
    )

    def __init__(self, source: AsyncIterable[T], size: int, within: float) -> None:
        super().__init__(source)
        self._size = size
        self._within = within
        self._current: list[T] = []
        self._sealed: list[T] | None = None
        self._deadline = 0.0
        self._ended = False
        self._error: BaseException | None = None
        self._waiter: AsyncWaiter | None = None
        self._room: AsyncWaiter | None = None
        self._started = False
        self._finished = False

    def _what(self) -> str:
        return "batch(..., within=...)"

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.wake()

    def _give_room(self) -> None:
        room = self._room
        if room is not None:
            self._room = None
            room.wake()

    async def _wait_room(self) -> None:
        while self._sealed is not None:
            room = self._room = async_waiter()
            await room.wait()

    async def _read(self, scope: anyio.CancelScope) -> None:
        up = self._ups[0]
        error: BaseException | None = None
        try:
            it = await up.open()
            nxt = it.__anext__
            size, within, clock = self._size, self._within, _clock()
            while True:
                if self._sealed is not None:
                    await self._wait_room()  # at most one batch in hand
                try:
                    value = await nxt()
                except StopAsyncIteration:
                    break
                now = clock()
                if self._current and now >= self._deadline:
                    # the batch was due before this value came: it goes without it
                    self._sealed, self._current = self._current, []
                    self._wake()
                    await self._wait_room()
                current = self._current
                if not current:
                    self._deadline = now + within
                current.append(value)
                if len(current) >= size:
                    self._sealed, self._current = current, []
                self._wake()
        except Exception as exc:
            error = exc
        finally:
            try:
                await up.close()
            except Exception as exc:
                if self._closed:
                    self._cleanup_error(exc)
                elif error is None:
                    error = exc
                else:
                    log_cleanup_error(exc, "closing the source of batch()")
            finally:
                self._error = error
                self._ended = True
                self._wake()

    async def __anext__(self) -> list[T]:
        if not self._started:
            if self._closed:
                raise StopAsyncIteration
            self._started = True
            self._spawn(self._read)
        while True:
            sealed = self._sealed
            if self._closed and not self._ended:
                raise StopAsyncIteration  # closed by the consumer
            if sealed is not None:
                self._sealed = None
                self._give_room()
                return sealed
            current = self._current
            if current:
                if self._ended or anyio.current_time() >= self._deadline:
                    self._current = []
                    return current
            elif self._ended or self._closed:
                if not self._finished:
                    self._finished = True
                    self._error = await self._end(self._error)
                error, self._error = self._error, None
                if error is not None:
                    raise error
                raise StopAsyncIteration
            waiter = self._waiter = async_waiter()
            try:
                if current:
                    with anyio.move_on_after(self._deadline - anyio.current_time()):
                        await waiter.wait()
                else:
                    await waiter.wait()
            finally:
                self._waiter = None

    async def aclose(self) -> None:
        self._started = True  # nothing to start any more
        try:
            await super().aclose()
        finally:
            # a value the helper received as it was cancelled is dropped too
            self._current = []
            self._sealed = None
            self._error = None


def batch(
    source: AsyncIterable[T], size: int, *, within: float | None = None
) -> BridgeIterator[list[T]]:
    """Lists of up to ``size`` values: the classic "size or time" batcher.

    A batch is delivered as soon as it is full, without pulling another
    value; the last, partial batch is delivered when the source ends; a
    source error is raised once, after the partial batch before it.

    Without ``within`` the consumer's own task pulls the source, ``size``
    values per batch (a timeout caught around one ``__anext__`` keeps the
    values collected so far for the next request).

    With ``within`` (seconds), a batch is also flushed early, partial,
    ``within`` seconds after its first value arrived: no value waits longer
    than that for the consumer to be offered it.  A helper task, in a task
    group the iterator owns (enter its ``async with``), reads the source so
    that the timer never cancels a pull (cancelling an async generator's
    ``__anext__`` would finish it).  The helper holds at most one batch in
    hand: once a batch is due (full or timed out) it pulls nothing more
    until the consumer took it, so at most ``size`` values (and the one
    value that arrived after a timed-out batch was closed) are held.

    Closing (``aclose()``, leaving ``async with``) cancels the helper and
    closes the source before it returns; held values are dropped.

    :param source: any async iterable
    :param size: the most values per batch (>= 1)
    :param within: flush a batch this many seconds after its first value
    :raises TypeError: ``source`` is not an async iterable; ``size`` is not an int
    :raises ValueError: ``size`` < 1 or ``within`` <= 0
    """
    _require_aiterable(source)
    size = _require_count(size, "size", 1)
    if within is None:
        return _Batch(source, size)
    return _BatchWithin(source, size, _require_seconds(within, "within"))


# --------------------------------------------------------------------------- merge


class _Merge(_Hosted[T]):
    __slots__ = ("_active", "_error", "_raised", "_ready", "_started", "_tick", "_waiter")

    def __init__(self, sources: tuple[AsyncIterable[T], ...]) -> None:
        super().__init__(*sources)
        # values pulled and not yet delivered, each with the waiter of its source's helper
        self._ready: deque[tuple[T, AsyncWaiter]] = deque()
        self._waiter: AsyncWaiter | None = None
        self._active = 0
        self._error: BaseException | None = None
        self._raised = False
        self._started = False
        self._tick = 0

    def _what(self) -> str:
        return "merge()"

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.wake()

    def _fail(self, exc: BaseException, scope: anyio.CancelScope) -> None:
        if self._closed:
            self._cleanup_error(exc)
        elif self._error is None and not self._raised:
            self._error = exc
            self._cancel_helpers(but=scope)  # the first error cancels the others
            self._wake()
        else:
            log_cleanup_error(exc, "merging (another error came first)")

    def _feeder(self, up: _Up[T]) -> Callable[[anyio.CancelScope], Awaitable[None]]:
        async def feed(scope: anyio.CancelScope) -> None:
            try:
                it = await up.open()
                nxt = it.__anext__
                ready = self._ready
                while True:
                    try:
                        value = await nxt()
                    except StopAsyncIteration:
                        return
                    delivered = async_waiter()
                    ready.append((value, delivered))
                    waiter = self._waiter
                    if waiter is not None:
                        self._waiter = None
                        waiter.wake()
                    await delivered.wait()  # one in flight: pull again once delivered
            except Exception as exc:
                self._fail(exc, scope)
            finally:
                try:
                    await up.close()
                except Exception as exc:
                    self._fail(exc, scope)
                finally:
                    self._active -= 1
                    self._wake()

        return feed

    async def __anext__(self) -> T:
        ready = self._ready
        if ready:
            tick = self._tick + 1
            if tick >= CHECKPOINT_EVERY:
                self._tick = 0
                await checkpoint()
            else:
                self._tick = tick
            if ready:
                value, delivered = ready.popleft()
                delivered.wake()
                return value
        if not self._started:
            if self._closed:
                raise StopAsyncIteration
            self._started = True
            for up in self._ups:
                self._spawn(self._feeder(up))
                self._active += 1
        while True:
            if ready:
                value, delivered = ready.popleft()
                delivered.wake()
                return value
            if self._raised or self._closed:
                raise StopAsyncIteration
            if self._error is not None:
                self._raised = True
                await self._shutdown()  # the other sources are closed before it is raised
                error, self._error = self._error, None
                raise error
            if self._active <= 0:
                self._raised = True
                raise StopAsyncIteration
            waiter = self._waiter = async_waiter()
            try:
                await waiter.wait()
            finally:
                if self._waiter is waiter:
                    self._waiter = None

    async def aclose(self) -> None:
        self._ready.clear()
        await super().aclose()


def merge(*sources: AsyncIterable[T]) -> BridgeIterator[T]:
    """Values from all ``sources`` as they arrive.

    Each source is read by a helper task in a task group the iterator owns:
    use it as ``async with merge(a, b) as it: async for v in it: ...``.

    Backpressure: each source runs ahead by at most one value; it is pulled
    again only after its value was delivered to the consumer.  The values of
    one source keep their order.

    Errors: the first error (of a source, or of closing one) cancels the
    other sources' pulls and is raised once, as itself (never wrapped in an
    ExceptionGroup), after the values already pulled; later errors are
    logged to the ``bridges`` logger.  The iteration ends when every source
    has ended.

    Early exit (``aclose()``, leaving ``async with``, cancellation) cancels the
    pulls and closes every source before it returns; a source that was never
    started is closed too if it has ``aclose()``.

    :raises TypeError: a source is not an async iterable
    :raises RuntimeError: iterated without entering its ``async with`` block
    """
    for i, s in enumerate(sources):
        _require_aiterable(s, f"merge() source #{i}")
    return _Merge(sources)


# --------------------------------------------------------------------------- rate_limit


class _RateLimit(_Op[T]):
    __slots__ = ("_burst", "_done", "_last", "_rate", "_tokens")

    def __init__(self, source: AsyncIterable[T], rate: float, burst: int) -> None:
        super().__init__(source)
        self._rate = rate
        self._burst = burst
        self._tokens = float(burst)
        self._last: float | None = None
        self._done = False

    def _refill(self) -> float:
        now = anyio.current_time()
        last = self._last
        if last is not None:
            self._tokens = min(float(self._burst), self._tokens + (now - last) * self._rate)
        self._last = now
        return self._tokens

    async def __anext__(self) -> T:
        if self._done or self._closed:
            raise StopAsyncIteration
        tokens = self._refill()
        while tokens < 1.0 - 1e-9:
            await anyio.sleep((1.0 - tokens) / self._rate)
            tokens = self._refill()
        self._tokens = tokens - 1.0
        try:
            return await _pull(self)  # type: ignore[no-any-return]
        except BaseException as exc:
            if isinstance(exc, _cancelled()):
                self._tokens = min(float(self._burst), self._tokens + 1.0)  # give it back
            raise


def rate_limit(source: AsyncIterable[T], per_second: float, *, burst: int = 1) -> BridgeIterator[T]:
    """At most ``per_second`` values per second on average, ``burst`` at once: a token bucket.

    The bucket holds up to ``burst`` tokens and starts full; it refills at
    ``per_second`` tokens per second.  Each value costs one token, taken
    before the source is pulled, so the source itself is never pulled
    faster than the limit (useful to pace requests).  The consumer's task
    waits for a token and pulls; a cancellation while waiting takes no token
    and loses nothing.  The source's errors pass through unchanged; closing
    closes the source.  Time is the event loop's clock
    (``anyio.current_time()``), so trio's and test clocks apply.

    :param source: any async iterable
    :param per_second: tokens added per second (> 0)
    :param burst: the bucket's size: values that may pass at once after a pause (>= 1)
    :raises TypeError: ``source`` is not an async iterable; a number of the wrong type
    :raises ValueError: ``per_second`` <= 0 or ``burst`` < 1
    """
    _require_aiterable(source)
    rate = _require_seconds(per_second, "per_second")
    return _RateLimit(source, rate, _require_count(burst, "burst", 1))


# --------------------------------------------------------------------------- share


class _Run(Generic[T]):
    """One iteration of a shared source: its members and the pump that feeds them."""

    __slots__ = ("done", "ended", "it", "members", "scope", "started")

    def __init__(self) -> None:
        self.members: list[Handoff[T]] = []
        self.it: AsyncIterator[T] | None = None
        self.started = False
        self.ended = False
        self.scope: anyio.CancelScope | None = None
        self.done: anyio.Event | None = None


class _Subscriber(BufferedIterator[T]):
    """One subscriber of a [`Shared`][bridges.ops.Shared]: its own buffer, fed by the share's
    pump."""

    __slots__ = ("_run", "_shared")

    def __init__(self, handoff: Handoff[T], shared: Shared[T], run: _Run[T]) -> None:
        super().__init__(handoff, self._begin_run)
        self._shared = shared
        self._run = run

    def _begin_run(self, h: Handoff[T]) -> Callable[[], object]:
        self._shared._demand(self._run)
        return self._leave

    def _leave(self) -> None:
        self._shared._leave(self._run, self._h)

    async def aclose(self) -> None:
        """Leave: release this subscriber's buffer; the last one to leave closes the source.

        When this was the last subscriber of a running source, the source is
        closed before this returns.
        """
        await super().aclose()
        run = self._run
        done = run.done
        if not run.members and done is not None and not done.is_set():
            with anyio.CancelScope(shield=True):
                await done.wait()


class Shared(Generic[T]):
    """One source multicast to many subscribers; made by [`share`][bridges.ops.share].

    Use it as ``async with share(source) as shared:``; inside the block each
    ``aiter(shared)`` (each ``async for v in shared``) or
    [`subscribe`][bridges.ops.Shared.subscribe] is one subscriber.  See [`share`][bridges.ops.share]
    for the semantics.
    """

    __slots__ = (
        "__weakref__",
        "_buffer",
        "_entered",
        "_overflow",
        "_run",
        "_runs",
        "_source",
        "_started_once",
        "_state",
        "_tg",
    )

    def __init__(self, source: AsyncIterable[T], buffer: int | None, overflow: Overflow) -> None:
        self._source = source
        self._buffer = buffer
        self._overflow = overflow
        self._tg: TaskGroup | None = None
        self._state = 0  # 0 new, 1 inside the block, 2 exited
        self._entered = False
        self._run: _Run[T] | None = None
        self._runs: list[_Run[T]] = []  # runs whose pump was started and is not done
        self._started_once = False

    def subscribe(
        self, *, buffer: int | object | None = _NOTHING, overflow: Overflow | str | None = None
    ) -> BufferedIterator[T]:
        """A new subscriber, joined now, with its own buffer and overflow policy.

        It receives every value pulled from the source after this call (under
        ``block``; a drop policy drops for this subscriber alone and counts it in
        ``stats.dropped``).  Leaving it (``aclose()``, its ``async with``)
        releases its buffer; the last subscriber to leave closes the source.

        :param buffer: this subscriber's capacity (default: the share's)
        :param overflow: this subscriber's policy (default: the share's)
        :raises ValueError: a bad ``buffer`` / ``overflow``
        :raises RuntimeError: the share's ``async with`` block has exited
        """
        if self._state == 2:
            raise RuntimeError(
                "this share() has been closed (its 'async with' block exited); "
                "subscribe inside the block"
            )
        cap = self._buffer if buffer is _NOTHING else validate_buffer(buffer)
        policy = self._overflow if overflow is None else Overflow.parse(overflow)
        handoff: Handoff[T] = Handoff(cap, policy)
        run = self._run
        if run is None or run.ended:
            run = self._run = _Run()
        run.members.append(handoff)
        handoff.on_consumer_gone(functools.partial(self._leave, run, handoff))
        return _Subscriber(handoff, self, run)

    def __aiter__(self) -> BufferedIterator[T]:
        return self.subscribe()

    async def __aenter__(self) -> Self:
        if self._state != 0:
            raise RuntimeError("a share() can be entered once")
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        self._state = 1
        if isinstance(self._source, BridgeIterator):
            try:
                await self._source.__aenter__()
            except BaseException:
                self._tg = None
                await tg.__aexit__(None, None, None)
                raise
            self._entered = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._state = 2
        pending = exc
        run = self._run
        self._run = None
        if run is not None and not run.started:
            run.ended = True
            for h in run.members:
                h.close()
        for r in self._runs:
            if r.scope is not None:
                r.scope.cancel()
        with anyio.CancelScope(shield=True):
            while self._runs:
                done = self._runs[0].done
                assert done is not None
                await done.wait()
        if self._entered:
            self._entered = False
            try:
                await self._source.__aexit__(exc_type, exc, tb)  # type: ignore[attr-defined]
            except BaseException as cleanup_exc:
                if pending is None:
                    pending = cleanup_exc
                else:
                    log_cleanup_error(cleanup_exc, "exiting the shared source")
        tg, self._tg = self._tg, None
        if tg is not None:
            await tg.__aexit__(None, None, None)
        if pending is not None and pending is not exc:
            raise pending

    # ------------------------------------------------------------ internals

    def _demand(self, run: _Run[T]) -> None:
        """A subscriber of ``run`` wants values: start its pump (once)."""
        if run.started or run.ended:
            return
        tg = self._tg
        if tg is None:
            raise not_entered(
                "share()",
                "async with bridges.ops.share(source) as shared: ... subscribe inside the block",
                "it reads its source in a helper task, which needs an owner",
            )
        it = self._source.__aiter__()
        if it is self._source and self._started_once:
            raise RuntimeError(
                "this share()'s source is a one-shot async iterator and its iteration is over "
                "(it ended, or every subscriber left); a new subscriber cannot restart it. "
                "Share a re-iterable (whose __aiter__ returns a fresh iterator), or keep one "
                "subscriber joined for as long as others may join"
            )
        self._started_once = True
        run.started = True
        run.it = it
        run.scope = anyio.CancelScope()
        run.done = anyio.Event()
        self._runs.append(run)
        tg.start_soon(self._pump, run)

    def _leave(self, run: _Run[T], handoff: Handoff[T]) -> None:
        try:
            run.members.remove(handoff)
        except ValueError:
            return
        if not run.members:
            # refcount zero: the source is closed (a new subscriber starts afresh)
            if not run.ended:
                run.ended = True
                if self._run is run:
                    self._run = None
            if run.scope is not None:
                run.scope.cancel()

    async def _pump(self, run: _Run[T]) -> None:
        it = run.it
        assert it is not None
        assert run.scope is not None
        assert run.done is not None
        error: BaseException | None = None
        try:
            with run.scope:
                try:
                    await enter_foreign_context(it)
                    nxt = it.__anext__
                    members = run.members
                    while True:
                        try:
                            value = await nxt()
                        except StopAsyncIteration:
                            break
                        full: list[Handoff[T]] | None = None
                        for h in tuple(members):
                            if h.put_nowait(value) is FULL:
                                if full is None:
                                    full = [h]
                                else:
                                    full.append(h)
                        waited = full is not None
                        if full is not None:
                            for h in full:
                                await h.put(value)  # block: the slowest paces the source
                        if not any(h.open for h in members):
                            break  # nobody can take values any more
                        if not waited:
                            await checkpoint()  # a source that never waits must not hog the loop
                except Exception as exc:
                    error = exc
                finally:
                    run.ended = True
                    if self._run is run:
                        self._run = None
                    try:
                        await _aclose(it)
                    except Exception as exc:
                        if error is None:
                            error = exc
                        else:
                            log_cleanup_error(exc, "closing the shared source")
        finally:
            for h in run.members:
                if error is None:
                    h.close()
                else:
                    h.fail(error)
            self._runs.remove(run)
            run.done.set()


def share(
    source: AsyncIterable[T], *, buffer: int | None = 64, overflow: Overflow | str = "block"
) -> Shared[T]:
    """Multicast one source to many subscribers.

    ``async with share(source) as shared:`` opens the task group that owns the
    helper task (the *pump*) reading the source.  Inside the block, each
    ``aiter(shared)`` - each ``async for v in shared`` - or
    ``shared.subscribe(buffer=..., overflow=...)`` is one subscriber, joined
    at that moment, with its own buffer of ``buffer`` values and its own
    ``overflow`` policy (these are the defaults).  Subscribe every consumer
    before starting them when each must see every value.

    The pump starts at the first value any subscriber asks for and pulls
    the source; each value pulled goes to every subscriber joined by then.
    Under ``block`` every such value reaches the subscriber: the pump waits
    for room in each ``block`` subscriber's buffer, so the slowest one paces
    the source (a subscriber that is not read at all holds it back once its
    buffer is full: leave the subscribers you stop reading).  ``drop_oldest``
    / ``drop_newest`` subscribers never hold the pump back: they drop for
    themselves alone and count it (``stats.dropped``);
    an ``error`` subscriber whose buffer overflows gets its buffered values,
    then [`bridges.BufferOverflowError`][bridges.BufferOverflowError], while the others go on.  With
    no ``block`` subscriber the source is read as fast as it yields.

    Leaving a subscriber (``aclose()``, its ``async with``) releases its
    buffer.  Reference counting: when the last subscriber leaves, the pump is
    cancelled and the source closed before that ``aclose()`` returns; a
    subscriber that joins later starts a fresh iteration of the source (a
    one-shot async iterator cannot be restarted: that subscriber gets a
    ``RuntimeError``).  The source ending ends every subscriber after its
    buffered values; a source error is raised, as itself, at every subscriber
    after its buffered values.  Leaving the ``async with`` block closes the
    source and ends the remaining subscribers.

    :param source: any async iterable
    :param buffer: each subscriber's capacity (an int >= 0, or None: unbounded)
    :param overflow: each subscriber's policy ([`bridges.Overflow`][bridges.Overflow])
    :raises TypeError: ``source`` is not an async iterable; a bad ``buffer`` type
    :raises ValueError: a bad ``buffer`` / ``overflow``
    """
    _require_aiterable(source)
    Handoff(buffer, overflow)  # validates buffer and overflow together (R15)
    return Shared(source, validate_buffer(buffer), Overflow.parse(overflow))


# helpers implemented in their own modules (which import this one)
from ._cmap import map as map  # noqa: E402
from ._combine import chain as chain  # noqa: E402
from ._combine import zip as zip  # noqa: E402

for _helper in (chain, map, zip):
    _helper.__module__ = __name__
del _helper
