"""bridges.callbacks with real callback sources: threads, a thread pool, logging,
threading.Timer, an asyncio.Protocol TCP server and a trio socket reader."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import queue
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from bridges import BufferedIterator, BufferOverflowError, callbacks
from bridges.callbacks import Emitter

from .conftest import BACKENDS
from .sources import EXITS, AwaitingCleanup, RecordingSource, cancel_once_waiting, leave_by

pytestmark = pytest.mark.anyio

ASYNCIO_BACKENDS = [p for p in BACKENDS if p.id != "trio"]


class BoomError(Exception):
    pass


class ThreadSource:
    """A legacy API that calls back on its own thread: ``on_value`` for each of
    ``values``, then ``on_done()`` (or ``on_error(exc)``, or nothing: it hangs
    until cancelled).  ``cancel()`` stops it, as an unsubscribe does."""

    def __init__(
        self, values: range, *, end: str = "done", error: BaseException | None = None
    ) -> None:
        self.values = values
        self.end = end
        self.error = error
        self.cancelled = threading.Event()
        self.cancels = 0
        self.results: list[bool] = []
        self.in_send = 0
        self.thread: threading.Thread | None = None

    def subscribe(self, emit: Emitter[int]) -> Callable[[], None]:
        self.thread = threading.Thread(target=self._run, args=(emit,), name="legacy-source")
        self.thread.start()
        return self.cancel

    def _run(self, emit: Emitter[int]) -> None:
        for v in self.values:
            if self.cancelled.is_set():
                return
            self.in_send += 1
            ok = emit.send(v)
            self.in_send -= 1
            self.results.append(ok)
            if not ok:
                return
        if self.end == "done":
            emit.close()
        elif self.end == "error":
            assert self.error is not None
            emit.error(self.error)
        else:
            self.cancelled.wait()

    def cancel(self) -> None:
        self.cancels += 1
        self.cancelled.set()

    async def join(self) -> None:
        if self.thread is not None:
            await anyio.to_thread.run_sync(self.thread.join, 5)
            assert not self.thread.is_alive()


async def _wait_for(predicate: Callable[[], bool], limit: float = 5) -> None:
    """Wait until ``predicate()`` holds (a condition, polled: not a sleep-and-hope)."""
    with anyio.fail_after(limit):
        while not predicate():
            await anyio.sleep(0.001)


# ----------------------------------------------------------------- to_aiter basics


async def test_values_arrive_in_order_then_the_end() -> None:
    source = ThreadSource(range(1000))
    it = callbacks.to_aiter(source.subscribe, buffer=8)
    got = [v async for v in it]
    assert got == list(range(1000))
    assert source.cancels == 1  # unsubscribed at the end
    assert it.stats.delivered == 1000
    assert it.stats.high_water <= 8
    await source.join()


async def test_subscribe_is_lazy_and_runs_on_the_loop_thread() -> None:
    calls: list[int] = []

    def subscribe(emit: Emitter[int]) -> None:
        calls.append(threading.get_ident())
        emit.send(1)
        emit.close()

    it = callbacks.to_aiter(subscribe)
    await anyio.lowlevel.checkpoint()
    assert calls == []
    assert [v async for v in it] == [1]
    assert calls == [threading.get_ident()]


async def test_entering_async_with_subscribes() -> None:
    calls: list[str] = []
    it: BufferedIterator[int] = callbacks.to_aiter(lambda emit: calls.append("sub"))
    assert calls == []
    async with it:
        assert calls == ["sub"]
    assert calls == ["sub"]


async def test_subscribe_raising_reaches_the_consumer_as_itself() -> None:
    boom = BoomError("no such device")
    emitters: list[Emitter[int]] = []

    def subscribe(emit: Emitter[int]) -> Callable[[], None]:
        emitters.append(emit)
        raise boom

    it = callbacks.to_aiter(subscribe)
    with pytest.raises(BoomError) as info:
        await it.__anext__()
    assert info.value is boom
    with pytest.raises(StopAsyncIteration):
        await it.__anext__()
    emit = emitters[0]
    # a callback the API had already registered is told the stream is over
    assert await anyio.to_thread.run_sync(emit.send, 1) is False
    assert emit.send(2) is False
    assert emit.close() is False
    assert emit.error(BoomError()) is False
    assert emit.closed and emit.consumer_gone
    await it.aclose()


async def test_subscribe_raising_on_entering_async_with() -> None:
    boom = BoomError()

    def subscribe(emit: Emitter[int]) -> None:
        raise boom

    with pytest.raises(BoomError) as info:
        async with callbacks.to_aiter(subscribe):
            raise AssertionError("the block must not run")
    assert info.value is boom


async def test_source_error_arrives_after_the_values_as_itself() -> None:
    boom = BoomError("disk on fire")
    source = ThreadSource(range(5), end="error", error=boom)
    got: list[int] = []
    with pytest.raises(BoomError) as info:
        async with callbacks.to_aiter(source.subscribe, buffer=2) as it:
            async for v in it:
                got.append(v)
    assert info.value is boom
    assert got == [0, 1, 2, 3, 4]
    assert source.cancels == 1
    await source.join()


async def test_emitter_is_a_plain_callback_too() -> None:
    def subscribe(emit: Emitter[str]) -> None:
        for word in ["one", "two", "three"]:
            assert emit(word) is True
        emit.close()

    assert [w async for w in callbacks.to_aiter(subscribe)] == ["one", "two", "three"]


async def test_send_timeout_from_a_thread() -> None:
    emitters: list[Emitter[int]] = []
    async with callbacks.to_aiter(emitters.append, buffer=1) as it:
        emit = emitters[0]
        assert await anyio.to_thread.run_sync(emit.send, 0) is True
        with pytest.raises(TimeoutError, match="no room"):
            await anyio.to_thread.run_sync(lambda: emit.send(1, timeout=0.01))
        assert await it.__anext__() == 0  # the timed-out value was not sent
        assert await anyio.to_thread.run_sync(emit.send, 2) is True
        assert await it.__anext__() == 2


@pytest.mark.parametrize(
    ("overflow", "results", "delivered"),
    [
        ("drop_newest", [True, True, False, False], [0, 1]),
        ("drop_oldest", [True, True, True, True], [2, 3]),
    ],
)
async def test_send_says_whether_the_value_was_taken(
    overflow: str, results: list[bool], delivered: list[int]
) -> None:
    def subscribe(emit: Emitter[int]) -> None:
        assert [emit.send(v) for v in range(4)] == results
        emit.close()

    it = callbacks.to_aiter(subscribe, buffer=2, overflow=overflow)
    assert [v async for v in it] == delivered
    assert it.stats.dropped == 2


async def test_overflow_error_fails_the_stream_after_the_buffered_values() -> None:
    sends: list[bool] = []

    def subscribe(emit: Emitter[int]) -> None:
        sends.extend(emit.send(v) for v in range(4))

    got: list[int] = []
    with pytest.raises(BufferOverflowError, match='overflow="error"'):
        async for v in callbacks.to_aiter(subscribe, buffer=2, overflow="error"):
            got.append(v)
    assert got == [0, 1]
    assert sends == [True, True, False, False]


async def test_loop_thread_callback_without_hooks_fails_with_the_fixes_r8() -> None:
    sends: list[bool] = []

    def subscribe(emit: Emitter[int]) -> None:
        sends.extend(emit.send(v) for v in range(5))
        sends.append(emit.close())

    got: list[int] = []
    with anyio.fail_after(5), pytest.raises(BufferOverflowError) as info:
        async for v in callbacks.to_aiter(subscribe, buffer=2):
            got.append(v)
    assert got == [0, 1]
    assert sends == [True, True, False, False, False, False]
    for fix in ("pause/resume", "another thread", "buffer=", "drop_oldest"):
        assert fix in str(info.value)


# ----------------------------------------------------------------- unsubscribe exactly once

EXIT_PATHS = [*EXITS, "cancel", "emit-error", "gc"]


@pytest.mark.parametrize("path", EXIT_PATHS)
async def test_unsubscribe_runs_exactly_once(path: str) -> None:
    end = {"end": "done", "error": "error"}.get(path, "hang")
    source = ThreadSource(range(10), end=end, error=BoomError())
    it = callbacks.to_aiter(source.subscribe, buffer=2)
    if path in EXITS:
        await leave_by(path, it, list(range(10)), BoomError)
    elif path == "cancel":
        with anyio.CancelScope() as scope:
            async with it:
                async for v in it:
                    if v == 9:  # the source hangs now: cancel the waiting consumer
                        scope.cancel()
        assert scope.cancelled_caught
    elif path == "emit-error":
        emitters: list[Emitter[int]] = []

        def subscribe(emit: Emitter[int]) -> Callable[[], None]:
            emitters.append(emit)
            return source.subscribe(emit)

        it = callbacks.to_aiter(subscribe, buffer=2)
        assert await it.__anext__() == 0
        boom = BoomError()
        assert await anyio.to_thread.run_sync(emitters[0].error, boom) is True
        with pytest.raises(BoomError) as info:
            async for _ in it:
                pass
        assert info.value is boom
    elif path == "gc":
        async for v in it:
            if v == 1:
                break
        holder = [it]
        del it
        with pytest.warns(ResourceWarning, match="aclose"):
            holder.clear()  # the last reference: collected here
    await source.join()
    assert source.cancels == 1, f"unsubscribed {source.cancels} times on {path}"
    if path != "gc":
        await it.aclose()
        await it.aclose()
        assert source.cancels == 1


@pytest.mark.parametrize("send_timeout", [None, 30.0])
async def test_cancel_while_a_producer_thread_is_blocked_in_send(
    send_timeout: float | None,
) -> None:
    results: list[bool] = []
    unsubscribed: list[int] = []
    producer: list[threading.Thread] = []

    def subscribe(emit: Emitter[int]) -> Callable[[], None]:
        def run() -> None:
            for v in range(100):
                ok = emit.send(v, timeout=send_timeout)
                results.append(ok)
                if not ok:
                    return

        producer.append(threading.Thread(target=run))
        producer[0].start()
        return lambda: unsubscribed.append(1)

    it = callbacks.to_aiter(subscribe, buffer=2)
    consumer_ready = anyio.Event()

    async def consume() -> None:
        async with it:
            assert await it.__anext__() == 0
            consumer_ready.set()
            await anyio.sleep_forever()

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        await consumer_ready.wait()
        # the producer thread is parked in send() on the full buffer
        await _wait_for(lambda: bool(it._h._putters))
        assert it.stats.buffered == 2
        tg.cancel_scope.cancel()
    assert unsubscribed == [1]
    await anyio.to_thread.run_sync(producer[0].join, 5)
    assert not producer[0].is_alive(), "the blocked producer thread was not released"
    assert results[-1] is False  # it was told the consumer left
    assert results.count(False) == 1


async def test_a_caught_timeout_releases_nothing_and_loses_nothing() -> None:
    gate = threading.Event()
    emitted: list[Emitter[int]] = []

    def subscribe(emit: Emitter[int]) -> Callable[[], None]:
        emitted.append(emit)
        return gate.set

    async with callbacks.to_aiter(subscribe) as it:
        with anyio.move_on_after(0.01):
            await it.__anext__()
        assert not gate.is_set()
        assert await anyio.to_thread.run_sync(emitted[0].send, 7) is True
        assert await it.__anext__() == 7
    assert gate.is_set()


async def test_unsubscribe_error_is_raised_by_aclose() -> None:
    calls: list[int] = []

    def subscribe(emit: Emitter[int]) -> Callable[[], None]:
        def unsubscribe() -> None:
            calls.append(1)
            raise BoomError("cannot unregister")

        return unsubscribe

    with pytest.raises(BoomError, match="cannot unregister"):
        async with callbacks.to_aiter(subscribe):
            pass
    assert calls == [1]


async def test_unsubscribe_error_is_logged_when_the_consumer_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def subscribe(emit: Emitter[int]) -> Callable[[], None]:
        def unsubscribe() -> None:
            raise BoomError("cannot unregister")

        return unsubscribe

    with pytest.raises(ZeroDivisionError):
        async with callbacks.to_aiter(subscribe):
            1 / 0  # noqa: B018
    assert "cannot unregister" in caplog.text


# ----------------------------------------------------------------- validation (R15)


@pytest.mark.parametrize(
    ("kwargs", "exc", "words"),
    [
        ({"buffer": -1}, ValueError, ">= 0"),
        ({"buffer": "8"}, TypeError, "int"),
        ({"overflow": "sometimes"}, ValueError, "drop_oldest"),
        ({"pause": lambda: None}, ValueError, "pair"),
        (
            {"pause": lambda: None, "resume": lambda: None, "overflow": "drop_oldest"},
            ValueError,
            "block",
        ),
        ({"pause": lambda: None, "resume": lambda: None, "buffer": None}, ValueError, "bounded"),
        ({"pause": 1, "resume": 2}, TypeError, "callables"),
        ({"buffer": 8, "low_water": 8}, ValueError, "low_water"),
    ],
)
def test_bad_arguments_fail_at_once(
    kwargs: dict[str, Any], exc: type[Exception], words: str
) -> None:
    with pytest.raises(exc, match=words):
        callbacks.to_aiter(lambda emit: None, **kwargs)


def test_subscribe_must_be_a_plain_function() -> None:
    with pytest.raises(TypeError, match="subscribe"):
        callbacks.to_aiter(42)  # type: ignore[arg-type]

    async def subscribe(emit: Emitter[int]) -> None:
        pass

    with pytest.raises(TypeError, match="not an async one"):
        callbacks.to_aiter(subscribe)  # type: ignore[arg-type]


async def test_subscribe_must_return_a_callable_or_none() -> None:
    it: BufferedIterator[int] = callbacks.to_aiter(lambda emit: 42)  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match=r"\.close or \.cancel"):
        await it.__anext__()


async def test_emit_error_takes_an_exception() -> None:
    emitters: list[Emitter[int]] = []
    async with callbacks.to_aiter(emitters.append):
        with pytest.raises(TypeError, match="exception instance"):
            emitters[0].error("boom")  # type: ignore[arg-type]


# ----------------------------------------------------------------- many threads


async def test_eight_threads_of_100k_values_none_lost_ordered_bounded() -> None:
    threads_n, per_thread, buffer = 8, 100_000, 64
    pool = ThreadPoolExecutor(threads_n, thread_name_prefix="legacy-pool")
    try:

        def subscribe(emit: Emitter[tuple[int, int]]) -> Callable[[], object]:
            def work(t: int) -> None:
                send = emit.send
                for i in range(per_thread):
                    if not send((t, i)):
                        return

            futures = [pool.submit(work, t) for t in range(threads_n)]
            lock = threading.Lock()
            pending = [threads_n]

            def done(f: Future[None]) -> None:
                if f.exception() is not None:
                    emit.error(f.exception())  # type: ignore[arg-type]
                with lock:
                    pending[0] -= 1
                    if pending[0] == 0:
                        emit.close()

            for f in futures:
                f.add_done_callback(done)
            return lambda: [f.cancel() for f in futures]

        last = [-1] * threads_n
        count = 0
        async with callbacks.to_aiter(subscribe, buffer=buffer) as it:
            async for t, i in it:
                assert i == last[t] + 1, f"thread {t}: {i} after {last[t]}"
                last[t] = i
                count += 1
        assert count == threads_n * per_thread
        assert last == [per_thread - 1] * threads_n
        assert it.stats.high_water <= buffer
        assert it.stats.delivered == count
    finally:
        pool.shutdown(wait=True)


# ----------------------------------------------------------------- pause / resume


class LoopProducer:
    """A fast source on the event-loop thread: ``burst`` values per loop turn,
    honouring pause after ``late`` more values (0: at once), like a transport."""

    def __init__(self, n: int, *, burst: int = 50, late: int = 0) -> None:
        self.n = n
        self.burst = burst
        self.late = late
        self.i = 0
        self.paused = False
        self.stopped = False
        self.calls: list[str] = []
        self.refused = 0
        self._scheduled = False
        self._emit: Emitter[int] | None = None
        self._soon: Callable[[Callable[[], None]], object] | None = None

    def subscribe(self, emit: Emitter[int]) -> Callable[[], None]:
        import sniffio

        self._emit = emit
        if sniffio.current_async_library() == "trio":
            import trio

            self._soon = trio.lowlevel.current_trio_token().run_sync_soon
        else:
            self._soon = asyncio.get_running_loop().call_soon
        self._schedule()
        return self.stop

    def stop(self) -> None:
        self.stopped = True

    def _schedule(self) -> None:
        if not self._scheduled and not self.stopped:
            assert self._soon is not None
            self._scheduled = True
            self._soon(self._step)

    def _step(self) -> None:
        assert self._emit is not None
        self._scheduled = False
        grace = self.late
        for _ in range(self.burst):
            if self.stopped:
                return
            if self.paused:
                if grace == 0:
                    return
                grace -= 1
            if self.i == self.n:
                self.stopped = True
                self._emit.close()
                return
            if not self._emit.send(self.i):
                self.refused += 1
                return
            self.i += 1
        self._schedule()

    def pause(self) -> None:
        self.calls.append("pause")
        self.paused = True

    def resume(self) -> None:
        self.calls.append("resume")
        self.paused = False
        self._schedule()


@pytest.mark.parametrize(("buffer", "low_water"), [(1, None), (16, None), (64, 60), (64, 0)])
async def test_pause_resume_fast_loop_producer_slow_consumer(
    buffer: int, low_water: int | None
) -> None:
    n = 5000
    source = LoopProducer(n)
    it = callbacks.to_aiter(
        source.subscribe,
        buffer=buffer,
        pause=source.pause,
        resume=source.resume,
        low_water=low_water,
    )
    got = []
    async with it:
        async for v in it:
            got.append(v)
            assert it.stats.buffered <= buffer
            for _ in range(3):  # a slow consumer
                await anyio.lowlevel.checkpoint()
    assert got == list(range(n))  # never an error, nothing dropped
    assert source.refused == 0
    assert it.stats.high_water <= buffer, "a source that honours pause at once never overshoots"
    calls = source.calls
    assert len(calls) >= 10, calls
    assert calls == ["pause", "resume"] * (len(calls) // 2) + ["pause"] * (len(calls) % 2)
    assert it.stats.pauses == calls.count("pause")


async def test_values_a_source_delivers_after_pause_are_kept() -> None:
    source = LoopProducer(2000, late=5)
    it = callbacks.to_aiter(source.subscribe, buffer=8, pause=source.pause, resume=source.resume)
    got = [v async for v in it]
    assert got == list(range(2000))
    assert it.stats.high_water == 8 + 5  # the overshoot shows in the stats (R3's exception)
    assert it.stats.dropped == 0


async def test_a_raising_hook_fails_the_stream_after_the_values() -> None:
    boom = BoomError("pause_reading failed")

    def pause() -> None:
        raise boom

    def subscribe(emit: Emitter[int]) -> None:
        for v in range(10):
            emit.send(v)

    got: list[int] = []
    with pytest.raises(BoomError) as info:
        async for v in callbacks.to_aiter(subscribe, buffer=4, pause=pause, resume=lambda: None):
            got.append(v)
    assert info.value is boom
    assert got == [0, 1, 2, 3]


# ----------------------------------------------------------------- logging.Handler


class EmitHandler(logging.Handler):
    """Log records into an emitter: the classic legacy callback API."""

    def __init__(self, emitter: Emitter[logging.LogRecord]) -> None:
        super().__init__()
        self.emitter = emitter

    def emit(self, record: logging.LogRecord) -> None:
        self.emitter.send(record)


@pytest.fixture
def legacy_logger() -> Iterator[logging.Logger]:
    log = logging.getLogger("tests.callbacks.legacy")
    log.setLevel(logging.INFO)
    log.propagate = False
    yield log
    for handler in _ours(log):
        log.removeHandler(handler)


def _ours(log: logging.Logger) -> list[logging.Handler]:
    return [h for h in log.handlers if isinstance(h, EmitHandler)]


def _log_records(log: logging.Logger) -> Callable[[Emitter[logging.LogRecord]], Callable[[], None]]:
    def subscribe(emit: Emitter[logging.LogRecord]) -> Callable[[], None]:
        handler = EmitHandler(emit)
        log.addHandler(handler)
        return lambda: log.removeHandler(handler)

    return subscribe


async def test_logging_handler_records_from_threads(legacy_logger: logging.Logger) -> None:
    threads_n, per_thread = 3, 300
    it = callbacks.to_aiter(_log_records(legacy_logger), buffer=16)
    assert _ours(legacy_logger) == []  # lazy
    workers: list[threading.Thread] = []
    seen: dict[str, list[int]] = {}
    async with it:
        assert len(_ours(legacy_logger)) == 1

        def work(name: str) -> None:
            for i in range(per_thread):
                legacy_logger.info("%s %d", name, i)

        for t in range(threads_n):
            workers.append(threading.Thread(target=work, args=(f"w{t}",), name=f"w{t}"))
            workers[-1].start()
        async for record in it:
            name, i = record.getMessage().split()
            assert record.threadName == name
            seen.setdefault(name, []).append(int(i))
            if sum(map(len, seen.values())) == threads_n * per_thread:
                break
    assert _ours(legacy_logger) == []  # unsubscribed
    for w in workers:
        await anyio.to_thread.run_sync(w.join, 5)
    assert all(v == list(range(per_thread)) for v in seen.values())
    assert it.stats.high_water <= 16
    legacy_logger.info("after the stream: nobody listens")


async def test_logging_on_the_loop_thread_keeps_the_latest(legacy_logger: logging.Logger) -> None:
    async with callbacks.to_aiter(
        _log_records(legacy_logger), buffer=10, overflow="drop_oldest"
    ) as it:
        for i in range(100):  # the loop thread logs: it must not block, so drop the oldest
            legacy_logger.warning("tick %d", i)
        got = []
        async for record in it:
            got.append(record.getMessage())
            if len(got) == 10:
                break
    assert got == [f"tick {i}" for i in range(90, 100)]
    assert it.stats.dropped == 90


# ----------------------------------------------------------------- threading.Timer


class Ticker:
    """A legacy periodic API: calls ``on_tick(n)`` from a threading.Timer every
    ``interval`` seconds until cancelled."""

    def __init__(self, interval: float, on_tick: Callable[[int], object]) -> None:
        self.interval = interval
        self.on_tick = on_tick
        self.n = 0
        self.timers: list[threading.Timer] = []
        self._lock = threading.Lock()
        self._cancelled = False

    def start(self) -> None:
        with self._lock:
            if self._cancelled:
                return
            timer = threading.Timer(self.interval, self._fire)
            self.timers.append(timer)
            timer.start()

    def _fire(self) -> None:
        n = self.n
        self.n += 1
        self.on_tick(n)
        self.start()

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            timers = list(self.timers)
        for t in timers:
            t.cancel()


async def test_threading_timer_ticks_until_unsubscribed() -> None:
    tickers: list[Ticker] = []
    fired_at_unsubscribe: list[int] = []

    def subscribe(emit: Emitter[int]) -> Callable[[], None]:
        ticker = Ticker(0.001, emit.send)
        tickers.append(ticker)
        ticker.start()

        def unsubscribe() -> None:
            # Read the count after the cancel: before it, a tick running now could
            # still start the next timer, and that one could fire too.
            ticker.cancel()
            fired_at_unsubscribe.append(ticker.n)

        return unsubscribe

    got = []
    async with callbacks.to_aiter(subscribe, buffer=1) as it:
        async for n in it:
            got.append(n)
            if n == 4:
                # buffer 1: past the 5th tick, at most one is held and one blocked in send
                assert tickers[0].n <= 7
                break
    assert got == [0, 1, 2, 3, 4]
    assert len(fired_at_unsubscribe) == 1
    ticker = tickers[0]
    for t in list(ticker.timers):
        await anyio.to_thread.run_sync(t.join, 5)
    # The exit wakes the blocked send first (it returns False), so the ticker may start
    # more timers before the unsubscribe; once it has cancelled, only a tick already
    # past its timer's wait can still run, and it starts no other.
    fired = ticker.n
    assert fired <= fired_at_unsubscribe[0] + 1
    ticker.start()  # cancelled: starts nothing
    assert all(not t.is_alive() for t in ticker.timers)
    assert ticker.n == fired


async def test_threading_timer_ends_the_stream() -> None:
    def subscribe(emit: Emitter[str]) -> Callable[[], None]:
        emit.send("armed")
        timer = threading.Timer(0.001, emit.close)
        timer.start()
        return timer.cancel

    assert [v async for v in callbacks.to_aiter(subscribe)] == ["armed"]


# ----------------------------------------------------------------- TCP: the client is slowed

PAYLOAD = 8 * 1024 * 1024
KERNEL_BUF = 64 * 1024


class Client:
    """A plain non-blocking TCP client that writes ``payload`` as fast as the server takes it."""

    def __init__(self, address: tuple[str, int], payload: bytes) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, KERNEL_BUF)
        self.sock.connect(address)  # loopback, listening: completes at once
        self.sock.setblocking(False)
        self.payload = memoryview(payload)
        self.sent = 0
        self.would_block = 0

    def push(self) -> int:
        """Write until the kernel says the write would block; return the bytes written."""
        start = self.sent
        while self.sent < len(self.payload):
            try:
                self.sent += self.sock.send(self.payload[self.sent : self.sent + 65536])
            except BlockingIOError:
                self.would_block += 1
                break
        return self.sent - start

    async def write_until_stuck(self, paused: Callable[[], bool]) -> None:
        """Write while the consumer stalls, until the server has paused and writes stay blocked.

        Ends early if everything got through (then backpressure is broken: the test fails).
        """
        idle = 0
        with anyio.fail_after(20):
            while idle < 20 and self.sent < len(self.payload):
                progress = self.push()
                idle = idle + 1 if paused() and not progress else 0
                await anyio.lowlevel.checkpoint()

    async def write_rest(self) -> None:
        while self.sent < len(self.payload):
            if not self.push():
                await anyio.wait_writable(self.sock)
        self.sock.shutdown(socket.SHUT_WR)

    def kernel_bound(self, server_sock: socket.socket) -> int:
        """Bytes the two kernel buffers can hold between client and server (with slack)."""
        sndbuf = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        rcvbuf = server_sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        return 2 * (sndbuf + rcvbuf)


def _listener() -> socket.socket:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, KERNEL_BUF)  # inherited on accept
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    return listener


class Meter:
    """Bytes the server's callback handed to the bridge vs bytes the consumer took out."""

    def __init__(self) -> None:
        self.received = 0
        self.taken = 0
        self.max_held = 0
        self.max_chunk = 0
        #: chunks the source delivered while it was paused (it honoured pause late)
        self.late = 0
        self.hooks: list[str] = []

    @property
    def held(self) -> int:
        return self.received - self.taken

    def chunk(self, size: int, *, paused: bool) -> None:
        self.received += size
        self.max_chunk = max(self.max_chunk, size)
        self.late += paused


async def _stall_then_drain(
    it: BufferedIterator[bytes],
    client: Client,
    meter: Meter,
    *,
    buffer: int,
    paused: Callable[[], bool],
    kernel_bound: int,
) -> None:
    digest = hashlib.sha256()
    async with it:
        # the consumer takes nothing while the client writes all it can
        await client.write_until_stuck(paused)
        assert paused(), "the source was not paused"
        assert client.sent < PAYLOAD, "the client was never slowed: backpressure is broken"
        assert client.would_block > 0, "the client's writes never blocked"
        # what the client got rid of sits in the bridge or in the kernel buffers: bounded
        assert it.stats.buffered <= buffer + meter.late
        assert meter.held <= (buffer + meter.late) * meter.max_chunk
        assert client.sent <= meter.held + kernel_bound
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.write_rest)
            async for chunk in it:
                meter.taken += len(chunk)
                digest.update(chunk)
                meter.max_held = max(meter.max_held, meter.held)
                for _ in range(10):  # still a slow consumer: the source pauses again and again
                    await anyio.lowlevel.checkpoint()
    assert digest.digest() == hashlib.sha256(client.payload).digest(), "bytes lost or reordered"
    assert meter.late <= buffer, "the source honoured pause very late"
    assert it.stats.high_water <= buffer + meter.late
    assert meter.max_held <= (buffer + meter.late) * meter.max_chunk
    hooks = meter.hooks
    assert len(hooks) >= 6, hooks
    assert hooks == ["pause", "resume"] * (len(hooks) // 2) + ["pause"] * (len(hooks) % 2)


@pytest.mark.parametrize("anyio_backend", ASYNCIO_BACKENDS)
async def test_asyncio_protocol_pause_reading_slows_the_client(backend_name: str) -> None:
    buffer = 4
    meter = Meter()
    connected = anyio.Event()

    class Feed(asyncio.Protocol):
        """The server's protocol: data_received feeds whoever subscribed."""

        transport: Any = None
        emit: Emitter[bytes] | None = None
        early: list[bytes]

        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            self.early = []
            transport.pause_reading()  # nobody listens yet
            connected.set()

        def data_received(self, data: bytes) -> None:
            meter.chunk(len(data), paused=not self.transport.is_reading())
            if self.emit is None:
                self.early.append(data)  # uvloop may read once more after pause_reading
            else:
                assert self.emit.send(data), "a paused source's value must be kept"
            meter.max_held = max(meter.max_held, meter.held)

        def eof_received(self) -> None:
            if self.emit is not None:
                self.emit.close()

        def connection_lost(self, exc: Exception | None) -> None:
            if self.emit is not None:
                if exc is None:
                    self.emit.close()
                else:
                    self.emit.error(exc)

    unsubscribed: list[int] = []
    feed = Feed()

    def subscribe(emit: Emitter[bytes]) -> Callable[[], None]:
        for data in feed.early:
            emit.send(data)
        feed.emit = emit
        feed.transport.resume_reading()

        def unsubscribe() -> None:
            unsubscribed.append(1)
            feed.transport.close()

        return unsubscribe

    def pause() -> None:
        meter.hooks.append("pause")
        feed.transport.pause_reading()

    def resume() -> None:
        meter.hooks.append("resume")
        feed.transport.resume_reading()

    listener = _listener()
    server = await asyncio.get_running_loop().create_server(lambda: feed, sock=listener)
    client = Client(listener.getsockname(), os.urandom(PAYLOAD))
    try:
        with anyio.fail_after(5):
            await connected.wait()
        it = callbacks.to_aiter(subscribe, buffer=buffer, pause=pause, resume=resume)
        client.push()
        for _ in range(5):
            await anyio.lowlevel.checkpoint()
        assert feed.emit is None  # lazy: nobody subscribed before the first __anext__
        await _stall_then_drain(
            it,
            client,
            meter,
            buffer=buffer,
            paused=lambda: not feed.transport.is_reading(),
            kernel_bound=client.kernel_bound(listener),
        )
        assert unsubscribed == [1]
        # a transport honours pause_reading at its next read: a value or two
        # already read may still arrive, and is kept (R3's exception), not dropped
        assert meter.late <= buffer
    finally:
        client.sock.close()
        server.close()
        await server.wait_closed()


class TrioSocketFeed:
    """A trio-native callback source: a recv loop that calls ``on_data(chunk)`` per
    chunk and ``on_eof()`` at the end; ``pause_reading``/``resume_reading`` stop and
    restart it (a trio.Event), like a transport's."""

    def __init__(self, sock: Any) -> None:
        import trio

        self.sock = sock
        self.reading = True
        self._go = trio.Event()
        self._go.set()

    def pause_reading(self) -> None:
        import trio

        if self.reading:
            self.reading = False
            self._go = trio.Event()

    def resume_reading(self) -> None:
        self.reading = True
        self._go.set()

    async def run(self, on_data: Callable[[bytes], object], on_eof: Callable[[], object]) -> None:
        while True:
            await self._go.wait()
            data = await self.sock.recv(65536)
            if not data:
                on_eof()
                return
            on_data(data)


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_trio_socket_reader_pause_slows_the_client() -> None:
    import trio
    import trio.testing

    buffer = 4
    meter = Meter()
    listener = _listener()
    client = Client(listener.getsockname(), os.urandom(PAYLOAD))
    server_listener = trio.socket.from_stdlib_socket(listener)
    conn, _ = await server_listener.accept()
    feed = TrioSocketFeed(conn)
    started: list[int] = []
    try:
        async with trio.open_nursery() as nursery:

            def subscribe(emit: Emitter[bytes]) -> Callable[[], None]:
                scope = trio.CancelScope()

                def on_data(chunk: bytes) -> None:
                    meter.chunk(len(chunk), paused=not feed.reading)
                    assert emit.send(chunk)

                async def reader() -> None:
                    with scope:
                        await feed.run(on_data, emit.close)

                started.append(1)
                nursery.start_soon(reader)
                return scope.cancel

            def pause() -> None:
                meter.hooks.append("pause")
                feed.pause_reading()

            def resume() -> None:
                meter.hooks.append("resume")
                feed.resume_reading()

            it = callbacks.to_aiter(subscribe, buffer=buffer, pause=pause, resume=resume)
            client.push()
            await trio.testing.wait_all_tasks_blocked()
            assert started == []  # lazy: the reader starts at the first __anext__
            await _stall_then_drain(
                it,
                client,
                meter,
                buffer=buffer,
                paused=lambda: not feed.reading,
                kernel_bound=client.kernel_bound(listener),
            )
            assert meter.late == 0, "this reader honours pause before its next recv"
    finally:
        client.sock.close()
        conn.close()
        server_listener.close()


# ----------------------------------------------------------------- from_aiter


async def test_from_aiter_sync_callbacks() -> None:
    source = RecordingSource(range(5))
    got: list[int] = []
    done: list[str] = []
    await callbacks.from_aiter(source, got.append, on_completed=lambda: done.append("done"))
    assert got == [0, 1, 2, 3, 4]
    assert done == ["done"]
    assert source.closed == 1


async def test_from_aiter_awaits_an_async_on_next_before_pulling() -> None:
    source = RecordingSource(range(20))
    log: list[tuple[int, int]] = []

    async def on_next(v: int) -> None:
        log.append((v, source.pulled))
        for _ in range(3):
            await anyio.lowlevel.checkpoint()
        log.append((v, source.pulled))  # nothing pulled while the callback ran

    async def on_completed() -> None:
        await anyio.lowlevel.checkpoint()
        log.append((-1, source.pulled))

    await callbacks.from_aiter(source, on_next, on_completed=on_completed)
    assert log[:-1] == [(v, v + 1) for v in range(20) for _ in range(2)]
    assert log[-1] == (-1, 21)


async def test_from_aiter_source_error_goes_to_on_error_once() -> None:
    boom = BoomError()
    errors: list[BaseException] = []
    done: list[int] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    got: list[int] = []
    source = RecordingSource(range(3), error=boom)
    await callbacks.from_aiter(
        source, got.append, on_error=on_error, on_completed=lambda: done.append(1)
    )
    assert got == [0, 1, 2]
    assert errors == [boom] and errors[0] is boom
    assert done == []
    assert source.closed == 1


async def test_from_aiter_source_error_propagates_without_on_error() -> None:
    boom = BoomError()
    source = RecordingSource(range(3), error=boom)
    with pytest.raises(BoomError) as info:
        await callbacks.from_aiter(source, lambda v: None)
    assert info.value is boom
    assert source.closed == 1


@pytest.mark.parametrize("is_async", [False, True])
async def test_from_aiter_on_next_raising_closes_the_source(is_async: bool) -> None:
    source = RecordingSource(range(100), hang=True)
    errors: list[BaseException] = []

    def sync_next(v: int) -> None:
        if v == 3:
            raise BoomError

    async def async_next(v: int) -> None:
        sync_next(v)

    with pytest.raises(BoomError):
        await callbacks.from_aiter(
            source, async_next if is_async else sync_next, on_error=errors.append
        )
    assert source.closed == 1
    assert source.pulled == 4
    assert errors == []  # a receiver error is not a source error


async def test_from_aiter_cancellation_closes_the_source() -> None:
    source = RecordingSource(range(2), hang=True)
    got: list[int] = []
    with anyio.move_on_after(0.05) as scope:
        await callbacks.from_aiter(source, got.append, on_error=lambda e: got.append(-1))
    assert scope.cancelled_caught
    assert got == [0, 1]
    assert source.closed == 1


async def test_from_aiter_cancelled_runs_a_source_cleanup_that_awaits() -> None:
    source = AwaitingCleanup()
    got: list[int] = []

    async def on_next(v: int) -> None:
        got.append(v)
        await anyio.sleep_forever()  # the source waits at a yield

    await cancel_once_waiting(callbacks.from_aiter, source, on_next)
    assert got == [0]
    source.assert_cleaned()


async def test_from_aiter_on_next_raising_during_a_cancellation_runs_a_source_cleanup_that_awaits(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # the callback fails just as a cancellation from outside comes: its error wins,
    # the source's cleanup still runs to the end, and nothing is logged
    source = AwaitingCleanup()
    mistake = BoomError("callback bug")
    with pytest.raises(BoomError) as info, anyio.CancelScope() as outside:

        def on_next(v: int) -> None:
            outside.cancel()
            raise mistake

        await callbacks.from_aiter(source, on_next)
    assert info.value is mistake
    assert source.cleaned, "the source's cleanup was cut short by the cancellation"
    assert not [r for r in caplog.records if r.name == "bridges"]


async def test_from_aiter_cleanup_error_is_logged_behind_the_callbacks_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = RecordingSource(range(10), hang=True)
    source.cleanup_error = RuntimeError("close failed")

    def on_next(v: int) -> None:
        raise BoomError

    with pytest.raises(BoomError):
        await callbacks.from_aiter(source, on_next)
    assert "close failed" in caplog.text


async def test_from_aiter_cleanup_error_after_the_end_is_raised() -> None:
    source = RecordingSource(range(2))
    source.cleanup_error = RuntimeError("close failed")
    with pytest.raises(RuntimeError, match="close failed"):
        await callbacks.from_aiter(source, lambda v: None)


async def test_from_aiter_a_busy_source_does_not_starve_the_loop() -> None:
    async def busy() -> AsyncIterator[int]:
        for i in range(10_000):
            yield i  # never waits

    ticks: list[int] = []
    seen = 0

    def on_next(v: int) -> None:
        nonlocal seen
        seen += 1

    async def other() -> None:
        while True:
            ticks.append(seen)
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        tg.start_soon(other)
        await anyio.lowlevel.checkpoint()
        await callbacks.from_aiter(busy(), on_next)
        tg.cancel_scope.cancel()
    assert seen == 10_000
    assert len({t for t in ticks if 0 < t < 10_000}) > 10, "the other task never ran meanwhile"


async def test_from_aiter_validates() -> None:
    with pytest.raises(TypeError, match="async iterable"):
        await callbacks.from_aiter(42, print)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"bridges\.threads"):
        await callbacks.from_aiter([1, 2], print)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="on_next must be callable"):
        await callbacks.from_aiter(RecordingSource(range(1)), 3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="on_error must be callable"):
        await callbacks.from_aiter(RecordingSource(range(1)), print, on_error=3)  # type: ignore[arg-type]


async def test_an_async_unsubscribe_is_awaited_before_the_block_exits() -> None:
    # regression: an async unsubscribe was called and its coroutine dropped, so
    # the source's observer thread (a file watcher's) ran on after the block
    stop = threading.Event()
    watcher = threading.Thread(target=stop.wait, name="watcher")

    async def unsubscribe() -> None:
        stop.set()
        await anyio.to_thread.run_sync(watcher.join)

    def subscribe(emit: Emitter[int]) -> Callable[[], Any]:
        watcher.start()
        return unsubscribe

    async with callbacks.to_aiter(subscribe):
        assert watcher.is_alive()
    assert not watcher.is_alive()


async def test_an_async_pause_is_refused_instead_of_letting_values_pile_up() -> None:
    # regression: an async pause() made a coroutine nobody awaited, and a
    # loop-thread source went on: 992 values piled up in a buffer of 4
    async def pause() -> None:
        pass

    with pytest.raises(TypeError, match="pause_reading"):
        callbacks.to_aiter(lambda emit: None, buffer=4, pause=pause, resume=lambda: None)


# ------------------------------------------------- a stop that joins its own thread


class NetClient:
    """A callback API with a network thread of its own; ``loop_stop()`` joins that thread.

    Once the "broker" has died, the network thread cannot end before the event
    loop has run a little (``loop_ran``): a stop that blocks the loop thread
    would wait for it forever (bounded here, so the test fails instead of hanging).
    """

    def __init__(self) -> None:
        self.inbox: queue.Queue[object] = queue.Queue()
        self.on_message: Callable[[object], object] | None = None
        self.stopping = threading.Event()
        self.loop_ran = threading.Event()
        self.broker_dead = False
        self.stopped_on: list[str] = []
        self._thread: threading.Thread | None = None

    def loop_start(self) -> None:
        self._thread = threading.Thread(target=self._network, name="net-client")
        self._thread.start()

    def _network(self) -> None:
        while not self.stopping.is_set():
            try:
                message = self.inbox.get(timeout=0.01)
            except queue.Empty:
                continue
            if self.on_message is not None:
                self.on_message(message)
        if self.broker_dead:
            self.loop_ran.wait(2)  # the reconnect wait: ends once the loop has run meanwhile

    def loop_stop(self) -> None:
        self.stopped_on.append(threading.current_thread().name)
        self.stopping.set()
        assert self._thread is not None
        self._thread.join(5)


@pytest.mark.parametrize("leave", ["break", "cancel"])
async def test_a_blocking_stop_run_in_a_worker_thread_leaves_the_loop_free(leave: str) -> None:
    client = NetClient()

    def subscribe(emit: Emitter[object]) -> Callable[[], Any]:
        client.on_message = emit.send
        client.loop_start()

        async def unsubscribe() -> None:
            client.on_message = None
            await anyio.to_thread.run_sync(client.loop_stop)

        return unsubscribe

    async def ticker() -> None:
        # another task of the application: it runs while the stop waits
        with anyio.fail_after(5):
            while not client.stopping.is_set():
                await anyio.sleep(0.001)
            await anyio.lowlevel.checkpoint()
            client.loop_ran.set()

    got: list[object] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        with anyio.CancelScope() as scope:
            async with callbacks.to_aiter(subscribe, buffer=8) as it:
                client.inbox.put("reading")
                got.append(await it.__anext__())
                client.broker_dead = True
                if leave == "cancel":
                    scope.cancel()
                    await anyio.sleep_forever()
    assert got == ["reading"]
    assert client.loop_ran.is_set(), "the loop ran other tasks while the stop waited"
    assert client.stopped_on and client.stopped_on[0] != threading.current_thread().name
    assert client._thread is not None and not client._thread.is_alive(), "joined before the exit"
