"""trio memory channels and anyio memory object streams, both directions.

trio's channels run on trio; anyio's streams, from_aiter's receive side and
pump run on every backend.
"""

from __future__ import annotations

import functools
import inspect
import math
import sys
import threading
from collections.abc import AsyncIterable, AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
import anyio.abc
import anyio.from_thread
import anyio.lowlevel
import trio

import bridges
from bridges import channels, testing
from bridges.testing import (
    ConsumerError,
    End,
    Outcome,
    Plan,
    Probe,
    Script,
    ScriptedProducer,
)

from ..harness_kit import note_error, unwrap

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found, unused-ignore]

# ----------------------------------------------------------------- push: channel -> aiter

_TO_AITER_NA = {
    "R1": "the channel exists before iteration: there is no source for to_aiter to start lazily",
    "R3": "to_aiter holds no value of its own: values wait in the caller's channel, "
    "bounded by its max_buffer_size",
    "R5": "a memory channel cannot carry an error; from_aiter's receive side can "
    "(its harnesses check R12, tests/test_channels.py the rest)",
    "R8": "a memory channel's sender on the loop thread awaits send() or gets WouldBlock "
    "from send_nowait(); nothing in to_aiter can block the loop",
    "R9": "memory channels have no drop policies; to_aiter takes no overflow",
    "R15": "to_aiter takes no buffer or overflow; its TypeError for a non-channel is "
    "tested in tests/test_channels.py",
    "R16": "the producer end is the caller's memory channel send side: trio's or anyio's "
    "own close semantics, not the adapter's",
    "R17": "the producer end is the caller's memory channel send side: trio's or anyio's "
    "own, not the adapter's",
    "R20": "to_aiter adds no waiting of its own: fairness is the memory channel's "
    "(trio's or anyio's)",
    "R18": "to_aiter takes a channel and no hooks: it calls nothing of the user's",
}


def _stop(exc: BaseException) -> anyio.ClosedResourceError:
    # ScriptedProducer stops on anyio's resource errors: the producer's job is over
    # (the receive side closed, the send side closed by the release, or the loop ended)
    err = anyio.ClosedResourceError(f"producer stopped: {exc!r}")
    err.__cause__ = exc
    return err


class _ToAiterHarness(testing.PushHarness):
    """A producer thread sends into a memory channel through the loop's from_thread API.

    The channel's receive side is instrumented: its ``close()`` (what to_aiter
    calls on every exit) records the release and closes the producer's send
    side, the way stopping a real producer would.
    """

    overflows = ("block",)
    claims = testing.claim_push(na=_TO_AITER_NA)

    def make(self, buffer: float) -> tuple[Any, Any]:
        """A memory channel of this kind: ``(send, receive)``."""
        raise NotImplementedError

    def from_thread(self) -> tuple[Callable[..., Any], Callable[..., Any]]:
        """This loop's ``(run, run_sync)`` for a foreign thread (called on the loop)."""
        raise NotImplementedError

    #: what this kind of channel raises at a send whose receiver is gone
    broken: type[BaseException] = anyio.BrokenResourceError

    def told_broken(self, exc: BaseException) -> object:
        """What a late send that was told its receiver is gone records (``exc``: how)."""
        raise NotImplementedError

    def runner(self) -> Callable[..., Any]:
        """``run(fn, *args)`` for a foreign thread: runs ``fn(*args)`` in this loop."""
        run, run_sync = self.from_thread()

        def runner(fn: Callable[..., Any], *args: Any) -> Any:
            return (run if inspect.iscoroutinefunction(fn) else run_sync)(fn, *args)

        return runner

    async def emit_after_close(self, probe: Probe) -> None:
        send, receive = self.make(1)
        it = channels.to_aiter(receive)
        await it.aclose()
        run, _ = self.from_thread()

        def late() -> object:
            try:
                run(send.send, 1)
            except self.broken as exc:
                return self.told_broken(exc)
            return True

        probe.late_results.append(await anyio.to_thread.run_sync(late))
        send.close()

    def open(
        self, script: Script, probe: Probe, *, buffer: int | None, overflow: str
    ) -> AsyncIterator[int]:
        send, receive = self.make(math.inf if buffer is None else buffer)
        runner = self.runner()

        def on_loop(fn: Callable[..., Any], *args: Any) -> Any:
            try:
                return runner(fn, *args)
            except Exception as exc:
                raise _stop(exc) from exc
            except trio.Cancelled as exc:
                # Releasing the source stops this thread but does not wait for it, so
                # the test may end while the thread's last call is on its way to the
                # loop: trio runs such a call in a system task, which it cancels when
                # the run ends ("main task done, shutting down system tasks"), and
                # from_thread.run raises that Cancelled here.  The loop has ended:
                # the producer's job is over, like any other refused call.
                raise _stop(exc) from exc

        probe.start()
        producer = ScriptedProducer(
            script,
            probe,
            send=lambda v: on_loop(send.send, v),
            close=lambda: on_loop(send.close),
            fail=lambda exc: on_loop(send.close),  # a channel cannot carry the error
        )
        real_close = receive.close
        released: list[bool] = []

        def close() -> None:
            real_close()
            if not released:
                released.append(True)
                send.close()
                producer.stop()
                probe.release()

        receive.close = close  # instrumentation: the memory channels have no __slots__
        producer.start()
        it: AsyncIterator[int] = channels.to_aiter(receive)
        return it


class ToAiterTrioHarness(_ToAiterHarness):
    name = "channels.to_aiter-trio"
    backends = frozenset({"trio"})
    broken = trio.BrokenResourceError

    def make(self, buffer: float) -> tuple[Any, Any]:
        return trio.open_memory_channel[int](buffer)

    def from_thread(self) -> tuple[Callable[..., Any], Callable[..., Any]]:
        token = trio.lowlevel.current_trio_token()
        return (
            functools.partial(trio.from_thread.run, trio_token=token),
            functools.partial(trio.from_thread.run_sync, trio_token=token),
        )

    def told_broken(self, exc: BaseException) -> object:
        return False  # told "broken": the trio spelling of anyio's error


class ToAiterAnyioHarness(_ToAiterHarness):
    name = "channels.to_aiter-anyio"

    def make(self, buffer: float) -> tuple[Any, Any]:
        return anyio.create_memory_object_stream[int](buffer)

    def from_thread(self) -> tuple[Callable[..., Any], Callable[..., Any]]:
        token = anyio.lowlevel.current_token()
        return (
            functools.partial(anyio.from_thread.run, token=token),
            functools.partial(anyio.from_thread.run_sync, token=token),
        )

    def told_broken(self, exc: BaseException) -> object:
        return exc


# ----------------------------------------------------------------- push: across loops


class PumpAcrossLoopsHarness(testing.PushHarness):
    """An event loop in another thread pumps an async generator into open_channel.

    The producer loop (asyncio or trio) runs ``channels.pump`` in its own
    thread; the consumer iterates the receiver on the loop under test.  The
    source counts as released when the receiver closes (as for the
    ``open_channel`` harness); the generator's own cleanup on the other loop
    is checked by R14: its thread must end.
    """

    claims = testing.claim_push(
        na={
            "R1": "the channel is open from the start; the producer loop runs before iteration",
            "R8": "the producer awaits send() on its own loop; nothing can block the consumer's",
            "R16": "the producer end is pump's own: it closes it, or fails it with the "
            "source's error (channels.pump-open_channel checks R12)",
            "R17": "pump holds its producer end until the source is done; it is never dropped",
            "R18": "pump takes no hooks: it iterates the source and sends",
            "R20": "covered by open_channel (the same receiver); the producer here is "
            "pump on another loop, not an end the check can send with",
        }
    )

    def __init__(self, producer: str) -> None:
        self.producer = producer
        self.name = f"channels.pump[{producer}-thread]->open_channel"

    def _run_in_thread(self, main: Callable[[], Any]) -> threading.Thread:
        thread = threading.Thread(
            target=anyio.run,
            args=(main,),
            kwargs={"backend": self.producer},
            name=f"bridges-test-producer-{self.producer}",
            daemon=True,
        )
        thread.start()
        return thread

    def open(
        self, script: Script, probe: Probe, *, buffer: int | None, overflow: str
    ) -> AsyncIterator[int]:
        send, receive = bridges.open_channel[int](buffer, overflow)

        async def source() -> AsyncIterator[int]:
            for i, v in enumerate(script.values):
                if script.gate is not None and i == script.gate:
                    while not probe.open_gate.is_set():  # polled, like ScriptedProducer
                        await anyio.sleep(0.005)
                yield v
                probe.hand_over()  # pump asks for the next: it sent this one
            if script.end is End.FAIL:
                assert script.error is not None
                raise script.error
            if script.end is End.HANG:
                await anyio.sleep_forever()

        async def main() -> None:
            try:
                await channels.pump(source(), send)
            except bridges.BufferOverflowError:
                pass  # overflow="error": pump is told; the receiver gets the values, then it

        probe.start()
        self._run_in_thread(main)
        receive._release = probe.release  # the receiver closing stands for the release
        return receive

    async def emit_after_close(self, probe: Probe) -> None:
        send, receive = bridges.open_channel[int](1)
        await receive.aclose()
        told: list[object] = []

        async def late() -> None:
            try:
                await send.send(1)
            except anyio.BrokenResourceError as exc:
                told.append(exc)
            else:
                told.append(True)

        await anyio.to_thread.run_sync(self._run_in_thread(late).join, 5)
        probe.late_results.extend(told)


# ----------------------------------------------------------------- pull: aiter -> channel


class _FromAiterHarness(testing.PullHarness):
    buffer = 0
    #: the receive side presents itself as this, and raises ``end`` at the end
    receives_as: type = anyio.abc.ObjectReceiveStream
    end: type[BaseException] = anyio.EndOfStream

    async def receive_one(self, receive: channels.PumpedReceiver[int]) -> tuple[bool, int]:
        try:
            return True, await receive.receive()
        except self.end:
            return False, 0

    def check_type(self, receive: object) -> None:
        assert isinstance(receive, self.receives_as)

    def open(self, source: AsyncIterable[int]) -> AbstractAsyncContextManager[Any]:
        """The adapter under test: ``channels.from_aiter`` (the mutants wrap it)."""
        return channels.from_aiter(source, buffer=self.buffer)

    def open_twice(self, source: AsyncIterable[int]) -> AbstractAsyncContextManager[Any]:
        """The adapter R13 enters twice (the same as `open`; the mutants wrap one or the other)."""
        return self.open(source)

    async def drive(self, source: AsyncIterable[int], plan: Plan) -> Outcome:
        outcome = Outcome()
        try:
            async with self.open(source) as receive:
                self.check_type(receive)
                await _consume(receive, plan, outcome, self.receive_one)
        except Exception as exc:
            note_error(outcome, exc)
        return outcome

    async def drive_bad(self) -> object:
        async with self.open(42):  # type: ignore[arg-type]
            pass
        return None

    async def subscribe_twice(
        self, make: Callable[[], AsyncIterable[int]], one_shot: bool
    ) -> tuple[list[int], list[int] | BaseException]:
        cm = self.open_twice(make())
        async with cm as receive:
            first = [v async for v in receive]
        try:
            async with cm as receive:
                second: list[int] | BaseException = [v async for v in receive]
        except RuntimeError as exc:
            second = exc
        return first, second


async def _consume(
    receive: Any,
    plan: Plan,
    outcome: Outcome,
    receive_one: Callable[[Any], Any],
) -> None:
    while True:
        more, v = await receive_one(receive)
        if not more:
            return
        outcome.values.append(v)
        plan.seen(v)
        if plan.take is not None and len(outcome.values) >= plan.take:
            return
        if plan.fail_after is not None and len(outcome.values) >= plan.fail_after:
            raise ConsumerError
        for _ in range(plan.slow):
            await anyio.lowlevel.checkpoint()


class FromAiterTrioHarness(_FromAiterHarness):
    """from_aiter consumed as a trio ReceiveChannel: receive() until trio.EndOfChannel."""

    name = "channels.from_aiter-trio"
    backends = frozenset({"trio"})
    buffer = 0
    in_flight = 0
    receives_as = trio.abc.ReceiveChannel
    end = trio.EndOfChannel


class FromAiterAnyioHarness(_FromAiterHarness):
    """from_aiter consumed as an anyio ObjectReceiveStream: receive() until EndOfStream."""

    name = "channels.from_aiter-anyio"
    buffer = 4
    in_flight = 4


class PumpHarness(testing.PullHarness):
    """channels.pump into an open_channel sender; the consumer iterates the receiver.

    The pump runs in the caller's task group (here the harness's): a receiver
    error therefore leaves that group in an ExceptionGroup (under trio together
    with the Cancelled of a cancellation from outside that coincided with it),
    unwrapped here.
    """

    name = "channels.pump-open_channel"
    buffer = 2
    in_flight = 2
    claims = testing.claim_pull(
        na={"R13": "pump drains its source once per call; it has no subscription to repeat"}
    )

    async def drive(self, source: AsyncIterable[int], plan: Plan) -> Outcome:
        outcome = Outcome()
        send, receive = bridges.open_channel[int](self.buffer)

        async def receive_one(r: Any) -> tuple[bool, int]:
            try:
                return True, await r.__anext__()
            except StopAsyncIteration:
                return False, 0

        try:
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(channels.pump, source, send)
                    async with receive:
                        await _consume(receive, plan, outcome, receive_one)
            except BaseExceptionGroup as group:
                raise unwrap(group) from None
        except Exception as exc:
            note_error(outcome, exc)
        return outcome

    async def drive_bad(self) -> object:
        send, receive = bridges.open_channel[int](1)
        async with send, receive:
            await channels.pump(42, send)  # type: ignore[arg-type]
        return None


HARNESSES: list[testing.PushHarness | testing.PullHarness] = [
    ToAiterTrioHarness(),
    ToAiterAnyioHarness(),
    PumpAcrossLoopsHarness("asyncio"),
    PumpAcrossLoopsHarness("trio"),
    FromAiterTrioHarness(),
    FromAiterAnyioHarness(),
    PumpHarness(),
]
