"""Async sources shared by the spokes' tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio


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
