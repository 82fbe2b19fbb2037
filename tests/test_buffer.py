"""The hand-off core, with real threads and every backend."""

from __future__ import annotations

import signal
import threading
import time
from collections import defaultdict

import anyio
import anyio.lowlevel
import pytest

import bridges
from bridges import BufferOverflowError, Overflow
from bridges._buffer import CLOSED, DROPPED, FULL, GONE, OVERFLOWED, TAKEN, Handoff

from .sources import Caught, assert_values_then_error

pytestmark = pytest.mark.anyio


# --------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "exc", "words"),
    [
        ({"buffer": -1}, ValueError, ">= 0"),
        ({"buffer": 1.5}, TypeError, "int"),
        ({"buffer": True}, TypeError, "int"),
        ({"buffer": "8"}, TypeError, "int"),
        ({"overflow": "drop"}, ValueError, "drop_oldest"),
        ({"overflow": 3}, TypeError, "Overflow"),
        ({"buffer": 0, "overflow": "drop_oldest"}, ValueError, "buffer=1"),
        ({"pause": lambda: None}, ValueError, "pair"),
        ({"pause": 1, "resume": 2}, TypeError, "callables"),
        ({"buffer": None, "pause": lambda: None, "resume": lambda: None}, ValueError, "bounded"),
        ({"buffer": 8, "low_water": 8}, ValueError, "low_water"),
        ({"buffer": 8, "low_water": "1"}, TypeError, "low_water"),
    ],
)
def test_bad_arguments_fail_fast(
    kwargs: dict[str, object], exc: type[Exception], words: str
) -> None:
    with pytest.raises(exc, match=words):
        Handoff(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [{"buffer": -3}, {"overflow": "nope"}, {"buffer": "x"}])
def test_open_channel_validates(bad: dict[str, object]) -> None:
    with pytest.raises((ValueError, TypeError)):
        bridges.open_channel(**bad)  # type: ignore[arg-type]


def test_overflow_accepts_strings() -> None:
    assert Overflow.parse("drop_newest") is Overflow.DROP_NEWEST
    assert Overflow("error") is Overflow.ERROR
    assert Overflow.parse(Overflow.BLOCK) is Overflow.BLOCK


# --------------------------------------------------------------------- policies


def test_drop_oldest_keeps_the_latest() -> None:
    h: Handoff[int] = Handoff(3, "drop_oldest")
    assert [h.put_nowait(i) for i in range(10)] == [TAKEN] * 10
    assert list(h._items) == [7, 8, 9]
    assert h.stats.dropped == 7
    assert h.stats.high_water == 3


def test_drop_newest_keeps_the_first() -> None:
    h: Handoff[int] = Handoff(3, "drop_newest")
    results = [h.put_nowait(i) for i in range(10)]
    assert results == [TAKEN] * 3 + [DROPPED] * 7
    assert list(h._items) == [0, 1, 2]
    assert h.stats.dropped == 7


async def test_error_policy_fails_after_buffered_values() -> None:
    h: Handoff[int] = Handoff(2, "error")
    assert [h.put_nowait(i) for i in range(4)] == [TAKEN, TAKEN, OVERFLOWED, CLOSED]
    assert [await h.get(), await h.get()] == [0, 1]
    with pytest.raises(BufferOverflowError, match='overflow="error"'):
        await h.get()
    with pytest.raises(StopAsyncIteration):
        await h.get()


def test_block_reports_full_without_waiting() -> None:
    h: Handoff[int] = Handoff(1)
    assert h.put_nowait(1) is TAKEN
    assert h.put_nowait(2) is FULL
    assert h.stats.dropped == 0


async def test_conflation_is_buffer_one_drop_oldest() -> None:
    send, receive = bridges.open_channel[int](1, "drop_oldest")
    for i in range(100):
        await send.send(i)
    send.close()
    assert [x async for x in receive] == [99]
    assert receive.stats.dropped == 99


# --------------------------------------------------------------------- R8


async def test_loop_thread_producer_never_blocks_r8() -> None:
    h: Handoff[int] = Handoff(2)
    assert h.put_sync(1) is TAKEN
    assert h.put_sync(2) is TAKEN
    # the loop thread must not block: the stream fails, naming the fixes
    assert h.put_sync(3) is OVERFLOWED
    assert await h.get() == 1
    assert await h.get() == 2
    with pytest.raises(BufferOverflowError) as info:
        await h.get()
    message = str(info.value)
    for fix in ("pause/resume", "another thread", "buffer=", "drop_oldest"):
        assert fix in message


async def test_pause_resume_keeps_late_values_and_alternates() -> None:
    calls: list[str] = []
    h: Handoff[int] = Handoff(
        4, pause=lambda: calls.append("pause"), resume=lambda: calls.append("resume"), low_water=1
    )
    for i in range(6):  # 2 beyond the capacity: a source that honours pause late
        assert h.put_sync(i) is TAKEN
    assert calls == ["pause"]
    assert h.stats.high_water == 6
    assert h.stats.pauses == 1
    got = [await h.get() for _ in range(5)]  # down to 1 left: resume
    assert got == [0, 1, 2, 3, 4]
    assert calls == ["pause", "resume"]
    for i in range(6, 12):
        h.put_sync(i)
    assert calls == ["pause", "resume", "pause"]


async def test_pause_from_inside_resume_is_called_at_once() -> None:
    # asyncio's transports call pause_writing() from inside resume_writing() when
    # the protocol writes there: a source that floods inside resume() is paused
    # as soon as it fills the buffer, not after resume() returns
    calls: list[str] = []
    h: Handoff[int] = Handoff(
        2, low_water=0, pause=lambda: calls.append("pause"), resume=lambda: resume()
    )

    def resume() -> None:
        calls.append("resume")
        for i in range(3):  # an API that flushes on resume, overfilling at once
            h.put_sync(100 + i)
        calls.append("resume-done")

    h.put_sync(0)
    h.put_sync(1)
    h.put_sync(2)
    assert calls == ["pause"]
    for _ in range(3):
        await h.get()
    assert calls == ["pause", "resume", "pause", "resume-done"]


# --------------------------------------------------------------------- threads


async def test_many_producer_threads_complete_ordered_bounded() -> None:
    threads_n, per_thread, capacity = 8, 5000, 16
    send, receive = bridges.open_channel[tuple[int, int]](capacity)
    senders = [send.clone() for _ in range(threads_n)]
    send.close()

    def produce(k: int) -> None:
        with senders[k] as s:
            for i in range(per_thread):
                s.send_blocking((k, i))

    threads = [threading.Thread(target=produce, args=(k,)) for k in range(threads_n)]
    for t in threads:
        t.start()
    seen: dict[int, list[int]] = defaultdict(list)
    async with receive:
        async for k, i in receive:
            seen[k].append(i)
    for t in threads:
        t.join()
    assert dict(seen) == {k: list(range(per_thread)) for k in range(threads_n)}
    assert receive.stats.high_water <= capacity
    assert receive.stats.delivered == threads_n * per_thread


async def test_rendezvous_waits_for_the_receiver() -> None:
    send, receive = bridges.open_channel[int](0)
    got: list[int] = []
    done = threading.Event()

    def produce() -> None:
        with send:
            for i in range(200):
                send.send_blocking(i)
        done.set()

    t = threading.Thread(target=produce)
    t.start()
    async with receive:
        async for x in receive:
            got.append(x)
    t.join()
    assert got == list(range(200))
    assert receive.stats.high_water == 0


async def test_blocked_thread_is_released_when_the_receiver_leaves() -> None:
    send, receive = bridges.open_channel[int](2)
    errors: list[BaseException] = []
    blocked = threading.Event()

    def produce() -> None:
        try:
            for i in range(10):
                if i == 2:
                    blocked.set()
                send.send_blocking(i)
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=produce)
    t.start()
    await anyio.to_thread.run_sync(blocked.wait)
    assert await receive.__anext__() == 0
    await receive.aclose()
    await anyio.to_thread.run_sync(t.join)
    assert len(errors) == 1
    assert isinstance(errors[0], anyio.BrokenResourceError)


async def test_send_blocking_times_out() -> None:
    send, receive = bridges.open_channel[int](1)
    caught = Caught(TimeoutError)

    def produce() -> None:
        send.send_blocking(1)
        caught.run_sync(send.send_blocking, 2, timeout=0.05)

    t = threading.Thread(target=produce)
    t.start()
    await anyio.to_thread.run_sync(t.join)
    assert len(caught.errors) == 1
    assert [await receive.receive()] == [1]
    assert receive.receive_nowait.__self__ is receive
    with pytest.raises(anyio.WouldBlock):
        receive.receive_nowait()
    await receive.aclose()


async def test_send_blocking_on_loop_thread_is_refused() -> None:
    send, receive = bridges.open_channel[int](1)
    with pytest.raises(RuntimeError, match=r"await sender\.send"):
        send.send_blocking(1)
    await receive.aclose()


# --------------------------------------------------------------------- channel API


async def test_fail_carries_the_error_in_band() -> None:
    send, receive = bridges.open_channel[int](8)
    boom = KeyError("boom")
    await send.send(1)
    await send.send(2)
    send.fail(boom)
    await assert_values_then_error(receive, [1, 2], boom)


async def test_receiver_close_breaks_waiting_sender() -> None:
    send, receive = bridges.open_channel[int](1)
    await send.send(0)
    caught = Caught(anyio.BrokenResourceError)
    async with anyio.create_task_group() as tg:
        tg.start_soon(caught.run, send.send, 1)
        await anyio.wait_all_tasks_blocked()
        await receive.aclose()
    assert len(caught.errors) == 1
    with pytest.raises(anyio.BrokenResourceError):
        await send.send(2)
    with pytest.raises(anyio.ClosedResourceError):
        await receive.receive()


async def test_closed_sender_raises_closed_resource() -> None:
    send, receive = bridges.open_channel[int](1)
    send.close()
    with pytest.raises(anyio.ClosedResourceError):
        await send.send(1)
    with pytest.raises(anyio.EndOfStream):
        await receive.receive()
    await receive.aclose()


async def test_cancelled_receive_loses_nothing() -> None:
    send, receive = bridges.open_channel[int](4)
    async with receive:
        with anyio.move_on_after(0.01):
            await receive.receive()
        await send.send(7)
        assert await receive.receive() == 7


async def test_cancelled_send_withdraws_the_value() -> None:
    send, receive = bridges.open_channel[int](1)
    await send.send(1)
    with anyio.move_on_after(0.01):
        await send.send(2)
    send.close()
    assert [x async for x in receive] == [1]


async def test_sender_checkpoints_so_others_run() -> None:
    send, receive = bridges.open_channel[int](None)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        for i in range(10_000):
            await send.send(i)
        assert ticks > 10
        n = 0
        async for _ in receive:
            n += 1
            if n == 10_000:
                break
        tg.cancel_scope.cancel()
    await receive.aclose()


async def test_stats_snapshot_fields() -> None:
    send, receive = bridges.open_channel[int](4, "drop_newest")
    for i in range(6):
        await send.send(i)
    s = receive.stats
    assert (s.buffered, s.high_water, s.delivered, s.dropped, s.capacity) == (4, 4, 0, 2, 4)
    await receive.receive()
    assert receive.stats.delivered == 1
    await receive.aclose()


def test_consumer_gone_hook_runs_once() -> None:
    h: Handoff[int] = Handoff(1)
    calls: list[int] = []
    h.on_consumer_gone(lambda: calls.append(1))
    assert h.leave()
    assert not h.leave()
    h.on_consumer_gone(lambda: calls.append(2))  # after the fact: runs at once
    assert calls == [1, 2]
    assert h.put_nowait(5) is GONE


# ------------------------------------------------------------ the interface


def test_result_refused_names_the_results_that_stop_a_producer() -> None:
    from bridges._buffer import WITHDRAWN, Result

    assert {r for r in Result if r.refused} == {CLOSED, GONE, OVERFLOWED, WITHDRAWN}
    assert not TAKEN  # the one false result: ``if result:`` singles out the rare paths


def test_state_moves_forward_and_take_end_gives_the_error_once() -> None:
    from bridges._buffer import State

    h: Handoff[int] = Handoff(4)
    assert h.state is State.OPEN
    error = ValueError("boom")
    h.put_nowait(1)
    h.fail(error)
    assert h.state is State.CLOSED
    assert h.get_nowait() == (True, 1)
    assert not h.ended
    assert h.take_end() is error
    assert h.ended
    assert h.take_end() is None
    h.leave()
    assert h.state is State.GONE


@pytest.mark.parametrize("linger", [0, -1.0, True, "1", float("nan")])
def test_bad_linger_fails_fast(linger: object) -> None:
    with pytest.raises(ValueError, match="linger"):
        Handoff(8, linger=linger)  # type: ignore[arg-type]


def test_linger_collects_a_burst_until_its_time_or_a_full_buffer() -> None:
    """After a wake-up that found a burst, the consumer lingers: a value does not wake
    it, its timer does; a full buffer wakes it at once (trio's autojump clock)."""
    import trio.testing

    async def main() -> None:
        h: Handoff[int] = Handoff(4, linger=10.0)
        got: list[tuple[int, float]] = []

        async def consume(n: int) -> None:
            for _ in range(n):
                got.append((await h.get(), anyio.current_time()))

        async with anyio.create_task_group() as tg:
            tg.start_soon(consume, 2)
            await anyio.wait_all_tasks_blocked()
            h.put_nowait(1)
            h.put_nowait(2)  # a burst: the consumer woke to more than one value
        assert [v for v, _ in got] == [1, 2]
        t0 = anyio.current_time()
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume, 1)
            await anyio.wait_all_tasks_blocked()
            assert h.stats.waiting_receivers == 1
            h.put_nowait(3)  # no wake-up while it lingers
            await anyio.wait_all_tasks_blocked()
            assert len(got) == 2
        assert got[2][0] == 3
        assert got[2][1] - t0 == pytest.approx(10.0)  # its timer woke it
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume, 1)
            await anyio.wait_all_tasks_blocked()
            t1 = anyio.current_time()
            for v in (4, 5, 6, 7):  # fills the buffer: woken at once
                h.put_nowait(v)
        assert got[3] == (4, t1)

    anyio.run(
        main,
        backend="trio",
        backend_options={"clock": trio.testing.MockClock(autojump_threshold=0)},
    )


class SignalledError(Exception):
    """Raised in the main thread by a signal handler, like a KeyboardInterrupt."""


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs POSIX signals")
def test_a_thread_interrupted_while_parked_in_put_sync_takes_its_value_back() -> None:
    # the main thread parks in put_sync (a full buffer); a signal interrupts the
    # wait: the value must leave the lot with it, not be delivered afterwards
    assert threading.current_thread() is threading.main_thread()
    h: Handoff[int] = Handoff(1)
    assert h.put_sync(1) is TAKEN

    def interrupt(signum: int, frame: object) -> None:
        raise SignalledError

    def when_parked() -> None:
        deadline = time.monotonic() + 10
        while h.stats.waiting_senders == 0:  # a real thread polls the public stats
            assert time.monotonic() < deadline, "put_sync never parked"
            time.sleep(0.001)
        signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1)  # type: ignore[arg-type]

    old = signal.signal(signal.SIGUSR1, interrupt)
    helper = threading.Thread(target=when_parked)
    try:
        helper.start()
        with pytest.raises(SignalledError):
            h.put_sync(2, timeout=10)
    finally:
        helper.join(10)
        signal.signal(signal.SIGUSR1, old)
    assert h.stats.waiting_senders == 0
    assert h.get_nowait() == (True, 1)
    assert h.get_nowait() == (False, None), "the interrupted put delivered its value"
