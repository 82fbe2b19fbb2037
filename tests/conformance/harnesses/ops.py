"""The pipeline helpers (bridges.ops) and the chainable methods, under the contract.

Each helper is a pull -> pull stage: an instrumented :class:`TestSource` is
run through it and a scripted consumer drives it (the PullHarness rules
R10-R15: demand, closing the source on every exit, errors once, no leaks).
The chainable methods over a push source also keep the push rules of the
iterator they wrap (R1, R2, R4-R7, R14).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any

import anyio
import anyio.lowlevel

import bridges
from bridges import ops, testing
from bridges.testing import Outcome, Plan, Probe, Script, TestSource

from ..harness_kit import errors_noted, note_error
from .core import CoreThreadHarness

_NOT_RESUBSCRIBABLE = (
    "returns one iterator, which is iterated once; there is nothing to subscribe to twice"
)


class _StopPlan(Exception):  # noqa: N818 - a signal, not an error
    """Internal: the plan's early exit."""


async def _consume(
    it: AsyncIterator[Any],
    plan: Plan,
    outcome: Outcome,
    *,
    flatten: bool = False,
    keep: Callable[[int], bool] | None = None,
) -> None:
    """Consume ``it`` per ``plan``; ``flatten`` for batches; ``keep`` filters another source out."""
    try:
        async for item in it:
            for v in item if flatten else (item,):
                if keep is not None and not keep(v):
                    continue
                plan.seen(v)
                outcome.values.append(v)
                if plan.fail_after is not None and len(outcome.values) >= plan.fail_after:
                    raise testing.ConsumerError
                if plan.take is not None and len(outcome.values) >= plan.take:
                    raise _StopPlan
            for _ in range(plan.slow):
                await anyio.lowlevel.checkpoint()
    except _StopPlan:
        return


class _OpsPull(testing.PullHarness):
    """Run ``build(source)`` and consume it inside its ``async with`` block."""

    flatten = False

    def build(self, source: AsyncIterable[int]) -> Any:
        raise NotImplementedError

    def keep(self) -> Callable[[int], bool] | None:
        return None

    def after(self) -> None:
        """Checks after the op's block exited (raise AssertionError to fail the rule)."""

    async def drive(self, source: AsyncIterable[int], plan: Plan) -> Outcome:
        outcome = Outcome()
        it = self.build(source)  # bad arguments fail here, at once (R15)
        with errors_noted(outcome):
            async with it:
                await _consume(it, plan, outcome, flatten=self.flatten, keep=self.keep())
        self.after()
        return outcome


class ChainPullHarness(_OpsPull):
    """bridges.iterate(source) through map (async), filter, flat_map and drop."""

    name = "ops.chain"
    claims = testing.claim_pull(na={"R13": _NOT_RESUBSCRIBABLE})
    in_flight = 1

    def build(self, source: AsyncIterable[int]) -> Any:
        async def same(v: int) -> int:
            await anyio.lowlevel.checkpoint()
            return v

        return (
            bridges.iterate(source)
            .map(same)
            .filter(lambda v: v >= 0)
            .flat_map(lambda v: (v,))
            .drop(0)
        )


class TakeHarness(_OpsPull):
    """``take(n)`` ends the iteration itself: the source is closed before the n-th value arrives."""

    name = "ops.take"
    claims = testing.claim_pull(na={"R13": _NOT_RESUBSCRIBABLE})
    in_flight = 1

    async def drive(self, source: AsyncIterable[int], plan: Plan) -> Outcome:
        if not hasattr(source, "__aiter__"):
            bridges.iterate(source)  # R15: raises TypeError
        n = plan.take if plan.take is not None else 10**9
        outcome = Outcome()
        it = bridges.iterate(source).take(n)
        with errors_noted(outcome):
            async with it:
                async for v in it:
                    plan.seen(v)
                    outcome.values.append(v)
                    if len(outcome.values) == n:
                        assert getattr(source, "closed", 1) == 1, (
                            "take(n) must close its source before handing over the n-th value"
                        )
                    if plan.fail_after is not None and len(outcome.values) >= plan.fail_after:
                        raise testing.ConsumerError
                    for _ in range(plan.slow):
                        await anyio.lowlevel.checkpoint()
        return outcome


class BatchHarness(_OpsPull):
    """batch(source, 4): the consumer pulls; exits land mid-batch (take=5 of batches of 4)."""

    name = "ops.batch"
    claims = testing.claim_pull(na={"R13": _NOT_RESUBSCRIBABLE})
    in_flight = 4
    flatten = True

    def build(self, source: AsyncIterable[int]) -> Any:
        return ops.batch(source, 4)


class BatchWithinHarness(_OpsPull):
    """batch(source, 4, within=...): a helper task reads; at most one batch in hand.

    The time limit is far away here (time is tested with virtual clocks in
    tests/test_ops.py); what is checked is the helper's demand and cleanup.
    """

    name = "ops.batch-within"
    claims = testing.claim_pull(na={"R13": _NOT_RESUBSCRIBABLE})
    # the batch being consumed and the next one, built while it is consumed
    in_flight = 8
    flatten = True

    def build(self, source: AsyncIterable[int]) -> Any:
        return ops.batch(source, 4, within=30.0)


class MergeHarness(_OpsPull):
    """merge(source, other): one value in flight per source; early exit closes both."""

    name = "ops.merge"
    claims = testing.claim_pull(na={"R13": _NOT_RESUBSCRIBABLE})
    in_flight = 1

    def __init__(self) -> None:
        self._other: TestSource | None = None

    def build(self, source: AsyncIterable[int]) -> Any:
        self._other = TestSource([-1, -2, -3])
        return ops.merge(source, self._other)

    def keep(self) -> Callable[[int], bool]:
        return lambda v: v >= 0

    def after(self) -> None:
        assert self._other is not None
        assert self._other.closed == 1, "merge: every source is closed on every exit"


class PaginateHarness(_OpsPull):
    """paginate() over pages of 3 pulled from the source; exits land mid-page."""

    name = "ops.paginate"
    claims = testing.claim_pull(
        na={"R13": "paginate() returns one iterator; each call starts afresh from start="}
    )
    in_flight = 3
    prefetch = False

    def __init__(self) -> None:
        self._fetching = 0

    def build(self, source: AsyncIterable[int]) -> Any:
        self._fetching = 0
        it = source.__aiter__()

        async def fetch(token: int | None) -> tuple[list[int], int | None]:
            self._fetching += 1
            try:
                items: list[int] = []
                for _ in range(3):
                    try:
                        items.append(await it.__anext__())
                    except StopAsyncIteration:
                        return items, None
                return items, (token or 0) + 1
            finally:
                self._fetching -= 1

        return ops.paginate(fetch, prefetch=self.prefetch)

    async def drive(self, source: AsyncIterable[int], plan: Plan) -> Outcome:
        try:
            return await super().drive(source, plan)
        finally:
            # paginate does not own the page source: close it here.  Closing an
            # async generator that a fetch still runs would raise RuntimeError.
            with anyio.CancelScope(shield=True):
                await source.aclose()  # type: ignore[attr-defined]

    def after(self) -> None:
        assert self._fetching == 0, "paginate: a fetch was still running after the exit"

    async def drive_bad(self) -> object:
        return ops.paginate(42)  # type: ignore[call-overload]


class PaginatePrefetchHarness(PaginateHarness):
    """paginate(prefetch=True): one page fetched ahead by a helper task, cancelled on exit."""

    name = "ops.paginate-prefetch"
    in_flight = 6
    prefetch = True


class PaginateCallsHarness(testing.CallHarness):
    """R21 for paginate() with a sync fetch_page: pages of one value, one call per page."""

    name = "ops.paginate"
    closes_source = False  # paginate does not own what fetch_page reads
    prefetch = False

    def open(self, source: testing.CallSource) -> AsyncIterator[int]:
        def fetch_page(token: int) -> tuple[list[int], int | None]:
            try:
                return [next(source)], token + 1
            except StopIteration:
                return [], None

        return ops.paginate(fetch_page, start=0, prefetch=self.prefetch)


class PaginatePrefetchCallsHarness(PaginateCallsHarness):
    """R21 for paginate(prefetch=True) with a sync fetch_page."""

    name = "ops.paginate-prefetch"
    prefetch = True


class RateLimitHarness(_OpsPull):
    """rate_limit(): a token bucket on the consumer's pulls."""

    name = "ops.rate_limit"
    claims = testing.claim_pull(na={"R13": _NOT_RESUBSCRIBABLE})
    in_flight = 1

    def build(self, source: AsyncIterable[int]) -> Any:
        return ops.rate_limit(source, 20_000, burst=8)


class ShareHarness(testing.PullHarness):
    """share(): one subscriber; when it leaves, the source is closed before its exit returns."""

    name = "ops.share"
    claims = testing.claim_pull()
    # the subscriber's buffer (2) and the value the pump holds waiting for room
    in_flight = 3

    async def drive(self, source: AsyncIterable[int], plan: Plan) -> Outcome:
        outcome = Outcome()
        shared = ops.share(source, buffer=2)
        with errors_noted(outcome):
            async with shared:
                async with shared.subscribe() as sub:
                    await _consume(sub, plan, outcome)
                assert getattr(source, "closed", 1) == 1, (
                    "share: the last subscriber to leave closes the source before it returns"
                )
        return outcome

    async def subscribe_twice(
        self, make: Callable[[], AsyncIterable[int]], one_shot: bool
    ) -> tuple[list[int], list[int] | BaseException]:
        shared = ops.share(make())
        async with shared:
            async with shared.subscribe() as first_sub:
                first = [v async for v in first_sub]
            try:
                async with shared.subscribe() as second_sub:
                    second: list[int] | BaseException = [v async for v in second_sub]
            except RuntimeError as exc:
                second = exc
        return first, second


class ShareTwoHarness(testing.PullHarness):
    """share() with two block subscribers: the plan drives one, the other keeps pace.

    The source stays open while the second subscriber remains, and is
    closed when it leaves too (reference counting).
    """

    name = "ops.share-2"
    claims = testing.claim_pull(na={"R13": "covered by ops.share (the same restart rule)"})
    in_flight = 3

    async def drive(self, source: AsyncIterable[int], plan: Plan) -> Outcome:
        outcome = Outcome()
        other_got: list[int] = []
        async with ops.share(source, buffer=2) as shared:
            main, other = shared.subscribe(), shared.subscribe()

            async def background() -> None:
                try:
                    async with other:
                        async for v in other:
                            other_got.append(v)
                except testing.SourceError:
                    pass

            async with anyio.create_task_group() as tg:
                tg.start_soon(background)
                try:
                    async with main:
                        await _consume(main, plan, outcome)
                except Exception as exc:
                    note_error(outcome, exc)
                if plan.take is not None or plan.fail_after is not None:
                    tg.cancel_scope.cancel()  # the last subscriber leaves
                # else the other one finishes with the source
            assert getattr(source, "closed", 1) == 1, "share: the last one to leave closes it"
        n = min(len(other_got), len(outcome.values))
        assert other_got[:n] == outcome.values[:n], (
            "share: under block both subscribers get every value, in order"
        )
        return outcome

    async def drive_bad(self) -> object:
        return ops.share(42)  # type: ignore[arg-type]


class ChainPushHarness(CoreThreadHarness):
    """map and filter over a push source (a producer thread): its rules hold through the chain."""

    name = "ops.chain-push"
    claims = testing.claim_push(
        na={
            "R3": "map/filter hold no values; the buffer is the source's (checked by core-thread)",
            "R8": "the producer is a thread here; loop-thread producers are the core's (core-loop)",
            "R9": "drop policies are the source's buffer's (checked by core-thread)",
            "R15": "the chain takes no buffer/overflow; its own arguments are checked in "
            "tests/test_ops.py",
            "R16": "map/filter have no producer end; the source's is checked by open_channel",
            "R18": "the chain takes no source hooks; an async map/filter function is awaited "
            "(tests/test_hooks.py)",
            "R17": "map/filter have no producer end; the source's is checked by open_channel",
            "R20": "map/filter add no waiting of their own: fairness is the source's "
            "(checked by open_channel)",
        }
    )

    def open(
        self, script: Script, probe: Probe, *, buffer: int | None, overflow: str
    ) -> AsyncIterator[int]:
        inner = super().open(script, probe, buffer=buffer, overflow=overflow)
        assert isinstance(inner, bridges.BridgeIterator)
        return inner.map(lambda v: v).filter(lambda v: True)


HARNESSES: list[testing.PushHarness | testing.PullHarness | testing.CallHarness] = [
    ChainPullHarness(),
    TakeHarness(),
    BatchHarness(),
    BatchWithinHarness(),
    MergeHarness(),
    PaginateHarness(),
    PaginatePrefetchHarness(),
    PaginateCallsHarness(),
    PaginatePrefetchCallsHarness(),
    RateLimitHarness(),
    ShareHarness(),
    ShareTwoHarness(),
    ChainPushHarness(),
]
