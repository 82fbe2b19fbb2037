"""[`merge`][bridges.ops.merge]: values from many sources as they arrive."""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterable, Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import anyio
import anyio.lowlevel
from anyio.lowlevel import checkpoint

from .._backend import loop_parker
from .._iterator import CHECKPOINT_EVERY, BridgeIterator, log_cleanup_error
from ._base import Hosted, Upstream, require_aiterable

if TYPE_CHECKING:
    from .._backend import LoopParker

T = TypeVar("T")


class _Merge(Hosted[T]):
    __slots__ = ("_active", "_error", "_raised", "_ready", "_started", "_tick", "_waiter")

    def __init__(self, sources: tuple[AsyncIterable[T], ...]) -> None:
        super().__init__(*sources)
        # values pulled and not yet delivered, each with the parking place of its
        # source's helper (which waits there until its value is delivered)
        self._ready: deque[tuple[T, LoopParker]] = deque()
        # the consumer's parking place, where it waits for a value or the end (made
        # on the loop at the first pull, before any helper runs)
        self._waiter: LoopParker | None = None
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
            self._wake_consumer()
        else:
            log_cleanup_error(exc, "merging (another error came first)")

    def _feeder(self, up: Upstream[T]) -> Callable[[anyio.CancelScope], Awaitable[None]]:
        async def feed(scope: anyio.CancelScope) -> None:
            try:
                it = await up.open()
                nxt = it.__anext__
                ready = self._ready
                consumer = self._waiter
                assert consumer is not None  # made before the helpers were started
                wake_consumer = consumer.wake
                # one per helper, reused for every value: the helper is parked there
                # whenever its value waits in ready (nothing runs in between)
                delivered = loop_parker()
                park = delivered.park
                while True:
                    try:
                        value = await nxt()
                    except StopAsyncIteration:
                        return
                    ready.append((value, delivered))
                    wake_consumer()
                    await park()  # one in flight: pull again once delivered
            except Exception as exc:
                self._fail(exc, scope)
            finally:
                try:
                    await up.close()
                except Exception as exc:
                    self._fail(exc, scope)
                finally:
                    self._active -= 1
                    self._wake_consumer()

        return feed

    def _wake_consumer(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            waiter.wake()

    async def __anext__(self) -> T:
        ready = self._ready
        if ready:
            self._tick = tick = (self._tick + 1) % CHECKPOINT_EVERY
            if not tick:  # a schedule point every CHECKPOINT_EVERY values
                await checkpoint()
            if ready:
                value, delivered = ready.popleft()
                delivered.wake()
                return value
        if not self._started:
            if self._closed:
                raise StopAsyncIteration
            self._started = True
            self._waiter = loop_parker()
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
            waiter = self._waiter
            assert waiter is not None
            await waiter.park()

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
