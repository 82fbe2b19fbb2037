"""bridges.streams: asyncio streams and queues, anyio byte streams, over real sockets too."""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import sys
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from bridges import streams

from .conftest import BACKENDS
from .sources import AwaitingCleanup, Caught, RecordingSource, cancel_once_waiting

pytestmark = pytest.mark.anyio

ASYNCIO_BACKENDS = [p for p in BACKENDS if p.id != "trio"]
asyncio_only = pytest.mark.parametrize("anyio_backend", ASYNCIO_BACKENDS)
trio_only = pytest.mark.parametrize("anyio_backend", ["trio"])

HAS_SHUTDOWN = sys.version_info >= (3, 13)

#: the byte sources here never suspend between chunks
Source = functools.partial(RecordingSource[bytes], checkpoint=False)


async def settle() -> None:
    await anyio.wait_all_tasks_blocked()


# =================================================================== to_aiter


@asyncio_only
async def test_to_aiter_chunks_are_at_most_chunk_size() -> None:
    reader = asyncio.StreamReader()
    data = bytes(range(256)) * 100
    reader.feed_data(data)
    reader.feed_eof()
    chunks = [c async for c in streams.to_aiter(reader, chunk_size=1000)]
    assert b"".join(chunks) == data
    assert max(map(len, chunks)) == 1000


@asyncio_only
async def test_to_aiter_records_and_a_last_record_without_separator() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(b"alpha\r\nbeta\r\n\r\ngamma")
    reader.feed_eof()
    got = [r async for r in streams.to_aiter(reader, separator=b"\r\n")]
    assert got == [b"alpha", b"beta", b"", b"gamma"]


@asyncio_only
async def test_to_aiter_no_empty_record_after_a_final_separator() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(b"a\nb\n")
    reader.feed_eof()
    assert [r async for r in streams.to_aiter(reader, separator=b"\n")] == [b"a", b"b"]


@asyncio_only
async def test_to_aiter_record_longer_than_the_limit_is_a_clear_error_not_a_hang() -> None:
    reader = asyncio.StreamReader(limit=16)
    reader.feed_data(b"short\n" + b"x" * 100)  # no separator, and more than the limit
    it = streams.to_aiter(reader, separator=b"\n")
    assert await it.__anext__() == b"short"
    with anyio.fail_after(2), pytest.raises(asyncio.LimitOverrunError) as info:
        await it.__anext__()
    assert "limit of 16 bytes" in str(info.value)
    assert "limit=" in str(info.value)  # names the fix
    with pytest.raises(StopAsyncIteration):
        await it.__anext__()
    # the reader is consistent: the bytes are still there
    assert await reader.read(10) == b"x" * 10


@asyncio_only
async def test_to_aiter_reads_nothing_before_the_first_value() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(b"one\ntwo\n")
    it = streams.to_aiter(reader, separator=b"\n")
    await anyio.lowlevel.checkpoint()
    assert await reader.readuntil(b"\n") == b"one\n"  # untouched by the adapter
    assert await it.__anext__() == b"two"


@asyncio_only
async def test_to_aiter_early_exit_leaves_the_reader_consistent() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(b"1\n2\n3\n")
    async with streams.to_aiter(reader, separator=b"\n") as it:
        async for record in it:
            assert record == b"1"
            break
    assert await reader.readuntil(b"\n") == b"2\n"  # the next record is still there
    with pytest.raises(StopAsyncIteration):
        await it.__anext__()


@asyncio_only
async def test_to_aiter_a_timeout_consumes_nothing() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(b"partial")  # a record without its separator yet
    it = streams.to_aiter(reader, separator=b"\n")
    with anyio.move_on_after(0.01) as scope:
        await it.__anext__()
    assert scope.cancelled_caught
    reader.feed_data(b" record\nnext\n")
    assert await it.__anext__() == b"partial record"
    assert await it.__anext__() == b"next"


@asyncio_only
async def test_to_aiter_reader_error_raised_once_as_itself() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(b"a\n")
    it = streams.to_aiter(reader, separator=b"\n")
    assert await it.__anext__() == b"a"
    boom = ConnectionResetError("peer reset")
    reader.set_exception(boom)
    with pytest.raises(ConnectionResetError) as info:
        await it.__anext__()
    assert info.value is boom
    with pytest.raises(StopAsyncIteration):
        await it.__anext__()


@asyncio_only
@pytest.mark.parametrize(
    ("kwargs", "exc", "words"),
    [
        ({"chunk_size": 0}, ValueError, ">= 1"),
        ({"chunk_size": "8"}, TypeError, "int"),
        ({"chunk_size": True}, TypeError, "int"),
        ({"separator": b""}, ValueError, "empty"),
        ({"separator": "\n"}, TypeError, "bytes"),
    ],
)
async def test_to_aiter_bad_arguments(kwargs: dict[str, Any], exc: type, words: str) -> None:
    with pytest.raises(exc, match=words):
        streams.to_aiter(asyncio.StreamReader(), **kwargs)


@asyncio_only
async def test_to_aiter_wrong_kinds_name_the_right_call() -> None:
    with pytest.raises(TypeError, match="StreamReader"):
        streams.to_aiter(b"data")  # type: ignore[arg-type]
    _, receive = streams.open_byte_stream_pipe()
    with pytest.raises(TypeError, match="byte_stream_to_aiter"):
        streams.to_aiter(receive)  # type: ignore[arg-type]
    _reader, writer = streams.open_pipe()
    with pytest.raises(TypeError, match="pass the reader"):
        streams.to_aiter(writer)  # type: ignore[arg-type]
    writer.close()


# =================================================================== open_pipe


@asyncio_only
async def test_open_pipe_round_trip_then_eof() -> None:
    reader, writer = streams.open_pipe()
    writer.write(b"hello ")
    writer.writelines([b"pipe", b"\n"])
    writer.write(memoryview(b"!!"))
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    assert await reader.read() == b"hello pipe\n!!"
    assert reader.at_eof()
    with pytest.raises(RuntimeError, match="closed"):
        writer.write(b"more")


@asyncio_only
async def test_open_pipe_drain_waits_while_the_reader_is_full() -> None:
    reader, writer = streams.open_pipe(limit=100)
    writer.write(b"x" * 150)
    await writer.drain()  # 150 <= 2 * limit: not full
    writer.write(b"x" * 100)  # 250 > 2 * limit: the reader pauses its transport
    drained = anyio.Event()

    async def drain() -> None:
        await writer.drain()
        drained.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(drain)
        await settle()
        assert not drained.is_set(), "drain() returned while the reader was full"
        assert len(await reader.read(100)) == 100  # 150 left: above the limit, still full
        await settle()
        assert not drained.is_set()
        await reader.read(50)  # 100 left: down to the limit, the reader resumes
        await settle()
        assert drained.is_set()
    writer.close()


@asyncio_only
async def test_open_pipe_write_eof_abort_and_wait_closed() -> None:
    reader, writer = streams.open_pipe()
    assert writer.can_write_eof()
    writer.write(b"last")
    writer.write_eof()
    with pytest.raises(RuntimeError, match="write_eof"):
        writer.write(b"x")
    assert await reader.read() == b"last"
    writer.close()
    await writer.wait_closed()

    reader, writer = streams.open_pipe()
    writer.write(b"lost?")
    writer.transport.abort()
    with pytest.raises(ConnectionResetError):
        await reader.read()
    await writer.wait_closed()
    with pytest.raises(ConnectionResetError):
        await writer.drain()


@asyncio_only
async def test_open_pipe_close_wakes_a_waiting_drain_with_an_error_for_write() -> None:
    reader, writer = streams.open_pipe(limit=1)
    source = Source([b"abc"] * 10)
    caught = Caught(ConnectionResetError)
    async with anyio.create_task_group() as tg:
        tg.start_soon(caught.run, streams.write, writer, source)
        await settle()
        assert source.pulled == 1  # waiting in drain(): the reader is full
        writer.close()
    assert len(caught.errors) == 1, "write() must not take a closed writer for a drained one"
    assert source.pulled == 1
    assert source.closed == 1
    assert await reader.read() == b"abc"


def test_open_pipe_needs_a_running_loop() -> None:
    with pytest.raises(RuntimeError, match="running asyncio event loop"):
        streams.open_pipe()


@asyncio_only
async def test_open_pipe_bad_limit() -> None:
    with pytest.raises(ValueError, match=">= 1"):
        streams.open_pipe(0)
    with pytest.raises(TypeError, match="int"):
        streams.open_pipe(1.5)  # type: ignore[arg-type]


# =================================================================== write


@asyncio_only
async def test_write_returns_the_byte_count_and_leaves_the_writer_open() -> None:
    reader, writer = streams.open_pipe()
    source = Source([b"ab", bytearray(b"cd"), memoryview(b"ef"), b""])  # type: ignore[list-item]
    assert await streams.write(writer, source) == 6
    assert source.closed == 1
    assert not writer.is_closing()
    writer.write(b"g")
    writer.close()
    assert await reader.read() == b"abcdefg"


@asyncio_only
async def test_write_pulls_only_after_drain() -> None:
    reader, writer = streams.open_pipe(limit=10)
    source = Source([b"x" * 10] * 100)
    async with anyio.create_task_group() as tg:
        tg.start_soon(streams.write, writer, source)
        await settle()
        # the reader holds 30 bytes (> 2 * limit): drain() waits, no further pull
        assert source.pulled == 3
        await reader.read(25)  # 5 left: resumed; two more chunks take it past 20 again
        await settle()
        assert source.pulled == 5
        tg.cancel_scope.cancel()
    assert source.closed == 1
    writer.close()


@asyncio_only
async def test_write_cancellation_closes_the_source() -> None:
    _reader, writer = streams.open_pipe(limit=1)
    source = Source([b"data"] * 5, hang=True)
    with anyio.move_on_after(0.05) as scope:
        await streams.write(writer, source)
    assert scope.cancelled_caught
    assert source.closed == 1
    writer.close()


@asyncio_only
async def test_write_cancelled_runs_a_source_cleanup_that_awaits() -> None:
    _reader, writer = streams.open_pipe(limit=1)
    source = AwaitingCleanup(b"x")
    # drain() waits: the reader is full; the source at a yield
    await cancel_once_waiting(streams.write, writer, source)
    source.assert_cleaned("write()'s cancellation")
    writer.close()


@asyncio_only
async def test_write_source_error_is_raised_as_itself() -> None:
    _reader, writer = streams.open_pipe()
    boom = ValueError("boom")
    source = Source([b"a"], error=boom)
    with pytest.raises(ValueError) as info:
        await streams.write(writer, source)
    assert info.value is boom
    assert source.closed == 1
    writer.close()


@asyncio_only
async def test_write_rejects_non_bytes_chunks_and_closes_the_source() -> None:
    _reader, writer = streams.open_pipe()
    source = Source(["text"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="encode text first"):
        await streams.write(writer, source)
    assert source.closed == 1
    writer.close()


@asyncio_only
async def test_write_its_own_error_wins_over_a_cleanup_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    _reader, writer = streams.open_pipe(limit=1)
    source = Source([b"abc"] * 3, cleanup_error=KeyError("cleanup"))
    caught = Caught(BaseException)
    with caplog.at_level(logging.ERROR, logger="bridges"):
        async with anyio.create_task_group() as tg:
            tg.start_soon(caught.run, streams.write, writer, source)
            await settle()  # waiting in drain(): the reader is full
            writer.transport.abort()  # the connection breaks
    assert [type(e) for e in caught.errors] == [ConnectionResetError]  # not the cleanup's KeyError
    assert source.closed == 1
    assert "closing the source" in caplog.text
    assert "KeyError: 'cleanup'" in caplog.text


@asyncio_only
async def test_write_wrong_kinds() -> None:
    _reader, writer = streams.open_pipe()
    with pytest.raises(TypeError, match="async iterable of bytes"):
        await streams.write(writer, [b"a"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="wrap it"):
        await streams.write(writer, b"a")  # type: ignore[arg-type]
    send, _ = streams.open_byte_stream_pipe()
    with pytest.raises(TypeError, match="byte_stream_write"):
        await streams.write(send, Source([]))  # type: ignore[arg-type]
    writer.close()


# =================================================================== from_aiter


@asyncio_only
async def test_from_aiter_gives_a_real_stream_reader() -> None:
    source = Source([b"GET / HTTP/1.1\r\n", b"Host: x\r\n\r\n", b"bo", b"dy"])
    async with streams.from_aiter(source) as reader:
        assert isinstance(reader, asyncio.StreamReader)
        assert await reader.readline() == b"GET / HTTP/1.1\r\n"
        assert await reader.readuntil(b"\r\n\r\n") == b"Host: x\r\n\r\n"
        assert await reader.readexactly(4) == b"body"
        assert await reader.read() == b""
        assert reader.at_eof()
    assert source.closed == 1


@asyncio_only
async def test_from_aiter_feeder_pauses_with_the_reader() -> None:
    source = Source([b"x" * 10] * 1000)
    async with streams.from_aiter(source, limit=25) as reader:
        await settle()
        # the reader paused its transport above 2 * limit = 50 bytes: 6 chunks in it
        assert source.pulled == 6
        await reader.read(40)  # 20 left: below the limit, the reader resumes
        await settle()
        assert source.pulled == 10
        await settle()
        assert source.pulled == 10  # paused again: it stays there
    assert source.closed == 1


@asyncio_only
async def test_from_aiter_source_error_after_its_bytes() -> None:
    boom = ValueError("source failed")
    source = Source([b"one\n", b"two\n", b"three\n"], error=boom)
    async with streams.from_aiter(source, limit=6) as reader:
        await settle()  # the source failed while the reader still held its bytes
        got = [await reader.readline() for _ in range(3)]
        assert got == [b"one\n", b"two\n", b"three\n"]
        with pytest.raises(ValueError) as info:
            await reader.readline()
        assert info.value is boom


@asyncio_only
async def test_from_aiter_source_error_wakes_a_waiting_read() -> None:
    gate = anyio.Event()
    boom = ValueError("late")

    async def source() -> AsyncIterator[bytes]:
        yield b"partial"
        await gate.wait()
        raise boom

    async with streams.from_aiter(source()) as reader, anyio.create_task_group() as tg:

        async def read() -> None:
            with pytest.raises(ValueError) as info:
                await reader.readuntil(b"\n")  # waits: no separator yet
            assert info.value is boom

        tg.start_soon(read)
        await settle()
        gate.set()


@asyncio_only
async def test_from_aiter_leaving_early_closes_the_source_and_the_reader() -> None:
    source = Source([b"x\n"] * 10, hang=True)
    async with streams.from_aiter(source) as reader:
        assert await reader.readline() == b"x\n"
    assert source.closed == 1
    rest = await reader.read(1000)  # what it held before the block was left ...
    assert rest == b"x\n" * 9
    with pytest.raises(anyio.ClosedResourceError, match="block"):
        await reader.read(1)  # ... then it says it was closed, not EOF


@asyncio_only
async def test_from_aiter_cancellation_closes_the_source_and_propagates() -> None:
    source = Source([b"x"], hang=True)
    with anyio.move_on_after(0.05) as scope:
        async with streams.from_aiter(source) as reader:
            await reader.read(1)
            await reader.read(1)  # hangs: the source hangs
    assert scope.cancelled_caught
    assert source.closed == 1


@asyncio_only
async def test_from_aiter_block_error_is_not_wrapped_and_cleanup_error_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = Source([b"x"], hang=True, cleanup_error=KeyError("cleanup"))
    with caplog.at_level(logging.ERROR, logger="bridges"), pytest.raises(ZeroDivisionError):
        async with streams.from_aiter(source):
            await settle()
            1 / 0  # noqa: B018
    assert source.closed == 1
    assert "KeyError" in caplog.text


@asyncio_only
async def test_from_aiter_cleanup_error_on_a_normal_exit_is_raised() -> None:
    source = Source([b"x"], hang=True, cleanup_error=KeyError("cleanup"))
    with pytest.raises(KeyError):
        async with streams.from_aiter(source) as reader:
            await reader.read(1)


@asyncio_only
async def test_from_aiter_non_bytes_chunk_is_raised_by_the_reader() -> None:
    source = Source([b"ok", 42])  # type: ignore[list-item]
    async with streams.from_aiter(source) as reader:
        assert await reader.read(2) == b"ok"
        with pytest.raises(TypeError, match="yielded a int"):
            await reader.read(1)
    assert source.closed == 1


@asyncio_only
async def test_from_aiter_leaves_no_task_behind() -> None:
    before = len(anyio.get_running_tasks())
    for source in (Source([b"a"] * 3), Source([b"a"], hang=True), Source([b"a"], error=KeyError())):
        async with streams.from_aiter(source) as reader:
            await reader.read(1)
            await settle()
            assert len(anyio.get_running_tasks()) == before + 1 - source.closed
        assert len(anyio.get_running_tasks()) == before
        assert source.closed == 1


@asyncio_only
async def test_from_aiter_bad_arguments() -> None:
    with pytest.raises(TypeError, match="async iterable"):
        streams.from_aiter([b"x"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=">= 1"):
        streams.from_aiter(Source([]), limit=0)
    cm = streams.from_aiter(Source([]))
    async with cm:
        pass
    with pytest.raises(RuntimeError, match="only once"):
        async with cm:
            pass


# =================================================================== trio refusals


class _Reader(asyncio.StreamReader):
    """A StreamReader that needs no asyncio loop to be made (never read: refused first)."""

    def __init__(self) -> None:
        pass


class _Writer(asyncio.StreamWriter):
    """A StreamWriter that needs no asyncio loop to be made (never used: refused first)."""

    def __init__(self) -> None:
        pass

    def __del__(self) -> None:
        pass


@trio_only
@pytest.mark.parametrize(
    ("call", "names"),
    [
        (lambda: streams.to_aiter(_Reader()), "byte_stream_to_aiter"),
        (lambda: streams.from_aiter(Source([])), "byte_stream_from_aiter"),
        (lambda: streams.open_pipe(), "open_byte_stream_pipe"),
        (lambda: streams.queue_to_aiter(asyncio.Queue()), "open_channel"),
    ],
)
async def test_asyncio_forms_refuse_trio_naming_the_anyio_form(call: Any, names: str) -> None:
    with pytest.raises(RuntimeError, match=rf"needs asyncio.*trio.*{names}"):
        call()


@trio_only
async def test_asyncio_coroutines_refuse_trio_naming_the_anyio_form() -> None:
    with pytest.raises(RuntimeError, match="byte_stream_write"):
        await streams.write(_Writer(), Source([]))
    with pytest.raises(RuntimeError, match="open_channel"):
        await streams.queue_from_aiter(Source([]), asyncio.Queue())


# =================================================================== queues


@asyncio_only
async def test_queue_round_trip_with_backpressure() -> None:
    queue: asyncio.Queue[int] = asyncio.Queue(maxsize=3)
    source = Source(list(range(100)))  # type: ignore[arg-type]
    async with anyio.create_task_group() as tg:
        counts: list[int] = []

        async def produce() -> None:
            counts.append(await streams.queue_from_aiter(source, queue))  # type: ignore[misc]

        tg.start_soon(produce)
        await settle()
        assert source.pulled == 4  # 3 in the queue, one waiting in put()
        got = [v async for v in streams.queue_to_aiter(queue)]
    assert got == list(range(100))
    assert counts == [100]
    assert source.closed == 1


@asyncio_only
async def test_queue_end_marker_per_python() -> None:
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=10)
    await streams.queue_from_aiter(Source([1, 2]), queue)  # type: ignore[list-item]
    if HAS_SHUTDOWN:
        assert [queue.get_nowait(), queue.get_nowait()] == [1, 2]
        with pytest.raises(asyncio.QueueShutDown):  # type: ignore[attr-defined,unused-ignore]
            queue.get_nowait()
    else:
        assert [queue.get_nowait() for _ in range(3)] == [1, 2, streams.END]
    assert repr(streams.END) == "bridges.streams.END"


@asyncio_only
async def test_queue_custom_sentinel_on_both_sides() -> None:
    stop = object()
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=2)
    async with anyio.create_task_group() as tg:
        tg.start_soon(
            lambda: streams.queue_from_aiter(Source([b"a", b"b", b"c"]), queue, sentinel=stop)
        )
        got = [v async for v in streams.queue_to_aiter(queue, sentinel=stop)]
    assert got == [b"a", b"b", b"c"]


@asyncio_only
async def test_queue_to_aiter_stops_at_a_hand_put_sentinel_and_leaves_the_rest() -> None:
    queue: asyncio.Queue[Any] = asyncio.Queue()
    for item in (1, 2, streams.END, 3):
        queue.put_nowait(item)
    assert [v async for v in streams.queue_to_aiter(queue)] == [1, 2]
    assert queue.get_nowait() == 3


@asyncio_only
async def test_queue_source_error_propagates_and_the_queue_is_not_ended() -> None:
    boom = ValueError("boom")
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=10)
    source = Source([b"a"], error=boom)
    with pytest.raises(ValueError) as info:
        await streams.queue_from_aiter(source, queue)
    assert info.value is boom
    assert source.closed == 1
    assert queue.get_nowait() == b"a"
    assert queue.empty()  # no end marker: the error is not a clean end
    if HAS_SHUTDOWN:
        queue.put_nowait(b"still open")


@asyncio_only
async def test_queue_from_aiter_cancellation_closes_the_source() -> None:
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=1)
    source = Source([b"a", b"b", b"c"])
    with anyio.move_on_after(0.05):
        await streams.queue_from_aiter(source, queue)  # full after one value
    assert source.pulled == 2
    assert source.closed == 1


@asyncio_only
async def test_queue_to_aiter_early_exit_and_timeout_take_nothing() -> None:
    queue: asyncio.Queue[int] = asyncio.Queue()
    it = streams.queue_to_aiter(queue)
    with anyio.move_on_after(0.01) as scope:
        await it.__anext__()
    assert scope.cancelled_caught
    queue.put_nowait(1)
    queue.put_nowait(2)
    async with it:
        assert await it.__anext__() == 1
    assert queue.get_nowait() == 2  # left in the queue
    with pytest.raises(StopAsyncIteration):
        await it.__anext__()


@asyncio_only
async def test_queue_wrong_kinds() -> None:
    import queue as thread_queue

    with pytest.raises(TypeError, match=r"asyncio\.Queue"):
        streams.queue_to_aiter([])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="open_channel"):
        streams.queue_to_aiter(thread_queue.Queue())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="async iterable"):
        await streams.queue_from_aiter([1], asyncio.Queue())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"asyncio\.Queue"):
        await streams.queue_from_aiter(Source([]), thread_queue.Queue())  # type: ignore[arg-type]


# =================================================================== anyio byte streams


async def test_byte_stream_pipe_round_trip_and_eof() -> None:
    send, receive = streams.open_byte_stream_pipe(limit=4)
    async with anyio.create_task_group() as tg:

        async def produce() -> None:
            async with send:
                await send.send(b"hello ")
                await send.send(bytearray(b"byte "))  # type: ignore[arg-type]
                await send.send(b"")
                await send.send(memoryview(b"pipe"))  # type: ignore[arg-type]

        tg.start_soon(produce)
        got = b""
        while True:
            try:
                got += await receive.receive(3)
            except anyio.EndOfStream:
                break
    assert got == b"hello byte pipe"
    with pytest.raises(anyio.EndOfStream):
        await receive.receive()
    with pytest.raises(anyio.ClosedResourceError):
        await send.send(b"x")


async def test_byte_stream_pipe_send_waits_while_full() -> None:
    send, receive = streams.open_byte_stream_pipe(limit=10)
    await send.send(b"a" * 10)  # one piece fits
    sent = anyio.Event()

    async def second() -> None:
        await send.send(b"b" * 25)  # three pieces of at most 10 bytes
        sent.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(second)
        await settle()
        assert not sent.is_set()
        assert await receive.receive() == b"a" * 10
        assert await receive.receive(4) == b"b" * 4  # a piece is cut to max_bytes ...
        assert await receive.receive() == b"b" * 6  # ... the rest comes next
        assert await receive.receive() == b"b" * 10
        await settle()
        assert sent.is_set()
        assert await receive.receive() == b"b" * 5


async def test_byte_stream_pipe_closing_the_receiver_breaks_a_waiting_send() -> None:
    send, receive = streams.open_byte_stream_pipe(limit=1)
    await send.send(b"x")
    async with anyio.create_task_group() as tg:

        async def blocked() -> None:
            with pytest.raises(anyio.BrokenResourceError):
                await send.send(b"y")

        tg.start_soon(blocked)
        await settle()
        await receive.aclose()
    with pytest.raises(anyio.ClosedResourceError):
        await receive.receive()
    with pytest.raises(anyio.BrokenResourceError):
        await send.send(b"z")


async def test_byte_stream_pipe_concurrent_receive_is_refused() -> None:
    send, receive = streams.open_byte_stream_pipe()
    async with anyio.create_task_group() as tg:
        tg.start_soon(receive.receive)
        await settle()
        with pytest.raises(anyio.BusyResourceError):
            await receive.receive()
        await send.send(b"x")
    with pytest.raises(ValueError, match="max_bytes"):
        await receive.receive(0)
    with pytest.raises(TypeError, match="bytes"):
        await send.send("text")  # type: ignore[arg-type]


async def test_byte_stream_to_aiter_chunks_and_records() -> None:
    send, receive = streams.open_byte_stream_pipe()
    async with anyio.create_task_group() as tg:

        async def produce() -> None:
            async with send:
                await send.send(b"a,bb,")
                await send.send(b"ccc,dd")

        tg.start_soon(produce)
        got = [r async for r in streams.byte_stream_to_aiter(receive, separator=b",")]
    assert got == [b"a", b"bb", b"ccc", b"dd"]

    send, receive = streams.open_byte_stream_pipe()
    async with anyio.create_task_group() as tg:

        async def produce2() -> None:
            async with send:
                await send.send(b"x" * 1000)

        tg.start_soon(produce2)
        chunks = [c async for c in streams.byte_stream_to_aiter(receive, chunk_size=300)]
    assert [len(c) for c in chunks] == [300, 300, 300, 100]


async def test_byte_stream_to_aiter_record_over_limit_is_a_clear_error() -> None:
    send, receive = streams.open_byte_stream_pipe()
    it = streams.byte_stream_to_aiter(receive, separator=b"\n", limit=20)
    async with anyio.create_task_group() as tg:

        async def produce() -> None:
            await send.send(b"y" * 20)  # exactly the limit, its separator comes later: fine
            await send.send(b"\n" + b"x" * 50)

        tg.start_soon(produce)
        assert await it.__anext__() == b"y" * 20
        with anyio.fail_after(2), pytest.raises(anyio.DelimiterNotFound, match="limit=20"):
            await it.__anext__()
    with pytest.raises(StopAsyncIteration):
        await it.__anext__()


async def test_byte_stream_to_aiter_early_exit_keeps_a_buffered_stream_readable() -> None:
    send, receive = streams.open_byte_stream_pipe()
    await send.send(b"1\n2\n3\n")
    await send.aclose()
    buffered = BufferedByteReceiveStream(receive)
    async with streams.byte_stream_to_aiter(buffered, separator=b"\n") as it:
        async for record in it:
            assert record == b"1"
            break
    assert await buffered.receive_until(b"\n", 10) == b"2"


async def test_byte_stream_to_aiter_a_timeout_consumes_nothing() -> None:
    send, receive = streams.open_byte_stream_pipe()
    it = streams.byte_stream_to_aiter(receive)
    with anyio.move_on_after(0.01) as scope:
        await it.__anext__()
    assert scope.cancelled_caught
    await send.send(b"data")
    assert await it.__anext__() == b"data"


async def test_byte_stream_to_aiter_bad_arguments() -> None:
    _, receive = streams.open_byte_stream_pipe()
    with pytest.raises(TypeError, match="ByteReceiveStream"):
        streams.byte_stream_to_aiter(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=">= 1"):
        streams.byte_stream_to_aiter(receive, limit=0)
    with pytest.raises(ValueError, match="empty"):
        streams.byte_stream_to_aiter(receive, separator=b"")


async def test_byte_stream_write_count_and_a_closed_receiver() -> None:
    send, receive = streams.open_byte_stream_pipe(limit=4)
    source = Source([b"ab", b"cdef", b"", bytearray(b"g")])  # type: ignore[list-item]
    async with anyio.create_task_group() as tg:
        counts: list[int] = []

        async def produce() -> None:
            counts.append(await streams.byte_stream_write(send, source))
            await send.aclose()

        tg.start_soon(produce)
        got = b"".join([c async for c in streams.byte_stream_to_aiter(receive)])
    assert got == b"abcdefg"
    assert counts == [7]
    assert source.closed == 1

    send, receive = streams.open_byte_stream_pipe(limit=1)
    source = Source([b"x"] * 10)
    async with anyio.create_task_group() as tg:

        async def produce2() -> None:
            with pytest.raises(anyio.BrokenResourceError):
                await streams.byte_stream_write(send, source)

        tg.start_soon(produce2)
        await receive.receive()
        await settle()
        assert source.pulled == 3  # one taken, one in the pipe, one waiting in send()
        await receive.aclose()
    assert source.closed == 1


async def test_byte_stream_write_cancelled_runs_a_source_cleanup_that_awaits() -> None:
    send, receive = streams.open_byte_stream_pipe(limit=2)
    source = AwaitingCleanup(b"x")
    # send() waits: the pipe is full; the source at a yield
    await cancel_once_waiting(streams.byte_stream_write, send, source)
    source.assert_cleaned("the writer's cancellation")
    await receive.aclose()


async def test_byte_stream_write_wrong_kinds() -> None:
    send, _ = streams.open_byte_stream_pipe()
    with pytest.raises(TypeError, match="async iterable"):
        await streams.byte_stream_write(send, [b"x"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ByteSendStream"):
        await streams.byte_stream_write(object(), Source([]))  # type: ignore[arg-type]


async def test_byte_stream_from_aiter_feeds_anyio_readers() -> None:
    source = Source([b"len:5\n", b"he", b"llo", b"tail"])
    async with streams.byte_stream_from_aiter(source, limit=4) as stream:
        assert isinstance(stream, anyio.abc.ByteReceiveStream)
        buffered = BufferedByteReceiveStream(stream)
        assert await buffered.receive_until(b"\n", 100) == b"len:5"
        assert await buffered.receive_exactly(5) == b"hello"
        assert [c async for c in streams.byte_stream_to_aiter(buffered)] == [b"tail"]
    assert source.closed == 1


async def test_byte_stream_from_aiter_pulls_only_what_is_taken() -> None:
    source = Source([b"x" * 10] * 100)
    async with streams.byte_stream_from_aiter(source, limit=10) as stream:
        await settle()
        assert source.pulled == 2  # one chunk in the pipe, one in hand
        await stream.receive()
        await settle()
        assert source.pulled == 3
    assert source.closed == 1


async def test_byte_stream_from_aiter_error_after_the_bytes_then_end() -> None:
    boom = ValueError("boom")
    async with streams.byte_stream_from_aiter(Source([b"a", b"b"], error=boom)) as stream:
        assert await stream.receive() == b"a"
        assert await stream.receive() == b"b"
        with pytest.raises(ValueError) as info:
            await stream.receive()
        assert info.value is boom
        with pytest.raises(anyio.EndOfStream):
            await stream.receive()


async def test_byte_stream_from_aiter_exit_and_cancellation_close_the_source() -> None:
    source = Source([b"x"], hang=True)
    async with streams.byte_stream_from_aiter(source) as stream:
        await stream.receive()
    assert source.closed == 1
    with pytest.raises(anyio.ClosedResourceError):
        await stream.receive()

    source = Source([b"x"], hang=True)
    with anyio.move_on_after(0.05) as scope:
        async with streams.byte_stream_from_aiter(source) as stream:
            await stream.receive()
            await stream.receive()
    assert scope.cancelled_caught
    assert source.closed == 1

    source = Source([b"x"], hang=True)
    with pytest.raises(ZeroDivisionError):
        async with streams.byte_stream_from_aiter(source):
            1 / 0  # noqa: B018
    assert source.closed == 1

    source = Source([b"x"] * 3, hang=True)
    async with streams.byte_stream_from_aiter(source) as stream:
        await stream.aclose()  # closing the stream stops the pump and closes the source
        await settle()
        assert source.closed == 1


async def test_byte_stream_from_aiter_cleanup_errors() -> None:
    source = Source([b"x"], hang=True, cleanup_error=KeyError("cleanup"))
    with pytest.raises(KeyError):
        async with streams.byte_stream_from_aiter(source) as stream:
            await stream.receive()

    source = Source([b"x"], cleanup_error=KeyError("at the end"))
    async with streams.byte_stream_from_aiter(source) as stream:
        assert await stream.receive() == b"x"
        with pytest.raises(KeyError):  # the source ended with an error: in-band
            await stream.receive()


# =================================================================== real sockets

MB = 2**20
CHUNK = 64 * 1024
SMALL_SOCKET_BUFFER = 64 * 1024


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


class Feed:
    """100 MB (by default) of one repeated chunk; records how far it ran ahead of the consumer."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.sent = 0
        self.consumed = 0
        self.max_lead = 0
        self.closed = False
        self.checks: list[int] = []
        #: set by a consumer that stops reading (then waits to be cancelled)
        self.stuck = anyio.Event()

    async def chunks(self, check: Any = None) -> AsyncIterator[bytes]:
        payload = b"\xab" * CHUNK
        try:
            while self.sent < self.total:
                if check is not None:
                    self.checks.append(check())
                self.max_lead = max(self.max_lead, self.sent - self.consumed)
                yield payload
                self.sent += CHUNK
        finally:
            self.closed = True


def small_buffers(sock: Any, option: int) -> None:
    sock.setsockopt(socket.SOL_SOCKET, option, SMALL_SOCKET_BUFFER)


@asyncio_only
@pytest.mark.timeout(60)
async def test_tcp_100mb_to_a_slow_consumer_with_backpressure_then_cancel() -> None:
    loop = asyncio.get_running_loop()
    high_water = 256 * 1024
    pauses = [0]
    feeds: list[Feed] = []
    server_errors: list[BaseException] = []
    served = [anyio.Event(), anyio.Event()]

    class CountingProtocol(asyncio.StreamReaderProtocol):
        def pause_writing(self) -> None:
            pauses[0] += 1
            super().pause_writing()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = len(feeds) - 1
        feed = feeds[index]
        small_buffers(writer.get_extra_info("socket"), socket.SO_SNDBUF)
        writer.transport.set_write_buffer_limits(high=high_water)
        try:
            sent = await streams.write(writer, feed.chunks(writer.transport.get_write_buffer_size))
            assert sent == feed.total
        except ConnectionError as exc:
            server_errors.append(exc)
        finally:
            writer.close()
            served[index].set()

    server = await loop.create_server(
        lambda: CountingProtocol(asyncio.StreamReader(), handle), "127.0.0.1", 0
    )
    port = server.sockets[0].getsockname()[1]

    async def consume(feed: Feed, stop_after: int | None = None) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=CHUNK)
        small_buffers(writer.get_extra_info("socket"), socket.SO_RCVBUF)
        try:
            async with streams.to_aiter(reader, chunk_size=16 * 1024) as chunks:
                async for chunk in chunks:
                    feed.consumed += len(chunk)
                    if feed.consumed % MB < len(chunk):
                        peak[0] = max(peak[0], rss())
                    if stop_after is not None and feed.consumed >= stop_after:
                        feed.stuck.set()
                        await anyio.sleep_forever()  # cancelled from outside
                    await anyio.lowlevel.checkpoint()  # a slow consumer
                    await anyio.lowlevel.checkpoint()
        finally:
            writer.close()  # the consumer's end of the connection

    try:
        # 1. 100 MB through write() -> TCP -> to_aiter(), all of it, bounded
        feed = Feed(100 * MB)
        feeds.append(feed)
        base = rss()
        peak = [base]
        with anyio.fail_after(30):
            await consume(feed)
            await served[0].wait()
        assert feed.consumed == feed.total == 100 * MB
        assert not server_errors
        assert pauses[0] > 10, "the server's writer was never paused: drain() never waited"
        # write() pulled each chunk only after drain() let it: the transport never held more
        # than its high-water mark at a pull (without drain() it would hold up to 100 MB)
        assert max(feed.checks) <= high_water
        # the server never ran more than socket buffers + transport + reader ahead
        assert feed.max_lead < 8 * MB, feed.max_lead
        assert peak[0] - base < 32 * MB, f"memory grew by {(peak[0] - base) / MB:.1f} MB"

        # 2. cancelling the consumer closes the connection: the server's write() stops
        feed = Feed(100 * MB)
        feeds.append(feed)
        with anyio.fail_after(10):
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(consume, feed, 5 * MB)
                    await feed.stuck.wait()
                    scope.cancel()
            await served[1].wait()
        assert len(server_errors) == 1 and isinstance(server_errors[0], ConnectionError)
        assert feed.closed, "the server's source was not closed"
        assert feed.sent < 20 * MB
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.timeout(60)
async def test_tcp_byte_streams_slow_consumer_backpressure_then_cancel() -> None:
    from anyio.abc import SocketAttribute

    total = 100 * MB
    feeds: list[Feed] = []
    server_errors: list[BaseException] = []
    served = [anyio.Event(), anyio.Event()]

    async def serve(stream: anyio.abc.SocketStream) -> None:
        index = len(feeds) - 1
        feed = feeds[index]
        small_buffers(stream.extra(SocketAttribute.raw_socket), socket.SO_SNDBUF)
        try:
            async with stream:
                assert await streams.byte_stream_write(stream, feed.chunks()) == feed.total
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            server_errors.append(exc)
        finally:
            served[index].set()

    async def consume(port: int, feed: Feed, stop_after: int | None = None) -> None:
        async with await anyio.connect_tcp("127.0.0.1", port) as client:
            small_buffers(client.extra(SocketAttribute.raw_socket), socket.SO_RCVBUF)
            async for chunk in streams.byte_stream_to_aiter(client, chunk_size=16 * 1024):
                feed.consumed += len(chunk)
                if feed.consumed % MB < len(chunk):
                    peak[0] = max(peak[0], rss())
                if stop_after is not None and feed.consumed >= stop_after:
                    feed.stuck.set()
                    await anyio.sleep_forever()
                await anyio.lowlevel.checkpoint()
                await anyio.lowlevel.checkpoint()

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as server_tg:
        server_tg.start_soon(listener.serve, serve)

        feed = Feed(total)
        feeds.append(feed)
        base = rss()
        peak = [base]
        with anyio.fail_after(40):
            await consume(port, feed)
            await served[0].wait()
        assert feed.consumed == total
        assert not server_errors
        assert feed.max_lead < 8 * MB, feed.max_lead  # send() paced the source
        assert peak[0] - base < 32 * MB, f"memory grew by {(peak[0] - base) / MB:.1f} MB"

        feed = Feed(total)
        feeds.append(feed)
        with anyio.fail_after(10):
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(consume, port, feed, 5 * MB)
                    await feed.stuck.wait()
                    scope.cancel()
            await served[1].wait()
        assert len(server_errors) == 1
        assert feed.closed, "the server's source was not closed"
        assert feed.sent < 20 * MB
        server_tg.cancel_scope.cancel()
