"""The async iterators this library returns: async context managers with ``aclose()``."""

from __future__ import annotations

import logging
import warnings
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from anyio.lowlevel import checkpoint

from ._buffer import Handoff, Stats

if TYPE_CHECKING:
    from typing_extensions import Self

T = TypeVar("T")

logger = logging.getLogger("bridges")

#: A consumer that finds values ready takes this many before it yields to the
#: scheduler (which is also where it notices cancellation): no scheduler
#: round-trip per value, yet other tasks still run regularly.
CHECKPOINT_EVERY = 64

_NEW = 0
_RUNNING = 1
_DONE = 2


def log_cleanup_error(exc: BaseException, what: str) -> None:
    """Report an error raised while cleaning up when another exception is already on its way."""
    logger.error("error while %s (another exception is propagating)", what, exc_info=exc)


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

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            await self.aclose()
            return
        try:
            await self.aclose()
        except BaseException as cleanup_exc:
            # the consumer's own exception wins; the cleanup error is not lost
            log_cleanup_error(cleanup_exc, f"closing {type(self).__name__}")

    async def aclose(self) -> None:
        """Release the source (idempotent). Cleanup errors are raised here."""


class BufferedIterator(BridgeIterator[T], Generic[T]):
    """The consumer end of a bounded hand-off buffer.

    Values are produced by whatever fills the buffer (a callback, a thread,
    a subscription, another loop) and delivered in order.  The source is
    started lazily, at the first ``__anext__`` or on entering ``async with``,
    and released exactly once: at the end of the stream, on an error, on
    ``aclose()``, on leaving ``async with``, or when collected.

    :attr stats: counters of the buffer (:class:`bridges.Stats`).
    """

    __slots__ = ("_h", "_phase", "_release", "_start", "_tick")

    def __init__(
        self,
        handoff: Handoff[T],
        start: Callable[[Handoff[T]], Callable[[], object] | None] | None = None,
    ) -> None:
        self._h = handoff
        self._start = start
        self._release: Callable[[], object] | None = None
        self._phase = _NEW
        self._tick = 0

    @property
    def stats(self) -> Stats:
        """A snapshot of the buffer's counters: buffered, high_water, delivered, dropped."""
        return self._h.stats

    def _begin(self) -> None:
        start = self._start
        self._start = None
        self._phase = _RUNNING
        if start is not None:
            try:
                self._release = start(self._h)
            except BaseException:
                self._phase = _DONE
                self._h.leave()
                raise

    async def __aenter__(self) -> Self:
        if self._phase == _NEW:
            self._begin()
        return self

    async def __anext__(self) -> T:
        if self._phase != _RUNNING:
            if self._phase == _DONE:
                raise StopAsyncIteration
            self._begin()
        h = self._h
        if h._items:
            tick = self._tick + 1
            if tick >= CHECKPOINT_EVERY:
                self._tick = 0
                await checkpoint()
            else:
                self._tick = tick
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
            return await h.get()
        except BaseException as exc:
            if h._ended and self._phase == _RUNNING:
                self._phase = _DONE
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
        if self._phase == _DONE:
            return
        started = self._phase == _RUNNING
        self._phase = _DONE
        self._start = None
        self._h.leave()
        if started:
            self._run_release(None)

    def __del__(self) -> None:
        if getattr(self, "_phase", _DONE) != _RUNNING:
            return
        self._phase = _DONE
        try:
            warnings.warn(
                f"{type(self).__name__} was dropped while running; use 'async with' or "
                "aclose() to release its source deterministically",
                ResourceWarning,
                stacklevel=1,
                source=self,
            )
        finally:
            self._h.leave()
            try:
                self._run_release(None)
            except Exception as exc:  # nowhere to raise it from a finalizer
                log_cleanup_error(exc, "releasing a collected iterator's source")


class _WrappedIterator(BridgeIterator[T]):
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
        return await it.__anext__()  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        self._done = True
        it, self._it = self._it, None
        if it is not None:
            aclose = getattr(it, "aclose", None)
            if aclose is not None:
                await aclose()
