"""The checks the NATS and the Redis tests make alike, each spoke against its own server."""

from __future__ import annotations

import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Protocol, TypeVar

import anyio
import anyio.lowlevel
import pytest

import bridges

from .servers import NatsServer, RedisServer

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class Consumer(Protocol[T_co]):
    """What a spoke's ``to_aiter`` returns, as far as these checks use it."""

    @property
    def stats(self) -> bridges.Stats:
        """A snapshot of its counters."""
        ...

    def __aiter__(self) -> AsyncIterator[T_co]:
        """Itself."""
        ...

    async def __anext__(self) -> T_co:
        """The next value."""
        ...

    async def __aenter__(self) -> object:
        """Start it."""
        ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close it."""
        ...


async def consume_slowly_in_order(
    it: Consumer[T],
    n: int,
    buffer: int,
    number: Callable[[T], int],
    look: Callable[[int], Awaitable[None]],
) -> None:
    """Take the values 0 to ``n - 1`` (by ``number``) of ``it`` in order, slower than the
    server sends them, with ``look(taken)`` after every 2,000th; the iterator must never
    hold more than ``buffer``, nor grow in memory, and hold nothing once closed."""
    expected = 0
    tracemalloc.start()
    try:
        async with it:
            async for value in it:
                assert number(value) == expected
                expected += 1
                if expected % 2_000 == 1:
                    await look(expected)
                if expected == 1_000:
                    tracemalloc.reset_peak()  # from here on: flat
                    baseline = tracemalloc.get_traced_memory()[0]
                await anyio.lowlevel.checkpoint()  # slower than the server
                if expected == n:
                    break
            stats = it.stats
            # held by the bridge (waiting, or in hand until acked): never above the buffer
            assert 1 <= stats.high_water <= buffer, stats
            assert (stats.delivered, stats.dropped, stats.capacity) == (n, 0, buffer)
            assert stats.buffered <= buffer
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    stats = it.stats
    assert (stats.buffered, stats.open_senders, stats.open_receivers) == (0, 0, 0), stats
    # bounded: a few hundred kB at most here; n values piling up would take megabytes
    assert peak - baseline < 1_000_000, f"memory grew by {peak - baseline} bytes"


async def take_two_through_a_buffer_of_one(
    it: Consumer[object], look: Callable[[], Awaitable[None]] | None = None
) -> None:
    """Take two values of ``it`` (``buffer=1``, ``ack="on_next"``), with ``look()`` after
    each: the one in hand fills the buffer until the next ``__anext__`` acknowledges it,
    so nothing more is asked of the server meanwhile; at the close it lets go of it."""
    assert it.stats == bridges.Stats(0, 0, 0, 0, capacity=1)
    async with it:
        for delivered in (1, 2):
            await it.__anext__()
            s = it.stats
            assert (s.buffered, s.high_water, s.delivered, s.dropped) == (1, 1, delivered, 0)
            if look is not None:
                await look()
    s = it.stats
    assert (s.buffered, s.high_water, s.delivered) == (0, 1, 2)
    assert (s.open_senders, s.open_receivers) == (0, 0)


async def next_after_cancelled_nexts(
    it: Consumer[T], add: Callable[[int], Awaitable[object]]
) -> list[T]:
    """Three rounds of: a cancelled ``__anext__``, one that times out on the empty
    stream, then ``add(round)`` and a ``__anext__`` that must not stall; what those took."""
    got = []
    for round_ in range(3):
        with anyio.CancelScope() as scope:
            scope.cancel()
            await it.__anext__()
        with anyio.move_on_after(0.05):
            await it.__anext__()
        await add(round_)
        with anyio.fail_after(5):
            got.append(await it.__anext__())
    return got


async def kill_the_server_under(
    it: Consumer[object], server: NatsServer | RedisServer, error: type[Exception]
) -> None:
    """Kill ``server``: the next ``__anext__`` of ``it`` raises ``error``, and only that one."""
    await anyio.to_thread.run_sync(server.kill)
    with anyio.fail_after(20), pytest.raises(error):
        await it.__anext__()
    with pytest.raises(StopAsyncIteration):
        await it.__anext__()


async def cancel_from_aiter_as_its_source_ends(
    from_aiter: Callable[[AsyncIterator[T]], Awaitable[int]],
    value: Callable[[int], T],
    rounds: int,
) -> None:
    """``from_aiter`` of a source that cancels the caller as it ends: once with no
    values (nothing is in flight then: the call has nothing left to wait for), then
    ``rounds`` times with 200 (the last sends are still in flight, unless they were
    answered first).  However far the sends got, the cancellation must come out."""
    for n in [0, *[200] * rounds]:
        scope = anyio.CancelScope()

        async def source(scope: anyio.CancelScope, n: int = n) -> AsyncIterator[T]:
            try:
                for i in range(n):
                    yield value(i)
            finally:
                # cancelled here, where the last sends are still in flight (a
                # cancel from another task could come after from_aiter returned)
                scope.cancel()

        with scope:
            await from_aiter(source(scope))
        assert scope.cancelled_caught
