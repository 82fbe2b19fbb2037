"""bridges.channels: trio channels and anyio streams <-> async iterables, across loops too."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import anyio.lowlevel
import anyio.to_thread
import pytest
import trio

import bridges
from bridges import channels
from bridges.testing import TestSource

from .conftest import only_asyncio, only_trio
from .sources import AwaitingCleanup, Boom, Mine, RecordingSource, cancel_once_waiting

if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectReceiveStream
    from typing_extensions import assert_type

pytestmark = pytest.mark.anyio


# =================================================================== to_aiter


def _open(kind: str, size: float) -> tuple[Any, Any]:
    if kind == "trio":
        return trio.open_memory_channel[int](size)
    return anyio.create_memory_object_stream[int](size)


@pytest.fixture
def kinds(backend_name: str) -> list[str]:
    """Memory channels to try on this backend: trio's only under trio."""
    return ["trio", "anyio"] if backend_name == "trio" else ["anyio"]


def _receive_closed(receive: Any) -> bool:
    stats = receive.statistics()
    # anyio calls them streams, trio channels
    return getattr(stats, "open_receive_streams", None) == 0 or (
        getattr(stats, "open_receive_channels", None) == 0
    )


async def test_to_aiter_delivers_in_order_and_ends_with_the_channel(kinds: list[str]) -> None:
    for kind in kinds:
        send, receive = _open(kind, 8)

        async def produce(send: Any = send) -> None:
            async with send:
                for i in range(500):
                    await send.send(i)

        async with anyio.create_task_group() as tg:
            tg.start_soon(produce)
            it = channels.to_aiter(receive)
            assert isinstance(it, channels.ChannelIterator)
            got = [v async for v in it]
        assert got == list(range(500)), kind
        assert _receive_closed(receive), "the end closes the receive side"
        assert it.stats.delivered == 500


async def test_to_aiter_early_exit_closes_the_receive_side_and_breaks_senders(
    kinds: list[str],
) -> None:
    for kind in kinds:
        send, receive = _open(kind, 1)
        told: list[BaseException] = []
        blocked = anyio.Event()

        async def produce(
            send: Any = send, told: list[BaseException] = told, blocked: anyio.Event = blocked
        ) -> None:
            with send:
                try:
                    for i in range(100):
                        if i == 3:
                            blocked.set()
                        await send.send(i)
                except (trio.BrokenResourceError, anyio.BrokenResourceError) as exc:
                    told.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(produce)
            async with channels.to_aiter(receive) as it:
                async for v in it:
                    if v == 1:
                        await blocked.wait()
                        await anyio.wait_all_tasks_blocked()  # the sender waits for room
                        break
            assert _receive_closed(receive), "closed before 'async with' exits"
        assert len(told) == 1, f"{kind}: the blocked sender was not told: {told}"


async def test_to_aiter_cancellation_closes_and_propagates(kinds: list[str]) -> None:
    for kind in kinds:
        send, receive = _open(kind, 4)
        with anyio.CancelScope() as scope:
            async with channels.to_aiter(receive) as it:
                await send.send(1)
                assert await it.__anext__() == 1
                scope.cancel()
                await it.__anext__()  # waits: cancelled here
        assert scope.cancelled_caught
        assert _receive_closed(receive)
        with pytest.raises((trio.BrokenResourceError, anyio.BrokenResourceError)):
            send.send_nowait(2)
        send.close()


async def test_to_aiter_timeout_around_one_value_loses_nothing(kinds: list[str]) -> None:
    for kind in kinds:
        send, receive = _open(kind, 4)
        async with channels.to_aiter(receive) as it:
            with anyio.move_on_after(0.01):
                await it.__anext__()
            await send.send(7)
            assert await it.__anext__() == 7
        send.close()


async def test_to_aiter_on_a_full_channel_still_lets_other_tasks_run() -> None:
    # the fast path takes buffered values without a scheduler round-trip, but
    # checkpoints every 64 values
    send, receive = anyio.create_memory_object_stream[int](1000)
    for i in range(1000):
        send.send_nowait(i)
    send.close()
    seen_at: list[int] = []
    delivered = 0

    async def other() -> None:
        seen_at.append(delivered)

    async with anyio.create_task_group() as tg:
        tg.start_soon(other)
        async for v in channels.to_aiter(receive):
            delivered = v + 1
    assert seen_at and seen_at[0] < 1000


async def test_to_aiter_passes_bridges_receivers_through() -> None:
    send, receive = bridges.open_channel[int](4)
    assert channels.to_aiter(receive) is receive
    send.close()
    await receive.aclose()
    async with channels.from_aiter(RecordingSource(range(1))) as pumped:
        assert channels.to_aiter(pumped) is pumped


@only_trio
async def test_to_aiter_takes_any_trio_receive_channel() -> None:
    class Countdown(trio.abc.ReceiveChannel[int]):
        def __init__(self) -> None:
            self.left = 3
            self.closed = 0

        async def receive(self) -> int:
            await trio.lowlevel.checkpoint()
            if self.closed:
                raise trio.ClosedResourceError
            if not self.left:
                raise trio.EndOfChannel
            self.left -= 1
            return self.left

        async def aclose(self) -> None:
            self.closed += 1
            await trio.lowlevel.checkpoint()

    chan = Countdown()
    assert [v async for v in channels.to_aiter(chan)] == [2, 1, 0]
    chan = Countdown()
    async with channels.to_aiter(chan) as it:
        async for _ in it:
            break
    assert chan.closed == 1, "early exit awaits the channel's aclose()"


@pytest.mark.parametrize("bad", [42, [1, 2], "abc"])
def test_to_aiter_rejects_what_is_not_a_receive_channel(bad: object) -> None:
    with pytest.raises(TypeError, match="ReceiveChannel"):
        channels.to_aiter(bad)  # type: ignore[call-overload]


async def test_to_aiter_rejects_a_send_side() -> None:
    send, receive = anyio.create_memory_object_stream[int](1)
    with send, receive, pytest.raises(TypeError, match="ObjectReceiveStream"):
        channels.to_aiter(send)  # type: ignore[call-overload]


@only_trio
async def test_to_aiter_stats_report_the_channels_fill() -> None:
    send, receive = trio.open_memory_channel[int](8)
    for i in range(5):
        send.send_nowait(i)
    it = channels.to_aiter(receive)
    async with it:
        assert await it.__anext__() == 0
        s = it.stats
        assert (s.buffered, s.high_water, s.delivered, s.capacity) == (4, 5, 1, 8)
    send.close()


# =================================================================== from_aiter


async def test_from_aiter_is_an_anyio_stream_everywhere_and_a_trio_channel_under_trio(
    backend_name: str,
) -> None:
    async with channels.from_aiter(RecordingSource(range(3))) as receive:
        assert isinstance(receive, anyio.abc.ObjectReceiveStream)
        assert isinstance(receive, bridges.ChannelReceiver)
        if backend_name == "trio":
            assert isinstance(receive, trio.abc.ReceiveChannel)
        assert [v async for v in receive] == [0, 1, 2]


async def test_from_aiter_receive_raises_the_end_of_this_backend(backend_name: str) -> None:
    async with channels.from_aiter(RecordingSource(range(2))) as receive:
        assert [await receive.receive(), await receive.receive()] == [0, 1]
        with pytest.raises(anyio.EndOfStream) as end:
            await receive.receive()
        if backend_name == "trio":
            assert isinstance(end.value, trio.EndOfChannel)
        with pytest.raises(anyio.EndOfStream):
            await receive.receive()  # stays ended
    with pytest.raises(anyio.ClosedResourceError) as closed:
        await receive.receive()
    if backend_name == "trio":
        assert isinstance(closed.value, trio.ClosedResourceError)
    assert "block" in str(closed.value)


@pytest.mark.parametrize("buffer", [0, 1, 3])
async def test_from_aiter_pulls_only_when_the_channel_has_room(buffer: int) -> None:
    source = RecordingSource(range(100))
    async with channels.from_aiter(source, buffer=buffer) as receive:
        await anyio.wait_all_tasks_blocked()
        assert source.pulled == buffer, "R10: pulled ahead of the channel's room"
        for i in range(10):
            assert await receive.receive() == i
            await anyio.wait_all_tasks_blocked()
            # refilled in bursts once half the room is free (the low-water mark)
            assert buffer // 2 <= source.pulled - (i + 1) <= buffer


async def test_from_aiter_source_error_once_as_itself_after_the_values() -> None:
    boom = Boom("from the source")
    got: list[int] = []
    with pytest.raises(Boom) as raised:
        async with channels.from_aiter(RecordingSource(range(3), error=boom), buffer=2) as receive:
            async for v in receive:
                got.append(v)
    assert raised.value is boom, "the original object, never an ExceptionGroup"
    assert got == [0, 1, 2]

    async with channels.from_aiter(RecordingSource(range(2), error=boom)) as receive:
        assert [await receive.receive(), await receive.receive()] == [0, 1]
        with pytest.raises(Boom):
            await receive.receive()
        with pytest.raises(anyio.EndOfStream):
            await receive.receive()  # once: then the end


async def test_from_aiter_consumer_error_comes_out_as_itself_and_closes_the_source() -> None:
    source = RecordingSource(range(100), hang=True)
    with pytest.raises(Mine):
        async with channels.from_aiter(source, buffer=4) as receive:
            async for v in receive:
                if v == 5:
                    raise Mine
    assert source.closed == 1


@pytest.mark.parametrize("buffer", [0, 4])
async def test_from_aiter_leaving_early_closes_the_source_before_the_block_exits(
    buffer: int,
) -> None:
    source = RecordingSource(range(100), hang=True)
    async with channels.from_aiter(source, buffer=buffer) as receive:
        async for v in receive:
            if v == 2:
                break
        assert not source.closed
    assert source.closed == 1
    assert source.pulled <= 3 + buffer


async def test_from_aiter_cancelling_the_consumer_closes_the_source() -> None:
    source = RecordingSource(range(3), hang=True)
    with anyio.CancelScope() as scope:
        async with channels.from_aiter(source) as receive:
            async for v in receive:
                if v == 2:
                    scope.cancel()
    assert scope.cancelled_caught
    assert source.closed == 1


async def test_from_aiter_closing_the_receive_side_stops_a_hanging_source_at_once() -> None:
    source = RecordingSource(range(1), hang=True)
    async with channels.from_aiter(source) as receive:
        assert await receive.receive() == 0
        await anyio.wait_all_tasks_blocked()  # the pump waits inside the source
        await receive.aclose()
        with anyio.fail_after(5):
            while not source.closed:
                await anyio.lowlevel.checkpoint()
        with pytest.raises(anyio.ClosedResourceError):
            await receive.receive()


async def test_from_aiter_cleanup_error_comes_out_when_the_block_ended_normally() -> None:
    bad = KeyError("in the source's finally")
    with pytest.raises(KeyError) as raised:
        async with channels.from_aiter(
            RecordingSource(range(10), hang=True, cleanup_error=bad)
        ) as receive:
            async for _ in receive:
                break
    assert raised.value is bad


async def test_from_aiter_cleanup_error_is_logged_when_the_block_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bad = KeyError("in the source's finally")
    with caplog.at_level(logging.ERROR, logger="bridges"), pytest.raises(Mine):
        async with channels.from_aiter(
            RecordingSource(range(10), hang=True, cleanup_error=bad)
        ) as receive:
            async for _ in receive:
                raise Mine
    [record] = caplog.records
    assert record.exc_info is not None and record.exc_info[1] is bad


async def test_from_aiter_a_base_exception_from_the_source_comes_out_as_itself(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Fatal(BaseException):
        pass

    async def source() -> AsyncIterator[int]:
        yield 1
        raise Fatal

    got = []
    with caplog.at_level(logging.ERROR, logger="bridges"), pytest.raises(Fatal):
        async with channels.from_aiter(source()) as receive:
            async for v in receive:
                got.append(v)
    assert got == [1]
    assert not caplog.records, "the consumer's cancellation is no error to log"


async def test_from_aiter_drops_a_queued_error_the_consumer_never_reached() -> None:
    async with channels.from_aiter(RecordingSource(range(3), error=Boom()), buffer=8) as receive:
        await anyio.wait_all_tasks_blocked()  # values and the error are queued
        assert receive.stats.buffered == 3
        assert await receive.receive() == 0
    # left early: no error


async def test_from_aiter_clones_fan_out_and_the_last_close_stops_the_source() -> None:
    source = RecordingSource(range(200))
    results: dict[str, list[int]] = {"a": [], "b": []}

    async def worker(name: str, r: channels.PumpedReceiver[int]) -> None:
        async with r:
            async for v in r:
                results[name].append(v)
                await anyio.lowlevel.checkpoint()

    async with channels.from_aiter(source, buffer=2) as receive, anyio.create_task_group() as tg:
        tg.start_soon(worker, "a", receive.clone())
        tg.start_soon(worker, "b", receive.clone())
        receive.close()
    assert sorted(results["a"] + results["b"]) == list(range(200))
    assert results["a"] and results["b"], "both clones took values"

    source = RecordingSource(range(100), hang=True)
    async with channels.from_aiter(source) as receive:
        other = receive.clone()
        await receive.aclose()
        await anyio.wait_all_tasks_blocked()
        assert not source.closed, "one clone is still open"
        assert await other.receive() == 0
        await other.aclose()
        with anyio.fail_after(5):
            while not source.closed:
                await anyio.lowlevel.checkpoint()
        with pytest.raises(anyio.ClosedResourceError):
            receive.clone()


async def test_from_aiter_receive_nowait(backend_name: str) -> None:
    async with channels.from_aiter(RecordingSource(range(2))) as receive:
        # buffer=0: nothing is pulled while nobody waits in receive()
        with pytest.raises(anyio.WouldBlock) as would:
            receive.receive_nowait()
        if backend_name == "trio":
            assert isinstance(would.value, trio.WouldBlock)
    async with channels.from_aiter(RecordingSource(range(2), error=Boom()), buffer=4) as receive:
        await anyio.wait_all_tasks_blocked()
        assert [receive.receive_nowait(), receive.receive_nowait()] == [0, 1]
        with pytest.raises(Boom):
            receive.receive_nowait()
        with pytest.raises(anyio.EndOfStream):
            receive.receive_nowait()
    with pytest.raises(anyio.ClosedResourceError):
        receive.receive_nowait()


def _closed_class(backend_name: str) -> type[Exception]:
    """What a closed from_aiter end raises: trio's class under trio (also anyio's)."""
    return trio.ClosedResourceError if backend_name == "trio" else anyio.ClosedResourceError


async def test_from_aiter_closed_end_raises_closed_from_async_for_receive_and_nowait(
    backend_name: str,
) -> None:
    closed_class = _closed_class(backend_name)
    for how in ("close", "aclose", "with", "async with"):
        async with channels.from_aiter(RecordingSource(range(10)), buffer=4) as receive:
            assert await receive.receive() == 0
            if how == "close":
                receive.close()
            elif how == "aclose":
                await receive.aclose()
            elif how == "with":
                with receive:
                    pass
            else:
                async with receive:
                    pass
            with pytest.raises(closed_class, match="was closed"):
                async for _ in receive:
                    pytest.fail("a closed end gave a value")
            with pytest.raises(closed_class, match="was closed"):
                await receive.receive()
            with pytest.raises(closed_class, match="was closed"):
                receive.receive_nowait()
            with pytest.raises(closed_class, match="was closed"), receive:
                pass
            assert isinstance(receive, anyio.abc.ObjectReceiveStream)


@pytest.mark.parametrize("how", ["close", "block ends"])
async def test_from_aiter_async_for_waiting_on_an_end_that_is_closed_raises_closed(
    backend_name: str, how: str
) -> None:
    # the end is closed (by another task, or by the block ending) while an async for
    # waits on it: the loop raises ClosedResourceError, as receive() does, instead of
    # ending as if the source had ended
    got: list[int] = []
    raised: list[BaseException] = []

    async def consume(receive: channels.PumpedReceiver[int]) -> None:
        try:
            async for v in receive:
                got.append(v)
        except Exception as exc:
            raised.append(exc)

    async with (
        anyio.create_task_group() as tg,
        channels.from_aiter(RecordingSource(range(1), hang=True)) as receive,
    ):
        tg.start_soon(consume, receive)
        await anyio.wait_all_tasks_blocked()
        assert got == [0]
        if how == "close":
            receive.close()
            await anyio.wait_all_tasks_blocked()
            assert len(raised) == 1, raised
    assert len(raised) == 1, raised
    assert isinstance(raised[0], _closed_class(backend_name)), raised


async def test_from_aiter_runs_a_reiterable_afresh_and_refuses_a_spent_iterator() -> None:
    class Numbers:
        def __aiter__(self) -> AsyncIterator[int]:
            return RecordingSource(range(3)).__aiter__()

    cm = channels.from_aiter(Numbers())
    for _ in range(2):
        async with cm as receive:
            assert [v async for v in receive] == [0, 1, 2]

    cm = channels.from_aiter(TestSource(range(2)))
    async with cm as receive:
        assert [v async for v in receive] == [0, 1]
    with pytest.raises(RuntimeError, match="one-shot"):
        async with cm:
            pass


async def test_from_aiter_cannot_be_entered_twice_at_once() -> None:
    cm = channels.from_aiter(RecordingSource(range(1)))
    async with cm:
        with pytest.raises(RuntimeError, match="clone"):
            async with cm:
                pass


@pytest.mark.parametrize(
    ("args", "exc"),
    [((42,), TypeError), ((RecordingSource(range(1)),), None)],
)
def test_from_aiter_validates_its_source(
    args: tuple[Any, ...], exc: type[Exception] | None
) -> None:
    if exc is None:
        channels.from_aiter(*args)  # nothing starts before 'async with'
        return
    with pytest.raises(exc, match="async iterable"):
        channels.from_aiter(*args)


@pytest.mark.parametrize(("buffer", "exc"), [(-1, ValueError), ("8", TypeError), (1.5, TypeError)])
def test_from_aiter_validates_buffer(buffer: object, exc: type[Exception]) -> None:
    with pytest.raises(exc, match="buffer"):
        channels.from_aiter(RecordingSource(range(1)), buffer=buffer)  # type: ignore[arg-type]


async def test_from_aiter_unbounded_pump_still_lets_other_tasks_run() -> None:
    async def never_waits() -> AsyncIterator[int]:
        for i in range(10_000):
            yield i

    ran = anyio.Event()
    async with anyio.create_task_group() as tg:

        async def other() -> None:
            ran.set()

        tg.start_soon(other)
        async with channels.from_aiter(never_waits(), buffer=None) as receive:
            await anyio.wait_all_tasks_blocked()
            assert ran.is_set()
            assert receive.stats.buffered == 10_000
            assert len([v async for v in receive]) == 10_000


async def test_from_aiter_leaves_no_task_behind() -> None:
    before = len(anyio.get_running_tasks())
    for source in (
        RecordingSource(range(5)),
        RecordingSource(range(5), hang=True),
        RecordingSource(range(2), error=Boom()),
    ):
        try:
            async with channels.from_aiter(source) as receive:
                async for v in receive:
                    if v == 1:
                        break
        except Boom:
            pass
        assert len(anyio.get_running_tasks()) == before


async def test_from_aiter_leaving_the_block_runs_a_source_cleanup_that_awaits() -> None:
    # the block's exit cancels the pump; it then closed the source inside that
    # cancellation, so the source's cleanup was cancelled at its first await
    source = AwaitingCleanup()
    async with channels.from_aiter(source) as receive:
        assert await receive.receive() == 0
        await anyio.wait_all_tasks_blocked()  # the pump waits for room; the source at a yield
    source.assert_cleaned("the pump's cancellation")


async def test_from_aiter_consumer_error_during_an_outside_cancellation_is_not_a_group() -> None:
    # under trio the cancellation adds the Cancelled of the pump and of its watcher to
    # the task group's ExceptionGroup next to the block's error; with two of them the
    # group itself came out (with one, a Cancelled came out and the error was logged)
    source = RecordingSource(range(100), hang=True)
    with pytest.raises(Mine):
        with anyio.CancelScope() as scope:
            async with channels.from_aiter(source) as receive:
                assert await receive.receive() == 0
                await anyio.wait_all_tasks_blocked()
                scope.cancel()  # reaches the pump and the watcher at once...
                raise Mine  # ...as the consumer fails
    assert source.closed == 1


async def test_from_aiter_outside_cancellation_as_the_block_ends_comes_out_alone() -> None:
    source = RecordingSource(range(100), hang=True)
    came_out: BaseException | None = None
    with anyio.CancelScope() as scope:
        try:
            async with channels.from_aiter(source) as receive:
                assert await receive.receive() == 0
                await anyio.wait_all_tasks_blocked()
                scope.cancel()  # the block ends normally just as this reaches the tasks
        except BaseException as exc:
            came_out = exc
            raise
    assert scope.cancelled_caught
    assert isinstance(came_out, anyio.get_cancelled_exc_class()), repr(came_out)
    assert source.closed == 1


# =================================================================== pump


@pytest.mark.parametrize("buffer", [0, 4])
async def test_pump_into_open_channel_carries_the_end_and_errors_in_band(buffer: int) -> None:
    send, receive = bridges.open_channel[int](buffer)
    boom = Boom()
    source = RecordingSource(range(50), error=boom)
    async with anyio.create_task_group() as tg:
        tg.start_soon(channels.pump, source, send)
        got = []
        with pytest.raises(Boom) as raised:
            async for v in receive:
                got.append(v)
    assert raised.value is boom
    assert got == list(range(50))
    assert source.closed == 1
    await receive.aclose()


async def test_pump_pulls_only_when_the_channel_has_room() -> None:
    send, receive = bridges.open_channel[int](2)
    source = RecordingSource(range(100))
    async with anyio.create_task_group() as tg:
        tg.start_soon(channels.pump, source, send)
        await anyio.wait_all_tasks_blocked()
        assert source.pulled == 2
        async with receive:
            assert await receive.receive() == 0
    assert source.closed == 1


async def test_pump_stops_at_once_when_the_receiver_leaves_during_a_slow_pull() -> None:
    send, receive = bridges.open_channel[int](4)
    source = RecordingSource(range(1), hang=True)
    async with anyio.create_task_group() as tg:
        tg.start_soon(channels.pump, source, send)
        async with receive:
            assert await receive.receive() == 0
            await anyio.wait_all_tasks_blocked()  # the pump waits inside the source
    assert source.closed == 1


async def test_pump_returns_when_the_source_fails_after_the_receiver_left() -> None:
    # the receiver may leave from another thread while the source is in its step: the
    # error the source then raises has nobody to go to, like the values after it
    send, receive = bridges.open_channel[int](4)

    async def source() -> AsyncIterator[int]:
        yield 0
        receive.close()  # the receiver leaves while the source runs
        raise ValueError("after the receiver left")

    await channels.pump(source(), send)  # returns, as for any receiver gone
    assert receive.closed


async def test_pump_cancelled_cuts_the_stream_short_visibly() -> None:
    send, receive = bridges.open_channel[int](8)
    source = RecordingSource(range(100), hang=True)
    await cancel_once_waiting(channels.pump, source, send)
    assert source.closed == 1
    got = []
    with pytest.raises(anyio.BrokenResourceError, match="cut short"):
        async for v in receive:
            got.append(v)
    assert got == list(range(8))


async def test_pump_cancelled_runs_a_source_cleanup_that_awaits() -> None:
    send, receive = bridges.open_channel[int](1)
    source = AwaitingCleanup()
    # the pump waits for room; the source at a yield
    await cancel_once_waiting(channels.pump, source, send)
    source.assert_cleaned("pump's cancellation")
    await receive.aclose()


async def test_pump_into_memory_channels_raises_the_error_after_closing(
    kinds: list[str],
) -> None:
    for kind in kinds:
        send, receive = _open(kind, 0)
        boom = Boom()
        got: list[int] = []

        async def run_pump(send: Any = send, boom: Boom = boom) -> None:
            with pytest.raises(Boom) as raised:
                await channels.pump(RecordingSource(range(5), error=boom), send)
            assert raised.value is boom

        async with anyio.create_task_group() as tg:
            tg.start_soon(run_pump)
            async with receive:
                got = [v async for v in receive]  # ends: pump closed the send side
        assert got == list(range(5))


async def test_pump_into_a_memory_channel_whose_receiver_left(kinds: list[str]) -> None:
    for kind in kinds:
        send, receive = _open(kind, 0)
        source = RecordingSource(range(100))
        async with anyio.create_task_group() as tg:
            tg.start_soon(channels.pump, source, send)
            async with receive:
                assert await receive.receive() == 0
        assert source.closed == 1


async def test_pump_rejects_bad_arguments() -> None:
    send, receive = bridges.open_channel[int](1)
    async with send, receive:
        with pytest.raises(TypeError, match="async iterable"):
            await channels.pump(42, send)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="ChannelSender"):
            await channels.pump(RecordingSource(range(1)), receive)  # type: ignore[arg-type]


class OneShot:
    """A one-shot async iterator that records what was asked of it."""

    def __init__(self) -> None:
        self.pulled = 0
        self.closed = 0

    def __aiter__(self) -> OneShot:
        return self

    async def __anext__(self) -> int:
        self.pulled += 1
        await anyio.lowlevel.checkpoint()
        return self.pulled

    async def aclose(self) -> None:
        self.closed += 1


async def test_pump_into_a_closed_sender_raises_before_pulling_and_closes_the_source() -> None:
    send, receive = bridges.open_channel[int](4)
    async with receive:
        send.close()
        source = OneShot()
        with pytest.raises(anyio.ClosedResourceError, match="pass an open sender"):
            await channels.pump(source, send)
        assert (source.pulled, source.closed) == (0, 1)
        assert [v async for v in receive] == [], "the channel's clean end is unchanged"


async def test_pump_into_a_closed_clone_among_open_ones_pulls_nothing() -> None:
    send, receive = bridges.open_channel[int](4)
    async with receive:
        clone = send.clone()
        clone.close()
        source = OneShot()
        with pytest.raises(anyio.ClosedResourceError, match="pass an open sender"):
            await channels.pump(source, clone)
        assert (source.pulled, source.closed) == (0, 1)
        await channels.pump(RecordingSource(range(3)), send)  # the open sender still works
        assert [v async for v in receive] == [0, 1, 2]


@only_asyncio
async def test_pump_into_a_trio_channel_outside_trio_says_so_and_leaves_the_source() -> None:
    send, receive = trio.open_memory_channel[int](1)
    with send, receive:
        source = OneShot()
        with pytest.raises(RuntimeError, match="needs trio, but this runs under asyncio"):
            await channels.pump(source, send)
        assert (source.pulled, source.closed) == (0, 0), "a wrong argument: source untouched"


@only_asyncio
async def test_to_aiter_of_a_trio_channel_outside_trio_says_so() -> None:
    send, receive = trio.open_memory_channel[int](1)
    with send, receive:
        # called in a running loop: at once
        with pytest.raises(RuntimeError, match="anyio memory object stream"):
            channels.to_aiter(receive)
        # made where no loop runs: at the first use, which does not count as iterating
        it = await anyio.to_thread.run_sync(channels.to_aiter, receive)
        with pytest.raises(RuntimeError, match="needs trio"):
            async with it:
                pass
        with pytest.raises(RuntimeError, match="needs trio"):
            await it.__anext__()
        del it  # no ResourceWarning: it never started
        send.send_nowait(1)  # the channel is still open


# =================================================================== across threads and loops


class AsyncioThread:
    """An asyncio loop in a worker thread that pumps a source into a sender."""

    def __init__(self, make_source: Any, send: bridges.ChannelSender[int]) -> None:
        self.make_source = make_source
        self.send = send
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task: asyncio.Task[None] | None = None
        self.started = threading.Event()
        self.outcome: list[BaseException | None] = []
        self.thread = threading.Thread(target=self._run, name="test-asyncio-producer")

    def _run(self) -> None:
        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            self.task = asyncio.current_task()
            self.started.set()
            await channels.pump(self.make_source(), self.send)

        try:
            asyncio.run(main())
        except BaseException as exc:
            self.outcome.append(exc)
        else:
            self.outcome.append(None)

    def __enter__(self) -> AsyncioThread:
        self.thread.start()
        self.started.wait(5)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.thread.join(10)
        assert not self.thread.is_alive(), "the asyncio thread did not end"

    def cancel(self) -> None:
        assert self.loop is not None and self.task is not None
        self.loop.call_soon_threadsafe(self.task.cancel)


class AsyncioSource:
    """A source that belongs to asyncio: it awaits asyncio primitives."""

    def __init__(self, n: int, *, hang_after: int | None = None) -> None:
        self.n = n
        self.hang_after = hang_after
        self.closed = threading.Event()
        self.hanging = threading.Event()

    async def __aiter__(self) -> AsyncIterator[int]:
        asyncio.get_running_loop()  # only runs on asyncio
        try:
            for i in range(self.n):
                if i == self.hang_after:
                    self.hanging.set()
                    await asyncio.Event().wait()
                if i % 4096 == 0:
                    await asyncio.sleep(0)
                yield i
        finally:
            self.closed.set()


@only_trio
async def test_a_million_values_from_an_asyncio_thread_to_trio_in_order_and_bounded() -> None:
    n = 1_000_000
    send, receive = bridges.open_channel[int](64)
    source = AsyncioSource(n)
    expected = 0
    with AsyncioThread(lambda: source, send) as producer:
        async with receive:
            async for v in receive:
                if v != expected:
                    raise AssertionError(f"got {v}, expected {expected}")
                expected += 1
    assert expected == n, "complete"
    assert receive.stats.high_water <= 64, "bounded"
    assert producer.outcome == [None]
    assert source.closed.is_set()


@only_trio
async def test_cancelling_the_trio_consumer_cleans_up_the_asyncio_producer() -> None:
    send, receive = bridges.open_channel[int](64)
    source = AsyncioSource(10**9, hang_after=5000)
    with AsyncioThread(lambda: source, send) as producer:
        with anyio.CancelScope() as scope:
            async with channels.to_aiter(receive) as it:
                async for v in it:
                    if v == 4999:
                        # the pump now waits inside the source, on the asyncio loop
                        assert await anyio.to_thread.run_sync(source.hanging.wait, 5)
                        scope.cancel()
        assert scope.cancelled_caught
        await anyio.to_thread.run_sync(source.closed.wait, 10)
    assert source.closed.is_set(), "the source's finally ran"
    assert producer.outcome == [None], "pump returned normally: its receiver left"


@only_trio
async def test_cancelling_the_asyncio_producer_cleans_up_the_trio_consumer() -> None:
    send, receive = bridges.open_channel[int](64)
    source = AsyncioSource(10**9)
    got = 0
    with (
        AsyncioThread(lambda: source, send) as producer,
        pytest.raises(anyio.BrokenResourceError, match="cut short"),
    ):
        async with receive:
            async for _ in receive:
                got += 1
                if got == 10_000:
                    producer.cancel()
    assert got >= 10_000
    assert source.closed.is_set()
    assert isinstance(producer.outcome[0], asyncio.CancelledError)


@only_asyncio
async def test_a_trio_thread_feeds_asyncio_with_the_error_in_band() -> None:
    send, receive = bridges.open_channel[int](16)
    boom = Boom("from trio")
    outcome: list[BaseException | None] = []

    def run_trio() -> None:
        async def main() -> None:
            await channels.pump(RecordingSource(range(20_000), error=boom), send)

        try:
            trio.run(main)
        except BaseException as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=run_trio)
    thread.start()
    got: list[int] = []
    try:
        with pytest.raises(Boom) as raised:
            async with receive:
                async for v in receive:
                    got.append(v)
    finally:
        await anyio.to_thread.run_sync(thread.join, 10)
    assert raised.value is boom
    assert got == list(range(20_000))
    assert outcome == [None]


@only_asyncio
async def test_from_aiters_receive_side_can_be_consumed_on_a_trio_thread() -> None:
    result: list[Any] = []

    def consume(receive: channels.PumpedReceiver[int]) -> None:
        async def main() -> None:
            result.append([v async for v in receive])

        trio.run(main)

    source = RecordingSource(range(5000))
    async with channels.from_aiter(source, buffer=32) as receive:
        thread = threading.Thread(target=consume, args=(receive,))
        thread.start()
        await anyio.to_thread.run_sync(thread.join, 10)
    assert result == [list(range(5000))]
    assert source.closed == 1


# =================================================================== types (checked by mypy only)


async def _inference(
    trio_receive: trio.MemoryReceiveChannel[int],
    anyio_receive: MemoryObjectReceiveStream[str],
    source: AsyncIterator[bytes],
) -> None:  # pragma: no cover - never run
    assert_type(channels.to_aiter(trio_receive), channels.ChannelIterator[int])
    assert_type(channels.to_aiter(anyio_receive), channels.ChannelIterator[str])
    async with channels.from_aiter(source) as receive:
        assert_type(receive, channels.PumpedReceiver[bytes])
        assert_type(await receive.receive(), bytes)
        assert_type(channels.to_aiter(receive), bridges.ChannelReceiver[bytes])
        accepts_trio: trio.abc.ReceiveChannel[bytes] = receive
        accepts_anyio: anyio.abc.ObjectReceiveStream[bytes] = receive
        del accepts_trio, accepts_anyio
