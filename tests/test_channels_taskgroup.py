"""channels.from_aiter with sources that keep a task group or cancel scope open across yield.

This is the case trio's ``as_safe_channel`` exists for: such a generator must
be stepped and closed in one task, with its scopes nested in that task's
scopes.  Every way out of the ``async with`` (the end, ``break``, an
exception, a cancellation from outside) must close it without corrupting the
cancel-scope stack, on every backend.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest
import trio

from bridges import channels

from .conftest import only_trio
from .sources import Boom, Mine

if sys.version_info < (3, 11):  # pragma: no cover - anyio brings the backport
    from exceptiongroup import (  # type: ignore[import-not-found, unused-ignore]
        BaseExceptionGroup,
        ExceptionGroup,
    )

pytestmark = pytest.mark.anyio


class GroupSource:
    """An endless async generator that keeps a task group open across ``yield``.

    Its background task runs until the task group is cancelled; its
    ``finally`` records that it ran, after an await (a cleanup that talks to
    the network, say).  ``kind`` picks the task group: anyio's, trio's
    nursery, or asyncio's ``TaskGroup``.
    """

    def __init__(self, kind: str = "anyio", *, fail_background: bool = False) -> None:
        self.kind = kind
        self.fail_background = fail_background
        self.background_started = anyio.Event()
        self.background_cancelled = False
        self.fail_now = anyio.Event()
        self.boom = Boom("background task failed")
        self._closed = False

    def closed(self) -> bool:
        """The source's ``finally`` ran to its end."""
        return self._closed

    async def _background(self) -> None:
        self.background_started.set()
        try:
            await self.fail_now.wait()
            raise self.boom
        except anyio.get_cancelled_exc_class():
            self.background_cancelled = True
            raise

    def _group(self) -> Any:
        if self.kind == "trio":
            return trio.open_nursery()
        if self.kind == "asyncio":
            return asyncio.TaskGroup()  # type: ignore[attr-defined, unused-ignore]
        return anyio.create_task_group()

    def assert_released(self) -> None:
        """Its finally ran and its background task was cancelled (its task group exited)."""
        assert self.closed(), self.kind
        assert self.background_cancelled, self.kind

    async def __aiter__(self) -> AsyncIterator[int]:
        try:
            async with self._group() as tg:
                if self.kind == "asyncio":
                    tg.create_task(self._background())
                else:
                    tg.start_soon(self._background)
                i = 0
                while True:
                    yield i
                    i += 1
        finally:
            await anyio.lowlevel.checkpoint_if_cancelled()
            self._closed = True


@pytest.fixture
def kinds(backend_name: str) -> list[str]:
    """Task groups a source may keep open on this backend."""
    if backend_name == "trio":
        return ["anyio", "trio"]
    # asyncio.TaskGroup is 3.11+
    return ["anyio", "asyncio"] if hasattr(asyncio, "TaskGroup") else ["anyio"]


@pytest.fixture
def sources(kinds: list[str]) -> list[GroupSource]:
    """A fresh source per task group kind, tried one after the other."""
    return [GroupSource(kind) for kind in kinds]


async def test_from_aiter_source_with_a_task_group_runs_to_a_break(
    sources: list[GroupSource],
) -> None:
    for source in sources:
        async with channels.from_aiter(source) as receive:
            async for v in receive:
                if v == 3:
                    break
            assert not source.closed()
        source.assert_released()


@pytest.mark.parametrize("buffer", [0, 4])
async def test_from_aiter_source_with_a_task_group_and_an_error_in_the_block(
    sources: list[GroupSource], buffer: int
) -> None:
    for source in sources:
        mine = Mine()
        with pytest.raises(Mine) as info:
            async with channels.from_aiter(source, buffer=buffer) as receive:
                assert await receive.receive() == 0
                raise mine
        assert info.value is mine, source.kind
        source.assert_released()


async def test_from_aiter_source_with_a_task_group_and_a_cancellation_from_outside(
    sources: list[GroupSource],
) -> None:
    for source in sources:
        with anyio.CancelScope() as outer:
            async with channels.from_aiter(source) as receive:
                async for v in receive:
                    if v == 2:
                        outer.cancel()
                        await anyio.lowlevel.checkpoint()
        assert outer.cancelled_caught, source.kind
        source.assert_released()


async def test_from_aiter_source_with_a_task_group_and_a_timeout_while_waiting(
    sources: list[GroupSource],
) -> None:
    # the consumer gives up on the next value while the source waits, suspended
    # at a yield with its task group open
    for source in sources:
        with anyio.CancelScope() as outer:
            async with channels.from_aiter(source, buffer=2) as receive:
                assert await receive.receive() == 0
                await anyio.wait_all_tasks_blocked()
                outer.cancel()
                await receive.receive()
        assert outer.cancelled_caught, source.kind
        assert source.closed(), source.kind


async def test_from_aiter_source_with_a_task_group_closed_receive_side(
    sources: list[GroupSource],
) -> None:
    for source in sources:
        async with channels.from_aiter(source) as receive:
            assert await receive.receive() == 0
            await receive.aclose()
            with anyio.fail_after(5):
                while not source.closed():
                    await anyio.lowlevel.checkpoint()
            assert source.background_cancelled, source.kind


async def test_from_aiter_source_whose_background_task_fails_raises_it_at_the_consumer(
    sources: list[GroupSource],
) -> None:
    for source in sources:
        async with channels.from_aiter(source) as receive:
            assert await receive.receive() == 0
            await source.background_started.wait()
            source.fail_now.set()  # fails while the source waits at a yield
            with pytest.raises(ExceptionGroup) as info:
                while True:
                    await receive.receive()
            # the source's own error: its task group's group, less the GeneratorExit
            # that closing it threw in
            assert _leaves(info.value) == [source.boom], source.kind
            assert source.closed(), source.kind
            with pytest.raises(anyio.EndOfStream):
                await receive.receive()


async def test_from_aiter_block_raising_an_exception_group_comes_out_as_itself() -> None:
    async def source() -> AsyncIterator[int]:
        for i in range(10):
            yield i

    for members in ([Mine()], [Mine(), Boom()]):
        group = ExceptionGroup("from the block", members)
        with pytest.raises(ExceptionGroup) as info:
            async with channels.from_aiter(source()) as receive:
                await receive.receive()
                raise group
        assert info.value is group


async def test_from_aiter_exception_group_from_the_block_with_a_task_group_source(
    sources: list[GroupSource],
) -> None:
    for source in sources:
        group = ExceptionGroup("from the block", [Mine()])
        with pytest.raises(ExceptionGroup) as info:
            async with channels.from_aiter(source) as receive:
                await receive.receive()
                raise group
        assert info.value is group, source.kind
        assert source.closed(), source.kind


@only_trio
async def test_from_aiter_source_with_a_cancel_scope_across_yield_closes_cleanly() -> None:
    closed = False

    async def source() -> AsyncIterator[int]:
        nonlocal closed
        try:
            with trio.CancelScope():
                for i in range(100):
                    yield i
        finally:
            closed = True

    async with channels.from_aiter(source()) as receive:
        assert await receive.receive() == 0
    assert closed


def _leaves(group: BaseExceptionGroup[Any]) -> list[BaseException]:
    out: list[BaseException] = []
    for e in group.exceptions:
        out.extend(_leaves(e) if isinstance(e, BaseExceptionGroup) else [e])
    return out


async def test_from_aiter_source_cancelled_by_its_own_scope_at_a_yield_is_cut_short_visibly() -> (
    None
):
    # the source's own cancel scope is cancelled while the source waits at a yield:
    # the pump (waiting for room there) is cancelled by a scope that is not its own;
    # the source is closed and the stream fails with a clear error (never a hang, a
    # silent end, or a cancellation escaping the pump)
    scopes: list[anyio.CancelScope] = []
    closed = anyio.Event()

    async def source() -> AsyncIterator[int]:
        try:
            with anyio.CancelScope() as scope:
                scopes.append(scope)
                for i in range(10):
                    yield i
            yield -1  # pragma: no cover - the source is closed at the yield above
        finally:
            closed.set()

    async with channels.from_aiter(source()) as receive:
        assert await receive.receive() == 0
        await anyio.wait_all_tasks_blocked()  # the pump waits for room, source at a yield
        scopes[0].cancel()
        with pytest.raises(RuntimeError, match="cancel scope of its own"):
            await receive.receive()
        assert closed.is_set()
        with pytest.raises(anyio.EndOfStream):
            await receive.receive()
