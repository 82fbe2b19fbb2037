"""Combining sources in the consumer's own task: ``chain`` (one after the other) and ``zip``.

Neither runs a helper task: each value is pulled by the consumer's request,
so neither needs ``async with`` (though both are async context managers
that own their sources, like every op).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable
from typing import Any, TypeVar, overload

from .._iterator import BridgeIterator
from ._base import Op, cancelled_class, require_aiterable

T = TypeVar("T")
T1 = TypeVar("T1")
T2 = TypeVar("T2")
T3 = TypeVar("T3")


class _Chain(Op[T]):
    __slots__ = ("_at", "_done")

    def __init__(self, sources: tuple[AsyncIterable[T], ...]) -> None:
        super().__init__(*sources)
        self._at = 0  # the source being read
        self._done = False

    async def __anext__(self) -> T:
        while True:
            if self._done or self._closed:
                self._done = True
                raise StopAsyncIteration
            nxt = self._nxt  # the current source's __anext__ once it is open
            if nxt is None:
                if self._at >= len(self._ups):
                    await self._source_ended()
                nxt = self._nxt = (await self._ups[self._at].open()).__anext__
            try:
                return await nxt()  # type: ignore[no-any-return]
            except StopAsyncIteration:
                pass
            except BaseException as exc:
                await self._source_failed(exc)
            # this source is done: close it before the next one starts
            up = self._ups[self._at]
            self._at += 1
            self._nxt = None
            try:
                await up.close()
            except BaseException as exc:
                if isinstance(exc, cancelled_class()):
                    raise
                await self._end_with(exc)


def chain(*sources: AsyncIterable[T]) -> BridgeIterator[T]:
    """The values of each source in turn: all of the first, then all of the second, ...

    Concatenation (``yield*`` of each source, one after the other).  A source
    is opened when the one before it has ended, and closed as soon as it
    ends, before the next one is pulled.  Values are pulled in the
    consumer's task, one per request: there is no helper task, and no
    ``async with`` is needed (it is an async context manager all the same).

    Errors: a source's error is raised once, as itself, after the values
    before it; every source is closed first, the ones not started yet too
    (those that have ``aclose()``), and the iteration ends.  Early exit
    (``aclose()``, leaving ``async with``) closes every source, started or
    not, before it returns.  A timeout caught around one ``__anext__``
    cancels that pull as if the source were iterated directly.

    :param sources: async iterables, read in the order given
    :raises TypeError: a source is not an async iterable
    """
    for i, s in enumerate(sources):
        require_aiterable(s, f"chain() source #{i}")
    return _Chain(sources)


class _Zip(Op[tuple[Any, ...]]):
    __slots__ = ("_done", "_hand", "_nexts")

    def __init__(self, sources: tuple[AsyncIterable[Any], ...]) -> None:
        super().__init__(*sources)
        self._nexts: list[Callable[[], Awaitable[Any]]] = []
        #: the values pulled for the tuple being built (kept over a cancelled request)
        self._hand: list[Any] = []
        self._done = False

    async def __anext__(self) -> tuple[Any, ...]:
        if self._done or self._closed:
            self._done = True
            raise StopAsyncIteration
        ups, nexts, hand = self._ups, self._nexts, self._hand
        if not ups:
            await self._source_ended()
        while len(nexts) < len(ups):
            nexts.append((await ups[len(nexts)].open()).__anext__)
        while len(hand) < len(nexts):
            try:
                hand.append(await nexts[len(hand)]())
            except StopAsyncIteration:
                hand.clear()  # the shortest source ended: the others' values go unused
                await self._source_ended()
            except BaseException as exc:
                if not isinstance(exc, cancelled_class()):
                    hand.clear()
                await self._source_failed(exc)
        self._hand = []
        return tuple(hand)


@overload
def zip(a: AsyncIterable[T1], /) -> BridgeIterator[tuple[T1]]: ...


@overload
def zip(a: AsyncIterable[T1], b: AsyncIterable[T2], /) -> BridgeIterator[tuple[T1, T2]]: ...


@overload
def zip(
    a: AsyncIterable[T1], b: AsyncIterable[T2], c: AsyncIterable[T3], /
) -> BridgeIterator[tuple[T1, T2, T3]]: ...


@overload
def zip(*sources: AsyncIterable[Any]) -> BridgeIterator[tuple[Any, ...]]: ...


def zip(*sources: AsyncIterable[Any]) -> BridgeIterator[tuple[Any, ...]]:
    """Tuples of one value from each source, until the shortest source ends.

    Like the builtin ``zip``: the n-th tuple holds the n-th value of each
    source.  For each tuple the sources are pulled one after the other, in
    the order given, in the consumer's task: one value in hand per source at
    most, no helper task, no ``async with`` needed.  When a source ends,
    the values already pulled from the sources before it for that tuple are
    dropped and the iteration ends.

    Every source is closed when the iteration ends (by the shortest source,
    or by an error) and on early exit (``aclose()``, leaving ``async with``),
    before that returns, also sources never started (those that have
    ``aclose()``).  A source's error is raised once, as itself, after the
    tuples before it.  A timeout caught around one ``__anext__`` keeps the
    values pulled for the tuple so far, and the next request goes on from
    the source whose pull was cancelled (that pull is cancelled as if the
    source were iterated directly).

    :param sources: async iterables (none: the iteration is empty)
    :raises TypeError: a source is not an async iterable
    """
    for i, s in enumerate(sources):
        require_aiterable(s, f"zip() source #{i}")
    return _Zip(sources)
