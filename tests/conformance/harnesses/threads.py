"""bridges.threads: a blocking iterable -> async iterator, an async iterable -> sync iterator."""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, AsyncIterator, Iterator

import anyio
from anyio.from_thread import BlockingPortal

from bridges import testing, threads
from bridges.testing import ConsumerError, End, Outcome, Plan, Probe, Script

from ..harness_kit import gated_values, note_error


def _blocking_source(script: Script, probe: Probe) -> Iterator[int]:
    """A generator that follows ``script``; its waits are real blocking calls in next()."""
    probe.start()
    gone = threads.consumer_gone()  # the generator runs in the worker thread
    try:
        # blocked inside next() at the gate until it opens (or the consumer left);
        # a value is handed over when the worker asks for the next
        if not (yield from gated_values(script, probe, gone, 0.005)):
            return
        if script.end is End.FAIL:
            assert script.error is not None
            raise script.error
        if script.end is End.HANG:
            # a blocking call nothing can interrupt from outside, except what
            # a real source would have: here, the consumer leaving
            gone.wait()
    finally:
        probe.release()  # runs in the worker thread: generator.close() or the end


class ToAiterFactoryHarness(testing.PushHarness):
    """threads.to_aiter(factory): the generator is made and run in the worker thread."""

    name = "threads.to_aiter(factory)"
    claims = testing.claim_push(
        na={
            "R8": "the source always runs in the worker thread, never on the event-loop thread",
            "R16": "the producer is a blocking iterable run by the worker: it ends by "
            "returning or raising (R4, R5); there is no producer block to leave",
            "R17": "the worker holds the iterable until it is done; no producer end is dropped",
            "R18": "no hooks on a loop-thread source: its one callable, the factory, runs in "
            "the worker thread, and an async one is refused (tests/test_hooks.py)",
            "R20": "covered by open_channel (the same iterator over the same hand-off); the "
            "worker is the only producer, so the check has no end of its own to send with",
        }
    )

    def open(
        self, script: Script, probe: Probe, *, buffer: int | None, overflow: str
    ) -> AsyncIterator[int]:
        return threads.to_aiter(
            lambda: _blocking_source(script, probe), buffer=buffer, overflow=overflow
        )


class ToAiterIterableHarness(ToAiterFactoryHarness):
    """threads.to_aiter(generator): an iterable as it is (its first next() starts it)."""

    name = "threads.to_aiter(iterable)"

    def open(
        self, script: Script, probe: Probe, *, buffer: int | None, overflow: str
    ) -> AsyncIterator[int]:
        return threads.to_aiter(_blocking_source(script, probe), buffer=buffer, overflow=overflow)


class FromAiterHarness(testing.PullHarness):
    """threads.from_aiter(): sync code in a worker thread iterates the source in its own loop."""

    name = "threads.from_aiter"
    in_flight = 4
    claims = testing.claim_pull(
        na={
            "R13": "from_aiter iterates the source once, for the one sync consumer; "
            "there is no subscription to repeat (each call takes a fresh __aiter__)",
        }
    )

    async def drive(self, source: AsyncIterable[int], plan: Plan) -> Outcome:
        return await _drive(threads.from_aiter(source, buffer=4, backend=_backend()), plan)


class FromAiterPortalHarness(testing.PullHarness):
    """threads.from_aiter(portal=...): the source runs in the caller's own loop."""

    name = "threads.from_aiter(portal)"
    in_flight = 4
    claims = FromAiterHarness.claims

    async def drive(self, source: AsyncIterable[int], plan: Plan) -> Outcome:
        async with BlockingPortal() as portal:
            try:
                it = threads.from_aiter(source, buffer=4, portal=portal)
            except TypeError as exc:  # raised here, not as a group from the portal's tasks
                error = exc
            else:
                return await _drive(it, plan)
        raise error


def _backend() -> str:
    import sniffio

    return sniffio.current_async_library()


def _consume(it: threads.BlockingIterator[int], plan: Plan, outcome: Outcome) -> None:
    """The sync consumer, in a worker thread."""
    try:
        with it:
            while plan.take is None or len(outcome.values) < plan.take:  # then break out
                if plan.fail_after is not None and len(outcome.values) >= plan.fail_after:
                    raise ConsumerError
                try:
                    v = next(it)
                except StopIteration:
                    break
                plan.seen(v)
                outcome.values.append(v)
                for _ in range(plan.slow):
                    time.sleep(0)  # let the other threads run: a slow consumer
    except BaseException as exc:
        note_error(outcome, exc)


async def _drive(it: threads.BlockingIterator[int], plan: Plan) -> Outcome:
    outcome = Outcome()
    try:
        await anyio.to_thread.run_sync(_consume, it, plan, outcome, abandon_on_cancel=True)
    except BaseException:
        # cancelled from outside: stop the consumer thread the way another
        # thread would, by closing the iterator (it waits for the source's cleanup)
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(it.close)
        raise
    return outcome


class ToAiterCallsHarness(testing.CallHarness):
    """R21 for threads.to_aiter(iterable): the worker's next() calls on one source."""

    name = "threads.to_aiter(iterable)"

    def open(self, source: testing.CallSource) -> AsyncIterator[int]:
        return threads.to_aiter(source, buffer=2)


class ToAiterFactoryCallsHarness(testing.CallHarness):
    """R21 for threads.to_aiter(factory): the factory's iterable, called in the worker."""

    name = "threads.to_aiter(factory)"

    def open(self, source: testing.CallSource) -> AsyncIterator[int]:
        return threads.to_aiter(lambda: source, buffer=0)


HARNESSES: list[testing.PushHarness | testing.PullHarness | testing.CallHarness] = [
    ToAiterFactoryHarness(),
    ToAiterIterableHarness(),
    ToAiterCallsHarness(),
    ToAiterFactoryCallsHarness(),
    FromAiterHarness(),
    FromAiterPortalHarness(),
]
