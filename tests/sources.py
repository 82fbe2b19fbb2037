"""Async sources shared by the spokes' tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TypeVar

import anyio
import pytest

T = TypeVar("T")


class AwaitingCleanup:
    """Endless values from an async generator whose cleanup awaits (closing a connection, say).

    It never suspends between values, so whenever an adapter closes it, it is
    suspended at a ``yield``: its ``finally`` runs inside the adapter's ``aclose()``.
    """

    def __init__(self) -> None:
        self.cleanup_started = False
        self.cleaned = False

    async def __aiter__(self) -> AsyncIterator[int]:
        i = 0
        try:
            while True:
                yield i
                i += 1
        finally:
            self.cleanup_started = True
            await anyio.lowlevel.checkpoint()  # raises if the close was left cancelled
            self.cleaned = True


async def assert_values_then_error(
    it: AsyncIterator[T], values: list[T], error: BaseException
) -> pytest.ExceptionInfo[BaseException]:
    """Iterate ``it`` to its error (R5): ``values`` first, then ``error`` itself, then the end.

    Returns what ``pytest.raises`` caught, for checks of the traceback.
    """
    got: list[T] = []
    with pytest.raises(type(error)) as info:
        async for v in it:
            got.append(v)
    assert info.value is error, f"{info.value!r} raised, not the original {error!r}"
    assert got == values, "the values sent before the error come first"
    with pytest.raises(StopAsyncIteration):
        await it.__anext__()
    return info
