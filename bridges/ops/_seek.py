"""The chain's answers and counters: ``some``, ``every``, ``find`` and ``indexed``.

``some``/``every``/``find`` consume an iterator until the answer is known,
then close it (the rest of the source is never pulled); ``indexed`` pairs
each value with its position.  All run in the consumer's task.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from .._iterator import BridgeIterator
from ._base import enter_if_needed, is_async_callable, is_awaitable, require_callable
from ._chain import Map

T = TypeVar("T")


async def first_where(
    it: BridgeIterator[T], fn: Callable[[T], object], want: bool, what: str
) -> tuple[bool, Any]:
    """``(True, v)`` for the first value ``v`` whose ``bool(fn(v))`` is ``want``, else
    ``(False, None)``; ``it`` is closed in either case, as soon as the answer is known."""
    require_callable(fn, f"{what}()'s argument")
    is_async = is_async_callable(fn)
    async with enter_if_needed(it) as src:
        async for v in src:
            answer: Any = fn(v)
            if is_async or is_awaitable(answer):
                answer = await answer
            if bool(answer) is want:
                return True, v
    return False, None


class _Count:
    """``v -> (i, v)`` with ``i`` counting up from ``start``."""

    __slots__ = ("_next",)

    def __init__(self, start: int) -> None:
        self._next = start

    def __call__(self, value: object) -> tuple[int, object]:
        i = self._next
        self._next = i + 1
        return i, value


def indexed(it: BridgeIterator[T], start: object) -> BridgeIterator[tuple[int, T]]:
    """``it``'s values paired with their index (a ``map`` with a counter)."""
    if isinstance(start, bool) or not isinstance(start, int):
        raise TypeError(f"indexed()'s start must be an int, not {type(start).__name__}")
    return Map(it, _Count(start))
