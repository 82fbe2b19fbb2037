"""bridges.streams: asyncio streams and queues, anyio byte streams.

Values travel as records: ``b"%d\\n" % value``.  The asyncio forms run on
asyncio and uvloop; the anyio byte-stream forms on every backend.

The push forms (``to_aiter``, ``byte_stream_to_aiter``, ``queue_to_aiter``)
read a stream or queue that exists already and is filled by its own
producer: they start nothing, own nothing and release nothing, so the
rules about starting and releasing a source do not apply to them (what they
do promise instead, that leaving early leaves the stream or queue readable
and that a timeout consumes nothing, is tested in tests/test_streams.py).
Their producer here is a plain thread that goes through the event loop
(``anyio.from_thread.run``) and so feels the stream's real backpressure.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
import anyio.abc
import anyio.from_thread
import anyio.lowlevel
from anyio.streams.buffered import BufferedByteReceiveStream

from bridges import streams, testing
from bridges.testing import Outcome, Plan, Probe, Script, ScriptedProducer

from ..harness_kit import IntValues, note_consumer_error, note_error

if sys.version_info < (3, 11):  # pragma: no cover
    pass  # type: ignore[import-not-found,unused-ignore]

ASYNCIO = frozenset({"asyncio", "uvloop"})
#: what get() raises on a queue that was shut down (Python 3.13+)
_QUEUE_SHUT_DOWN: type[Exception] = getattr(
    asyncio, "QueueShutDown", type("_Never", (Exception,), {})
)


class _Records:
    """An async iterator of records over an int source; ``aclose()`` closes the source.

    A plain class (not an async generator) so that only the adapter's own
    ``aclose()`` reaches the source.
    """

    def __init__(self, source: AsyncIterable[int]) -> None:
        self._source = source
        self._it: AsyncIterator[int] | None = None

    def __aiter__(self) -> _Records:
        return self

    async def __anext__(self) -> bytes:
        if self._it is None:
            self._it = self._source.__aiter__()
        return b"%d\n" % await self._it.__anext__()

    async def aclose(self) -> None:
        it = self._it if self._it is not None else self._source
        aclose = getattr(it, "aclose", None)
        if aclose is not None:
            await aclose()


def _records(source: Any) -> Any:
    """Records over ``source``, or ``source`` itself when it is not iterable (R15)."""
    return _Records(source) if hasattr(source, "__aiter__") else source


async def _consume(
    plan: Plan, outcome: Outcome, receive: Callable[[], Awaitable[bytes | None]]
) -> bool:
    """Receive records following ``plan``; ``receive()`` returns None at the end.

    Returns True when the end was received, False when the plan left early.
    """
    while plan.take is None or len(outcome.values) < plan.take:
        if plan.fail_after is not None and len(outcome.values) >= plan.fail_after:
            raise testing.ConsumerError
        record = await receive()
        if record is None:
            return True
        value = int(record)
        outcome.values.append(value)
        plan.seen(value)
        for _ in range(plan.slow):
            await anyio.lowlevel.checkpoint()
    return False


def _write_errors(
    outcome: Outcome,
    errors: list[BaseException],
    hung_up: bool,
    hang_up: tuple[type[BaseException], ...],
) -> None:
    """Report what the writing side raised: every error but the hang-up the consumer caused.

    A consumer that leaves hangs up (as a peer would), and the write then
    stops with that connection error, as documented.  Any other error, the
    source's or one the writer should not have raised, reaches the outcome
    (beside a consumer's own error, it is raised: the check fails on it).
    """
    for exc in errors:
        if hung_up and isinstance(exc, hang_up) and not isinstance(exc, testing.SourceError):
            continue
        if outcome.error is not None:
            if isinstance(exc, testing.SourceError):
                # the source failed on its own while the consumer was failing: both
                # happened, the consumer's error is the outcome (as for every adapter)
                continue
            raise exc
        note_error(outcome, exc)


def _lines(reader: asyncio.StreamReader) -> Callable[[], Awaitable[bytes | None]]:
    """Records read from ``reader`` (None at the end)."""

    async def receive() -> bytes | None:
        try:
            return (await reader.readuntil(b"\n"))[:-1]
        except asyncio.IncompleteReadError:
            return None

    return receive


def _pieces(buffered: BufferedByteReceiveStream) -> Callable[[], Awaitable[bytes | None]]:
    """Records read from a byte stream (None at the end)."""

    async def receive() -> bytes | None:
        try:
            return await buffered.receive_until(b"\n", 64)
        except anyio.IncompleteRead:
            return None

    return receive


async def _drive_writer(
    source: AsyncIterable[int],
    plan: Plan,
    write: Callable[[Any], Awaitable[object]],
    close_writer: Callable[[], Awaitable[object]],
    receive: Callable[[], Awaitable[bytes | None]],
    hang_up: Callable[[], Awaitable[object]],
    hang_up_errors: tuple[type[BaseException], ...],
) -> Outcome:
    """A writer task runs ``write(records)``, then ``close_writer()``; the consumer
    ``receive()``s records following ``plan``, then ``hang_up()``s, as a peer would."""
    outcome = Outcome()
    write_error: list[BaseException] = []

    async def produce() -> None:
        try:
            await write(_records(source))
        except Exception as exc:
            write_error.append(exc)
        finally:
            await close_writer()

    ended = False
    try:
        async with anyio.create_task_group() as tg:
            try:
                if not hasattr(source, "__aiter__"):  # R15: raises at once, in this task
                    await write(source)
                tg.start_soon(produce)
                ended = await _consume(plan, outcome, receive)
            finally:
                await hang_up()  # the consumer is done
    except BaseException as group:
        note_consumer_error(outcome, group)
    _write_errors(outcome, write_error, not ended, hang_up_errors)
    return outcome


def _thread_producer(
    script: Script,
    probe: Probe,
    send: Callable[[bytes], Awaitable[object]],
    close: Callable[[], Awaitable[object]],
    fail: Callable[[BaseException], Awaitable[object]],
) -> ScriptedProducer:
    """A producer thread that goes through the loop: each send feels the backpressure."""
    token = anyio.lowlevel.current_token()

    def on_loop(fn: Callable[..., Any], *args: Any) -> object:
        return anyio.from_thread.run(fn, *args, token=token)

    def finish(fn: Callable[..., Any], *args: Any) -> None:
        on_loop(fn, *args)
        probe.release()  # the producer ended its stream: the source is done

    probe.start()
    return ScriptedProducer(
        script,
        probe,
        send=lambda v: on_loop(send, b"%d\n" % v),
        close=lambda: finish(close),
        fail=lambda exc: finish(fail, exc),
    )


_PUSH_NA = {
    "R1": "starts nothing: the stream is filled by its own producer whether it is iterated "
    "or not; nothing is read before the first __anext__ (tests/test_streams.py)",
    "R3": "holds nothing of its own: the stream's own buffer is the bound (a StreamReader's "
    "limit, a queue's maxsize), so there is no buffer= or stats to check",
    "R6": "owns nothing to release: leaving early leaves the stream readable with the next "
    "record still in it, and a timeout around one __anext__ consumes nothing "
    "(tests/test_streams.py)",
    "R7": "the stream is fed on the loop thread only; no producer calls into the adapter",
    "R8": "no producer runs inside the adapter: the stream's producer waits on the stream's "
    "own flow control (pause_reading, a full queue)",
    "R9": "no overflow policies: a byte stream or a queue never drops",
    "R14": "starts no task and no thread (the producer here is the harness's own)",
    "R16": "the producer end is the stream's own writer (or queue): its close semantics "
    "are asyncio's, not the adapter's",
    "R17": "the producer end is the stream's own writer (or queue), not the adapter's",
    "R20": "the adapter adds no waiting of its own: concurrent reads are the stream's "
    "(a StreamReader refuses them; an asyncio.Queue serves its getters in order)",
    "R18": "takes no hooks: the stream's flow control is its own (a StreamReader calls its "
    "transport's pause_reading, a queue makes put() wait)",
}


# ---------------------------------------------------------------- push forms


def _bad_reader_args(kwargs: dict[str, Any]) -> dict[str, Any]:
    """R15 for a reader adapter, which has no buffer/overflow: a bad ``buffer``
    becomes a bad ``chunk_size``, a bad ``overflow`` an empty ``separator``."""
    bad: dict[str, tuple[str, Any]] = {
        "buffer": ("chunk_size", kwargs.get("buffer")),
        "overflow": ("separator", b""),
    }
    name, value = bad[next(iter(kwargs))]
    return {name: value}


class ToAiterHarness(testing.PushHarness):
    """streams.to_aiter over open_pipe(), fed by a thread through write() + drain()."""

    name = "streams.to_aiter"
    backends = ASYNCIO
    claims = testing.claim_push(na=_PUSH_NA)

    def open(
        self, script: Script, probe: Probe, *, buffer: int | None, overflow: str
    ) -> AsyncIterator[int]:
        reader, writer = streams.open_pipe(limit=max(buffer or 1, 1))

        async def send(record: bytes) -> None:
            writer.write(record)
            await writer.drain()

        async def close() -> None:
            writer.close()

        async def fail(exc: BaseException) -> None:
            # a transport's error pre-empts the bytes its reader still holds (the
            # StreamReader's own rule): fail the pipe the way from_aiter() does, once
            # the reader has taken the bytes written before the error
            assert isinstance(exc, Exception)
            writer.transport._fail_after_data(exc)  # type: ignore[attr-defined]
            writer.close()

        _thread_producer(script, probe, send, close, fail).start()
        return _as_ints(streams.to_aiter(reader, separator=b"\n"))

    def open_bad(self, **kwargs: Any) -> object:
        reader, writer = streams.open_pipe()
        writer.close()
        return streams.to_aiter(reader, **_bad_reader_args(kwargs))


class ByteStreamToAiterHarness(testing.PushHarness):
    """streams.byte_stream_to_aiter over open_byte_stream_pipe(), fed by a thread."""

    name = "streams.byte_stream_to_aiter"
    claims = testing.claim_push(na=_PUSH_NA)

    def open(
        self, script: Script, probe: Probe, *, buffer: int | None, overflow: str
    ) -> AsyncIterator[int]:
        send_stream, receive_stream = streams.open_byte_stream_pipe(limit=max(buffer or 1, 1))
        fail_pipe = getattr(send_stream, "_fail")  # noqa: B009 - the pipe's in-band error

        async def fail(exc: BaseException) -> None:
            fail_pipe(exc)

        _thread_producer(script, probe, send_stream.send, send_stream.aclose, fail).start()
        return _as_ints(streams.byte_stream_to_aiter(receive_stream, separator=b"\n"))

    def open_bad(self, **kwargs: Any) -> object:
        _, receive_stream = streams.open_byte_stream_pipe()
        return streams.byte_stream_to_aiter(receive_stream, **_bad_reader_args(kwargs))


class QueueToAiterHarness(testing.PushHarness):
    """streams.queue_to_aiter over an asyncio.Queue(maxsize=buffer), fed by a thread."""

    name = "streams.queue_to_aiter"
    backends = ASYNCIO
    claims = testing.claim_push(
        na={
            **_PUSH_NA,
            "R5": "a queue cannot carry an error: the source's error is raised by "
            "queue_from_aiter (harness streams.queue_from_aiter, R12)",
            "R15": "takes no buffer/overflow (the queue's maxsize is its buffer); a wrong "
            "type (not an asyncio.Queue) raises TypeError: tests/test_streams.py",
        }
    )

    def open(
        self, script: Script, probe: Probe, *, buffer: int | None, overflow: str
    ) -> AsyncIterator[int]:
        queue: asyncio.Queue[bytes] = asyncio.Queue(buffer or 0)

        async def close() -> None:
            await queue.put(streams.END)  # type: ignore[arg-type]

        async def fail(exc: BaseException) -> None:
            raise AssertionError("R5 is not claimed")

        _thread_producer(script, probe, queue.put, close, fail).start()
        return _as_ints(streams.queue_to_aiter(queue))


def _as_ints(it: Any) -> AsyncIterator[int]:
    """The adapter's iterator, records parsed to ints."""
    return IntValues(it)


# ---------------------------------------------------------------- pull forms


class _StreamPullHarness(testing.PullHarness):
    """What every stream-feeding harness claims; ``drive_reader`` for those read by the consumer."""

    claims = testing.claim_pull(
        na={"R13": "a stream is fed once: there is no subscription to repeat"}
    )

    async def drive_reader(
        self,
        opened: AbstractAsyncContextManager[Any],
        receiver: Callable[[Any], Callable[[], Awaitable[bytes | None]]],
        plan: Plan,
    ) -> Outcome:
        """Enter ``opened``; receive records with ``receiver(what it gave)``, following ``plan``."""
        outcome = Outcome()
        try:
            async with opened as stream:
                await _consume(plan, outcome, receiver(stream))
        except (testing.SourceError, testing.ConsumerError) as exc:
            note_error(outcome, exc)
        return outcome


class FromAiterHarness(_StreamPullHarness):
    """streams.from_aiter: a StreamReader fed by a feeder task, read with readuntil()."""

    name = "streams.from_aiter"
    backends = ASYNCIO
    #: limit=4 (a record is up to 4 bytes): the reader pauses its transport
    #: above 8 bytes, so up to 4 two-byte records wait in it, plus the one in hand
    in_flight = 5

    async def drive(self, source: AsyncIterable[int], plan: Plan) -> Outcome:
        return await self.drive_reader(streams.from_aiter(_records(source), limit=4), _lines, plan)


class WriteHarness(_StreamPullHarness):
    """streams.write into open_pipe(); the consumer reads the pipe's reader.

    The consumer stopping (early, or with its own error) closes the
    connection, as a peer would: the pending drain() fails and write() stops.
    """

    name = "streams.write"
    backends = ASYNCIO
    #: open_pipe(limit=4) (a record is up to 4 bytes): drain() waits once the
    #: reader holds more than 8 bytes: up to 4 two-byte records, plus the one in hand
    in_flight = 5

    async def drive(self, source: AsyncIterable[int], plan: Plan) -> Outcome:
        reader, writer = streams.open_pipe(limit=4)

        async def close_writer() -> None:
            writer.close()

        async def hang_up() -> None:
            writer.transport.abort()

        return await _drive_writer(
            source,
            plan,
            lambda records: streams.write(writer, records),
            close_writer,
            _lines(reader),
            hang_up,
            (ConnectionError,),
        )


class QueueFromAiterHarness(_StreamPullHarness):
    """streams.queue_from_aiter into an asyncio.Queue(maxsize=1), read with get()."""

    name = "streams.queue_from_aiter"
    backends = ASYNCIO
    #: maxsize=1: one value in the queue and one pulled, waiting in put()
    in_flight = 2

    async def drive(self, source: AsyncIterable[int], plan: Plan) -> Outcome:
        outcome = Outcome()
        queue: asyncio.Queue[int] = asyncio.Queue(1)
        failed: list[BaseException] = []

        async def produce() -> None:
            try:
                await streams.queue_from_aiter(source, queue)
            except testing.SourceError as exc:
                # the error comes out here; the caller ends the consumer after what was put
                failed.append(exc)
                await queue.put(streams.END)  # type: ignore[arg-type]

        async def receive() -> bytes | None:
            try:
                value = await queue.get()
            except _QUEUE_SHUT_DOWN:  # the end on Python 3.13+
                return None
            return None if value is streams.END else b"%d" % value  # type: ignore[comparison-overlap]

        try:
            async with anyio.create_task_group() as tg:
                if not hasattr(source, "__aiter__"):  # R15: raises at once, in this task
                    await streams.queue_from_aiter(source, queue)
                tg.start_soon(produce)
                await _consume(plan, outcome, receive)
                tg.cancel_scope.cancel()  # the consumer is done: stop the producer
        except BaseException as group:
            note_consumer_error(outcome, group)
        for exc in failed:
            note_error(outcome, exc)
        return outcome


class ByteStreamFromAiterHarness(_StreamPullHarness):
    """streams.byte_stream_from_aiter, read with anyio's BufferedByteReceiveStream."""

    name = "streams.byte_stream_from_aiter"
    #: limit=2: the next record is pulled once the last piece of the one before
    #: is in the pipe (one piece of at most 2 bytes): that record, plus the one in hand
    in_flight = 2

    async def drive(self, source: AsyncIterable[int], plan: Plan) -> Outcome:
        return await self.drive_reader(
            streams.byte_stream_from_aiter(_records(source), limit=2),
            lambda stream: _pieces(BufferedByteReceiveStream(stream)),
            plan,
        )


class ByteStreamWriteHarness(_StreamPullHarness):
    """streams.byte_stream_write into open_byte_stream_pipe(); the consumer closes its end."""

    name = "streams.byte_stream_write"
    #: limit=2: the next record is pulled once send() of the one before returned,
    #: i.e. its last piece is in the pipe: that record, plus the one in hand
    in_flight = 2

    async def drive(self, source: AsyncIterable[int], plan: Plan) -> Outcome:
        send_stream, receive_stream = streams.open_byte_stream_pipe(limit=2)
        return await _drive_writer(
            source,
            plan,
            lambda records: streams.byte_stream_write(send_stream, records),
            send_stream.aclose,
            _pieces(BufferedByteReceiveStream(receive_stream)),
            receive_stream.aclose,
            (anyio.BrokenResourceError, anyio.ClosedResourceError),
        )


HARNESSES: list[testing.PushHarness | testing.PullHarness] = [
    ToAiterHarness(),
    ByteStreamToAiterHarness(),
    QueueToAiterHarness(),
    FromAiterHarness(),
    WriteHarness(),
    QueueFromAiterHarness(),
    ByteStreamFromAiterHarness(),
    ByteStreamWriteHarness(),
]
