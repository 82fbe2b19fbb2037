"""``ops.chain`` and ``ops.zip``, and the chain's ``some``, ``every``, ``find``, ``indexed``.

The rules every op keeps (demand, closing on every exit, errors once, no
leaks) run in the conformance suite (``ops.chain-sources``, ``ops.zip``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import anyio.lowlevel
import pytest

import bridges
from bridges import ops
from bridges.testing import End, SourceError, TestSource

from .test_ops import _cancelled_next

pytestmark = pytest.mark.anyio


async def _unstarted() -> AsyncIterator[int]:
    yield 1  # pragma: no cover - closed before it starts


async def _assert_closed(gen: AsyncIterator[int]) -> None:
    with pytest.raises(StopAsyncIteration):
        await gen.__anext__()


# --------------------------------------------------------------------------- chain


async def test_chain_reads_each_source_in_turn_and_closes_it_before_the_next() -> None:
    a, b = TestSource(range(3)), TestSource(range(10, 12))
    got = []
    async for v in ops.chain(a, b):
        got.append(v)
        if v == 2:
            assert b.pulled == 0, "the next source is not touched before it is needed"
        if v == 10:
            assert a.closed == 1, "a source is closed when it ends, before the next is pulled"
    assert got == [0, 1, 2, 10, 11]
    assert (a.closed, b.closed) == (1, 1)


async def test_chain_early_exit_closes_every_source_started_or_not() -> None:
    a, b = TestSource(range(2)), TestSource(range(10, 20), End.HANG)
    unstarted = _unstarted()
    async with ops.chain(a, b, unstarted) as it:
        assert [await it.__anext__() for _ in range(3)] == [0, 1, 10]
    assert (a.closed, b.closed) == (1, 1)
    await _assert_closed(unstarted)
    never = _unstarted()
    await ops.chain(never).aclose()
    await _assert_closed(never)


async def test_chain_error_is_raised_once_after_the_values_before_it() -> None:
    boom = SourceError("boom")
    a, b = TestSource(range(2)), TestSource([10], End.FAIL, boom)
    unstarted = _unstarted()
    it = ops.chain(a, b, unstarted)
    got = []
    with pytest.raises(SourceError) as info:
        async for v in it:
            got.append(v)
    assert info.value is boom
    assert got == [0, 1, 10]
    await _assert_closed(unstarted)
    with pytest.raises(StopAsyncIteration):
        await it.__anext__()


async def test_chain_enters_the_helpers_it_chains_and_of_nothing_is_empty() -> None:
    async with ops.chain(ops.merge(TestSource(range(2))), TestSource([5])) as it:
        assert [v async for v in it] == [0, 1, 5]
    assert await ops.chain().to_list() == []
    with pytest.raises(TypeError, match="source #1"):
        ops.chain(TestSource([]), [1, 2])  # type: ignore[arg-type]


# --------------------------------------------------------------------------- zip


async def test_zip_until_the_shortest_ends_with_one_value_in_hand_per_source() -> None:
    a, b, c = TestSource(range(5)), TestSource(range(10, 13)), TestSource(range(20, 30))
    got = []
    async with ops.zip(a, b, c) as it:
        async for t in it:
            got.append(t)
            n = len(got)
            assert (a.pulled, b.pulled, c.pulled) == (n, n, n), "one value per source per tuple"
    assert got == [(0, 10, 20), (1, 11, 21), (2, 12, 22)]
    assert (a.closed, b.closed, c.closed) == (1, 1, 1), "every source closed at the end"
    assert c.pulled == 3, "nothing is pulled after the shortest ended"


async def test_zip_error_and_early_exit_close_every_source() -> None:
    boom = SourceError("boom")
    a, b = TestSource(range(10), End.HANG), TestSource([1], End.FAIL, boom)
    it = ops.zip(a, b)
    assert await it.__anext__() == (0, 1)
    with pytest.raises(SourceError) as info:
        await it.__anext__()
    assert info.value is boom
    assert (a.closed, b.closed) == (1, 1)
    with pytest.raises(StopAsyncIteration):
        await it.__anext__()

    a = TestSource(range(10), End.HANG)
    unstarted = _unstarted()
    async with ops.zip(a, TestSource(range(10))) as it2:
        assert await it2.__anext__() == (0, 0)
    assert a.closed == 1
    async with ops.zip(TestSource(range(10)), unstarted):
        pass
    await _assert_closed(unstarted)
    a = TestSource(range(3))
    assert await ops.zip(a, TestSource([])).to_list() == []
    assert (a.pulled, a.closed) == (1, 1), "the value pulled for the tuple that never was"


async def test_zip_a_timeout_around_one_request_keeps_the_values_in_hand() -> None:
    send, receive = bridges.open_channel[str](1)  # its receive is cancel-safe (R6)
    a = TestSource(range(3))
    it = ops.zip(a, receive)
    with anyio.fail_after(5):
        await _cancelled_next(it)
        await send.send("x")
        assert await it.__anext__() == (0, "x")
    assert a.pulled == 1, "the value pulled before the timeout was kept, not pulled again"
    await it.aclose()
    assert await ops.zip().to_list() == []
    with pytest.raises(TypeError, match="zip\\(\\) source #0"):
        ops.zip(42)  # type: ignore[call-overload]


# --------------------------------------------------------------------------- some, every, find


async def test_some_every_find_stop_and_close_at_the_answer() -> None:
    source = TestSource(range(100), End.HANG)
    assert await bridges.iterate(source).some(lambda v: v == 3)
    assert (source.pulled, source.closed) == (4, 1)

    async def small(v: int) -> bool:
        await anyio.lowlevel.checkpoint()
        return v < 5

    source = TestSource(range(100), End.HANG)
    assert not await bridges.iterate(source).every(small)
    assert (source.pulled, source.closed) == (6, 1)

    source = TestSource(range(100), End.HANG)
    assert await bridges.iterate(source).find(lambda v: v * v > 50) == 8
    assert (source.pulled, source.closed) == (9, 1)


async def test_some_every_find_when_nothing_answers() -> None:
    assert not await bridges.iterate(TestSource(range(4))).some(lambda v: v > 9)
    assert await bridges.iterate(TestSource(range(4))).every(lambda v: v < 9)
    assert await bridges.iterate(TestSource([])).every(lambda v: False)
    assert await bridges.iterate(TestSource(range(4))).find(lambda v: v > 9) is None


async def test_some_every_find_errors_close_the_source() -> None:
    source = TestSource(range(10), End.HANG)

    def bad(v: int) -> bool:
        raise KeyError(v)

    with pytest.raises(KeyError):
        await bridges.iterate(source).find(bad)
    assert source.closed == 1
    boom = SourceError("boom")
    with pytest.raises(SourceError) as info:
        await bridges.iterate(TestSource([1], End.FAIL, boom)).every(lambda v: True)
    assert info.value is boom
    it = bridges.iterate(TestSource([]))
    with pytest.raises(TypeError, match="some\\(\\)'s argument must be a function"):
        await it.some(3)  # type: ignore[arg-type]


async def test_some_enters_a_helper_that_owns_a_task_group() -> None:
    assert await ops.map(TestSource(range(10)), lambda v: v * 2, concurrency=3).some(
        lambda v: v == 6
    )


# --------------------------------------------------------------------------- indexed


async def test_indexed_pairs_each_value_with_its_position() -> None:
    assert await bridges.iterate(TestSource([7, 8, 9])).indexed().to_list() == [
        (0, 7),
        (1, 8),
        (2, 9),
    ]
    source = TestSource(range(10), End.HANG)
    async with bridges.iterate(source).indexed(1).take(2) as it:
        assert [p async for p in it] == [(1, 0), (2, 1)]
    assert source.closed == 1
    with pytest.raises(TypeError, match="start must be an int"):
        bridges.iterate(TestSource([])).indexed("1")  # type: ignore[arg-type]
