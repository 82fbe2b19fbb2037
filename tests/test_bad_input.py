"""Bad input, table-driven: every public callable, attacked (R15).

Each row calls one public function, constructor or method the wrong way: a
wrong type, a wrong value, a closed or consumed source, a one-shot iterator
used twice, a call from the wrong kind of thread (a blocking call on an
event-loop thread, an ``await`` API stepped by hand where no loop runs), or
the wrong backend.  It must raise the documented exception, whose message
names the fix (the row's keyword must appear in it), and it must do so
within a bounded time: every row runs in a thread of its own, in a fresh
event loop of the backend under test (or in no loop at all), inside
``anyio.move_on_after``, and that thread is joined with a timeout, so that a
hang, even a synchronous one, fails the row instead of the run.

``test_every_public_callable_has_a_row`` keeps the table complete: a new
public function without a row fails it.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import pkgutil
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc
import anyio.from_thread
import pytest
import reactivex
from nats.js import JetStreamContext

import bridges
from bridges import callbacks, channels, nats, ops, redis, rx, streams, testing, threads

#: every public module (a new one is covered by the completeness test too)
PUBLIC_MODULES = (
    "bridges",
    *sorted(
        f"bridges.{m.name}" for m in pkgutil.iter_modules(bridges.__path__) if m.name[0] != "_"
    ),
)

#: a row must raise within this many seconds (in its loop) ...
LIMIT = 2.0
#: ... and its thread must be done within this many (a synchronous hang)
JOIN = 5.0

#: uvloop differs from asyncio in its loop only: it runs the asyncio-specific rows (ASYNCIO)
LOOP_BACKENDS = ("asyncio", "trio")
ASYNCIO = ("asyncio", "uvloop")
TRIO = ("trio",)
#: run in a plain thread that runs no event loop
NO_LOOP = ("no-loop",)


@dataclass(frozen=True)
class Row:
    """One attack: ``call()`` (sync, or returning an awaitable) must raise ``raises``."""

    #: the public name exercised: ``module.name`` or ``module.Class.method``
    target: str
    #: what is wrong, in a few words (the test id)
    case: str
    call: Callable[[], object]
    raises: type[BaseException] | tuple[type[BaseException], ...]
    #: a word of the message that names the fix (case-insensitive); None for the
    #: bare end-of-stream / would-block signals, which carry no message
    keyword: str | None
    backends: tuple[str, ...] = LOOP_BACKENDS
    #: a known bug in a module this test may not change: the row must fail (strict)
    xfail: str | None = None


# ----------------------------------------------------------------- sources and helpers


async def _agen(n: int = 3) -> AsyncIterator[int]:
    for i in range(n):
        yield i


async def _agen_bytes() -> AsyncIterator[bytes]:
    yield b"x"


async def _agen_fields() -> AsyncIterator[dict[str, str]]:
    yield {"a": "x"}


async def _agen_text() -> AsyncIterator[str]:
    yield "text"


class _Reiterable:
    def __aiter__(self) -> AsyncIterator[int]:
        return _agen()


class _Harness(testing.PushHarness):
    name = "bad-input"
    claims = testing.claim_push(na={"R8": "a test stand-in"})

    def open(
        self, script: testing.Script, probe: testing.Probe, *, buffer: int | None, overflow: str
    ) -> AsyncIterator[int]:
        return bridges.iterate(_agen())


def _step(coro: Any) -> None:
    """Drive a coroutine by hand, as sync code that forgot there is no loop would."""
    try:
        coro.send(None)
    except StopIteration:
        return
    finally:
        coro.close()


def _stream_reader() -> asyncio.StreamReader:
    # an object that is a StreamReader without a loop to bind to (for the trio rows)
    return asyncio.StreamReader.__new__(asyncio.StreamReader)


class _Writer(asyncio.StreamWriter):
    """A StreamWriter with nothing behind it (for rows that must fail before using one)."""

    def __init__(self) -> None:
        pass

    def __del__(self) -> None:
        pass


def _stream_writer() -> asyncio.StreamWriter:
    return _Writer()


# ----------------------------------------------------------------- bridges (the core)


async def _send_after_close() -> None:
    send, receive = bridges.open_channel[int](4)
    async with receive:
        send.close()
        await send.send(1)


async def _send_after_receiver_left() -> None:
    send, receive = bridges.open_channel[int](4)
    await receive.aclose()
    with send:
        await send.send(1)


async def _send_after_a_clone_failed() -> None:
    send, receive = bridges.open_channel[int](4)
    async with receive:
        other = send.clone()
        send.fail(ValueError("boom"))
        with other:
            await other.send(1)


async def _send_blocking_after_receiver_left() -> None:
    send, receive = bridges.open_channel[int](0)
    await receive.aclose()
    await anyio.to_thread.run_sync(send.send_blocking, 1)


async def _send_blocking_timeout() -> None:
    send, receive = bridges.open_channel[int](1)
    async with receive:
        await send.send(1)
        await anyio.to_thread.run_sync(lambda: send.send_blocking(2, timeout=0.01))


async def _send_blocking_bad_timeout(seconds: object) -> None:
    send, receive = bridges.open_channel[int](1)
    async with receive:
        await anyio.to_thread.run_sync(lambda: send.send_blocking(1, timeout=seconds))  # type: ignore[arg-type]


async def _send_blocking_no_time_limit() -> None:
    # timeout=inf is no limit: it waits (for the receiver to leave), it does not overflow
    send, receive = bridges.open_channel[int](1)
    await send.send(1)
    outcome: list[BaseException] = []

    def blocked_send() -> None:
        try:
            send.send_blocking(2, timeout=float("inf"))
        except Exception as exc:
            outcome.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(anyio.to_thread.run_sync, blocked_send)
        while not send._h._putters and not outcome:  # until the thread is parked
            await anyio.sleep(0.001)
        await receive.aclose()
    raise outcome[0]


async def _send_blocking_on_loop() -> None:
    send, receive = bridges.open_channel[int](4)
    async with receive:
        send.send_blocking(1)


async def _send_nowait_full() -> None:
    send, receive = bridges.open_channel[int](1)
    async with receive:
        send.send_nowait(1)
        send.send_nowait(2)


async def _send_overflow_error() -> None:
    send, receive = bridges.open_channel[int](1, "error")
    async with receive:
        await send.send(1)
        await send.send(2)


async def _fail_with_non_exception() -> None:
    send, receive = bridges.open_channel[int](1)
    async with receive:
        send.fail("boom")  # type: ignore[arg-type]


async def _clone_closed() -> None:
    send, receive = bridges.open_channel[int](1)
    async with receive:
        send.close()
        send.clone()


async def _receive_after_close() -> None:
    send, receive = bridges.open_channel[int](1)
    with send:
        await receive.aclose()
        await receive.receive()


async def _receive_after_end() -> None:
    send, receive = bridges.open_channel[int](1)
    async with receive:
        send.close()
        await receive.receive()


async def _receive_nowait_empty() -> None:
    send, receive = bridges.open_channel[int](1)
    with send:
        async with receive:
            receive.receive_nowait()


def _send_without_loop() -> None:
    send, receive = bridges.open_channel[int](0)
    try:
        _step(send.send(1))  # it must wait: there is no loop to wait in
    finally:
        send.close()
        _step(receive.aclose())


def _receive_without_loop() -> None:
    send, receive = bridges.open_channel[int](1)
    try:
        _step(receive.receive())
    finally:
        send.close()
        _step(receive.aclose())


async def _iterator_after_aclose() -> None:
    it = callbacks.to_aiter(lambda emit: None)
    async with it:
        pass
    await it.__anext__()


async def _iterator_after_source_error() -> None:
    def subscribe(emit: callbacks.Emitter[int]) -> None:
        emit.error(ValueError("boom"))

    it = callbacks.to_aiter(subscribe)
    with pytest.raises(ValueError, match="boom"):
        await it.__anext__()
    await it.__anext__()  # once: then the end


async def _bridge_helper(make: Callable[[bridges.BridgeIterator[int]], Any]) -> None:
    it = bridges.iterate(_agen())
    async with it:
        result = make(it)
        if inspect.isawaitable(result):
            await result


async def _reduce_empty() -> None:
    await bridges.iterate(_agen(0)).reduce(lambda a, b: a + b)


async def _reduce_two_initial() -> None:
    async with bridges.iterate(_agen()) as it:
        await it.reduce(lambda a, b: a + b, 0, 1)


async def _flat_map_returns_text() -> None:
    async with bridges.iterate(_agen()).flat_map(lambda v: "text") as it:
        await it.__anext__()


async def _op_entered_twice() -> None:
    it = bridges.iterate(_agen()).map(lambda v: v)
    async with it, it:
        pass


ROWS: list[Row] = [
    Row("bridges.open_channel", "buffer=-1", lambda: bridges.open_channel(-1), ValueError, ">= 0"),
    Row("bridges.open_channel", "buffer='x'", lambda: bridges.open_channel("x"), TypeError, "int"),  # type: ignore[arg-type]
    Row("bridges.open_channel", "buffer=1.5", lambda: bridges.open_channel(1.5), TypeError, "int"),  # type: ignore[arg-type]
    Row(
        "bridges.open_channel", "buffer=True", lambda: bridges.open_channel(True), TypeError, "int"
    ),
    Row(
        "bridges.open_channel",
        "overflow='nope'",
        lambda: bridges.open_channel(4, "nope"),
        ValueError,
        "drop_oldest",
    ),
    Row(
        "bridges.open_channel",
        "overflow=3",
        lambda: bridges.open_channel(4, 3),  # type: ignore[arg-type]
        TypeError,
        "Overflow",
    ),
    Row(
        "bridges.open_channel",
        "buffer=0-drop_oldest",
        lambda: bridges.open_channel(0, "drop_oldest"),
        ValueError,
        "buffer=1",
    ),
    Row(
        "bridges.Overflow",
        "parse('nope')",
        lambda: bridges.Overflow.parse("nope"),
        ValueError,
        "drop_newest",
    ),
    Row(
        "bridges.Overflow",
        "parse(None)",
        lambda: bridges.Overflow.parse(None),
        TypeError,
        "Overflow",
    ),  # type: ignore[arg-type]
    Row(
        "bridges.ChannelSender.send",
        "after-close",
        _send_after_close,
        anyio.ClosedResourceError,
        "closed",
    ),
    Row(
        "bridges.ChannelSender.send",
        "receiver-left",
        _send_after_receiver_left,
        anyio.BrokenResourceError,
        "receiving end",
    ),
    Row(
        "bridges.ChannelSender.send",
        "a-clone-failed",
        _send_after_a_clone_failed,
        anyio.BrokenResourceError,
        "ended",
    ),
    Row(
        "bridges.ChannelSender.send",
        "overflow=error",
        _send_overflow_error,
        bridges.BufferOverflowError,
        "overflow",
    ),
    Row(
        "bridges.ChannelSender.send",
        "no-loop-sync-path",
        _send_without_loop,
        RuntimeError,
        "blocking form",
        backends=NO_LOOP,
    ),
    Row(
        "bridges.ChannelSender.send_blocking",
        "on-a-loop-thread",
        _send_blocking_on_loop,
        RuntimeError,
        "await sender.send",
    ),
    Row(
        "bridges.ChannelSender.send_blocking",
        "receiver-left",
        _send_blocking_after_receiver_left,
        anyio.BrokenResourceError,
        "receiving end",
    ),
    Row(
        "bridges.ChannelSender.send_blocking",
        "timeout",
        _send_blocking_timeout,
        TimeoutError,
        "consumer",
    ),
    Row(
        "bridges.ChannelSender.send_blocking",
        "timeout='x'",
        lambda: _send_blocking_bad_timeout("x"),
        TypeError,
        "seconds",
    ),
    Row(
        "bridges.ChannelSender.send_blocking",
        "timeout=nan",
        lambda: _send_blocking_bad_timeout(float("nan")),
        ValueError,
        "nan",
    ),
    Row(
        "bridges.ChannelSender.send_blocking",
        "timeout=inf",
        _send_blocking_no_time_limit,
        anyio.BrokenResourceError,
        "receiving end",
    ),
    Row("bridges.ChannelSender.send_nowait", "full", _send_nowait_full, anyio.WouldBlock, None),
    Row(
        "bridges.ChannelSender.fail",
        "not-an-exception",
        _fail_with_non_exception,
        TypeError,
        "exception instance",
    ),
    Row(
        "bridges.ChannelSender.clone", "closed", _clone_closed, anyio.ClosedResourceError, "closed"
    ),
    Row(
        "bridges.ChannelReceiver.receive",
        "after-close",
        _receive_after_close,
        anyio.ClosedResourceError,
        "closed",
    ),
    Row(
        "bridges.ChannelReceiver.receive", "after-end", _receive_after_end, anyio.EndOfStream, None
    ),
    Row(
        "bridges.ChannelReceiver.receive_nowait",
        "empty",
        _receive_nowait_empty,
        anyio.WouldBlock,
        None,
    ),
    Row(
        "bridges.ChannelReceiver.receive",
        "no-loop-sync-path",
        _receive_without_loop,
        RuntimeError,
        "event loop",
        backends=NO_LOOP,
    ),
    Row("bridges.iterate", "int", lambda: bridges.iterate(42), TypeError, "async iterable"),
    Row("bridges.iterate", "text", lambda: bridges.iterate("text"), TypeError, "wrap it in a list"),
    Row("bridges.iterate", "bytes", lambda: bridges.iterate(b"xy"), TypeError, "wrap it in a list"),
    Row(
        "bridges.iterate",
        "an-asyncio-queue-under-trio",
        lambda: bridges.iterate(asyncio.Queue()),
        RuntimeError,
        "open_channel",
        backends=TRIO,
    ),
    Row(
        "bridges.BridgeIterator",
        "abstract",
        lambda: bridges.BridgeIterator(),
        TypeError,
        "abstract",
    ),  # type: ignore[abstract]
    Row(
        "bridges.BufferedIterator", "after-aclose", _iterator_after_aclose, StopAsyncIteration, None
    ),
    Row(
        "bridges.BufferedIterator",
        "after-source-error",
        _iterator_after_source_error,
        StopAsyncIteration,
        None,
    ),
    Row(
        "bridges.BridgeIterator.map",
        "not-callable",
        lambda: _bridge_helper(lambda it: it.map(42)),  # type: ignore[arg-type]
        TypeError,
        "function",
    ),
    Row(
        "bridges.BridgeIterator.filter",
        "not-callable",
        lambda: _bridge_helper(lambda it: it.filter(42)),  # type: ignore[arg-type]
        TypeError,
        "function",
    ),
    Row(
        "bridges.BridgeIterator.flat_map",
        "not-callable",
        lambda: _bridge_helper(lambda it: it.flat_map(42)),  # type: ignore[arg-type]
        TypeError,
        "function",
    ),
    Row(
        "bridges.BridgeIterator.flat_map",
        "returns-text",
        _flat_map_returns_text,
        TypeError,
        "string",
    ),
    Row(
        "bridges.BridgeIterator.take",
        "n=-1",
        lambda: _bridge_helper(lambda it: it.take(-1)),
        ValueError,
        ">= 0",
    ),
    Row(
        "bridges.BridgeIterator.take",
        "n='x'",
        lambda: _bridge_helper(lambda it: it.take("x")),  # type: ignore[arg-type]
        TypeError,
        "int",
    ),
    Row(
        "bridges.BridgeIterator.drop",
        "n=-1",
        lambda: _bridge_helper(lambda it: it.drop(-1)),
        ValueError,
        ">= 0",
    ),
    Row(
        "bridges.BridgeIterator.drop",
        "n=1.5",
        lambda: _bridge_helper(lambda it: it.drop(1.5)),  # type: ignore[arg-type]
        TypeError,
        "int",
    ),
    Row("bridges.BridgeIterator.reduce", "empty-no-initial", _reduce_empty, TypeError, "initial"),
    Row(
        "bridges.BridgeIterator.reduce",
        "two-initial",
        _reduce_two_initial,
        TypeError,
        "at most one",
    ),
    Row(
        "bridges.BridgeIterator.for_each",
        "not-callable",
        lambda: _bridge_helper(lambda it: it.for_each(42)),  # type: ignore[arg-type]
        TypeError,
        "function",
    ),
    Row(
        "bridges.BridgeIterator.map",
        "entered-twice",
        _op_entered_twice,
        RuntimeError,
        "already entered",
    ),
]


# ----------------------------------------------------------------- callbacks


async def _subscribe_returns_int() -> None:
    async with callbacks.to_aiter(lambda emit: 42):  # type: ignore[arg-type,return-value]
        pass


async def _subscribe_raises() -> None:
    def subscribe(emit: callbacks.Emitter[int]) -> None:
        raise LookupError("the API refused: register a handler first")

    async with callbacks.to_aiter(subscribe):
        pass


async def _loop_producer_overflows() -> None:
    def subscribe(emit: callbacks.Emitter[int]) -> None:
        for i in range(10):  # on the loop thread, no pause hooks: R8
            emit.send(i)

    async with callbacks.to_aiter(subscribe, buffer=2) as it:
        async for _ in it:
            pass


async def _emit_error_not_exception() -> None:
    def subscribe(emit: callbacks.Emitter[int]) -> None:
        emit.error("boom")  # type: ignore[arg-type]

    async with callbacks.to_aiter(subscribe):
        pass


async def _emit_send_timeout() -> None:
    emitters: list[callbacks.Emitter[int]] = []
    async with callbacks.to_aiter(emitters.append, buffer=1):
        emit = emitters[0]
        assert emit.send(1)
        await anyio.to_thread.run_sync(lambda: emit.send(2, timeout=0.01))


async def _emit_send_bad_timeout() -> None:
    emitters: list[callbacks.Emitter[int]] = []
    async with callbacks.to_aiter(emitters.append, buffer=1):
        emit = emitters[0]
        await anyio.to_thread.run_sync(lambda: emit.send(1, timeout="x"))  # type: ignore[arg-type]


async def _async_subscribe(emit: callbacks.Emitter[int]) -> None:
    pass


ROWS += [
    Row(
        "bridges.callbacks.to_aiter",
        "subscribe=42",
        lambda: callbacks.to_aiter(42),
        TypeError,
        "subscribe(emit)",
    ),  # type: ignore[arg-type]
    Row(
        "bridges.callbacks.to_aiter",
        "async-subscribe",
        lambda: callbacks.to_aiter(_async_subscribe),  # type: ignore[arg-type]
        TypeError,
        "plain function",
    ),
    Row(
        "bridges.callbacks.to_aiter",
        "buffer=-1",
        lambda: callbacks.to_aiter(lambda e: None, buffer=-1),
        ValueError,
        ">= 0",
    ),
    Row(
        "bridges.callbacks.to_aiter",
        "buffer='x'",
        lambda: callbacks.to_aiter(lambda e: None, buffer="x"),  # type: ignore[arg-type]
        TypeError,
        "int",
    ),
    Row(
        "bridges.callbacks.to_aiter",
        "overflow='nope'",
        lambda: callbacks.to_aiter(lambda e: None, overflow="nope"),
        ValueError,
        "drop_oldest",
    ),
    Row(
        "bridges.callbacks.to_aiter",
        "pause-without-resume",
        lambda: callbacks.to_aiter(lambda e: None, pause=lambda: None),
        ValueError,
        "both",
    ),
    Row(
        "bridges.callbacks.to_aiter",
        "pause=42",
        lambda: callbacks.to_aiter(lambda e: None, pause=42, resume=42),  # type: ignore[arg-type]
        TypeError,
        "callables",
    ),
    Row(
        "bridges.callbacks.to_aiter",
        "hooks-with-drop",
        lambda: callbacks.to_aiter(
            lambda e: None, overflow="drop_oldest", pause=lambda: None, resume=lambda: None
        ),
        ValueError,
        'overflow="block"',
    ),
    Row(
        "bridges.callbacks.to_aiter",
        "hooks-unbounded",
        lambda: callbacks.to_aiter(
            lambda e: None, buffer=None, pause=lambda: None, resume=lambda: None
        ),
        ValueError,
        "bounded",
    ),
    Row(
        "bridges.callbacks.to_aiter",
        "low_water='x'",
        lambda: callbacks.to_aiter(
            lambda e: None,
            pause=lambda: None,
            resume=lambda: None,
            low_water="x",  # type: ignore[arg-type]
        ),
        TypeError,
        "int",
    ),
    Row(
        "bridges.callbacks.to_aiter",
        "low_water>=buffer",
        lambda: callbacks.to_aiter(
            lambda e: None, buffer=4, pause=lambda: None, resume=lambda: None, low_water=4
        ),
        ValueError,
        "below buffer",
    ),
    Row(
        "bridges.callbacks.to_aiter",
        "subscribe-returns-int",
        _subscribe_returns_int,
        TypeError,
        "unsubscribe",
    ),
    Row(
        "bridges.callbacks.to_aiter",
        "subscribe-raises",
        _subscribe_raises,
        LookupError,
        "register a handler",
    ),
    Row(
        "bridges.callbacks.to_aiter",
        "loop-producer-full",
        _loop_producer_overflows,
        bridges.BufferOverflowError,
        "pause",
    ),
    Row(
        "bridges.callbacks.Emitter.error",
        "not-an-exception",
        _emit_error_not_exception,
        TypeError,
        "exception instance",
    ),
    Row("bridges.callbacks.Emitter.send", "timeout", _emit_send_timeout, TimeoutError, "consumer"),
    Row(
        "bridges.callbacks.Emitter.send",
        "timeout='x'",
        _emit_send_bad_timeout,
        TypeError,
        "seconds",
    ),
    Row(
        "bridges.callbacks.from_aiter",
        "source=42",
        lambda: callbacks.from_aiter(42, print),  # type: ignore[arg-type]
        TypeError,
        "async iterable",
    ),
    Row(
        "bridges.callbacks.from_aiter",
        "source=list",
        lambda: callbacks.from_aiter([1, 2], print),  # type: ignore[arg-type]
        TypeError,
        "bridges.threads",
    ),
    Row(
        "bridges.callbacks.from_aiter",
        "on_next=42",
        lambda: callbacks.from_aiter(_Reiterable(), 42),  # type: ignore[arg-type]
        TypeError,
        "callable",
    ),
    Row(
        "bridges.callbacks.from_aiter",
        "on_error=42",
        lambda: callbacks.from_aiter(_Reiterable(), print, on_error=42),  # type: ignore[arg-type]
        TypeError,
        "callable",
    ),
]


# ----------------------------------------------------------------- rx


async def _rx_loop_thread_overflow() -> None:
    async with rx.to_aiter(reactivex.range(100), buffer=2) as it:
        async for _ in it:
            pass


async def _rx_immediate_scheduler_overflow() -> None:
    from reactivex.scheduler import ImmediateScheduler

    obs = reactivex.range(100)
    async with rx.to_aiter(obs, buffer=2, subscribe_on=ImmediateScheduler()) as it:
        async for _ in it:
            pass


async def _rx_one_shot_twice() -> None:
    errors: list[Exception] = []
    async with anyio.create_task_group() as tg:
        obs = rx.from_aiter(_agen(), task_group=tg)
        done = anyio.Event()
        obs.subscribe(on_completed=done.set, on_error=errors.append)
        await done.wait()
        obs.subscribe(on_error=errors.append)
        with anyio.fail_after(LIMIT):
            while not errors:
                await anyio.lowlevel.checkpoint()
    raise errors[0]


def _rx_made_and_subscribed_without_loop() -> None:
    errors: list[Exception] = []
    rx.from_aiter(_Reiterable()).subscribe(on_error=errors.append)
    raise errors[0]


async def _rx_factory_returns_int() -> None:
    errors: list[Exception] = []
    async with anyio.create_task_group() as tg:
        done = anyio.Event()

        def on_error(exc: Exception) -> None:
            errors.append(exc)
            done.set()

        rx.from_aiter(lambda: 42, task_group=tg).subscribe(on_error=on_error)  # type: ignore[arg-type,return-value]
        await done.wait()
    raise errors[0]


async def _rx_task_group_not_active() -> None:
    errors: list[Exception] = []
    tg = anyio.create_task_group()  # made, never entered
    rx.from_aiter(_Reiterable(), task_group=tg).subscribe(on_error=errors.append)
    raise errors[0]


async def _trio_scheduler_on_asyncio() -> None:
    async with rx.open_trio_scheduler():
        pass


ROWS += [
    Row("bridges.rx.to_aiter", "observable=42", lambda: rx.to_aiter(42), TypeError, "Observable"),  # type: ignore[arg-type]
    Row(
        "bridges.rx.to_aiter",
        "async-iterable",
        lambda: rx.to_aiter(_agen()),  # type: ignore[arg-type]
        TypeError,
        "bridges.iterate",
    ),
    Row(
        "bridges.rx.to_aiter",
        "buffer=-1",
        lambda: rx.to_aiter(reactivex.of(1), buffer=-1),
        ValueError,
        ">= 0",
    ),
    Row(
        "bridges.rx.to_aiter",
        "buffer='x'",
        lambda: rx.to_aiter(reactivex.of(1), buffer="x"),  # type: ignore[arg-type]
        TypeError,
        "int",
    ),
    Row(
        "bridges.rx.to_aiter",
        "overflow='nope'",
        lambda: rx.to_aiter(reactivex.of(1), overflow="nope"),
        ValueError,
        "drop_oldest",
    ),
    Row(
        "bridges.rx.to_aiter",
        "subscribe_on=42",
        lambda: rx.to_aiter(reactivex.of(1), subscribe_on=42),  # type: ignore[arg-type]
        TypeError,
        "ThreadPoolScheduler",
    ),
    Row(
        "bridges.rx.to_aiter",
        "loop-thread-full",
        _rx_loop_thread_overflow,
        bridges.BufferOverflowError,
        "subscribe_on",
    ),
    Row(
        "bridges.rx.from_aiter", "source=42", lambda: rx.from_aiter(42), TypeError, "async iterable"
    ),  # type: ignore[arg-type]
    Row(
        "bridges.rx.from_aiter",
        "task_group=42",
        lambda: rx.from_aiter(_Reiterable(), task_group=42),
        TypeError,
        "task group",
    ),
    Row(
        "bridges.rx.from_aiter",
        "trio-without-task-group",
        lambda: rx.from_aiter(_Reiterable()),
        RuntimeError,
        "task_group=",
        backends=TRIO,
    ),
    Row(
        "bridges.rx.from_aiter",
        "task-group-not-active",
        _rx_task_group_not_active,
        RuntimeError,
        "task group",
    ),
    Row("bridges.rx.from_aiter", "one-shot-twice", _rx_one_shot_twice, RuntimeError, "factory"),
    Row(
        "bridges.rx.from_aiter",
        "factory-returns-int",
        _rx_factory_returns_int,
        TypeError,
        "async iterable",
    ),
    Row(
        "bridges.rx.from_aiter",
        "no-loop-anywhere",
        _rx_made_and_subscribed_without_loop,
        RuntimeError,
        "inside the event loop",
        backends=NO_LOOP,
    ),
    Row(
        "bridges.rx.open_trio_scheduler",
        "on-asyncio",
        _trio_scheduler_on_asyncio,
        RuntimeError,
        "AsyncIOThreadSafeScheduler",
        backends=ASYNCIO,
    ),
    Row(
        "bridges.rx.TrioScheduler",
        "constructed-with-junk",
        lambda: rx.TrioScheduler(42, 42),  # type: ignore[arg-type]
        TypeError,
        "open_trio_scheduler",
    ),
]


# ----------------------------------------------------------------- channels


async def _channels_one_shot_twice() -> None:
    cm = channels.from_aiter(_agen())
    async with cm as receive:
        async for _ in receive:
            pass
    async with cm:
        pass


async def _channels_entered_while_entered() -> None:
    cm = channels.from_aiter(_Reiterable())
    async with cm, cm:
        pass


async def _pumped_receive_after_block() -> None:
    async with channels.from_aiter(_Reiterable()) as receive:
        pass
    await receive.receive()


async def _pumped_clone_after_close() -> None:
    async with channels.from_aiter(_Reiterable()) as receive:
        await receive.aclose()
        receive.clone()


async def _channel_iterator_after_aclose() -> None:
    send, receive = anyio.create_memory_object_stream[int](1)
    with send:
        it = channels.to_aiter(receive)
        await it.aclose()
        await it.__anext__()


async def _pump_into_closed_sender() -> None:
    send, receive = bridges.open_channel[int](4)
    async with receive:
        send.close()
        await channels.pump(_agen(), send)


async def _pump_into_closed_stream() -> None:
    send, receive = anyio.create_memory_object_stream[int](1)
    await send.aclose()
    async with receive:
        await channels.pump(_agen(), send)


async def _trio_channel_on_asyncio() -> None:
    import trio

    _send, receive = trio.open_memory_channel[int](0)
    async with channels.to_aiter(receive) as it:
        await it.__anext__()


async def _pump_into_trio_channel_on_asyncio() -> None:
    import trio

    send, receive = trio.open_memory_channel[int](0)
    with receive:
        await channels.pump(_agen(), send)


async def _pump_into_junk() -> None:
    await channels.pump(_agen(), 42)  # type: ignore[arg-type]


ROWS += [
    Row(
        "bridges.channels.to_aiter",
        "receive=42",
        lambda: channels.to_aiter(42),
        TypeError,
        "bridges.iterate",
    ),
    Row(
        "bridges.channels.to_aiter",
        "async-generator",
        lambda: channels.to_aiter(_agen()),
        TypeError,
        "ReceiveChannel",
    ),
    Row(
        "bridges.channels.from_aiter",
        "source=42",
        lambda: channels.from_aiter(42),  # type: ignore[arg-type]
        TypeError,
        "async iterable",
    ),
    Row(
        "bridges.channels.from_aiter",
        "buffer=-1",
        lambda: channels.from_aiter(_Reiterable(), buffer=-1),
        ValueError,
        ">= 0",
    ),
    Row(
        "bridges.channels.from_aiter",
        "buffer='x'",
        lambda: channels.from_aiter(_Reiterable(), buffer="x"),  # type: ignore[arg-type]
        TypeError,
        "int",
    ),
    Row(
        "bridges.channels.from_aiter",
        "one-shot-twice",
        _channels_one_shot_twice,
        RuntimeError,
        "re-iterable",
    ),
    Row(
        "bridges.channels.from_aiter",
        "entered-while-entered",
        _channels_entered_while_entered,
        RuntimeError,
        "clone",
    ),
    Row(
        "bridges.channels.PumpedReceiver.receive",
        "after-the-block",
        _pumped_receive_after_block,
        anyio.ClosedResourceError,
        "block",
    ),
    Row(
        "bridges.channels.PumpedReceiver.clone",
        "closed",
        _pumped_clone_after_close,
        anyio.ClosedResourceError,
        "closed",
    ),
    Row(
        "bridges.channels.ChannelIterator",
        "after-aclose",
        _channel_iterator_after_aclose,
        StopAsyncIteration,
        None,
    ),
    Row(
        "bridges.channels.pump",
        "source=42",
        lambda: channels.pump(42, 42),  # type: ignore[arg-type]
        TypeError,
        "async iterable",
    ),
    Row("bridges.channels.pump", "send=42", _pump_into_junk, TypeError, "ChannelSender"),
    Row(
        "bridges.channels.pump",
        "closed-sender",
        _pump_into_closed_sender,
        anyio.ClosedResourceError,
        "pass an open sender",
    ),
    # anyio's own exception from the user's closed stream, raised as is (no message)
    Row(
        "bridges.channels.pump",
        "closed-anyio-stream",
        _pump_into_closed_stream,
        anyio.ClosedResourceError,
        None,
    ),
    Row(
        "bridges.channels.to_aiter",
        "trio-channel-on-asyncio",
        _trio_channel_on_asyncio,
        RuntimeError,
        "anyio memory object stream",
        backends=ASYNCIO,
    ),
    Row(
        "bridges.channels.pump",
        "trio-channel-on-asyncio",
        _pump_into_trio_channel_on_asyncio,
        RuntimeError,
        "anyio memory object stream",
        backends=ASYNCIO,
    ),
]


# ----------------------------------------------------------------- streams


async def _write_to_closed_writer() -> None:
    _reader, writer = streams.open_pipe()
    writer.close()
    await streams.write(writer, _agen_bytes())


async def _write_text() -> None:
    _reader, writer = streams.open_pipe()
    try:
        await streams.write(writer, _agen_text())  # type: ignore[arg-type]
    finally:
        writer.close()


async def _stream_from_aiter_twice() -> None:
    cm = streams.from_aiter(_agen_bytes())
    async with cm:
        pass
    async with cm:
        pass


async def _byte_pipe_send_after_close() -> None:
    send, receive = streams.open_byte_stream_pipe()
    async with receive:
        await send.aclose()
        await send.send(b"x")


async def _byte_pipe_send_after_receiver_left() -> None:
    send, receive = streams.open_byte_stream_pipe()
    async with send:
        await receive.aclose()
        await send.send(b"x")


async def _byte_pipe_receive_zero() -> None:
    send, receive = streams.open_byte_stream_pipe()
    async with send, receive:
        await receive.receive(0)


async def _byte_stream_write_text() -> None:
    send, receive = streams.open_byte_stream_pipe()
    async with send, receive:
        await streams.byte_stream_write(send, _agen_text())  # type: ignore[arg-type]


async def _byte_stream_from_aiter_text() -> None:
    async with streams.byte_stream_from_aiter(_agen_text()) as stream:  # type: ignore[arg-type]
        await stream.receive()


def _thread_queue() -> queue.Queue[int]:
    return queue.Queue()


ROWS += [
    Row(
        "bridges.streams.to_aiter",
        "reader=42",
        lambda: streams.to_aiter(42),
        TypeError,
        "StreamReader",
    ),  # type: ignore[arg-type]
    Row(
        "bridges.streams.to_aiter",
        "an-anyio-stream",
        lambda: streams.to_aiter(streams.open_byte_stream_pipe()[1]),  # type: ignore[arg-type]
        TypeError,
        "byte_stream_to_aiter",
    ),
    Row(
        "bridges.streams.to_aiter",
        "the-writer",
        lambda: streams.to_aiter(_stream_writer()),  # type: ignore[arg-type]
        TypeError,
        "pass the reader",
    ),
    Row(
        "bridges.streams.to_aiter",
        "chunk_size=0",
        lambda: streams.to_aiter(_stream_reader(), chunk_size=0),
        ValueError,
        ">= 1",
    ),
    Row(
        "bridges.streams.to_aiter",
        "chunk_size='x'",
        lambda: streams.to_aiter(_stream_reader(), chunk_size="x"),  # type: ignore[arg-type]
        TypeError,
        "int",
    ),
    Row(
        "bridges.streams.to_aiter",
        "separator=str",
        lambda: streams.to_aiter(_stream_reader(), separator="\n"),  # type: ignore[arg-type]
        TypeError,
        "bytes",
    ),
    Row(
        "bridges.streams.to_aiter",
        "separator=b''",
        lambda: streams.to_aiter(_stream_reader(), separator=b""),
        ValueError,
        "None",
    ),
    Row(
        "bridges.streams.to_aiter",
        "under-trio",
        lambda: streams.to_aiter(_stream_reader()),
        RuntimeError,
        "byte_stream_to_aiter",
        backends=TRIO,
    ),
    Row(
        "bridges.streams.from_aiter",
        "source=42",
        lambda: streams.from_aiter(42),  # type: ignore[arg-type]
        TypeError,
        "async iterable",
    ),
    Row(
        "bridges.streams.from_aiter",
        "source=bytes",
        lambda: streams.from_aiter(b"abc"),  # type: ignore[arg-type]
        TypeError,
        "wrap it",
    ),
    Row(
        "bridges.streams.from_aiter",
        "limit=0",
        lambda: streams.from_aiter(_Reiterable(), limit=0),  # type: ignore[arg-type]
        ValueError,
        ">= 1",
    ),
    Row(
        "bridges.streams.from_aiter",
        "entered-twice",
        _stream_from_aiter_twice,
        RuntimeError,
        "only once",
        backends=ASYNCIO,
    ),
    Row(
        "bridges.streams.from_aiter",
        "under-trio",
        lambda: streams.from_aiter(_Reiterable()),  # type: ignore[arg-type]
        RuntimeError,
        "byte_stream_from_aiter",
        backends=TRIO,
    ),
    Row(
        "bridges.streams.write",
        "writer=42",
        lambda: streams.write(42, _agen_bytes()),  # type: ignore[arg-type]
        TypeError,
        "StreamWriter",
    ),
    Row(
        "bridges.streams.write",
        "an-anyio-stream",
        lambda: streams.write(streams.open_byte_stream_pipe()[0], _agen_bytes()),  # type: ignore[arg-type]
        TypeError,
        "byte_stream_write",
    ),
    Row(
        "bridges.streams.write",
        "source=42",
        lambda: streams.write(_stream_writer(), 42),  # type: ignore[arg-type]
        TypeError,
        "async iterable",
    ),
    Row(
        "bridges.streams.write",
        "closed-writer",
        _write_to_closed_writer,
        ConnectionResetError,
        "connection",
        backends=ASYNCIO,
    ),
    Row("bridges.streams.write", "yields-text", _write_text, TypeError, "encode", backends=ASYNCIO),
    Row(
        "bridges.streams.write",
        "under-trio",
        lambda: streams.write(_stream_writer(), _agen_bytes()),
        RuntimeError,
        "byte_stream_write",
        backends=TRIO,
    ),
    Row("bridges.streams.open_pipe", "limit=0", lambda: streams.open_pipe(0), ValueError, ">= 1"),
    Row("bridges.streams.open_pipe", "limit='x'", lambda: streams.open_pipe("x"), TypeError, "int"),  # type: ignore[arg-type]
    Row(
        "bridges.streams.open_pipe",
        "no-loop",
        lambda: streams.open_pipe(),
        RuntimeError,
        "async code",
        backends=NO_LOOP,
    ),
    Row(
        "bridges.streams.open_pipe",
        "under-trio",
        lambda: streams.open_pipe(),
        RuntimeError,
        "open_byte_stream_pipe",
        backends=TRIO,
    ),
    Row(
        "bridges.streams.byte_stream_to_aiter",
        "stream=42",
        lambda: streams.byte_stream_to_aiter(42),  # type: ignore[arg-type]
        TypeError,
        "ByteReceiveStream",
    ),
    Row(
        "bridges.streams.byte_stream_to_aiter",
        "a-stream-reader",
        lambda: streams.byte_stream_to_aiter(_stream_reader()),  # type: ignore[arg-type]
        TypeError,
        "streams.to_aiter",
    ),
    Row(
        "bridges.streams.byte_stream_to_aiter",
        "limit=0",
        lambda: streams.byte_stream_to_aiter(streams.open_byte_stream_pipe()[1], limit=0),
        ValueError,
        ">= 1",
    ),
    Row(
        "bridges.streams.byte_stream_to_aiter",
        "chunk_size=-1",
        lambda: streams.byte_stream_to_aiter(streams.open_byte_stream_pipe()[1], chunk_size=-1),
        ValueError,
        ">= 1",
    ),
    Row(
        "bridges.streams.byte_stream_from_aiter",
        "source=42",
        lambda: streams.byte_stream_from_aiter(42),  # type: ignore[arg-type]
        TypeError,
        "async iterable",
    ),
    Row(
        "bridges.streams.byte_stream_from_aiter",
        "limit=0",
        lambda: streams.byte_stream_from_aiter(_agen_bytes(), limit=0),
        ValueError,
        ">= 1",
    ),
    Row(
        "bridges.streams.byte_stream_from_aiter",
        "yields-text",
        _byte_stream_from_aiter_text,
        TypeError,
        "encode",
    ),
    Row(
        "bridges.streams.byte_stream_write",
        "stream=42",
        lambda: streams.byte_stream_write(42, _agen_bytes()),  # type: ignore[arg-type]
        TypeError,
        "ByteSendStream",
    ),
    Row(
        "bridges.streams.byte_stream_write",
        "a-stream-writer",
        lambda: streams.byte_stream_write(_stream_writer(), _agen_bytes()),  # type: ignore[arg-type]
        TypeError,
        "streams.write",
    ),
    Row(
        "bridges.streams.byte_stream_write",
        "yields-text",
        _byte_stream_write_text,
        TypeError,
        "encode",
    ),
    Row(
        "bridges.streams.open_byte_stream_pipe",
        "limit=0",
        lambda: streams.open_byte_stream_pipe(0),
        ValueError,
        ">= 1",
    ),
    Row(
        "bridges.streams.open_byte_stream_pipe",
        "limit=None",
        lambda: streams.open_byte_stream_pipe(None),  # type: ignore[arg-type]
        TypeError,
        "int",
    ),
    Row(
        "bridges.streams.open_byte_stream_pipe",
        "send-after-close",
        _byte_pipe_send_after_close,
        anyio.ClosedResourceError,
        "closed",
    ),
    Row(
        "bridges.streams.open_byte_stream_pipe",
        "send-after-receiver-left",
        _byte_pipe_send_after_receiver_left,
        anyio.BrokenResourceError,
        "receiving end",
    ),
    Row(
        "bridges.streams.open_byte_stream_pipe",
        "receive(0)",
        _byte_pipe_receive_zero,
        ValueError,
        ">= 1",
    ),
    Row(
        "bridges.streams.queue_to_aiter",
        "queue=42",
        lambda: streams.queue_to_aiter(42),  # type: ignore[arg-type]
        TypeError,
        "asyncio.Queue",
    ),
    Row(
        "bridges.streams.queue_to_aiter",
        "a-thread-queue",
        lambda: streams.queue_to_aiter(_thread_queue()),  # type: ignore[arg-type]
        TypeError,
        "open_channel",
    ),
    Row(
        "bridges.streams.queue_to_aiter",
        "under-trio",
        lambda: streams.queue_to_aiter(asyncio.Queue()),
        RuntimeError,
        "open_channel",
        backends=TRIO,
    ),
    Row(
        "bridges.streams.queue_from_aiter",
        "source=42",
        lambda: streams.queue_from_aiter(42, asyncio.Queue()),  # type: ignore[arg-type]
        TypeError,
        "async iterable",
    ),
    Row(
        "bridges.streams.queue_from_aiter",
        "queue=42",
        lambda: streams.queue_from_aiter(_agen(), 42),  # type: ignore[arg-type]
        TypeError,
        "asyncio.Queue",
    ),
    Row(
        "bridges.streams.queue_from_aiter",
        "under-trio",
        lambda: streams.queue_from_aiter(_agen(), asyncio.Queue()),
        RuntimeError,
        "open_channel",
        backends=TRIO,
    ),
]


# ----------------------------------------------------------------- threads


def _blocking_on_a_loop_thread() -> Any:
    async def main() -> None:
        with threads.from_aiter(_Reiterable()) as it:
            next(it)

    return main()


def _blocking_after_close() -> None:
    with threads.from_aiter(_Reiterable()) as it:
        assert next(it) == 0
    next(it)


async def _prefetch_after_aclose() -> None:
    it = threads.to_aiter([1, 2, 3])
    async with it:
        assert await it.__anext__() == 1
    await it.__anext__()


async def _factory_returns_int() -> None:
    async with threads.to_aiter(lambda: 42) as it:  # type: ignore[arg-type,return-value]
        await it.__anext__()


def _portal_not_running() -> Any:
    async def main() -> None:
        portal = anyio.from_thread.BlockingPortal()  # made, never entered

        def consume() -> None:
            with threads.from_aiter(_Reiterable(), portal=portal) as it:
                next(it)

        await anyio.to_thread.run_sync(consume)

    return main()


def _gen() -> Iterator[int]:
    yield 1


ROWS += [
    Row(
        "bridges.threads.to_aiter",
        "grace=-1",
        lambda: threads.to_aiter([1], grace=-1),
        ValueError,
        ">= 0",
    ),
    Row(
        "bridges.threads.to_aiter",
        "grace='1'",
        lambda: threads.to_aiter([1], grace="1"),  # type: ignore[call-overload]
        TypeError,
        "seconds",
    ),
    Row(
        "bridges.threads.consumer_gone",
        "outside-a-worker",
        threads.consumer_gone,
        RuntimeError,
        "worker thread",
    ),
    Row(
        "bridges.threads.ConsumerGone.add_callback",
        "fn=42",
        lambda: threads.ConsumerGone().add_callback(42),  # type: ignore[arg-type]
        TypeError,
        "function",
    ),
    Row(
        "bridges.threads.to_aiter",
        "iterable=42",
        lambda: threads.to_aiter(42),
        TypeError,
        "callable",
    ),  # type: ignore[call-overload]
    Row(
        "bridges.threads.to_aiter",
        "async-generator",
        lambda: threads.to_aiter(_agen()),  # type: ignore[call-overload]
        TypeError,
        "bridges.iterate",
    ),
    Row(
        "bridges.threads.to_aiter",
        "buffer=-1",
        lambda: threads.to_aiter([1], buffer=-1),
        ValueError,
        ">= 0",
    ),
    Row(
        "bridges.threads.to_aiter",
        "buffer='x'",
        lambda: threads.to_aiter([1], buffer="x"),  # type: ignore[call-overload]
        TypeError,
        "int",
    ),
    Row(
        "bridges.threads.to_aiter",
        "overflow='nope'",
        lambda: threads.to_aiter([1], overflow="nope"),
        ValueError,
        "drop_oldest",
    ),
    Row(
        "bridges.threads.to_aiter",
        "factory-returns-int",
        _factory_returns_int,
        TypeError,
        "must return an iterable",
    ),
    Row(
        "bridges.threads.PrefetchIterator",
        "after-aclose",
        _prefetch_after_aclose,
        StopAsyncIteration,
        None,
    ),
    Row(
        "bridges.threads.from_aiter",
        "source=42",
        lambda: threads.from_aiter(42),  # type: ignore[arg-type]
        TypeError,
        "async iterable",
    ),
    Row(
        "bridges.threads.from_aiter",
        "a-blocking-iterable",
        lambda: threads.from_aiter(_gen()),  # type: ignore[arg-type]
        TypeError,
        "iterate it directly",
    ),
    Row(
        "bridges.threads.from_aiter",
        "buffer=-1",
        lambda: threads.from_aiter(_Reiterable(), buffer=-1),
        ValueError,
        ">= 0",
    ),
    Row(
        "bridges.threads.from_aiter",
        "backend='curio'",
        lambda: threads.from_aiter(_Reiterable(), backend="curio"),
        ValueError,
        "'trio'",
    ),
    Row(
        "bridges.threads.from_aiter",
        "portal=42",
        lambda: threads.from_aiter(_Reiterable(), portal=42),  # type: ignore[arg-type]
        TypeError,
        "BlockingPortal",
    ),
    Row(
        "bridges.threads.from_aiter",
        "portal-not-running",
        _portal_not_running,
        RuntimeError,
        "start_blocking_portal",
    ),
    Row(
        "bridges.threads.BlockingIterator",
        "next-on-a-loop-thread",
        _blocking_on_a_loop_thread,
        RuntimeError,
        "async for",
    ),
    Row(
        "bridges.threads.BlockingIterator",
        "after-close",
        _blocking_after_close,
        StopIteration,
        None,
        backends=NO_LOOP,
    ),
]


# ----------------------------------------------------------------- ops


async def _iterate_without_block(it: bridges.BridgeIterator[Any]) -> None:
    try:
        await it.__anext__()
    finally:
        await it.aclose()


async def _share_iterated_outside() -> None:
    shared = ops.share(_Reiterable())
    it = aiter(shared)
    try:
        await it.__anext__()
    finally:
        await it.aclose()


async def _share_subscribe_after_exit() -> None:
    async with ops.share(_Reiterable()) as shared:
        pass
    shared.subscribe()


async def _share_entered_twice() -> None:
    shared = ops.share(_Reiterable())
    async with shared, shared:
        pass


async def _share_one_shot_restart() -> None:
    async with ops.share(_agen()) as shared:
        async with shared.subscribe() as first:
            async for _ in first:
                pass
        async with shared.subscribe() as second:
            await second.__anext__()


async def _share_subscribe_bad_buffer() -> None:
    async with ops.share(_Reiterable()) as shared:
        shared.subscribe(buffer=-1)


async def _paginate_returns_junk() -> None:
    async def fetch(token: object) -> object:
        return 42

    async with ops.paginate(fetch) as it:
        await it.__anext__()


ROWS += [
    Row("bridges.ops.batch", "source=42", lambda: ops.batch(42, 2), TypeError, "async iterable"),  # type: ignore[arg-type]
    Row(
        "bridges.ops.batch", "source=list", lambda: ops.batch([1], 2), TypeError, "async generator"
    ),  # type: ignore[arg-type]
    Row("bridges.ops.batch", "size=0", lambda: ops.batch(_Reiterable(), 0), ValueError, ">= 1"),
    Row("bridges.ops.batch", "size='x'", lambda: ops.batch(_Reiterable(), "x"), TypeError, "int"),  # type: ignore[arg-type]
    Row(
        "bridges.ops.batch",
        "within=0",
        lambda: ops.batch(_Reiterable(), 2, within=0),
        ValueError,
        "> 0",
    ),
    Row(
        "bridges.ops.batch",
        "within='x'",
        lambda: ops.batch(_Reiterable(), 2, within="x"),  # type: ignore[arg-type]
        TypeError,
        "seconds",
    ),
    Row(
        "bridges.ops.batch",
        "within-without-async-with",
        lambda: _iterate_without_block(ops.batch(_Reiterable(), 2, within=1.0)),
        RuntimeError,
        "async with",
    ),
    Row("bridges.ops.merge", "source=42", lambda: ops.merge(_Reiterable(), 42), TypeError, "#1"),  # type: ignore[arg-type]
    Row(
        "bridges.ops.merge",
        "without-async-with",
        lambda: _iterate_without_block(ops.merge(_Reiterable())),
        RuntimeError,
        "async with",
    ),
    Row("bridges.ops.map", "source=42", lambda: ops.map(42, str), TypeError, "async iterable"),  # type: ignore[call-overload]
    Row("bridges.ops.map", "fn=42", lambda: ops.map(_Reiterable(), 42), TypeError, "function"),  # type: ignore[call-overload]
    Row(
        "bridges.ops.map",
        "concurrency=0",
        lambda: ops.map(_Reiterable(), str, concurrency=0),
        ValueError,
        ">= 1",
    ),
    Row(
        "bridges.ops.map",
        "ordered='yes'",
        lambda: ops.map(_Reiterable(), str, concurrency=2, ordered="yes"),  # type: ignore[call-overload]
        TypeError,
        "True or False",
    ),
    Row(
        "bridges.ops.map",
        "without-async-with",
        lambda: _iterate_without_block(ops.map(_Reiterable(), str, concurrency=2)),
        RuntimeError,
        "async with",
    ),
    Row("bridges.ops.chain", "source=42", lambda: ops.chain(_Reiterable(), 42), TypeError, "#1"),  # type: ignore[arg-type]
    Row("bridges.ops.zip", "source=42", lambda: ops.zip(42), TypeError, "#0"),  # type: ignore[call-overload]
    Row("bridges.ops.paginate", "fetch_page=42", lambda: ops.paginate(42), TypeError, "function"),  # type: ignore[call-overload]
    Row(
        "bridges.ops.paginate",
        "prefetch='yes'",
        lambda: ops.paginate(lambda t: ([], None), prefetch="yes"),  # type: ignore[call-overload]
        TypeError,
        "True or False",
    ),
    Row("bridges.ops.paginate", "returns-junk", _paginate_returns_junk, TypeError, "pair"),
    Row(
        "bridges.ops.paginate",
        "grace=-1",
        lambda: ops.paginate(lambda token: ([], None), grace=-1),
        ValueError,
        ">= 0",
    ),
    Row(
        "bridges.ops.paginate",
        "prefetch-without-async-with",
        lambda: _iterate_without_block(ops.paginate(lambda t: ([1], None), prefetch=True)),
        RuntimeError,
        "async with",
    ),
    Row(
        "bridges.ops.rate_limit",
        "per_second=0",
        lambda: ops.rate_limit(_Reiterable(), 0),
        ValueError,
        "> 0",
    ),
    Row(
        "bridges.ops.rate_limit",
        "per_second=nan",
        lambda: ops.rate_limit(_Reiterable(), float("nan")),
        ValueError,
        "finite",
    ),
    Row(
        "bridges.ops.rate_limit",
        "per_second='x'",
        lambda: ops.rate_limit(_Reiterable(), "x"),  # type: ignore[arg-type]
        TypeError,
        "number",
    ),
    Row(
        "bridges.ops.rate_limit",
        "burst=0",
        lambda: ops.rate_limit(_Reiterable(), 1, burst=0),
        ValueError,
        ">= 1",
    ),
    Row(
        "bridges.ops.rate_limit",
        "source=42",
        lambda: ops.rate_limit(42, 1),
        TypeError,
        "async iterable",
    ),  # type: ignore[arg-type]
    Row("bridges.ops.share", "source=42", lambda: ops.share(42), TypeError, "async iterable"),  # type: ignore[arg-type]
    Row(
        "bridges.ops.share",
        "buffer=-1",
        lambda: ops.share(_Reiterable(), buffer=-1),
        ValueError,
        ">= 0",
    ),
    Row(
        "bridges.ops.share",
        "overflow='nope'",
        lambda: ops.share(_Reiterable(), overflow="nope"),
        ValueError,
        "drop_oldest",
    ),
    Row(
        "bridges.ops.share",
        "without-async-with",
        _share_iterated_outside,
        RuntimeError,
        "async with",
    ),
    Row(
        "bridges.ops.share",
        "one-shot-restarted",
        _share_one_shot_restart,
        RuntimeError,
        "re-iterable",
    ),
    Row(
        "bridges.ops.Shared.subscribe",
        "after-the-block",
        _share_subscribe_after_exit,
        RuntimeError,
        "inside the block",
    ),
    Row(
        "bridges.ops.Shared.subscribe", "buffer=-1", _share_subscribe_bad_buffer, ValueError, ">= 0"
    ),
    Row("bridges.ops.Shared", "entered-twice", _share_entered_twice, RuntimeError, "once"),
]


# ----------------------------------------------------------------- testing


ROWS += [
    Row(
        "bridges.testing.claim_push",
        "unknown-rule",
        lambda: testing.claim_push(na={"R99": "x"}),
        ValueError,
        "R1",
    ),
    Row(
        "bridges.testing.claim_pull",
        "no-reason",
        lambda: testing.claim_pull(na={"R10": ""}),
        ValueError,
        "reason",
    ),
    Row(
        "bridges.testing.check",
        "unclaimed-rule",
        lambda: testing.check(_Harness(), "R8"),
        ValueError,
        "a test stand-in",
    ),
    Row(
        "bridges.testing.check",
        "unknown-rule",
        lambda: testing.check(_Harness(), "R99"),
        ValueError,
        "not a rule",
    ),
    Row(
        "bridges.testing.check",
        "harness=42",
        lambda: testing.check(42, "R1"),  # type: ignore[arg-type]
        TypeError,
        "PushHarness",
    ),
    Row("bridges.testing.cases", "harness=42", lambda: testing.cases(42), TypeError, "harness"),  # type: ignore[arg-type]
    Row(
        "bridges.testing.cases",
        "a-class",
        lambda: testing.cases(_Harness),  # type: ignore[arg-type]
        TypeError,
        "instantiate it",
    ),
    Row(
        "bridges.testing.check",
        "a-case-of-an-unclaimed-rule",
        lambda: testing.check(*testing.Case(_Harness(), "R8", "asyncio")),
        ValueError,
        "a test stand-in",
    ),
    Row(
        "bridges.testing.PushHarness", "abstract", lambda: testing.PushHarness(), TypeError, "open"
    ),  # type: ignore[abstract]
    Row(
        "bridges.testing.PullHarness", "abstract", lambda: testing.PullHarness(), TypeError, "drive"
    ),  # type: ignore[abstract]
    Row(
        "bridges.testing.TestSource",
        "values=42",
        lambda: testing.TestSource(42),
        TypeError,
        "iterable",
    ),  # type: ignore[arg-type]
    Row("bridges.testing.End", "unknown", lambda: testing.End("sometimes"), ValueError, "End"),
    Row(
        "bridges.testing.HookedSource",
        "values='x'",
        lambda: testing.HookedSource("x"),  # type: ignore[arg-type]
        TypeError,
        "int",
    ),
    Row(
        "bridges.testing.HookedSource",
        "values=-1",
        lambda: testing.HookedSource(-1),
        ValueError,
        ">= 0",
    ),
    # bridges.nats: checked at the call, before any connection is used
    *(
        Row("bridges.nats.to_aiter", case, call, raises, keyword)
        for case, call, raises, keyword in [
            (
                "client=object()",
                lambda: nats.to_aiter(object(), "S", durable="d"),
                TypeError,
                "connect",
            ),  # type: ignore[arg-type]
            (
                "durable='a.b'",
                lambda: nats.to_aiter(None, "S", durable="a.b"),
                ValueError,
                "plain name",
            ),  # type: ignore[arg-type]
            ("durable=''", lambda: nats.to_aiter(None, "S", durable=""), ValueError, "empty"),  # type: ignore[arg-type]
            ("stream=3", lambda: nats.to_aiter(None, 3, durable="d"), TypeError, "str"),  # type: ignore[arg-type]
            (
                "buffer=0",
                lambda: nats.to_aiter(None, "S", durable="d", buffer=0),
                ValueError,
                "at least 1",
            ),  # type: ignore[arg-type]
            (
                "buffer=True",
                lambda: nats.to_aiter(None, "S", durable="d", buffer=True),
                TypeError,
                "int",
            ),  # type: ignore[arg-type]
            (
                "ack='x'",
                lambda: nats.to_aiter(None, "S", durable="d", ack="x"),
                ValueError,
                "on_next",
            ),  # type: ignore[arg-type]
            (
                "heartbeat=-1",
                lambda: nats.to_aiter(None, "S", durable="d", heartbeat=-1),
                ValueError,
                "seconds",
            ),  # type: ignore[arg-type]
        ]
    ),
    *(
        Row("bridges.nats.from_aiter", case, call, raises, keyword)
        for case, call, raises, keyword in [
            (
                "client=object()",
                lambda: nats.from_aiter(_agen_bytes(), object(), "x"),
                TypeError,
                "connect",
            ),  # type: ignore[arg-type]
            (
                "in_flight=0",
                lambda: nats.from_aiter(_agen_bytes(), None, "x", in_flight=0),
                ValueError,
                "at least 1",
            ),  # type: ignore[arg-type]
            ("subject=''", lambda: nats.from_aiter(_agen_bytes(), None, ""), ValueError, "empty"),  # type: ignore[arg-type]
            (
                "source=list",
                lambda: nats.from_aiter([b"x"], None, "x"),
                TypeError,
                "async iterable",
            ),  # type: ignore[arg-type]
        ]
    ),
    Row(
        "bridges.nats.Client",
        "js=object()",
        lambda: nats.Client(object()),
        TypeError,
        "JetStreamContext",
    ),  # type: ignore[arg-type]
    Row(
        "bridges.nats.Client",
        "js=JetStreamContext(None)",
        lambda: nats.Client(JetStreamContext(None)),  # type: ignore[arg-type]
        TypeError,
        "without a connection",
    ),
    Row("bridges.nats.LocalServer", "store=3", lambda: nats.LocalServer(3), TypeError, "directory"),  # type: ignore[arg-type]
    Row("bridges.nats.connect", "servers=3", lambda: nats.connect(3), TypeError, "URL"),  # type: ignore[arg-type]
    # bridges.redis: checked at the call, before any connection is used
    *(
        Row("bridges.redis.to_aiter", case, call, raises, keyword)
        for case, call, raises, keyword in [
            (
                "client=object()",
                lambda: redis.to_aiter(object(), "s", group="g", consumer="c"),
                TypeError,
                "connect",
            ),  # type: ignore[arg-type]
            (
                "group=''",
                lambda: redis.to_aiter(None, "s", group="", consumer="c"),
                ValueError,
                "empty",
            ),  # type: ignore[arg-type]
            (
                "consumer=3",
                lambda: redis.to_aiter(None, "s", group="g", consumer=3),
                TypeError,
                "str",
            ),  # type: ignore[arg-type]
            (
                "stream=3",
                lambda: redis.to_aiter(None, 3, group="g", consumer="c"),
                TypeError,
                "str",
            ),  # type: ignore[arg-type]
            (
                "buffer=0",
                lambda: redis.to_aiter(None, "s", group="g", consumer="c", buffer=0),
                ValueError,
                "at least 1",
            ),  # type: ignore[arg-type]
            (
                "ack='x'",
                lambda: redis.to_aiter(None, "s", group="g", consumer="c", ack="x"),
                ValueError,
                "on_next",
            ),  # type: ignore[arg-type]
            (
                "claim_idle=-1",
                lambda: redis.to_aiter(None, "s", group="g", consumer="c", claim_idle=-1),
                ValueError,
                "seconds",
            ),  # type: ignore[arg-type]
        ]
    ),
    *(
        Row("bridges.redis.from_aiter", case, call, raises, keyword)
        for case, call, raises, keyword in [
            (
                "client=object()",
                lambda: redis.from_aiter(_agen_fields(), object(), "s"),
                TypeError,
                "connect",
            ),  # type: ignore[arg-type]
            (
                "in_flight=0",
                lambda: redis.from_aiter(_agen_fields(), None, "s", in_flight=0),
                ValueError,
                "at least 1",
            ),  # type: ignore[arg-type]
            (
                "maxlen=0",
                lambda: redis.from_aiter(_agen_fields(), None, "s", maxlen=0),
                ValueError,
                "no trimming",
            ),  # type: ignore[arg-type]
            ("stream=''", lambda: redis.from_aiter(_agen_fields(), None, ""), ValueError, "empty"),  # type: ignore[arg-type]
            (
                "source=list",
                lambda: redis.from_aiter([{"a": 1}], None, "s"),
                TypeError,
                "async iterable",
            ),  # type: ignore[arg-type]
        ]
    ),
    Row(
        "bridges.redis.Client",
        "redis=object()",
        lambda: redis.Client(object()),
        TypeError,
        "redis.asyncio.Redis",
    ),  # type: ignore[arg-type]
    Row(
        "bridges.redis.LocalServer", "store=3", lambda: redis.LocalServer(3), TypeError, "directory"
    ),  # type: ignore[arg-type]
    Row("bridges.redis.connect", "url=3", lambda: redis.connect(3), TypeError, "URL"),  # type: ignore[arg-type]
]


#: public callables that get no row, and why; anything else without a row fails
NO_ROW: dict[str, str] = {
    "bridges.nats.Ack": "a type alias (the ack modes) for annotations; to_aiter's rows check "
    "the value",
    "bridges.nats.Message": "made by to_aiter for each message it delivers; users never build it",
    "bridges.nats.Consumer": "the iterator to_aiter returns; users never build it (to_aiter's "
    "rows check the input)",
    "bridges.redis.Ack": "a type alias (the ack modes) for annotations; to_aiter's rows check "
    "the value",
    "bridges.redis.Entry": "made by to_aiter for each entry it delivers; users never build it",
    "bridges.redis.Consumer": "the iterator to_aiter returns; users never build it (to_aiter's "
    "rows check the input)",
    "bridges.Stats": "a frozen snapshot the library returns (.stats); users read it, "
    "never build it",
    "bridges.testing.Case": "a record (harness, rule, backend) that cases() makes; "
    "check(*case) checks what it holds (a row above)",
    "bridges.testing.Claims": "built by claim_push()/claim_pull(), whose rows check the input",
    "bridges.testing.Script": "a plain record a harness reads; the rule checks build it",
    "bridges.testing.Probe": "a plain record of counters a harness updates",
    "bridges.testing.Plan": "a plain record a pull harness reads; the rule checks build it",
    "bridges.testing.Outcome": "a plain record a pull harness returns",
    "bridges.testing.ScriptedProducer": "a helper thread driven by the checks with the "
    "harness's own callables; its misuse is the harness author's test failing",
    "bridges.testing.CallSource": "an instrumented source the R21 check builds and hands "
    "to the harness; it takes no input from users",
    "bridges.testing.CallHarness": "an abstract base a harness author subclasses; check() "
    "refuses anything that is not a harness instance (a row above)",
    "bridges.testing.claim_call": "claims over CALL_RULES, checked by the same code as "
    "claim_push()/claim_pull() (their rows)",
}


# ----------------------------------------------------------------- running a row


def _params() -> list[Any]:
    params = []
    for row in ROWS:
        marks = [pytest.mark.xfail(strict=True, reason=row.xfail)] if row.xfail else []
        for backend in row.backends:
            params.append(
                pytest.param(row, backend, id=f"{row.target}-{row.case}-{backend}", marks=marks)
            )
    return params


class _HangError(Exception):
    pass


async def _in_loop(row: Row) -> None:
    with anyio.move_on_after(LIMIT):
        result = row.call()
        if inspect.isawaitable(result):
            await result
        return
    raise _HangError(f"no answer within {LIMIT} s")


def _run(row: Row, backend: str) -> BaseException | None:
    """Run the row in a thread of its own; return what it raised (None: nothing)."""
    outcome: list[BaseException | None] = []

    def main() -> None:
        try:
            if backend == "no-loop":
                result = row.call()
                if inspect.isawaitable(result):
                    result.close()  # type: ignore[attr-defined]
                    raise AssertionError("a no-loop row must not return an awaitable")
            elif backend == "uvloop":
                anyio.run(_in_loop, row, backend="asyncio", backend_options={"use_uvloop": True})
            else:
                anyio.run(_in_loop, row, backend=backend)
        except BaseException as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=main, name=f"bad-input {row.target}", daemon=True)
    thread.start()
    thread.join(JOIN)
    if thread.is_alive():
        pytest.fail(f"{row.target} [{row.case}] hangs: no answer within {JOIN} s")
    return outcome[0]


@pytest.mark.parametrize(("row", "backend"), _params())
def test_bad_input(row: Row, backend: str) -> None:
    if backend == "uvloop":
        pytest.importorskip("uvloop")
    exc = _run(row, backend)
    if isinstance(exc, _HangError):
        pytest.fail(f"{row.target} [{row.case}] hangs on {backend}: {exc}")
    assert exc is not None, f"{row.target} [{row.case}] raised nothing; expected {row.raises}"
    if not isinstance(exc, row.raises):
        raise AssertionError(
            f"{row.target} [{row.case}]: expected {row.raises}, got {type(exc).__name__}: {exc}"
        ) from exc
    if row.keyword is not None:
        assert row.keyword.lower() in str(exc).lower(), (
            f"{row.target} [{row.case}]: the message does not name the fix ({row.keyword!r}): {exc}"
        )


def _public_callables() -> dict[str, object]:
    found = {}
    for name in PUBLIC_MODULES:
        module = importlib.import_module(name)
        for attr in module.__all__:
            obj = getattr(module, attr)
            if not callable(obj):
                continue  # constants: LINGER, END, Bytes, the rule lists
            if inspect.isclass(obj) and issubclass(obj, BaseException):
                continue  # exception classes: covered by the rows that expect them
            found[f"{name}.{attr}"] = obj
    return found


def test_every_public_callable_has_a_row() -> None:
    targets = {row.target for row in ROWS}
    missing = [
        name
        for name in _public_callables()
        if name not in NO_ROW and not any(t == name or t.startswith(name + ".") for t in targets)
    ]
    assert not missing, f"public callables without a bad-input row: {missing}"
    stale = [name for name in NO_ROW if name not in _public_callables()]
    assert not stale, f"NO_ROW names what is not public (any more): {stale}"


def test_every_exception_class_is_expected_somewhere() -> None:
    expected: set[type[BaseException]] = set()
    for row in ROWS:
        expected.update(row.raises if isinstance(row.raises, tuple) else (row.raises,))
    for name in PUBLIC_MODULES:
        module = importlib.import_module(name)
        for attr in module.__all__:
            obj = getattr(module, attr)
            if inspect.isclass(obj) and issubclass(obj, BaseException):
                if name == "bridges.testing":
                    continue  # SourceError / ConsumerError: the kit raises them on purpose
                assert obj in expected, f"no row expects {name}.{attr}"


def test_targets_name_public_callables() -> None:
    public = _public_callables()
    for row in ROWS:
        module_attr = next(
            (n for n in public if row.target == n or row.target.startswith(n + ".")), None
        )
        assert module_attr is not None, f"row target {row.target} is not a public callable"
        rest = row.target[len(module_attr) + 1 :]
        obj: object = public[module_attr]
        for part in filter(None, rest.split(".")):
            assert hasattr(obj, part), f"row target {row.target}: no attribute {part}"
            obj = getattr(obj, part)
