"""asyncio streams and queues, and anyio byte streams <-> async iterables.

Byte streams carry ``bytes``; the async iterables here yield ``bytes`` chunks
(or records, when a separator is given).  Two families with the same four
forms:

* asyncio ``StreamReader`` / ``StreamWriter`` (asyncio and uvloop only):
  [`to_aiter`][bridges.streams.to_aiter], [`from_aiter`][bridges.streams.from_aiter],
  [`write`][bridges.streams.write], [`open_pipe`][bridges.streams.open_pipe];
* anyio byte streams (asyncio, uvloop and trio):
  [`byte_stream_to_aiter`][bridges.streams.byte_stream_to_aiter],
  [`byte_stream_from_aiter`][bridges.streams.byte_stream_from_aiter],
  [`byte_stream_write`][bridges.streams.byte_stream_write],
  [`open_byte_stream_pipe`][bridges.streams.open_byte_stream_pipe];

and [`queue_to_aiter`][bridges.streams.queue_to_aiter] /
[`queue_from_aiter`][bridges.streams.queue_from_aiter] for ``asyncio.Queue``.

Backpressure is always the stream's own: a ``StreamWriter`` is drained
between chunks, a ``StreamReader`` pauses the transport that feeds it, an
anyio ``send`` awaits room, a queue's ``maxsize`` bounds it.  Beyond the
stream's own buffer, nothing here holds more than the chunk in hand.
"""

from __future__ import annotations

import asyncio
import enum
import sys
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any, Final, Generic, TypeVar

import anyio
import anyio.abc
from anyio.lowlevel import checkpoint
from anyio.streams.buffered import BufferedByteReceiveStream

from ._backend import in_trio_run
from ._buffer import CLOSED, FULL, GONE, TAKEN, Handoff, Result
from ._cancel import CancelProbe, cancel_point
from ._channel import exit_error
from ._enter import ExcType, MustEnter, Tb
from ._iterator import BridgeIterator, log_cleanup_error
from ._pump import (
    FINISHED,
    INTERRUPTED,
    STOPPED,
    PushSink,
    aclose_shielded,
    cancelled_now,
    drive,
    is_cancellation,
)

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]

T = TypeVar("T")
S = TypeVar("S")

__all__ = [
    # asyncio streams
    "to_aiter",
    "from_aiter",
    "write",
    "open_pipe",
    # anyio byte streams (every backend)
    "byte_stream_to_aiter",
    "byte_stream_from_aiter",
    "byte_stream_write",
    "open_byte_stream_pipe",
    "Bytes",
    # asyncio queues
    "END",
    "queue_to_aiter",
    "queue_from_aiter",
]

#: What a byte stream's chunks may be.
Bytes = bytes | bytearray | memoryview

_DEFAULT_LIMIT: Final = 65536
_QueueShutDown: type[Exception] | None = getattr(asyncio, "QueueShutDown", None)


class _End(enum.Enum):
    END = "END"

    def __repr__(self) -> str:
        return "bridges.streams.END"


#: The default end-of-stream sentinel of [`queue_from_aiter`][bridges.streams.queue_from_aiter] and
#: [`queue_to_aiter`][bridges.streams.queue_to_aiter] on Pythons without
#: ``asyncio.Queue.shutdown()`` (before 3.13).
END: Final = _End.END


# ------------------------------------------------------------------ checks


_QUEUE_INSTEAD = "a trio memory channel or bridges.open_channel() instead of an asyncio.Queue"
_ANYIO_FORMS = {
    "to_aiter": "streams.byte_stream_to_aiter(stream) over an anyio ByteReceiveStream "
    "(e.g. from anyio.connect_tcp())",
    "from_aiter": "streams.byte_stream_from_aiter(source), which gives an anyio ByteReceiveStream",
    "write": "streams.byte_stream_write(stream, source) to an anyio ByteSendStream "
    "(e.g. from anyio.connect_tcp())",
    "open_pipe": "streams.open_byte_stream_pipe(), whose ends are anyio byte streams",
    "queue_to_aiter": _QUEUE_INSTEAD,
    "queue_from_aiter": _QUEUE_INSTEAD,
}


def _require_asyncio(fn: str) -> None:
    """R15: the asyncio forms refuse trio with a message naming the form to use."""
    if in_trio_run():
        raise RuntimeError(
            f"streams.{fn}() works with asyncio objects and needs asyncio (or uvloop), but "
            f"trio is running here; on trio use {_ANYIO_FORMS[fn]}"
        )


def _running_loop(fn: str) -> asyncio.AbstractEventLoop:
    _require_asyncio(fn)
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            f"streams.{fn}() needs a running asyncio event loop; call it from async code"
        ) from None


def _check_source(fn: str, source: object, what: str = "an async iterable of bytes") -> None:
    if isinstance(source, AsyncIterable) or hasattr(source, "__aiter__"):
        return
    hint = ""
    if isinstance(source, (bytes, bytearray, memoryview)):
        hint = " (for a single bytes object, wrap it: an async generator that yields it)"
    elif hasattr(source, "__iter__"):
        hint = (
            " (for a plain iterable use an async generator, or bridges.threads for a blocking one)"
        )
    raise TypeError(f"streams.{fn}() takes {what} as its source, not {type(source).__name__}{hint}")


def _check_kind(
    fn: str, value: object, expected: type, what: str, *hints: tuple[type, str]
) -> None:
    """R15: ``value`` must be an ``expected``; the message says what it got and the fix."""
    if isinstance(value, expected):
        return
    hint = next((f"; {text}" for kind, text in hints if isinstance(value, kind)), "")
    raise TypeError(f"streams.{fn}() {what}, not {type(value).__name__}{hint}")


def _check_positive(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= 1, not {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, not {value}")
    return value


def _check_separator(separator: object) -> bytes | None:
    if separator is None:
        return None
    if not isinstance(separator, (bytes, bytearray)):
        raise TypeError(
            f"separator must be bytes (e.g. b'\\n') or None, not {type(separator).__name__}"
        )
    if not separator:
        raise ValueError("separator must not be empty; give None to read chunks instead")
    return bytes(separator)


def _chunk(fn: str, chunk: object) -> Bytes:
    """A chunk from a source, checked: bytes-like, or a TypeError naming the fix."""
    if isinstance(chunk, (bytes, bytearray, memoryview)):
        return chunk
    hint = " (encode text first)" if isinstance(chunk, str) else ""
    raise TypeError(
        f"the source of streams.{fn}() yielded a {type(chunk).__name__}; it must yield bytes{hint}"
    )


def _nbytes(chunk: Bytes) -> int:
    return chunk.nbytes if isinstance(chunk, memoryview) else len(chunk)


def _unwrap(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


# ------------------------------------------------------------ borrowed sources


class _Borrowed(BridgeIterator[T]):
    """An iterator of a source it does not own: it ends with the source or at
    ``aclose()``, and closes nothing."""

    __slots__ = ("_done",)

    def __init__(self) -> None:
        self._done = False

    async def aclose(self) -> None:
        """Stop iterating (idempotent); the source stays as it is, open."""
        self._done = True


class _Chunks(_Borrowed[bytes]):
    """Chunks or records of a byte source it does not own.  An error ends it, but not
    a cancellation: a timeout around one read takes nothing."""

    __slots__ = ()

    @abstractmethod
    async def _read(self) -> bytes | None:
        """The next chunk or record, or None at the source's end (setting ``_done``
        when it is the last)."""

    async def __anext__(self) -> bytes:
        if self._done:
            raise StopAsyncIteration
        try:
            data = await self._read()
        except BaseException as exc:
            if not is_cancellation(exc):
                self._done = True
            raise
        if data is None:
            self._done = True
            raise StopAsyncIteration
        return data


# ------------------------------------------------------------ asyncio: reading


class _ReaderIterator(_Chunks):
    """Chunks or records read from a ``StreamReader``; the reader stays readable."""

    __slots__ = ("_probe", "_reader", "_separator", "_size")

    def __init__(self, reader: asyncio.StreamReader, size: int, separator: bytes | None) -> None:
        super().__init__()
        self._reader = reader
        self._size = size
        self._separator = separator
        self._probe = CancelProbe()

    async def _read(self) -> bytes | None:
        # the reader returns bytes it holds without a cancel point: take one first (R19)
        if self._probe.cancelled():
            await cancel_point(self._probe)
        reader = self._reader
        sep = self._separator
        if sep is None:
            return await reader.read(self._size) or None
        try:
            return (await reader.readuntil(sep))[: -len(sep)]
        except asyncio.IncompleteReadError as exc:
            if exc.partial:  # the last record, with no separator before EOF
                self._done = True
                return exc.partial
            return None
        except asyncio.LimitOverrunError as exc:
            limit = getattr(reader, "_limit", None)
            raise asyncio.LimitOverrunError(
                f"no separator {sep!r} within the reader's limit of {limit} bytes: a "
                "record is longer than the reader can hold. Give the reader a larger "
                "limit (e.g. asyncio.open_connection(..., limit=...)) or read chunks "
                "(separator=None); the bytes are still in the reader",
                exc.consumed,
            ) from exc


def to_aiter(
    reader: asyncio.StreamReader,
    *,
    chunk_size: int = _DEFAULT_LIMIT,
    separator: bytes | None = None,
) -> BridgeIterator[bytes]:
    """Iterate an ``asyncio.StreamReader``: chunks of bytes, or records split on a separator.

    Without a separator each value is what one ``reader.read(chunk_size)``
    returns (at most ``chunk_size`` bytes, as soon as any are there).  With
    ``separator=b"\\n"`` each value is one line without its separator; a last
    record with no separator before EOF is delivered too.

    Nothing is read before the first ``__anext__``.  Backpressure is the
    reader's own: it pauses its transport when it holds more than twice its
    limit, and the iterator holds nothing.  The iterator does not own the
    reader: leaving it early (``break``, ``aclose()``, leaving ``async with``,
    cancellation) reads no further and leaves the reader consistent, with the
    next record still in it; the connection is closed by whoever owns its
    writer.  A cancelled ``__anext__`` (a timeout) consumes nothing, and in a
    scope that is already cancelled ``__anext__`` raises the cancellation
    without reading, even when the reader holds a whole record (R19).

    :param reader: the reader (from ``asyncio.open_connection``, a server
        callback, [`open_pipe`][bridges.streams.open_pipe],
        [`from_aiter`][bridges.streams.from_aiter] ...)
    :param chunk_size: the most bytes per chunk (without a separator)
    :param separator: split on these bytes (not included in the records)
    :raises asyncio.LimitOverrunError: (from iteration) a record is longer than
        the reader's limit; the message names the fix.  The reader keeps the bytes.
    :raises TypeError: ``reader`` is not an ``asyncio.StreamReader``, or a bad
        ``chunk_size`` / ``separator`` type
    :raises ValueError: ``chunk_size < 1`` or an empty separator
    :raises RuntimeError: called under trio (use
        [`byte_stream_to_aiter`][bridges.streams.byte_stream_to_aiter])
    """
    _check_kind(
        "to_aiter",
        reader,
        asyncio.StreamReader,
        "reads an asyncio.StreamReader",
        (anyio.abc.ByteReceiveStream, "for an anyio stream use streams.byte_stream_to_aiter()"),
        (asyncio.StreamWriter, "pass the reader of the (reader, writer) pair"),
    )
    size = _check_positive("chunk_size", chunk_size)
    sep = _check_separator(separator)
    _require_asyncio("to_aiter")
    return _ReaderIterator(reader, size, sep)


# ------------------------------------------------------------- asyncio: pipe


class _PipeProtocol(asyncio.streams.FlowControlMixin):
    """The writer side's protocol: ``drain()`` waits while the transport is paused."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop=loop)
        self._closed: asyncio.Future[None] = loop.create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._closed.done():
            self._closed.set_result(None)
        super().connection_lost(exc)

    def _get_close_waiter(self, stream: object) -> asyncio.Future[None]:
        return self._closed


class _PipeTransport(asyncio.Transport):
    """An in-memory transport: what is written is fed to a ``StreamReader``.

    To the reader it is its transport: the reader calls ``pause_reading()``
    when it holds more than twice its limit and ``resume_reading()`` when it
    has drained to its limit.  Those pause and resume the writer's protocol,
    so ``await writer.drain()`` waits exactly while the reader is full.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        reader: asyncio.StreamReader,
        protocol: _PipeProtocol,
    ) -> None:
        super().__init__()
        self._loop = loop
        self._reader = reader
        self._protocol = protocol
        self._writing_paused = False
        self._eof = False
        self._closing = False
        self._pending_exc: Exception | None = None

    # the reader's side ------------------------------------------------------

    def pause_reading(self) -> None:
        if not self._writing_paused and not self._closing:
            self._writing_paused = True
            self._protocol.pause_writing()

    def resume_reading(self) -> None:
        if self._pending_exc is not None:
            # the reader asks for data (or drained): the error may be due now; it
            # must be set after a read that waits has registered its waiter
            self._loop.call_soon(self._deliver_pending)
        if self._writing_paused:
            self._writing_paused = False
            if not self._closing:
                self._protocol.resume_writing()

    def is_reading(self) -> bool:
        return not self._writing_paused

    # the writer's side ------------------------------------------------------

    def write(self, data: Any) -> None:
        if self._eof:
            raise RuntimeError(
                "this pipe's writer was closed (or write_eof() was called); "
                "nothing more can be written"
            )
        if not isinstance(data, (bytes, bytearray)):
            data = bytes(data)  # any buffer; the reader copies it anyway
        if data:
            self._reader.feed_data(data)

    def write_eof(self) -> None:
        if not self._eof:
            self._eof = True
            self._reader.feed_eof()

    def can_write_eof(self) -> bool:
        return True

    def get_write_buffer_size(self) -> int:
        return 0  # written bytes go straight into the reader's buffer

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (0, 0)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """No-op: the pipe's limit is the reader's (``open_pipe(limit=...)``)."""

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self.write_eof()
        self._shut()

    def abort(self) -> None:
        if self._closing:
            return
        if not self._eof:
            self._eof = True
            self._reader.set_exception(ConnectionResetError("the pipe's writer aborted"))
        self._shut()

    def _shut(self) -> None:
        self._closing = True
        self._loop.call_soon(self._protocol.connection_lost, None)

    # failing the reader after its bytes --------------------------------------

    def _fail_after_data(self, exc: Exception) -> None:
        """End the pipe with ``exc``, raised by the reader after the bytes already in it.

        A ``StreamReader``'s own ``set_exception`` pre-empts the bytes it still
        holds (right for a broken connection, wrong for a source that failed
        after producing them).  So the error waits until the reader has drained
        or a read waits for more: marking the reader paused makes it call
        ``resume_reading()`` at exactly those moments.
        """
        if self._eof:
            return
        self._eof = True
        self._pending_exc = exc
        self._deliver_pending()

    def _deliver_pending(self) -> None:
        exc = self._pending_exc
        if exc is None:
            return
        reader = self._reader
        buffered = getattr(reader, "_buffer", None)
        if not buffered or getattr(reader, "_waiter", None) is not None:
            self._pending_exc = None
            reader.set_exception(exc)
        elif hasattr(reader, "_paused"):
            reader._paused = True
        else:  # pragma: no cover - a StreamReader without these internals
            self._pending_exc = None
            reader.set_exception(exc)


def _make_pipe(
    loop: asyncio.AbstractEventLoop, limit: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, _PipeTransport]:
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    protocol = _PipeProtocol(loop)
    transport = _PipeTransport(loop, reader, protocol)
    reader.set_transport(transport)
    protocol.connection_made(transport)
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    return reader, writer, transport


def open_pipe(limit: int = _DEFAULT_LIMIT) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """An in-memory ``(StreamReader, StreamWriter)`` pair with real backpressure.

    What is written to the writer is read from the reader, in order.
    ``await writer.drain()`` waits while the reader is full: it holds more
    than ``2 * limit`` bytes (the reader's own rule for pausing its
    transport) and has not yet been read down to ``limit``.
    ``writer.close()`` (or ``write_eof()``) ends the stream: the reader gets
    the bytes written, then EOF; ``writer.transport.abort()`` makes the reader
    raise ``ConnectionResetError``.  Writing after either raises
    ``RuntimeError``.  Close the writer when done, as with any ``StreamWriter``.

    Useful in tests, and to connect an API that writes to a ``StreamWriter``
    with one that reads from a ``StreamReader``.

    :param limit: the reader's limit in bytes (its buffer holds about twice
        this before the writer waits; also the longest line ``readline`` takes)
    :raises TypeError: ``limit`` is not an int
    :raises ValueError: ``limit < 1``
    :raises RuntimeError: no running asyncio loop, or called under trio (use
        [`open_byte_stream_pipe`][bridges.streams.open_byte_stream_pipe])
    """
    size = _check_positive("limit", limit)
    loop = _running_loop("open_pipe")
    reader, writer, _ = _make_pipe(loop, size)
    return reader, writer


# ------------------------------------------------------------ asyncio: writing


def _still_open(writer: asyncio.StreamWriter) -> None:
    if writer.is_closing():
        raise ConnectionResetError("the writer was closed before the source ended")


class _WriterSink:
    """An asyncio ``StreamWriter`` as a sink of the pump: each chunk is pulled only after
    ``drain()`` returned; no closing.  ``total`` counts the bytes written."""

    __slots__ = ("total", "writer")

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.total = 0

    def has_room(self) -> bool:
        return False  # drain() first, every time: it returns at once when not paused

    async def wait_room(self) -> None:
        await self.writer.drain()
        # drain() returns when a paused writer is closed: nothing would get through
        _still_open(self.writer)

    def is_open(self) -> bool:
        return True  # a closed writer raises (the connection error is the sink's error)

    def put_nowait(self, item: object) -> Result:
        chunk = _chunk("write", item)
        # closed while the source was pulled: the same connection error, not
        # whatever the transport's write() does after a close
        _still_open(self.writer)
        self.writer.write(chunk)
        self.total += _nbytes(chunk)
        return TAKEN

    async def put(self, item: object) -> Result:
        return self.put_nowait(item)


async def write(writer: asyncio.StreamWriter, source: AsyncIterable[Bytes]) -> int:
    """Write every chunk of ``source`` to ``writer``, draining between chunks.

    The next chunk is pulled only after ``await writer.drain()`` returned, so
    a slow peer slows the source down and at most one chunk is in the
    transport's buffer beyond its high-water mark.  The writer is neither
    closed nor sent EOF: it is the caller's, to write more or close.

    The source is closed (``aclose()``) on every exit.  Cancellation closes
    it (shielded, so a cleanup that awaits runs to its end) and propagates.
    A connection error from ``drain()`` (the peer went away, the writer was
    closed) closes the source and is raised.  A source error is raised as
    itself.

    :returns: the number of bytes written
    :raises TypeError: ``writer`` is not an ``asyncio.StreamWriter``, ``source``
        is not an async iterable, or it yields something other than bytes
    :raises RuntimeError: called under trio (use
        [`byte_stream_write`][bridges.streams.byte_stream_write])
    """
    _check_kind(
        "write",
        writer,
        asyncio.StreamWriter,
        "writes to an asyncio.StreamWriter",
        (anyio.abc.ByteSendStream, "for an anyio stream use streams.byte_stream_write()"),
    )
    _check_source("write", source)
    _require_asyncio("write")
    sink = _WriterSink(writer)
    (await drive(source.__aiter__(), sink)).raise_error()
    return sink.total


# ------------------------------------------------------- asyncio: a fed reader


class _Fed(MustEnter, ABC, Generic[S]):
    """A stream fed from a source by a pump task that the ``async with`` block owns (R14).

    The pump ends the stream in-band when the source ends or fails, and closes
    the source then.  Leaving the block stops the pump and closes the source
    before the block exits; an error from the source's cleanup at that point
    is raised from the block, or logged if the block is already raising.
    """

    _name = ""

    def __init__(self, source: AsyncIterable[Bytes], limit: int) -> None:
        self._source = source
        self._limit = limit
        self._it: AsyncIterator[Bytes] | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._source_closed = False
        self._exit_error: Exception | None = None

    @abstractmethod
    def _open(self) -> S:
        """The stream handed to the block."""

    @abstractmethod
    def _sink(self) -> _WriterSink | _SendSink:
        """Where the pump moves the source's chunks."""

    @abstractmethod
    async def _end(self) -> None:
        """End the stream in-band (the source is done)."""

    @abstractmethod
    def _fail(self, exc: Exception) -> None:
        """End the stream with the source's error."""

    @abstractmethod
    def _close(self) -> None:
        """Close the consumer's end when the block exits."""

    async def __aenter__(self) -> S:
        if self._tg is not None:
            raise RuntimeError(f"a {self._name}() block can be entered only once")
        it = self._it = self._source.__aiter__()
        stream = self._open()
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        tg.start_soon(self._run, it, name=f"bridges.streams.{self._name} pump")
        return stream

    async def _run(self, it: AsyncIterator[Bytes]) -> None:
        # never raises (but cancellation): the source's end and errors go down the stream
        self._source_closed = True  # the pump closes it, in-band
        sink = self._sink()
        ending = await drive(it, sink, paced=isinstance(sink, _WriterSink))
        error = ending.error
        if ending.how is STOPPED or (ending.how is INTERRUPTED and cancelled_now()):
            # stopped by the block's exit: raised from it (or logged) as the source's cleanup
            self._exit_error = ending.cleanup_error
            if isinstance(error, Exception):  # the first error, as before the source closed
                if self._exit_error is not None:
                    log_cleanup_error(self._exit_error, "closing the source")
                self._exit_error = error
            if error is not None and not isinstance(error, Exception):
                raise error
            return
        if ending.how is FINISHED:
            if ending.cleanup_error is None:
                await self._end()
                return
            error = ending.cleanup_error
        elif ending.cleanup_error is not None:
            log_cleanup_error(ending.cleanup_error, "closing the source")
        if not isinstance(error, Exception):
            assert error is not None
            raise error  # a cancellation of the pump's own (the stream's end was closed)
        self._fail(error)

    async def __aexit__(self, exc_type: ExcType, exc: BaseException | None, tb: Tb) -> None:
        tg = self._tg
        assert tg is not None
        tg.cancel_scope.cancel()
        try:
            # the block's own exception must not go through the task group (it
            # would come out wrapped in an ExceptionGroup)
            await tg.__aexit__(None, None, None)
        except BaseException as group:
            # cancelled from outside: still close the source before leaving (R11)
            self._close()
            await self._close_source_on_exit(group)
            raise _unwrap(group) from None
        self._close()
        await self._close_source_on_exit(exc)

    async def _close_source_on_exit(self, exc: BaseException | None) -> None:
        errors = [] if self._exit_error is None else [self._exit_error]
        self._exit_error = None
        if not self._source_closed:
            self._source_closed = True
            try:
                await aclose_shielded(self._it)  # shielded: a cancelled block still closes it (R11)
            except Exception as cleanup_exc:
                errors.append(cleanup_exc)
        for i, error in enumerate(errors):
            if exc is None and i == 0:
                continue
            log_cleanup_error(error, "closing the source")
        if exc is None and errors:
            raise errors[0]


class _ReaderFromAiter(_Fed[asyncio.StreamReader]):
    _name = "from_aiter"
    what = "streams.from_aiter()"
    usage = "async with streams.from_aiter(source) as reader: line = await reader.readline()"
    handed_out = frozenset(n for n in dir(asyncio.StreamReader) if not n.startswith("_"))

    def _open(self) -> asyncio.StreamReader:
        loop = _running_loop("from_aiter")
        self._reader, self._writer, self._transport = _make_pipe(loop, self._limit)
        return self._reader

    def _sink(self) -> _WriterSink:
        return _WriterSink(self._writer)

    async def _end(self) -> None:
        self._writer.close()

    def _fail(self, exc: Exception) -> None:
        self._transport._fail_after_data(exc)

    def _close(self) -> None:
        if not self._transport._eof:  # the pump was stopped before the source ended
            self._transport._fail_after_data(
                anyio.ClosedResourceError(
                    "the from_aiter() block that fed this reader was left; its source is closed"
                )
            )
        self._transport.close()  # EOF or the error is set already: this only closes


def from_aiter(
    source: AsyncIterable[Bytes], *, limit: int = _DEFAULT_LIMIT
) -> AbstractAsyncContextManager[asyncio.StreamReader]:
    """A real ``asyncio.StreamReader`` fed from an async iterable of bytes.

    ``async with streams.from_aiter(source) as reader:`` gives a reader for
    code that insists on one (parsers, protocol libraries).  A feeder task,
    owned by the ``async with`` block, writes the source's chunks into it.

    Backpressure is the reader's own transport signal: when the reader holds
    more than ``2 * limit`` bytes it pauses its transport and the feeder
    stops pulling; when it has been read down to ``limit`` it resumes.

    The source's end is the reader's EOF.  A source error is raised by the
    reader's read calls after the bytes produced before it (and, like any
    ``StreamReader`` error, by every read after).  Leaving the block (by any
    means, cancellation included) stops the feeder and closes the source
    before it exits; a reader still used after that raises
    ``anyio.ClosedResourceError`` once its bytes are read, unless the
    source had ended.  An error raised by the source's ``aclose()`` at that
    point is raised from the block, or logged if the block is already
    raising.

    :param source: an async iterable of bytes-like chunks
    :param limit: the reader's limit in bytes (see above; also the longest
        line ``readline()`` takes)
    :raises TypeError: ``source`` is not an async iterable; (from reads) it
        yielded something other than bytes
    :raises RuntimeError: used under trio (use
        [`byte_stream_from_aiter`][bridges.streams.byte_stream_from_aiter])
    """
    _check_source("from_aiter", source)
    size = _check_positive("limit", limit)
    _require_asyncio("from_aiter")
    return _ReaderFromAiter(source, size)


# --------------------------------------------------------- anyio: reading


class _ByteStreamIterator(_Chunks):
    """Chunks or records received from an anyio byte stream; the stream is not closed."""

    __slots__ = ("_buffered", "_limit", "_separator", "_size", "_stream")

    def __init__(
        self,
        stream: anyio.abc.ByteReceiveStream,
        size: int,
        separator: bytes | None,
        limit: int,
    ) -> None:
        super().__init__()
        self._stream = stream
        self._size = size
        self._separator = separator
        self._limit = limit
        self._buffered: BufferedByteReceiveStream | None = None
        if separator is not None:
            self._buffered = (
                stream
                if isinstance(stream, BufferedByteReceiveStream)
                else BufferedByteReceiveStream(stream)
            )

    async def _read(self) -> bytes | None:
        buffered = self._buffered
        if buffered is None:
            try:
                return await self._stream.receive(self._size)
            except anyio.EndOfStream:
                return None
        assert self._separator is not None
        try:
            # limit counts the record without its separator, as asyncio's does
            most = self._limit + len(self._separator)
            return await buffered.receive_until(self._separator, most)
        except anyio.IncompleteRead:
            rest = await _rest(buffered)
            if rest:  # the last record, with no separator before the end
                self._done = True
                return rest
            return None
        except anyio.DelimiterNotFound as exc:
            error = anyio.DelimiterNotFound(self._limit)
            error.args = (
                f"no separator {self._separator!r} within limit={self._limit} bytes: a "
                "record is longer than that. Raise limit= or read chunks "
                "(separator=None)",
            )
            raise error from exc


async def _rest(buffered: BufferedByteReceiveStream) -> bytes:
    """What is left in a buffered stream whose underlying stream has ended."""
    parts = []
    while True:
        try:
            parts.append(await buffered.receive())
        except anyio.EndOfStream:
            return b"".join(parts)


def byte_stream_to_aiter(
    stream: anyio.abc.ByteReceiveStream,
    *,
    chunk_size: int = _DEFAULT_LIMIT,
    separator: bytes | None = None,
    limit: int = _DEFAULT_LIMIT,
) -> BridgeIterator[bytes]:
    """Iterate an anyio ``ByteReceiveStream``: chunks, or records split on a separator.

    Works on every backend (asyncio, uvloop, trio): sockets from
    ``anyio.connect_tcp()``, TLS streams,
    [`open_byte_stream_pipe`][bridges.streams.open_byte_stream_pipe] ... Without a separator each
    value is one ``stream.receive(chunk_size)``. With one, each value is a record without its
    separator; a last record with no separator before the end is delivered too.

    Nothing is received before the first ``__anext__``; the next receive
    happens only when the next value is asked for, so a slow consumer slows
    the peer down through the stream's own flow control.  The stream is not
    closed by the iterator (it is not its own).  A cancelled ``__anext__``
    consumes nothing.  With a separator, bytes received past the last record
    delivered stay in a buffer: pass an
    ``anyio.streams.buffered.BufferedByteReceiveStream`` to keep that buffer
    yours (and go on reading it after leaving early).

    :param chunk_size: the most bytes per chunk (without a separator)
    :param separator: split on these bytes (not included in the records)
    :param limit: the longest record, in bytes (with a separator)
    :raises anyio.DelimiterNotFound: (from iteration) a record is longer than ``limit``
    :raises TypeError: ``stream`` is not an anyio ``ByteReceiveStream``, or a
        bad argument type
    :raises ValueError: ``chunk_size`` or ``limit`` below 1, or an empty separator
    """
    _check_kind(
        "byte_stream_to_aiter",
        stream,
        anyio.abc.ByteReceiveStream,
        "reads an anyio ByteReceiveStream",
        (asyncio.StreamReader, "for an asyncio StreamReader use streams.to_aiter()"),
    )
    size = _check_positive("chunk_size", chunk_size)
    sep = _check_separator(separator)
    most = _check_positive("limit", limit)
    return _ByteStreamIterator(stream, size, sep, most)


# ------------------------------------------------------------ anyio: pipe


class _PipeSendStream(anyio.abc.ByteSendStream):
    """The send end of [`open_byte_stream_pipe`][bridges.streams.open_byte_stream_pipe]."""

    def __init__(self, handoff: Handoff[bytes], limit: int) -> None:
        self._h = handoff
        self._limit = limit
        self._closed = False

    async def send(self, item: bytes) -> None:
        """Send ``item``, waiting while the pipe is full.

        ``item`` is cut into pieces of at most ``limit`` bytes; each piece
        waits for the previous one to be taken.  A cancelled send may have sent
        a first part of ``item`` (as with a socket).

        :raises anyio.BrokenResourceError: the receive end was closed
        :raises anyio.ClosedResourceError: this end was closed
        :raises TypeError: ``item`` is not bytes-like
        """
        data = _chunk("open_byte_stream_pipe", item)
        if self._closed:
            raise anyio.ClosedResourceError("this send stream was closed")
        await checkpoint()
        if not isinstance(data, bytes):
            data = bytes(data)  # the caller may reuse its buffer once send returns
        limit = self._limit
        if len(data) <= limit:
            await self._put(data)
            return
        view = memoryview(data)
        for start in range(0, len(data), limit):
            await self._put(bytes(view[start : start + limit]))

    async def _put(self, piece: bytes) -> None:
        if not piece:
            return
        result = await self._h.put(piece)
        if result is GONE:
            raise anyio.BrokenResourceError("the receiving end of this pipe was closed")
        if result is CLOSED:
            if self._closed:
                raise anyio.ClosedResourceError("this send stream was closed")
            raise anyio.BrokenResourceError("this pipe has already ended")

    def _fail(self, exc: BaseException) -> None:
        """End the stream with ``exc``: the receiver raises it after the bytes before it."""
        self._closed = True
        self._h.fail(exc)

    async def aclose(self) -> None:
        """End the stream: the receiver gets the bytes sent, then ``EndOfStream`` (idempotent)."""
        self._closed = True
        self._h.close()

    async def __aexit__(self, exc_type: ExcType, exc_val: BaseException | None, exc_tb: Tb) -> None:
        """Leaving ``async with`` normally ends the stream; by an exception, fails it (R16)."""
        if exc_val is None:
            await self.aclose()
        elif not self._closed:
            self._fail(exit_error(exc_val))


class _PipeReceiveStream(anyio.abc.ByteReceiveStream):
    """The receive end of [`open_byte_stream_pipe`][bridges.streams.open_byte_stream_pipe]."""

    def __init__(self, handoff: Handoff[bytes]) -> None:
        self._h = handoff
        self._rest = memoryview(b"")
        self._closed = False
        self._busy = False

    async def receive(self, max_bytes: int = 65536) -> bytes:
        """At most ``max_bytes`` bytes, waiting for some; a cancelled wait takes nothing.

        :raises anyio.EndOfStream: the sender closed and everything was received
        :raises anyio.ClosedResourceError: this end was closed
        :raises anyio.BusyResourceError: another task is already receiving
        :raises Exception: the error the stream was failed with (once, after the bytes before it)
        """
        if max_bytes < 1:
            raise ValueError("max_bytes must be >= 1")
        if self._closed:
            raise anyio.ClosedResourceError("this receive stream was closed")
        if self._busy:
            raise anyio.BusyResourceError("receiving")
        self._busy = True
        try:
            rest = self._rest
            if not rest:
                await checkpoint()
                try:
                    piece = await self._h.get()
                except StopAsyncIteration:
                    raise anyio.EndOfStream from None
                if len(piece) <= max_bytes:
                    return piece
                rest = memoryview(piece)
            else:
                await checkpoint()
            out = bytes(rest[:max_bytes])
            self._rest = rest[max_bytes:]
            return out
        finally:
            self._busy = False

    async def aclose(self) -> None:
        """Close this end (idempotent): buffered bytes are dropped, senders get
        ``anyio.BrokenResourceError``."""
        self._close()

    def _close(self) -> None:
        self._closed = True
        self._rest = memoryview(b"")
        self._h.leave()


def open_byte_stream_pipe(
    limit: int = _DEFAULT_LIMIT,
) -> tuple[anyio.abc.ByteSendStream, anyio.abc.ByteReceiveStream]:
    """An in-memory pair of anyio byte streams with real backpressure, on any backend.

    ``send, receive = streams.open_byte_stream_pipe()``: what is sent is
    received, in order.  ``send()`` waits while the pipe is full, so at most
    about ``2 * limit`` bytes are held (one piece of up to ``limit`` bytes
    waiting, and what is left of the piece being received).  Closing the
    send end ends the stream (``EndOfStream`` after the bytes sent); closing
    the receive end drops what is held and makes every send, even a waiting
    one, raise ``anyio.BrokenResourceError``.

    :param limit: the largest piece in flight, in bytes
    :raises TypeError: ``limit`` is not an int
    :raises ValueError: ``limit < 1``
    """
    size = _check_positive("limit", limit)
    handoff: Handoff[bytes] = Handoff(1)
    return _PipeSendStream(handoff, size), _PipeReceiveStream(handoff)


# ------------------------------------------------------------ anyio: writing


class _SendSink(PushSink[object]):
    """An anyio ``ByteSendStream`` as a sink of the pump: the next chunk is pulled only after
    the previous ``send()`` returned.  ``total`` counts the bytes sent."""

    __slots__ = ("_chunk", "stream", "total")

    def __init__(self, stream: anyio.abc.ByteSendStream) -> None:
        self.stream = stream
        self.total = 0
        self._chunk = b""

    def put_nowait(self, item: object) -> Result:
        chunk = _chunk("byte_stream_write", item)
        if not _nbytes(chunk):
            return TAKEN
        self._chunk = chunk if isinstance(chunk, bytes) else bytes(chunk)
        return FULL  # sent by put()

    async def put(self, item: object) -> Result:
        chunk, self._chunk = self._chunk, b""
        await self.stream.send(chunk)
        self.total += len(chunk)
        return TAKEN


async def byte_stream_write(stream: anyio.abc.ByteSendStream, source: AsyncIterable[Bytes]) -> int:
    """Send every chunk of ``source`` to an anyio ``ByteSendStream``; any backend.

    The next chunk is pulled only after the previous ``send()`` returned, so
    the stream's own flow control paces the source.  The stream is neither
    closed nor sent EOF: it is the caller's.  The source is closed on every
    exit; cancellation closes it (shielded, so a cleanup that awaits runs to
    its end) and propagates; an error from ``send()``
    (``anyio.BrokenResourceError`` when the peer went away ...) closes the
    source and is raised; a source error is raised as itself.

    :returns: the number of bytes sent
    :raises TypeError: ``stream`` is not an anyio ``ByteSendStream``, ``source``
        is not an async iterable, or it yields something other than bytes
    """
    _check_kind(
        "byte_stream_write",
        stream,
        anyio.abc.ByteSendStream,
        "sends to an anyio ByteSendStream",
        (asyncio.StreamWriter, "for an asyncio StreamWriter use streams.write()"),
    )
    _check_source("byte_stream_write", source)
    sink = _SendSink(stream)
    (await drive(source.__aiter__(), sink, paced=False)).raise_error()
    return sink.total


# ---------------------------------------------------- anyio: a fed byte stream


class _ByteStreamFromAiter(_Fed[anyio.abc.ByteReceiveStream]):
    _name = "byte_stream_from_aiter"
    what = "streams.byte_stream_from_aiter()"
    usage = "async with streams.byte_stream_from_aiter(source) as stream: ..."
    handed_out = frozenset(n for n in dir(anyio.abc.ByteReceiveStream) if not n.startswith("_"))

    def _open(self) -> anyio.abc.ByteReceiveStream:
        handoff: Handoff[bytes] = Handoff(1)
        self._send = _PipeSendStream(handoff, self._limit)
        self._receive = _PipeReceiveStream(handoff)
        return self._receive

    def _sink(self) -> _SendSink:
        return _SendSink(self._send)

    async def _end(self) -> None:
        await self._send.aclose()

    def _fail(self, exc: Exception) -> None:
        self._send._fail(exc)  # nobody to tell if the consumer closed its end: a no-op then

    def _close(self) -> None:
        self._receive._close()


def byte_stream_from_aiter(
    source: AsyncIterable[Bytes], *, limit: int = _DEFAULT_LIMIT
) -> AbstractAsyncContextManager[anyio.abc.ByteReceiveStream]:
    """An anyio ``ByteReceiveStream`` fed from an async iterable of bytes; any backend.

    ``async with streams.byte_stream_from_aiter(source) as stream:`` gives a
    stream for code that takes one (``BufferedByteReceiveStream``, protocol
    libraries).  A pump task owned by the block sends the source's chunks
    through [`open_byte_stream_pipe`][bridges.streams.open_byte_stream_pipe]: it pulls the next
    chunk only once the previous one was taken, so at most about ``2 * limit`` bytes are
    held plus the chunk in hand.

    The source's end is ``anyio.EndOfStream``; a source error is raised by
    ``receive()`` once, after the bytes produced before it.  Closing the
    stream stops the pump and closes the source.  Leaving the block (by any
    means, cancellation included) stops the pump and closes the source
    before it exits; the stream is closed then.  An error raised by the
    source's ``aclose()`` at that point is raised from the block, or logged
    if the block is already raising.

    :param source: an async iterable of bytes-like chunks
    :param limit: the largest piece in flight, in bytes
    :raises TypeError: ``source`` is not an async iterable; (from ``receive``)
        it yielded something other than bytes
    """
    _check_source("byte_stream_from_aiter", source)
    size = _check_positive("limit", limit)
    return _ByteStreamFromAiter(source, size)


# ------------------------------------------------------------ asyncio queues


class _QueueIterator(_Borrowed[T]):
    """Values taken from an ``asyncio.Queue`` until its end; the queue and what it
    holds are left as they are."""

    __slots__ = ("_probe", "_queue", "_sentinel")

    def __init__(self, queue: asyncio.Queue[T], sentinel: object) -> None:
        super().__init__()
        self._queue = queue
        self._sentinel = sentinel
        self._probe = CancelProbe()

    async def __anext__(self) -> T:
        if self._done:
            raise StopAsyncIteration
        # get() returns a ready item without a cancel point: take one first (R19)
        if self._probe.cancelled():
            await cancel_point(self._probe)
        try:
            item = await self._queue.get()
        except Exception as exc:
            if _QueueShutDown is not None and isinstance(exc, _QueueShutDown):
                self._done = True
                raise StopAsyncIteration from None
            raise
        if item is self._sentinel:
            self._done = True
            raise StopAsyncIteration
        return item


def _check_queue(fn: str, queue: object) -> None:
    if isinstance(queue, asyncio.Queue):
        return
    hint = ""
    if type(queue).__module__ == "queue":
        hint = " (a thread queue.Queue blocks the loop; use bridges.open_channel() across threads)"
    raise TypeError(f"streams.{fn}() takes an asyncio.Queue, not {type(queue).__name__}{hint}")


def queue_to_aiter(queue: asyncio.Queue[T], *, sentinel: object = END) -> BridgeIterator[T]:
    """Iterate the values of an ``asyncio.Queue`` until its end.

    The end is ``queue.shutdown()`` (Python 3.13+; the values put before it
    are delivered first) or ``sentinel`` taken from the queue (the default
    `END` is what [`queue_from_aiter`][bridges.streams.queue_from_aiter] puts on older Pythons; give
    both the same ``sentinel=`` to use your own).  The sentinel is consumed:
    with several consumers on Python < 3.13, put one per consumer.

    The queue's ``maxsize`` is the backpressure: producers wait in
    ``put()``.  The iterator does not own the queue: leaving early leaves the
    queue and its values as they are, and ``task_done()`` is not called (call
    it in the loop body if you ``join()`` the queue).  A cancelled
    ``__anext__`` (a timeout) takes nothing, and in a scope that is already
    cancelled ``__anext__`` raises the cancellation without taking, even
    when the queue holds an item (R19).

    :raises TypeError: ``queue`` is not an ``asyncio.Queue``
    :raises RuntimeError: called under trio (use a trio memory channel or
        [`bridges.open_channel`][bridges.open_channel])
    """
    _check_queue("queue_to_aiter", queue)
    _require_asyncio("queue_to_aiter")
    return _QueueIterator(queue, sentinel)


class _QueueSink(PushSink[T]):
    """An ``asyncio.Queue`` as a sink of the pump: ``put()`` waits while it is full.
    ``count`` counts the values put."""

    __slots__ = ("count", "queue")

    def __init__(self, queue: asyncio.Queue[T]) -> None:
        self.queue = queue
        self.count = 0

    def put_nowait(self, item: T) -> Result:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            return FULL
        self.count += 1
        return TAKEN

    async def put(self, item: T) -> Result:
        await self.queue.put(item)
        self.count += 1
        return TAKEN


async def queue_from_aiter(
    source: AsyncIterable[T], queue: asyncio.Queue[T], *, sentinel: object = END
) -> int:
    """Put every value of ``source`` into an ``asyncio.Queue``, then end it.

    Each value is ``await queue.put()``: the queue's ``maxsize`` is the
    backpressure (the next value is pulled only once this one is in;
    ``maxsize=0``, asyncio's unbounded queue, gives none).  When the source
    ends the queue is ended: ``queue.shutdown()`` on Python 3.13+, else
    ``sentinel`` is put after the last value (`END` by default; give
    [`queue_to_aiter`][bridges.streams.queue_to_aiter] the same one).

    A source error propagates from here (a queue cannot carry it) and the
    queue is not ended: run the consumer in the same task group so that the
    error cancels it.  The source is closed on every exit; cancellation
    closes it and propagates.  A queue shut down by someone else makes
    ``put()`` raise ``asyncio.QueueShutDown``, which closes the source and
    propagates.

    :returns: the number of values put
    :raises TypeError: ``source`` is not an async iterable or ``queue`` not an
        ``asyncio.Queue``
    :raises RuntimeError: called under trio (use a trio memory channel or
        [`bridges.open_channel`][bridges.open_channel])
    """
    _check_source("queue_from_aiter", source, "an async iterable")
    _check_queue("queue_from_aiter", queue)
    _require_asyncio("queue_from_aiter")
    sink = _QueueSink(queue)
    (await drive(source.__aiter__(), sink, paced=False)).raise_error()
    shutdown = getattr(queue, "shutdown", None)
    if shutdown is not None:
        shutdown()
    else:
        await queue.put(sentinel)  # type: ignore[arg-type]
    return sink.count
