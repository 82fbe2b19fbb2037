"""Async sources shared by the spokes' tests."""

from __future__ import annotations

import itertools
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, Generic, TypeVar

import anyio
import pytest

T = TypeVar("T")
R = TypeVar("R")


class Boom(Exception):  # noqa: N818
    """A source's error."""


class Mine(Exception):  # noqa: N818
    """The consumer's own error."""


class AwaitingCleanup:
    """Endless values from an async generator whose cleanup awaits (closing a connection, say).

    The values are ``0, 1, 2, ...``, or ``chunk`` over and over if given.
    It never suspends between values, so whenever an adapter closes it, it is
    suspended at a ``yield``: its ``finally`` runs inside the adapter's ``aclose()``.
    """

    def __init__(self, chunk: bytes | None = None) -> None:
        self.chunk = chunk
        self.cleanup_started = False
        self.cleaned = False

    def assert_cleaned(self, cut_by: str = "the cancellation") -> None:
        """Its cleanup started and ran to its end (not cut short by ``cut_by``)."""
        assert self.cleanup_started
        assert self.cleaned, f"the source's cleanup was cut short by {cut_by}"

    async def __aiter__(self) -> AsyncIterator[object]:
        values: Iterable[object] = (
            itertools.count() if self.chunk is None else itertools.repeat(self.chunk)
        )
        try:
            for v in values:
                yield v
        finally:
            self.cleanup_started = True
            await anyio.lowlevel.checkpoint()  # raises if the close was left cancelled
            self.cleaned = True


@dataclass(eq=False)
class RecordingSource(Generic[T]):
    """An async iterator over ``values`` that records what is done to it.

    After the values it raises ``error`` if given, else waits forever if
    ``hang``, else ends; its cleanup (``finally``) counts itself in ``closed``,
    then raises ``cleanup_error`` if given.  With ``checkpoint`` (the default)
    it passes a checkpoint before each value; without, it never suspends
    between values.

    ``pulled`` counts ``__anext__`` calls; ``ran_in`` names the thread it
    started in.
    """

    values: Iterable[T]
    _: KW_ONLY
    error: BaseException | None = None
    hang: bool = False
    cleanup_error: BaseException | None = None
    checkpoint: bool = True
    pulled: int = field(default=0, init=False)
    closed: int = field(default=0, init=False)
    ran_in: list[str] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self._gen = self._run()

    async def _run(self) -> AsyncIterator[T]:
        self.ran_in.append(threading.current_thread().name)
        try:
            for v in self.values:
                if self.checkpoint:
                    await anyio.lowlevel.checkpoint()
                yield v
            if self.error is not None:
                raise self.error
            if self.hang:
                await anyio.sleep_forever()
        finally:
            self.closed += 1
            if self.cleanup_error is not None:
                raise self.cleanup_error

    def __aiter__(self) -> RecordingSource[T]:
        return self

    async def __anext__(self) -> T:
        self.pulled += 1
        return await self._gen.__anext__()

    async def aclose(self) -> None:
        await self._gen.aclose()  # type: ignore[attr-defined]


async def cancel_once_waiting(run: Callable[..., Awaitable[object]], *args: object) -> None:
    """Run ``run(*args)`` in a task until every task waits, then cancel it.

    ``run`` may return any awaitable (a future, say), not only a coroutine.
    """

    async def task() -> None:
        await run(*args)

    async with anyio.create_task_group() as tg:
        tg.start_soon(task)
        await anyio.wait_all_tasks_blocked()
        tg.cancel_scope.cancel()


class Caught:
    """The errors of ``kinds`` that calls raised, kept instead of raised.

    For a call made in another task or thread, whose error the test checks
    afterwards (``errors``, in order).
    """

    def __init__(self, *kinds: type[BaseException]) -> None:
        self.kinds = kinds
        self.errors: list[BaseException] = []

    async def run(self, fn: Callable[..., Awaitable[object]], *args: Any) -> None:
        """``await fn(*args)``, keeping an error of ``kinds``."""
        try:
            await fn(*args)
        except self.kinds as exc:
            self.errors.append(exc)

    def run_sync(self, fn: Callable[..., object], *args: Any, **kwargs: Any) -> None:
        """``fn(*args, **kwargs)``, keeping an error of ``kinds``."""
        try:
            fn(*args, **kwargs)
        except self.kinds as exc:
            self.errors.append(exc)


def awaiting(fn: Callable[..., R]) -> Callable[..., Awaitable[R]]:
    """``fn`` as an async function: it passes a checkpoint, then returns ``fn(*args)``."""

    async def call(*args: Any) -> R:
        await anyio.lowlevel.checkpoint()
        return fn(*args)

    return call


#: the ways out of an iterator that `leave_by` takes
EXITS = ("end", "error", "break", "body-raises", "aclose")


async def leave_by(exit: str, it: Any, values: list[int], error_type: type[BaseException]) -> None:
    """Leave ``it`` by ``exit``, one of `EXITS`.

    Its source sends ``values``, then ends (``"end"``), fails with an
    ``error_type`` (``"error"``) or hangs (the others).  ``"break"`` leaves
    its ``async with`` by ``break`` after the second value; ``"body-raises"``
    raises an ``error_type`` in the loop body; ``"aclose"`` takes the first
    value, then calls ``aclose()`` twice (the second does nothing more).
    """
    if exit == "end":
        assert [v async for v in it] == values
    elif exit == "error":
        with pytest.raises(error_type):
            async for _ in it:
                pass
    elif exit == "break":
        async with it:
            async for v in it:
                if v == values[1]:
                    break
    elif exit == "body-raises":
        with pytest.raises(error_type):
            async with it:
                async for _ in it:
                    raise error_type
    elif exit == "aclose":
        assert await it.__anext__() == values[0]
        await it.aclose()
        await it.aclose()
    else:
        raise ValueError(f"{exit!r} is not one of {EXITS}")


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
