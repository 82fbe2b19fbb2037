"""``bridges.iterate``: any supported thing -> an async iterator."""

from __future__ import annotations

from collections.abc import AsyncIterable
from typing import Any, TypeVar, overload

from ._iterator import BridgeIterator, _WrappedIterator

T = TypeVar("T")


@overload
def iterate(source: AsyncIterable[T]) -> BridgeIterator[T]: ...
@overload
def iterate(source: object) -> BridgeIterator[Any]: ...


def iterate(source: object) -> BridgeIterator[Any]:
    """Turn any supported source into an async iterator of this library.

    Dispatches by type, the most specific first; plain async iterables come
    last and are wrapped as they are (lazy: nothing is started before the
    first value is asked for; ``aclose()`` closes them).  The result is an
    async context manager, like every iterator this library returns.

    :raises TypeError: ``source`` is of no supported kind (the message lists them)
    """
    if isinstance(source, BridgeIterator):
        return source
    if isinstance(source, AsyncIterable) or hasattr(source, "__aiter__"):
        return _WrappedIterator(source)
    raise TypeError(
        f"bridges.iterate() cannot iterate a {type(source).__name__}; it takes an async iterable"
    )
