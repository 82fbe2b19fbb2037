"""Pipeline helpers, part two, under the contract: concurrent map, chain, zip.

Like the helpers of ``ops.py`` here, each is a pull -> pull stage: an
instrumented :class:`TestSource` runs through it and a scripted consumer
drives it (R10-R15).  The exits of the plans (``take=5``, a consumer error,
a cancellation from outside) land while calls are in flight.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, Callable
from typing import Any

import anyio.lowlevel

import bridges
from bridges import ops, testing
from bridges.testing import TestSource

from .ops import _NOT_RESUBSCRIBABLE, _OpsPull


async def _scrambled(v: int) -> int:
    """A call whose length varies with its value: the calls complete out of order."""
    for _ in range(v % 3):
        await anyio.lowlevel.checkpoint()
    return v


class MapConcurrentHarness(_OpsPull):
    """map(fn, concurrency=4): calls complete out of order, results come in order."""

    name = "ops.map-concurrent"
    claims = testing.claim_pull(na={"R13": _NOT_RESUBSCRIBABLE})
    in_flight = 4  # calls in flight plus results held: the window

    def build(self, source: AsyncIterable[int]) -> Any:
        return ops.map(source, _scrambled, concurrency=4)


class MapUnorderedHarness(_OpsPull):
    """map(fn, concurrency=4, ordered=False), as a method of the chain.

    The function is sync, so each call completes when its value is pulled:
    the order the contract checks is the source's.
    """

    name = "ops.map-unordered"
    claims = testing.claim_pull(na={"R13": _NOT_RESUBSCRIBABLE})
    in_flight = 4

    def build(self, source: AsyncIterable[int]) -> Any:
        return bridges.iterate(source).map(lambda v: v, concurrency=4, ordered=False)

    async def drive_bad(self) -> object:
        return ops.map(42, lambda v: v, concurrency=4, ordered=False)  # type: ignore[call-overload]


class ChainSourcesHarness(_OpsPull):
    """chain(before, source, after): exits land in the middle source, the last one unstarted."""

    name = "ops.chain-sources"
    claims = testing.claim_pull(na={"R13": _NOT_RESUBSCRIBABLE})
    in_flight = 1

    def __init__(self) -> None:
        self._before: TestSource | None = None
        self._after: AsyncGenerator[int, None] | None = None

    def build(self, source: AsyncIterable[int]) -> Any:
        self._before = TestSource([-1, -2])

        async def after() -> AsyncGenerator[int, None]:
            yield -3

        self._after = after()
        return ops.chain(self._before, source, self._after)

    def keep(self) -> Callable[[int], bool]:
        return lambda v: v >= 0

    def after(self) -> None:
        assert self._before is not None
        assert self._after is not None
        assert self._before.closed == 1, "chain: a source is closed when it ends"
        assert self._after.ag_frame is None, "chain: every source is closed, unstarted ones too"


class ZipHarness(_OpsPull):
    """zip(source, other) through map(first): one value in hand per source; both closed."""

    name = "ops.zip"
    claims = testing.claim_pull(na={"R13": _NOT_RESUBSCRIBABLE})
    in_flight = 1

    def __init__(self) -> None:
        self._other: AsyncGenerator[int, None] | None = None

    def build(self, source: AsyncIterable[int]) -> Any:
        async def other() -> AsyncGenerator[int, None]:
            i = 1000
            while True:
                yield i
                i += 1

        self._other = other()
        return ops.zip(source, self._other).map(lambda pair: pair[0])

    def after(self) -> None:
        assert self._other is not None
        # (closed, started or not: an async generator's frame is gone once it is closed)
        assert self._other.ag_frame is None, "zip: every source is closed on every exit"


HARNESSES: list[testing.PushHarness | testing.PullHarness | testing.CallHarness] = [
    MapConcurrentHarness(),
    MapUnorderedHarness(),
    ChainSourcesHarness(),
    ZipHarness(),
]
