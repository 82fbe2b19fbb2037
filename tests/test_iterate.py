"""bridges.iterate dispatches each supported kind to its spoke."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
import reactivex

import bridges
from bridges.channels import ChannelIterator
from bridges.threads import PrefetchIterator

pytestmark = pytest.mark.anyio


async def test_async_generator_is_wrapped_lazily() -> None:
    started = []

    async def gen() -> AsyncIterator[int]:
        started.append(1)
        yield 1
        yield 2

    it = bridges.iterate(gen())
    assert started == []
    async with it:
        assert [x async for x in it] == [1, 2]


async def test_bridge_iterators_pass_through() -> None:
    _, receive = bridges.open_channel[int](1)
    assert bridges.iterate(receive) is receive
    await receive.aclose()


async def _goes_to_channels(send: Any, receive: Any) -> None:
    """``iterate`` of a memory channel's receive side is the channels spoke's iterator."""
    it = bridges.iterate(receive)
    assert isinstance(it, ChannelIterator)
    async with send:
        await send.send(7)
    async with it:
        assert [x async for x in it] == [7]


async def test_anyio_memory_stream_goes_to_channels() -> None:
    await _goes_to_channels(*anyio.create_memory_object_stream[int](4))


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_trio_channel_goes_to_channels() -> None:
    import trio

    await _goes_to_channels(*trio.open_memory_channel[int](4))


async def test_observable_goes_to_rx() -> None:
    async with bridges.iterate(reactivex.of(1, 2, 3)) as it:
        assert [x async for x in it] == [1, 2, 3]
        assert it.stats.capacity is None  # type: ignore[attr-defined]


async def test_blocking_iterable_goes_to_a_worker_thread() -> None:
    db = sqlite3.connect(":memory:", check_same_thread=False)
    db.execute("create table t (x)")
    db.executemany("insert into t values (?)", [(i,) for i in range(100)])
    it = bridges.iterate(db.execute("select x from t order by x"))
    assert isinstance(it, PrefetchIterator)
    async with it:
        assert [row[0] async for row in it] == list(range(100))
    db.close()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_asyncio_queue_and_reader_go_to_streams() -> None:
    from bridges import streams

    q: asyncio.Queue[object] = asyncio.Queue()
    for item in (1, 2, streams.END):
        q.put_nowait(item)
    async with bridges.iterate(q) as it:
        assert [x async for x in it] == [1, 2]
    reader = asyncio.StreamReader()
    reader.feed_data(b"abc")
    reader.feed_eof()
    async with bridges.iterate(reader) as chunks:
        assert b"".join([c async for c in chunks]) == b"abc"


async def test_chainable_helpers_after_iterate() -> None:
    it = bridges.iterate(reactivex.range(100))
    got = await it.filter(lambda x: x % 2).map(str).take(3).to_list()
    assert got == ["1", "3", "5"]


@pytest.mark.parametrize("bad", [42, object(), None])
def test_unsupported_kinds_name_what_is_accepted(bad: object) -> None:
    with pytest.raises(TypeError, match="Observable"):
        bridges.iterate(bad)


@pytest.mark.parametrize("text", ["abc", b"abc"])
def test_strings_are_refused_with_the_fix(text: object) -> None:
    with pytest.raises(TypeError, match=r"\[text\]"):
        bridges.iterate(text)
