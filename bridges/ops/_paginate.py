"""[`paginate`][bridges.ops.paginate]: a paginated API as one flat async iterator."""

from __future__ import annotations

import inspect
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar, overload

import anyio
import anyio.lowlevel
from anyio.lowlevel import checkpoint

from .._iterator import CHECKPOINT_EVERY, BridgeIterator
from .._parking import Slot
from .._workers import GRACE, WorkerCall, validate_grace, wait_returned, warn_left_behind
from ._base import STRINGS, Hosted, cancelled_class, is_async_callable, require_callable

if TYPE_CHECKING:
    pass

T = TypeVar("T")


class _Paginate(Hosted[T]):
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
        self._async = is_async_callable(fetch_page)
        self._prefetch = prefetch
        self._token = start
        self._more = True  # a page is still to be fetched (for self._token)
        self._items: deque[T] = deque()
        self._done = False
        self._error: BaseException | None = None
        # prefetch: the page fetched ahead (items, next token), or the error it raised
        self._next: tuple[list[T], Any] | BaseException | None = None
        self._waiter = Slot()  # the consumer, waiting for the prefetched page
        self._fetching = False
        self._tick = 0

    def _what(self) -> str:
        return "paginate(..., prefetch=True)"

    async def __anext__(self) -> T:
        items = self._items
        if items:
            self._tick = tick = (self._tick + 1) % CHECKPOINT_EVERY
            if not tick:  # a schedule point every CHECKPOINT_EVERY values
                await checkpoint()
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
                    if isinstance(exc, cancelled_class()):
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
            if not isinstance(exc, cancelled_class()):
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
            await self._waiter.park()
        page, self._next = self._next, None
        self._fetching = False
        return page

    async def _fetch_ahead(self, scope: anyio.CancelScope) -> None:
        try:
            self._next = await self._fetch_page()
        except Exception as exc:
            self._next = exc
        finally:
            self._waiter.wake()


def _check_page(result: object) -> tuple[list[Any], Any]:
    if not (isinstance(result, tuple) and len(result) == 2):
        raise TypeError(
            "fetch_page(token) must return a pair (items, next_token), with next_token "
            f"None on the last page; it returned {type(result).__name__}"
        )
    items, token = result
    if isinstance(items, STRINGS) or not isinstance(items, Iterable):
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
    require_callable(fetch_page, "fetch_page")
    if not isinstance(prefetch, bool):
        raise TypeError(f"prefetch must be True or False, not {type(prefetch).__name__}")
    return _Paginate(fetch_page, start, prefetch, validate_grace(grace))
