"""The chainable TC39-style helpers (``map``, ``filter``, ``take``, ``drop``,
``flat_map``, ``reduce``, ``to_list``, ``for_each``) behind the methods of
[`BridgeIterator`][bridges.BridgeIterator]."""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable, Iterable
from typing import Any, TypeVar

from .._iterator import NOTHING, BridgeIterator
from .._pump import aclose_shielded
from ._base import (
    STRINGS,
    Op,
    cancelled_class,
    enter_if_needed,
    is_async_callable,
    is_awaitable,
    require_callable,
    require_count,
)

T = TypeVar("T")
U = TypeVar("U")


class _Apply(Op[U]):
    """An op that calls ``fn`` on each value of its source (sync or async), in turn."""

    __slots__ = ("_async", "_done", "_fn", "_held")

    def __init__(self, source: AsyncIterable[Any], fn: Callable[[Any], Any], what: str) -> None:
        require_callable(fn, what)
        super().__init__(source)
        self._fn = fn
        self._async = is_async_callable(fn)
        self._held: Any = NOTHING
        self._done = False

    async def _apply_next(self) -> tuple[Any, Any]:
        """The source's next value and what ``fn`` made of it.

        A cancellation while ``fn`` runs keeps the value held: the next request
        calls ``fn`` on it again.  An error of ``fn`` ends the op with it.
        """
        if self._done:
            raise StopAsyncIteration
        value = self._held
        if value is NOTHING:
            nxt = self._nxt
            if nxt is None:
                value = await self._pull_source()
            else:
                try:
                    value = await nxt()
                except StopAsyncIteration:
                    await self._source_ended()
                except BaseException as exc:
                    await self._source_failed(exc)
            self._held = value
        try:
            result = self._fn(value)
            if self._async or is_awaitable(result):
                result = await result
        except BaseException as exc:
            if isinstance(exc, cancelled_class()):
                raise
            self._held = NOTHING
            await self._end_with(exc)
        self._held = NOTHING
        return value, result


class Map(_Apply[U]):
    __slots__ = ()

    def __init__(self, source: AsyncIterable[T], fn: Callable[[T], Any]) -> None:
        super().__init__(source, fn, "map()'s argument")

    async def __anext__(self) -> U:
        return (await self._apply_next())[1]  # type: ignore[no-any-return]


class Filter(_Apply[T]):
    __slots__ = ()

    def __init__(self, source: AsyncIterable[T], fn: Callable[[T], Any]) -> None:
        super().__init__(source, fn, "filter()'s argument")

    async def __anext__(self) -> T:
        while True:
            value, keep = await self._apply_next()
            if keep:
                return value  # type: ignore[no-any-return]


class Take(Op[T]):
    __slots__ = ("_done", "_error", "_held", "_left")

    def __init__(self, source: AsyncIterable[T], n: int) -> None:
        self._left = require_count(n, "take()'s count", 0)
        super().__init__(source)
        self._held: Any = NOTHING
        self._error: BaseException | None = None
        self._done = False

    async def __anext__(self) -> T:
        if self._held is not NOTHING:  # a close cancelled last time: finish it first
            return await self._close_and_give()
        if self._done:
            error, self._error = self._error, None
            if error is not None:
                raise error
            raise StopAsyncIteration
        if self._left <= 0:
            await self._source_ended()
        value = await self._pull_source()
        self._left -= 1
        if self._left <= 0:
            # the last value: close the source before handing it over
            self._held = value
            return await self._close_and_give()
        return value  # type: ignore[no-any-return]

    async def _close_and_give(self) -> T:
        self._done = True
        self._error = await self._end(None)  # a cleanup error comes on the next request
        value, self._held = self._held, NOTHING
        return value  # type: ignore[no-any-return]


class Drop(Op[T]):
    __slots__ = ("_done", "_left")

    def __init__(self, source: AsyncIterable[T], n: int) -> None:
        self._left = require_count(n, "drop()'s count", 0)
        super().__init__(source)
        self._done = False

    async def __anext__(self) -> T:
        if self._done:
            raise StopAsyncIteration
        while self._left > 0:
            await self._pull_source()
            self._left -= 1
        return await self._pull_source()  # type: ignore[no-any-return]


class FlatMap(_Apply[U]):
    __slots__ = ("_inner", "_inner_async")

    def __init__(self, source: AsyncIterable[T], fn: Callable[[T], Any]) -> None:
        super().__init__(source, fn, "flat_map()'s argument")
        self._inner: Any = None
        self._inner_async = False

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
                    if isinstance(exc, cancelled_class()):
                        raise
                    self._inner = None
                    await self._end_with(exc)
            _, result = await self._apply_next()
            try:
                self._inner, self._inner_async = flattenable(result)
            except BaseException as exc:  # not iterable, or its __aiter__/__iter__ failed
                if isinstance(exc, cancelled_class()):
                    raise
                await self._end_with(exc)

    async def aclose(self) -> None:
        inner, self._inner = self._inner, None
        self._done = True
        try:
            if inner is not None:
                if self._inner_async:
                    await aclose_shielded(inner)
                else:
                    close = getattr(inner, "close", None)
                    if close is not None:
                        close()
        finally:
            await super().aclose()


def flattenable(result: object) -> tuple[Any, bool]:
    if isinstance(result, STRINGS):
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


async def collect_list(it: BridgeIterator[T]) -> list[T]:
    async with enter_if_needed(it) as src:
        return [v async for v in src]


async def for_each_op(it: BridgeIterator[T], fn: Callable[[T], Any]) -> None:
    require_callable(fn, "for_each()'s argument")
    is_async = is_async_callable(fn)
    async with enter_if_needed(it) as src:
        async for v in src:
            result = fn(v)
            if is_async or is_awaitable(result):
                await result


async def reduce_op(it: BridgeIterator[T], fn: Callable[[Any, T], Any], initial: Any) -> Any:
    require_callable(fn, "reduce()'s function")
    is_async = is_async_callable(fn)
    acc = initial
    async with enter_if_needed(it) as src:
        async for v in src:
            if acc is NOTHING:
                acc = v
                continue
            acc = fn(acc, v)
            if is_async or is_awaitable(acc):
                acc = await acc
    if acc is NOTHING:
        raise TypeError("reduce() of an empty iterator with no initial value")
    return acc
