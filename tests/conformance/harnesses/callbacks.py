"""bridges.callbacks: callbacks from a foreign thread, from the loop thread with
pause/resume hooks, and an async iterable driving callbacks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Callable
from types import MappingProxyType

import anyio
import sniffio
from anyio.lowlevel import checkpoint

from bridges import callbacks, testing
from bridges.callbacks import Emitter
from bridges.testing import (
    ConsumerError,
    End,
    HookedSource,
    Outcome,
    Plan,
    Probe,
    Script,
    ScriptedProducer,
)


def _end(script: Script, emit: Emitter[int]) -> None:
    if script.end is End.COMPLETE:
        emit.close()
    elif script.end is End.FAIL:
        assert script.error is not None
        emit.error(script.error)


_EMITTER_NA = {
    "R16": "the producer end is the Emitter handed to subscribe, not a context manager: "
    "the source ends the stream with emit.close() or emit.error()",
    "R17": "the adapter holds the Emitter until the source is released, so it is never "
    "collected while the stream is open",
    "R20": "covered by open_channel (the same iterator over the same hand-off); the "
    "Emitter belongs to the source, so the check has no end of its own to send with",
}


class ToAiterThreadHarness(testing.PushHarness):
    """A legacy API that calls back on its own thread (the usual case)."""

    name = "callbacks.to_aiter"
    claims = testing.claim_push(
        na={
            "R18": "covered by callbacks.to_aiter+pause: the same adapter, given its hooks",
            **_EMITTER_NA,
        }
    )

    def open(
        self, script: Script, probe: Probe, *, buffer: int | None, overflow: str
    ) -> AsyncIterator[int]:
        def subscribe(emit: Emitter[int]) -> Callable[[], None]:
            probe.start()
            producer = ScriptedProducer(script, probe, emit.send, emit.close, emit.error)
            producer.start()

            def unsubscribe() -> None:
                producer.stop()
                probe.release()

            return unsubscribe

        return callbacks.to_aiter(subscribe, buffer=buffer, overflow=overflow)

    def emit_from_loop(self, script: Script, probe: Probe, *, buffer: int) -> AsyncIterator[int]:
        # no hooks: a callback on the loop thread that overfills fails the stream (R8)
        def subscribe(emit: Emitter[int]) -> None:
            for v in script.values:
                emit.send(v)
            emit.close()

        return callbacks.to_aiter(subscribe, buffer=buffer)

    async def emit_after_close(self, probe: Probe) -> None:
        emitters: list[Emitter[int]] = []
        async with callbacks.to_aiter(emitters.append, buffer=1):
            pass
        probe.late_results.append(await anyio.to_thread.run_sync(emitters[0].send, 1))


class _LoopSource:
    """A source that calls back on the event-loop thread a few values per loop turn,
    and honours pause/resume like a transport's pause_reading/resume_reading."""

    BURST = 3

    def __init__(self, script: Script, probe: Probe, emit: Emitter[int]) -> None:
        self.script = script
        self.probe = probe
        self.emit = emit
        self.i = 0
        self.paused = False
        self.stopped = False
        self.scheduled = False
        self.soon: Callable[[Callable[[], None]], object]
        if sniffio.current_async_library() == "trio":
            import trio

            self.soon = trio.lowlevel.current_trio_token().run_sync_soon
        else:
            self.soon = asyncio.get_running_loop().call_soon

    def schedule(self) -> None:
        if not self.scheduled and not self.stopped:
            self.scheduled = True
            self.soon(self.step)

    def step(self) -> None:
        self.scheduled = False
        values, gate = self.script.values, self.script.gate
        for _ in range(self.BURST):
            if self.stopped or self.paused:
                return
            if self.i == len(values):
                self.stopped = True
                _end(self.script, self.emit)
                return
            if self.i == gate and not self.probe.open_gate.is_set():
                break  # look again next turn
            if not self.emit.send(values[self.i]):
                raise AssertionError("a paused source's send must never be refused")
            self.probe.hand_over()
            self.i += 1
        self.schedule()

    def pause(self) -> None:
        assert not self.paused, "pause twice in a row"
        self.paused = True

    def resume(self) -> None:
        assert self.paused, "resume without pause"
        self.paused = False
        self.schedule()


class ToAiterPausedHarness(testing.PushHarness):
    """A source on the loop thread that honours pause/resume hooks (a transport, a client)."""

    name = "callbacks.to_aiter+pause"
    claims = testing.claim_push(
        na={
            "R7": "no foreign thread: this source calls back on the loop thread "
            "(callbacks.to_aiter covers threads)",
            "R9": "pause/resume hooks go with overflow='block' only "
            "(callbacks.to_aiter covers the drop policies)",
            **_EMITTER_NA,
        }
    )
    overflows = ("block",)
    pause_hooks = True

    def open(
        self, script: Script, probe: Probe, *, buffer: int | None, overflow: str
    ) -> AsyncIterator[int]:
        sources: list[_LoopSource] = []

        def subscribe(emit: Emitter[int]) -> Callable[[], None]:
            probe.start()
            source = _LoopSource(script, probe, emit)
            sources.append(source)
            source.schedule()

            def unsubscribe() -> None:
                source.stopped = True
                probe.release()

            return unsubscribe

        return callbacks.to_aiter(
            subscribe,
            buffer=buffer,
            overflow=overflow,
            pause=lambda: sources[0].pause(),
            resume=lambda: sources[0].resume(),
        )

    def emit_from_loop(self, script: Script, probe: Probe, *, buffer: int) -> AsyncIterator[int]:
        # everything synchronously, inside subscribe and inside resume (an API
        # that flushes on resume): the hooks keep it from ever failing (R8)
        pending = list(script.values)
        state = {"paused": False}
        emitters: list[Emitter[int]] = []

        def pump() -> None:
            while pending and not state["paused"]:
                emitters[0].send(pending.pop(0))
            if not pending:
                emitters[0].close()

        def resume() -> None:
            state["paused"] = False
            pump()

        def subscribe(emit: Emitter[int]) -> None:
            emitters.append(emit)
            pump()

        return callbacks.to_aiter(
            subscribe, buffer=buffer, **self.loop_hooks(lambda: state.update(paused=True), resume)
        )

    def loop_hooks(
        self, pause: Callable[[], object], resume: Callable[[], object]
    ) -> dict[str, Callable[[], object]]:
        """The keyword arguments that give emit_from_loop's source hooks to the adapter."""
        return {"pause": pause, "resume": resume}

    hooks = MappingProxyType({"pause": "pause", "resume": "resume", "release": "unsubscribe"})

    def open_hooked(self, source: HookedSource, *, buffer: int) -> AsyncIterator[int]:
        def subscribe(emit: Emitter[int]) -> Callable[[], object]:
            source.start(emit.send, emit.close)
            return source.hooks["release"]

        return callbacks.to_aiter(
            subscribe, buffer=buffer, pause=source.hooks["pause"], resume=source.hooks["resume"]
        )


class FromAiterHarness(testing.PullHarness):
    """from_aiter driving a sync or an async on_next."""

    claims = testing.claim_pull(
        na={
            "R13": "from_aiter is one call that drives the source it is given once; "
            "there is no reusable target to subscribe twice"
        }
    )
    in_flight = 1

    def __init__(self, *, async_on_next: bool, use_on_error: bool) -> None:
        self.async_on_next = async_on_next
        self.use_on_error = use_on_error
        self.name = "callbacks.from_aiter" + ("-async" if async_on_next else "")

    async def drive_bad(self) -> object:
        await callbacks.from_aiter(42, print)  # type: ignore[arg-type]
        return None

    async def drive(self, source: AsyncIterable[int], plan: Plan) -> Outcome:
        outcome = Outcome()
        with anyio.CancelScope() as scope:

            def take(v: int) -> None:
                outcome.values.append(v)
                plan.seen(v)
                if plan.fail_after is not None and len(outcome.values) >= plan.fail_after:
                    raise ConsumerError
                if plan.take is not None and len(outcome.values) >= plan.take:
                    scope.cancel()  # the consumer stops early: cancel the driving call

            async def on_next_async(v: int) -> None:
                take(v)
                for _ in range(plan.slow):
                    await checkpoint()

            def on_error(exc: Exception) -> None:
                outcome.errors_seen += 1
                outcome.error = exc

            try:
                await callbacks.from_aiter(
                    source,
                    on_next_async if self.async_on_next else take,
                    on_error=on_error if self.use_on_error else None,
                )
            except Exception as exc:
                outcome.errors_seen += 1
                outcome.error = exc
        return outcome


HARNESSES: list[testing.PushHarness | testing.PullHarness] = [
    ToAiterThreadHarness(),
    ToAiterPausedHarness(),
    FromAiterHarness(async_on_next=False, use_on_error=True),
    FromAiterHarness(async_on_next=True, use_on_error=False),
]
