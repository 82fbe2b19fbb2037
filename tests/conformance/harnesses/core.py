"""The hand-off core itself, as the spokes use it, and its public face open_channel."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio

import bridges
from bridges import ChannelSender, testing
from bridges._buffer import Handoff
from bridges._iterator import BufferedIterator
from bridges.testing import Probe, Script, ScriptedProducer

# the hand-off has no producer end object: open_channel's sender is the one (checked there)
_NO_END = {
    "R16": "no producer block: the producer calls the hand-off's put/close/fail directly; "
    "open_channel's sender, a block around them, is checked by the open_channel harness",
    "R17": "no producer end to drop: the producer calls the hand-off directly; "
    "open_channel's sender is checked by the open_channel harness",
    "R20": "covered by open_channel: its receiver is this iterator over this hand-off, "
    "and it has the producer end the check sends with",
    "R18": "the hand-off's pause/resume are internal: callbacks.to_aiter hands the user's "
    "hooks to it and is checked with them (callbacks.to_aiter+pause)",
}


class CoreThreadHarness(testing.PushHarness):
    """A foreign producer thread feeding the hand-off (what callback spokes wrap)."""

    name = "core-thread"
    claims = testing.claim_push(
        na={"R8": "covered by core-loop: this producer is on a thread", **_NO_END}
    )

    def open(
        self, script: Script, probe: Probe, *, buffer: int | None, overflow: str
    ) -> AsyncIterator[int]:
        handoff: Handoff[int] = Handoff(buffer, overflow)

        def start(h: Handoff[int]) -> object:
            probe.start()
            producer = ScriptedProducer(
                script, probe, send=lambda v: h.put_sync(v) <= 1, close=h.close, fail=h.fail
            )
            producer.start()

            def release() -> None:
                producer.stop()
                probe.release()

            return release

        return BufferedIterator(handoff, start)

    async def emit_after_close(self, probe: Probe) -> None:
        handoff: Handoff[int] = Handoff(1)
        it = BufferedIterator(handoff)
        await it.aclose()
        probe.late_results.append(await anyio.to_thread.run_sync(lambda: handoff.put_sync(1) <= 1))


class CoreLoopHarness(testing.PushHarness):
    """A sync producer on the event-loop thread (R8), the same core otherwise."""

    name = "core-loop"
    claims = testing.claim_push(
        na={
            "R2": "a loop-thread producer cannot block: covered by core-thread and R8",
            "R3": "covered by core-thread (the same buffer)",
            "R6": "covered by core-thread (the same iterator)",
            "R7": "no foreign thread here",
            "R9": "covered by core-thread (the same policies)",
            **_NO_END,
        }
    )

    def open(
        self, script: Script, probe: Probe, *, buffer: int | None, overflow: str
    ) -> AsyncIterator[int]:
        Handoff(buffer, overflow)  # validates (R15)
        # the whole script fits: a loop-thread producer without hooks cannot wait
        cap = None if buffer is None else max(buffer, len(script.values))
        handoff: Handoff[int] = Handoff(cap, overflow)

        def start(h: Handoff[int]) -> object:
            probe.start()
            for v in script.values:
                h.put_sync(v)
                probe.hand_over()
            if script.end is testing.End.COMPLETE:
                h.close()
            elif script.end is testing.End.FAIL:
                assert script.error is not None
                h.fail(script.error)
            return probe.release

        return BufferedIterator(handoff, start)

    def emit_from_loop(self, script: Script, probe: Probe, *, buffer: int) -> AsyncIterator[int]:
        handoff: Handoff[int] = Handoff(buffer, "block")

        def start(h: Handoff[int]) -> object:
            for v in script.values:
                h.put_sync(v)
            h.close()
            return None

        return BufferedIterator(handoff, start)


class CoreLoopPausedHarness(CoreLoopHarness):
    """R8 with pause/resume hooks: nothing dropped, no error."""

    name = "core-loop-paused"
    pause_hooks = True

    def emit_from_loop(self, script: Script, probe: Probe, *, buffer: int) -> AsyncIterator[int]:
        pending = list(script.values)
        state = {"paused": False}
        handoff: Handoff[int] = Handoff(
            buffer, "block", pause=lambda: state.update(paused=True), resume=lambda: resume()
        )

        def pump() -> None:
            while pending and not state["paused"]:
                handoff.put_sync(pending.pop(0))
            if not pending:
                handoff.close()

        def resume() -> None:
            state["paused"] = False
            pump()

        def start(h: Handoff[int]) -> object:
            pump()
            return None

        return BufferedIterator(handoff, start)


class ChannelHarness(testing.PushHarness):
    """open_channel with a producer thread: the channel exists before iteration, so R1 is n/a."""

    name = "open_channel"
    claims = testing.claim_push(
        na={
            "R1": "a channel is open from the start; there is no source to start lazily",
            "R8": "senders on a loop thread await (send) or get WouldBlock (send_nowait)",
            "R18": "open_channel takes no hooks: its ends are called, they call nothing "
            "of the user's",
        }
    )

    def open(
        self, script: Script, probe: Probe, *, buffer: int | None, overflow: str
    ) -> AsyncIterator[int]:
        send, receive = bridges.open_channel[int](buffer, overflow)
        probe.start()
        producer = self.producer(script, probe, send)
        # the channel has no source of its own: stand the producer in for it
        receive._release = self.release(script, probe, producer)
        producer.start()
        return receive

    def producer(self, script: Script, probe: Probe, send: ChannelSender[int]) -> ScriptedProducer:
        """The thread that plays ``script`` into ``send``."""
        return ScriptedProducer(
            script, probe, send=send.send_blocking, close=send.close, fail=send.fail
        )

    def release(
        self, script: Script, probe: Probe, producer: ScriptedProducer
    ) -> Callable[[], None]:
        """What the receiver calls when it is done: stop the producer, record the release."""

        def release() -> None:
            producer.stop()
            probe.release()

        return release

    def open_producer(self, *, buffer: int) -> tuple[Any, AsyncIterator[int]]:
        send, receive = bridges.open_channel[int](buffer)
        return send, receive


HARNESSES: list[testing.PushHarness | testing.PullHarness] = [
    CoreThreadHarness(),
    CoreLoopHarness(),
    CoreLoopPausedHarness(),
    ChannelHarness(),
]
