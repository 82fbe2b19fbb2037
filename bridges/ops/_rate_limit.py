"""[`rate_limit`][bridges.ops.rate_limit]: a token bucket."""

from __future__ import annotations

from collections.abc import AsyncIterable
from typing import TYPE_CHECKING, TypeVar

import anyio
import anyio.lowlevel

from .._iterator import BridgeIterator
from ._base import Op, cancelled_class, require_aiterable, require_count, require_seconds

if TYPE_CHECKING:
    pass

T = TypeVar("T")


class _RateLimit(Op[T]):
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
            return await self._pull_source()  # type: ignore[no-any-return]
        except BaseException as exc:
            if isinstance(exc, cancelled_class()):
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
    require_aiterable(source)
    rate = require_seconds(per_second, "per_second")
    return _RateLimit(source, rate, require_count(burst, "burst", 1))
