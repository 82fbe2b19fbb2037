"""reactivex: Observable -> async iterator (rx.to_aiter) and back (rx.from_aiter)."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any

import anyio
import reactivex
from reactivex import Observable, abc
from reactivex import operators as ops
from reactivex.disposable import CompositeDisposable, Disposable
from reactivex.scheduler import NewThreadScheduler, ThreadPoolScheduler

from bridges import rx, testing
from bridges.testing import ConsumerError, End, Outcome, Plan, Probe, Script

from ..harness_kit import gated_values, unwrap

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

#: shared by every check: its idle workers are a scheduler the user passed in (R14)
POOL = ThreadPoolScheduler(4)


def scripted(
    script: Script, probe: Probe, scheduler: abc.SchedulerBase | None = None
) -> Observable[int]:
    """A cold Observable that follows ``script``, as reactivex's own sources do.

    It emits from a cooperative loop (``from_iterable``): on the thread that
    subscribes, inside its trampoline, like ``range``; or on ``scheduler``'s
    thread.  Subscribing calls ``probe.start()``, disposing ``probe.release()``.
    """

    def subscribe(
        observer: abc.ObserverBase[int], _: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        probe.start()
        released = threading.Event()

        # each value is handed over once on_next returned: the adapter has it
        values = gated_values(script, probe, released, 0.01)

        end: Observable[int]
        if script.end is End.COMPLETE:
            end = reactivex.empty()
        elif script.end is End.FAIL:
            assert isinstance(script.error, Exception)
            end = reactivex.throw(script.error)
        else:
            end = reactivex.never()
        inner = reactivex.from_iterable(values, scheduler=scheduler).pipe(ops.concat(end))
        subscription = inner.subscribe(observer)

        def release() -> None:
            released.set()
            probe.release()

        return CompositeDisposable(subscription, Disposable(release))

    return reactivex.create(subscribe)


_OBSERVER_NA = {
    "R16": "the producer is an Observable: it ends the stream with on_completed or "
    "on_error (R4, R5); there is no producer block to leave",
    "R17": "the adapter's observer is held by the subscription until it is disposed, "
    "so no producer end is collected while the stream is open",
    "R20": "covered by open_channel (the same iterator over the same hand-off); the "
    "observer belongs to the Observable, so the check has no end of its own to send with",
    "R18": "rx.to_aiter takes no hooks: the Observable is subscribed and disposed through "
    "reactivex's own protocol (the trio scheduler's actions: tests/test_hooks.py)",
}


class ToAiterHarness(testing.PushHarness):
    """A cold synchronous Observable subscribed on a thread pool (``subscribe_on``).

    The source runs on the worker thread, so ``block`` makes it wait for the
    consumer; leaving releases the worker.
    """

    name = "rx.to_aiter"
    claims = testing.claim_push(na=_OBSERVER_NA)

    def open(
        self, script: Script, probe: Probe, *, buffer: int | None, overflow: str
    ) -> AsyncIterator[int]:
        return rx.to_aiter(
            scripted(script, probe), buffer=buffer, overflow=overflow, subscribe_on=POOL
        )

    def emit_from_loop(self, script: Script, probe: Probe, *, buffer: int) -> AsyncIterator[int]:
        # no subscribe_on: a synchronous source emits on the event-loop thread
        return rx.to_aiter(scripted(script, probe), buffer=buffer)


class ToAiterRxThreadHarness(ToAiterHarness):
    """An Observable that emits on reactivex's own new-thread scheduler (no subscribe_on)."""

    name = "rx.to_aiter[new-thread]"
    claims = testing.claim_push(
        na={"R8": "covered by rx.to_aiter (the same observer on the loop thread)", **_OBSERVER_NA}
    )

    def open(
        self, script: Script, probe: Probe, *, buffer: int | None, overflow: str
    ) -> AsyncIterator[int]:
        return rx.to_aiter(
            scripted(script, probe, NewThreadScheduler()), buffer=buffer, overflow=overflow
        )


class _Subscriber:
    """Consumes an Observable under a :class:`Plan`, recording an :class:`Outcome`."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.outcome = Outcome()
        self.finished = anyio.Event()
        self.subscription: abc.DisposableBase | None = None

    def on_next(self, value: int) -> None:
        plan, values = self.plan, self.outcome.values
        plan.seen(value)
        values.append(value)
        if plan.fail_after is not None and len(values) >= plan.fail_after:
            raise ConsumerError("the observer's own mistake")
        if plan.take is not None and len(values) >= plan.take:
            assert self.subscription is not None
            self.subscription.dispose()  # from inside on_next, as take(n) does
            self.finished.set()

    def on_error(self, error: Exception) -> None:
        self.outcome.error = error
        self.outcome.errors_seen += 1
        self.finished.set()

    def on_completed(self) -> None:
        self.finished.set()

    def subscribe(self, observable: Observable[int]) -> abc.DisposableBase:
        self.subscription = observable.subscribe(self.on_next, self.on_error, self.on_completed)
        return self.subscription


async def _twice(
    subscribe_one: Callable[[Observable[int]], Any], observable: Observable[int]
) -> tuple[list[int], list[int] | BaseException]:
    first = await subscribe_one(observable)
    second = await subscribe_one(observable)
    assert first.error is None, first.error
    return first.values, second.error if second.error is not None else second.values


class FromAiterHarness(testing.PullHarness):
    """The pump runs in the caller's task group (any backend)."""

    name = "rx.from_aiter"
    claims = testing.claim_pull()
    in_flight = 0  # the next value is pulled only after on_next returned

    async def drive(self, source: AsyncIterable[int], plan: Plan) -> Outcome:
        subscriber = _Subscriber(plan)
        try:
            async with anyio.create_task_group() as tg:
                subscription = subscriber.subscribe(rx.from_aiter(source, task_group=tg))
                try:
                    await subscriber.finished.wait()
                finally:
                    subscription.dispose()
        except BaseExceptionGroup as group:
            # the observer's own error is raised out of the task group that owns the pump;
            # under trio a cancellation from outside that coincided with it adds the
            # Cancelled of each task it reached (the body's, here) to the group: those
            # are that one cancellation, so the error alone is the outcome
            error = unwrap(group)
            if not isinstance(error, ConsumerError):
                raise error from None  # e.g. from_aiter's own TypeError (R15), a cancellation
            subscriber.outcome.error = error
        return subscriber.outcome

    async def subscribe_twice(
        self, make: Callable[[], AsyncIterable[int]], one_shot: bool
    ) -> tuple[list[int], list[int] | BaseException]:
        async with anyio.create_task_group() as tg:

            async def subscribe_one(observable: Observable[int]) -> Outcome:
                subscriber = _Subscriber(Plan())
                subscriber.subscribe(observable)
                await subscriber.finished.wait()
                return subscriber.outcome

            return await _twice(subscribe_one, rx.from_aiter(make(), task_group=tg))


class FromAiterLoopHarness(testing.PullHarness):
    """asyncio without a task group: the pump is a task the bridge tracks (R14's exception).

    Dispose cancels that task, which closes the source on the loop soon after;
    the harness waits for the pump tasks it saw start (the documented way to
    know the source is closed), and takes the observer's own errors from the
    loop's exception handler.
    """

    name = "rx.from_aiter[asyncio-no-task-group]"
    claims = testing.claim_pull()
    backends = frozenset({"asyncio", "uvloop"})
    in_flight = 0

    async def drive(self, source: AsyncIterable[int], plan: Plan) -> Outcome:
        loop = asyncio.get_running_loop()
        subscriber = _Subscriber(plan)
        reported: list[BaseException] = []

        def handler(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            reported.append(context["exception"])
            subscriber.finished.set()

        observable = rx.from_aiter(source)
        previous = loop.get_exception_handler()
        loop.set_exception_handler(handler)
        before = asyncio.all_tasks()
        try:
            subscription = subscriber.subscribe(observable)
            pumps = asyncio.all_tasks() - before
            try:
                await subscriber.finished.wait()
            finally:
                subscription.dispose()
                with anyio.CancelScope(shield=True):
                    if pumps:
                        await asyncio.wait(pumps)
        finally:
            loop.set_exception_handler(previous)
        if reported:
            assert len(reported) == 1, f"R12: reported {len(reported)} times"
            subscriber.outcome.error = reported[0]
        return subscriber.outcome

    async def subscribe_twice(
        self, make: Callable[[], AsyncIterable[int]], one_shot: bool
    ) -> tuple[list[int], list[int] | BaseException]:
        async def subscribe_one(observable: Observable[int]) -> Outcome:
            subscriber = _Subscriber(Plan())
            subscriber.subscribe(observable)
            await subscriber.finished.wait()
            return subscriber.outcome

        return await _twice(subscribe_one, rx.from_aiter(make()))


HARNESSES: list[testing.PushHarness | testing.PullHarness] = [
    ToAiterHarness(),
    ToAiterRxThreadHarness(),
    FromAiterHarness(),
    FromAiterLoopHarness(),
]
