"""The one pump (``_pump.drive``): each way a run ends, and the source closed on every one."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from bridges._buffer import TAKEN, Handoff, Result
from bridges._pump import FAILED, FINISHED, INTERRUPTED, STOPPED, PushSink, drive, is_cancellation

pytestmark = pytest.mark.anyio


class Source:
    """An async iterator over ``values`` that counts its pulls and records its close."""

    def __init__(self, values: list[Any], *, error: Exception | None = None) -> None:
        self.values = list(values)
        self.error = error  # raised after the values
        self.pulls = 0
        self.closed = False
        self.close_error: Exception | None = None

    def __aiter__(self) -> Source:
        return self

    async def __anext__(self) -> Any:
        self.pulls += 1
        if self.values:
            return self.values.pop(0)
        if self.error is not None:
            raise self.error
        raise StopAsyncIteration

    async def aclose(self) -> None:
        await anyio.lowlevel.checkpoint()  # a cleanup that awaits runs to its end
        self.closed = True
        if self.close_error is not None:
            raise self.close_error


class Collect(PushSink[Any]):
    def __init__(self, *, fail_on: Any = None) -> None:
        self.got: list[Any] = []
        self.fail_on = fail_on

    def put_nowait(self, item: Any) -> Result:
        if item == self.fail_on:
            raise KeyError(item)  # the sink's own error
        self.got.append(item)
        return TAKEN

    async def put(self, item: Any) -> Result:
        return self.put_nowait(item)


async def test_finished_puts_every_value_then_closes_the_source() -> None:
    source, h = Source([1, 2, 3]), Handoff[int](None)
    ending = await drive(source, h)
    assert (ending.how, ending.error, ending.cleanup_error) == (FINISHED, None, None)
    assert [h.get_nowait() for _ in range(4)] == [(True, 1), (True, 2), (True, 3), (False, None)]
    assert source.closed


async def test_failed_keeps_the_source_error_itself() -> None:
    boom = ValueError("boom")
    source, sink = Source([1], error=boom), Collect()
    ending = await drive(source, sink, paced=False)
    assert ending.how is FAILED
    assert ending.error is boom
    assert sink.got == [1]
    assert source.closed


async def test_a_sink_that_takes_no_more_stops_the_pump_before_it_pulls() -> None:
    source, h = Source([1, 2]), Handoff[int](None)
    h.leave()
    ending = await drive(source, h)
    assert ending.how is STOPPED
    assert source.pulls == 0
    assert source.closed


async def test_the_sinks_error_interrupts_the_run_and_is_not_the_sources() -> None:
    source, sink = Source([1, 2, 3]), Collect(fail_on=2)
    ending = await drive(source, sink, paced=False)
    assert ending.how is INTERRUPTED
    assert isinstance(ending.error, KeyError)
    assert sink.got == [1]
    assert source.pulls == 2
    assert source.closed
    with pytest.raises(KeyError):
        ending.raise_error()


async def test_a_cleanup_error_is_reported_beside_the_ending() -> None:
    source, sink = Source([1]), Collect()
    source.close_error = RuntimeError("cleanup")
    ending = await drive(source, sink, paced=False)
    assert ending.how is FINISHED
    assert ending.cleanup_error is source.close_error
    with pytest.raises(RuntimeError, match="cleanup"):
        ending.raise_error()


async def test_a_cancellation_comes_back_interrupted_after_a_shielded_close() -> None:
    h = Handoff[int](0)  # rendezvous: nobody takes, so the pump waits for room
    source = Source([1, 2])
    with anyio.fail_after(5):
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                result: list[Any] = []

                async def run() -> None:
                    result.append(await drive(source, h))

                tg.start_soon(run)
                await anyio.wait_all_tasks_blocked()
                scope.cancel()
    (ending,) = result
    assert ending.how is INTERRUPTED
    assert ending.error is not None and is_cancellation(ending.error)
    assert source.pulls == 0  # R10: nothing pulled for a consumer that never came
    assert source.closed  # the awaiting cleanup ran to its end while cancelled


async def test_a_source_that_fails_on_its_own_in_a_cancelled_pump_has_failed() -> None:
    # the pump's task is cancelled, but the source raises its error before it ever
    # awaits: no cancellation reached it, so this is its failure, not its cleanup's
    boom = ValueError("boom")
    source, sink = Source([], error=boom), Collect()
    with anyio.CancelScope() as scope:
        scope.cancel()
        ending = await drive(source, sink, paced=False)
    assert ending.how is FAILED
    assert ending.error is boom
    assert ending.cleanup_error is None


async def test_an_error_raised_while_the_cancellation_unwinds_the_source_is_its_cleanups() -> None:
    cleanup = RuntimeError("cleanup")
    steps: list[str] = []

    async def source() -> Any:
        try:
            yield 1
            await anyio.sleep_forever()
            yield 2
        finally:
            steps.append("finally")
            raise cleanup  # replaces the cancellation that reached the source

    h = Handoff[int](4)
    result: list[Any] = []
    with anyio.fail_after(5):
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:

                async def run() -> None:
                    result.append(await drive(source(), h))

                tg.start_soon(run)
                await anyio.wait_all_tasks_blocked()
                scope.cancel()
    (ending,) = result
    assert steps == ["finally"]
    assert ending.cleanup_error is cleanup
    assert ending.how is not FAILED


async def test_push_mode_stops_as_soon_as_the_sink_closes_from_inside_the_callback() -> None:
    class Taking(PushSink[Any]):
        def __init__(self) -> None:
            self.got: list[Any] = []

        def is_open(self) -> bool:
            return len(self.got) < 2  # take(2)

        def put_nowait(self, item: Any) -> Result:
            raise AssertionError("push mode hands values to the callback")

        async def put(self, item: Any) -> Result:
            raise AssertionError("push mode hands values to the callback")

    source, sink = Source([1, 2, 3, 4]), Taking()
    ending = await drive(source, sink, paced=False, push=sink.got.append)
    assert ending.how is STOPPED
    assert sink.got == [1, 2]
    assert source.pulls == 2  # not one more for nobody
    assert source.closed
