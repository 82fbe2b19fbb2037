"""[`merge`][bridges.ops.merge]: values from many sources as they arrive."""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterable, Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import anyio
import anyio.lowlevel
from anyio.lowlevel import checkpoint

from .._backend import async_waiter
from .._iterator import CHECKPOINT_EVERY, BridgeIterator, log_cleanup_error
from .._parking import Slot
from ._base import Hosted, Upstream, require_aiterable

if TYPE_CHECKING:
    from .._backend import AsyncWaiter

T = TypeVar("T")


class _Merge(Hosted[T]):
    __slots__ = ("_active", "_error", "_raised", "_ready", "_started", "_tick", "_waiter")

    def __init__(self, sources: tuple[AsyncIterable[T], ...]) -> None:
        super().__init__(*sources)
        # values pulled and not yet delivered, each with the waiter of its source's helper
        self._ready: deque[tuple[T, AsyncWaiter]] = deque()
        self._waiter = Slot()  # the consumer, waiting for a value or the end
        self._active = 0
        self._error: BaseException | None = None
        self._raised = False
        self._started = False
        self._tick = 0

    def _what(self) -> str:
        return "merge()"

    def _fail(self, exc: BaseException, scope: anyio.CancelScope) -> None:
        if self._closed:
            self._cleanup_error(exc)
        elif self._error is None and not self._raised:
            self._error = exc
            self._cancel_helpers(but=scope)  # the first error cancels the others
            self._waiter.wake()
        else:
            log_cleanup_error(exc, "merging (another error came first)")

    def _feeder(self, up: Upstream[T]) -> Callable[[anyio.CancelScope], Awaitable[None]]:
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
                    self._waiter.wake()
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
                    self._waiter.wake()

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
            await self._waiter.park()

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
        require_aiterable(s, f"merge() source #{i}")
    return _Merge(sources)
