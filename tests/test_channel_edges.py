"""open_channel on its edges: close, dropped ends, cancellation, fairness (R16, R17, R19, R20).

anyio's memory object streams and trio's memory channels are the reference a
user brings along; these tests hold ``open_channel`` to the same behaviour on
asyncio, uvloop and trio (and from plain threads where the surface allows).
"""

from __future__ import annotations

import gc
import inspect
import itertools
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from anyio.lowlevel import checkpoint

import bridges
import bridges.callbacks
import bridges.streams

from .sources import Caught

pytestmark = pytest.mark.anyio


# ------------------------------------------------------------ exit by exception (R16)


class BoomError(Exception):
    pass


async def test_a_sync_with_block_left_by_an_error_fails_the_stream() -> None:
    send, receive = bridges.open_channel[int](8)
    boom = BoomError("the producer crashed")

    def producer() -> None:
        try:
            with send:
                send.send_blocking(1)
                send.send_blocking(2)
                raise boom
        except BoomError:
            pass

    thread = threading.Thread(target=producer)
    thread.start()
    got: list[int] = []
    async with receive:
        with pytest.raises(BoomError) as info:
            async for x in receive:
                got.append(x)
    await anyio.to_thread.run_sync(thread.join)
    assert info.value is boom
    assert got == [1, 2]


async def test_an_async_with_block_left_by_an_error_fails_the_stream() -> None:
    send, receive = bridges.open_channel[int](8)
    boom = BoomError()
    with pytest.raises(BoomError):
        async with send:
            await send.send(1)
            raise boom
    assert await receive.receive() == 1
    with pytest.raises(BoomError) as info:
        await receive.receive()
    assert info.value is boom
    with pytest.raises(anyio.EndOfStream):
        await receive.receive()  # the error arrives once
    await receive.aclose()


async def test_a_block_left_by_cancellation_fails_the_stream_with_a_named_cause() -> None:
    send, receive = bridges.open_channel[int](8)
    with anyio.CancelScope() as scope:
        async with send:
            await send.send(1)
            scope.cancel()
            await checkpoint()
    assert await receive.receive() == 1
    with pytest.raises(anyio.BrokenResourceError, match="left by") as info:
        await receive.receive()
    assert isinstance(info.value.__cause__, anyio.get_cancelled_exc_class())
    await receive.aclose()


async def test_a_clean_exit_still_ends_the_stream_cleanly() -> None:
    send, receive = bridges.open_channel[int](8)
    async with send:
        await send.send(1)
    async with receive:
        assert [x async for x in receive] == [1]


# ------------------------------------------------------------------ dropped ends (R17)


async def test_a_dropped_sender_warns_and_the_receiver_ends_with_an_error() -> None:
    send, receive = bridges.open_channel[int](8)
    await send.send(1)
    with pytest.warns(ResourceWarning, match="ChannelSender"):  # noqa: PT031 - the drop
        del send
        gc.collect()
    async with receive:
        assert await receive.receive() == 1
        with pytest.raises(anyio.BrokenResourceError, match="dropped without close"):
            await receive.receive()


async def test_a_dropped_receiver_warns_how_to_close_it_and_releases_the_senders() -> None:
    send, receive = bridges.open_channel[int](8)
    await send.send(1)
    with pytest.warns(ResourceWarning, match="ChannelReceiver .*its senders"):  # noqa: PT031
        del receive
        gc.collect()
    with pytest.raises(anyio.BrokenResourceError):
        await send.send(2)
    send.close()


async def test_a_dropped_clone_alone_does_not_end_the_stream() -> None:
    send, receive = bridges.open_channel[int](8)
    clone = send.clone()
    with pytest.warns(ResourceWarning):  # noqa: PT031 - the drop
        del clone
        gc.collect()
    await send.send(1)
    send.close()
    async with receive:
        assert [x async for x in receive] == [1]


async def test_a_thread_that_crashes_without_with_does_not_hang_its_consumer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    send, receive = bridges.open_channel[int](4)
    started = threading.Event()
    crashes: list[type[BaseException] | None] = []
    # the crash is expected: note its type and let its traceback (and the sender) go
    monkeypatch.setattr(threading, "excepthook", lambda args: crashes.append(args.exc_type))

    def producer(sender: bridges.ChannelSender[int]) -> None:
        for i in range(3):
            sender.send_blocking(i)
        started.set()
        raise BoomError("a crash, and no 'with sender:'")

    thread = threading.Thread(target=producer, args=(send,))
    del send  # the thread holds the only reference
    with pytest.warns(ResourceWarning, match="ChannelSender"):  # noqa: PT031 - one crash
        thread.start()
        await anyio.to_thread.run_sync(thread.join)
        del thread
        gc.collect()
    assert started.is_set()
    assert crashes == [BoomError]
    got: list[int] = []
    with anyio.fail_after(10):  # a hang is the bug: fail instead of waiting forever
        async with receive:
            with pytest.raises(anyio.BrokenResourceError):
                async for x in receive:
                    got.append(x)
    assert got == [0, 1, 2]


async def raised_once_blocked(
    call: Callable[[], Awaitable[object]], then: Callable[[], Awaitable[object] | object]
) -> BaseException | None:
    """Run ``call`` in a task; once every task is blocked, ``then()``; what ``call`` raised."""
    raised: list[BaseException] = []

    async def run() -> None:
        try:
            await call()
        except BaseException as exc:
            raised.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await anyio.wait_all_tasks_blocked()
        done = then()
        if inspect.isawaitable(done):
            await done
    return raised[0] if raised else None


# ------------------------------------------------------------------- closed ends


async def test_a_closed_receiver_says_so_everywhere() -> None:
    send, receive = bridges.open_channel[int](8)
    await send.send(1)
    async with receive:
        pass
    with pytest.raises(anyio.ClosedResourceError):
        await receive.receive()
    with pytest.raises(anyio.ClosedResourceError):
        receive.receive_nowait()
    with pytest.raises(anyio.ClosedResourceError):
        async with receive:
            pass
    with pytest.raises(anyio.ClosedResourceError):
        async for _ in receive:
            pass
    with pytest.raises(anyio.ClosedResourceError):
        receive.clone()
    send.close()


async def test_a_receiver_closed_after_the_end_is_closed_too() -> None:
    send, receive = bridges.open_channel[int](8)
    send.close()
    async with receive:
        assert [x async for x in receive] == []
    with pytest.raises(anyio.ClosedResourceError):
        await receive.receive()


@pytest.mark.parametrize("closer", ["aclose", "close from a plain thread"])
async def test_closing_a_receiver_wakes_its_waiting_receive(closer: str) -> None:
    send, receive = bridges.open_channel[int](8)
    if closer == "aclose":
        raised = await raised_once_blocked(receive.receive, receive.aclose)
    else:
        raised = await raised_once_blocked(
            receive.receive, lambda: anyio.to_thread.run_sync(receive.close)
        )
    assert isinstance(raised, anyio.ClosedResourceError)
    send.close()


async def test_a_receiver_closes_without_awaiting_as_anyio_and_trio_ends_do() -> None:
    # anyio's and trio's receive ends have close() and a sync with-block; so does this one
    send, receive = bridges.open_channel[int](1)
    await send.send(1)

    def leave_with_block() -> None:
        with receive as entered:
            assert entered is receive
        assert receive.closed

    raised = await raised_once_blocked(lambda: send.send(2), leave_with_block)
    assert isinstance(raised, anyio.BrokenResourceError)
    receive.close()  # idempotent
    with pytest.raises(anyio.ClosedResourceError):
        receive.receive_nowait()
    with pytest.raises(anyio.ClosedResourceError), receive:
        pass
    send.close()


async def test_closing_a_sender_clone_withdraws_its_waiting_send() -> None:
    send, receive = bridges.open_channel[int](1)
    clone = send.clone()
    await send.send(0)
    raised = await raised_once_blocked(lambda: clone.send(1), clone.close)
    assert isinstance(raised, anyio.ClosedResourceError)
    assert receive.receive_nowait() == 0
    await send.send(2)  # the stream is still open through the other clone
    send.close()
    async with receive:
        assert [x async for x in receive] == [2]  # 1 was withdrawn


async def test_closing_a_sender_clone_withdraws_a_blocked_thread_send() -> None:
    send, receive = bridges.open_channel[int](1)
    clone = send.clone()
    await send.send(0)
    caught = Caught(BaseException)
    thread = threading.Thread(
        target=caught.run_sync, args=(clone.send_blocking, 1), kwargs={"timeout": 30}
    )
    thread.start()
    with anyio.fail_after(10):
        while receive.stats.waiting_senders != 1:
            await anyio.sleep(0.001)
    clone.close()
    await anyio.to_thread.run_sync(thread.join)
    assert len(caught.errors) == 1
    assert isinstance(caught.errors[0], anyio.ClosedResourceError)
    send.close()
    async with receive:
        assert [x async for x in receive] == [0]


# ------------------------------------------------------------ cancel point per call (R19)


async def test_send_in_a_cancelled_scope_sends_nothing() -> None:
    send, receive = bridges.open_channel[int](8)
    with anyio.CancelScope() as scope:
        scope.cancel()
        await send.send(1)
        pytest.fail("send() in a cancelled scope must raise the cancellation")
    assert scope.cancelled_caught
    assert receive.stats.buffered == 0
    await send.send(2)  # the next one, outside the scope, works
    send.close()
    async with receive:
        assert [x async for x in receive] == [2]


async def test_receive_in_a_cancelled_scope_takes_nothing() -> None:
    send, receive = bridges.open_channel[int](8)
    await send.send(1)
    with anyio.CancelScope() as scope:
        scope.cancel()
        await receive.receive()
        pytest.fail("receive() in a cancelled scope must raise the cancellation")
    with anyio.move_on_after(0) as scope:  # an expired deadline is a cancelled scope too
        async for _ in receive:
            pytest.fail("__anext__ in a cancelled scope must take nothing")
    assert scope.cancelled_caught
    assert receive.stats.buffered == 1
    send.close()
    async with receive:
        assert [x async for x in receive] == [1]


async def test_every_call_in_a_cancelled_scope_raises(backend_name: str) -> None:
    # not only the first: a coalesced schedule point must not let later calls through
    send, receive = bridges.open_channel[int](None)
    for i in range(200):
        with anyio.CancelScope() as scope:
            scope.cancel()
            await send.send(i)
        assert scope.cancelled_caught
    assert receive.stats.buffered == 0
    await receive.aclose()


async def test_a_task_cancelled_by_asyncio_sends_nothing(backend_name: str) -> None:
    if backend_name == "trio":
        pytest.skip("asyncio's own Task.cancel(); trio is covered by the scope tests")
    import asyncio

    send, receive = bridges.open_channel[int](8)

    async def cancel_myself_then_send() -> None:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        await send.send(1)

    task = asyncio.ensure_future(cancel_myself_then_send())
    with pytest.raises(asyncio.CancelledError):
        await task
    assert receive.stats.buffered == 0
    await receive.aclose()


# --------------------------------------------------------- first come, first served (R20)


async def _start_in_order(tg: Any, *fns: Any) -> None:
    for fn in fns:
        tg.start_soon(fn)
        await anyio.wait_all_tasks_blocked()


async def test_waiting_receivers_are_served_in_the_order_they_waited() -> None:
    send, receive = bridges.open_channel[int](16)
    got: dict[int, list[int]] = {k: [] for k in range(5)}

    def consumer(k: int) -> Any:
        async def run() -> None:
            for _ in range(2):
                got[k].append(await receive.receive())

        return run

    async with anyio.create_task_group() as tg:
        await _start_in_order(tg, *(consumer(k) for k in range(5)))
        assert receive.stats.waiting_receivers == 5
        for i in range(10):
            send.send_nowait(i)
    # the first round in the order they waited; in the second round each one is
    # served in the order it waited again, which the scheduler decides (trio shuffles)
    assert [got[k][0] for k in range(5)] == [0, 1, 2, 3, 4]
    assert sorted(got[k][1] for k in range(5)) == [5, 6, 7, 8, 9]
    send.close()
    await receive.aclose()


async def test_a_value_sent_to_a_waiting_receiver_is_not_taken_by_a_later_one() -> None:
    send, receive = bridges.open_channel[int](4)
    got: list[int] = []

    async def waiting() -> None:
        got.append(await receive.receive())

    async with anyio.create_task_group() as tg:
        await _start_in_order(tg, waiting)
        send.send_nowait(1)
        with pytest.raises(anyio.WouldBlock):
            receive.receive_nowait()
    assert got == [1]
    send.close()
    await receive.aclose()


async def test_blocked_senders_go_first_in_the_order_they_blocked() -> None:
    send, receive = bridges.open_channel[int](1)
    send.send_nowait(0)

    def sender(v: int) -> Any:
        async def run() -> None:
            await send.send(v)

        return run

    async with anyio.create_task_group() as tg:
        await _start_in_order(tg, sender(1), sender(2), sender(3))
        assert receive.stats.waiting_senders == 3
        assert receive.receive_nowait() == 0
        with pytest.raises(anyio.WouldBlock):
            send.send_nowait(99)  # a later value waits behind the blocked ones
        got = [await receive.receive() for _ in range(3)]
    assert got == [1, 2, 3]
    send.close()
    await receive.aclose()


async def test_rendezvous_receive_nowait_takes_a_blocked_senders_value() -> None:
    send, receive = bridges.open_channel[int](0)

    async def sender() -> None:
        await send.send(7)

    async with anyio.create_task_group() as tg:
        await _start_in_order(tg, sender)
        assert receive.receive_nowait() == 7
    with pytest.raises(anyio.WouldBlock):
        receive.receive_nowait()
    send.close()
    await receive.aclose()


async def test_rendezvous_send_nowait_succeeds_once_per_waiting_receiver() -> None:
    send, receive = bridges.open_channel[int](0)
    got: dict[str, int] = {}

    def waiting(name: str) -> Any:
        async def run() -> None:
            got[name] = await receive.receive()

        return run

    async with anyio.create_task_group() as tg:
        await _start_in_order(tg, waiting("first"), waiting("second"))
        send.send_nowait(1)
        send.send_nowait(2)
        with pytest.raises(anyio.WouldBlock):
            send.send_nowait(3)
    assert got == {"first": 1, "second": 2}
    assert receive.stats.high_water == 0  # handed over, never held
    send.close()
    await receive.aclose()


async def test_a_cancelled_receiver_passes_its_value_on_in_order(backend_name: str) -> None:
    # A value handed to a waiting receiver whose task is cancelled before it runs
    # (on asyncio, Task.cancel() after the hand-over; on any loop, a wake-up from
    # another thread that a cancellation overtakes) goes to the next receiver.
    if backend_name == "trio":
        pytest.skip("a trio task woken on its own thread cannot be cancelled before it runs")
    import asyncio

    send, receive = bridges.open_channel[int](4)
    got: list[int] = []

    async def second() -> None:
        got.append(await receive.receive())
        got.append(await receive.receive())

    first = asyncio.ensure_future(receive.receive())
    await anyio.wait_all_tasks_blocked()
    later = asyncio.ensure_future(second())
    await anyio.wait_all_tasks_blocked()
    send.send_nowait(1)  # handed to the first waiter...
    first.cancel()  # ...which is cancelled before it runs
    send.send_nowait(2)  # handed to the second
    with pytest.raises(asyncio.CancelledError):
        await first
    await later
    assert got == [1, 2]  # nothing lost, order kept
    send.close()
    await receive.aclose()


# ------------------------------------------------------------------ clones and stats


async def test_receiver_clones_share_values_and_the_last_close_releases_senders() -> None:
    send, receive = bridges.open_channel[int](4)
    other = receive.clone()
    assert receive.stats.open_receivers == 2
    await send.send(1)
    await send.send(2)
    assert {await receive.receive(), await other.receive()} == {1, 2}
    await receive.aclose()
    await send.send(3)  # one receiver is still open
    assert await other.receive() == 3
    await other.aclose()
    with pytest.raises(anyio.BrokenResourceError):
        await send.send(4)
    send.close()


async def test_stats_count_open_ends_and_waiters() -> None:
    send, receive = bridges.open_channel[int](1)
    clone = send.clone()
    s = receive.stats
    assert (s.open_senders, s.open_receivers, s.waiting_senders, s.waiting_receivers) == (
        2,
        1,
        0,
        0,
    )
    clone.close()
    assert receive.stats.open_senders == 1
    send.close()
    assert receive.stats.open_senders == 0
    await receive.aclose()
    assert receive.stats.open_receivers == 0


async def test_a_byte_pipe_send_block_left_by_an_error_fails_the_stream() -> None:
    # every producer-side context manager of the library, not only open_channel's
    send_stream, receive_stream = bridges.streams.open_byte_stream_pipe()
    boom = BoomError()
    with pytest.raises(BoomError):
        async with send_stream:
            await send_stream.send(b"abc")
            raise boom
    assert await receive_stream.receive() == b"abc"
    with pytest.raises(BoomError) as info:
        await receive_stream.receive()
    assert info.value is boom
    await receive_stream.aclose()


# ---------------------------------------------------------------- re-entrant hooks (R18)


async def test_a_source_flooding_inside_resume_is_paused_from_inside_it() -> None:
    # asyncio's transports call pause_writing() from inside resume_writing() when the
    # protocol writes there: a source that produces inside resume() until paused
    total = 5_000
    calls: list[str] = []
    state = {"paused": False, "next": 0}
    emitters: list[bridges.callbacks.Emitter[int]] = []

    def produce() -> None:
        emit = emitters[0]
        while not state["paused"] and state["next"] < total:
            state["next"] += 1
            emit.send(state["next"] - 1)
        if state["next"] == total:
            emit.close()

    def subscribe(emit: bridges.callbacks.Emitter[int]) -> None:
        emitters.append(emit)
        produce()

    def pause() -> None:
        calls.append("pause")
        state["paused"] = True

    def resume() -> None:
        calls.append("resume")
        state["paused"] = False
        produce()  # floods right here, inside resume()

    it = bridges.callbacks.to_aiter(subscribe, buffer=32, pause=pause, resume=resume)
    async with it:
        got = [x async for x in it]
        stats = it.stats
    assert got == list(range(total))
    assert stats.high_water <= 32  # this source honours pause at once: no overshoot
    assert calls[0] == "pause"
    assert all(a != b for a, b in itertools.pairwise(calls))  # pause and resume alternate
    assert calls.count("pause") > 100
