"""[`batch`][bridges.ops.batch]: lists of up to ``size`` values, optionally flushed after
``within`` seconds."""

from __future__ import annotations

from collections.abc import AsyncIterable
from typing import TYPE_CHECKING, TypeVar

import anyio
import anyio.lowlevel

from .._backend import clock as loop_clock
from .._iterator import BridgeIterator, log_cleanup_error
from .._parking import Slot
from ._base import Hosted, Op, cancelled_class, require_aiterable, require_count, require_seconds

if TYPE_CHECKING:
    pass

T = TypeVar("T")


class _Batch(Op[list[T]]):
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
                    if isinstance(exc, cancelled_class()):
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


class _BatchWithin(Hosted[list[T]]):
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
        self._waiter = Slot()  # the consumer, waiting for a batch
        self._room = Slot()  # the reader, waiting until the sealed batch is taken
        self._started = False
        self._finished = False

    def _what(self) -> str:
        return "batch(..., within=...)"

    async def _wait_room(self) -> None:
        while self._sealed is not None:
            await self._room.park()

    async def _read(self, scope: anyio.CancelScope) -> None:
        up = self._ups[0]
        error: BaseException | None = None
        try:
            it = await up.open()
            nxt = it.__anext__
            size, within, clock = self._size, self._within, loop_clock()
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
                    self._waiter.wake()
                    await self._wait_room()
                current = self._current
                if not current:
                    self._deadline = now + within
                current.append(value)
                if len(current) >= size:
                    self._sealed, self._current = current, []
                self._waiter.wake()
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
                self._waiter.wake()

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
                self._room.wake()
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
            if current:
                with anyio.move_on_after(self._deadline - anyio.current_time()):
                    await self._waiter.park()
            else:
                await self._waiter.park()

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
    require_aiterable(source)
    size = require_count(size, "size", 1)
    if within is None:
        return _Batch(source, size)
    return _BatchWithin(source, size, require_seconds(within, "within"))
