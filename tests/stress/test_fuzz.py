"""Cancellation fuzzing: generated sources and consumers against every adapter.

The last test fuzzes several producers at once (threads and tasks, each with
its own clone of one open_channel sender) under every overflow policy.

For each registered harness and backend, hypothesis generates a source
(values, an error at the end or not, completion or not) and a consumer
(take k values then break, raise, get cancelled from outside at a random
checkpoint, or read to the end).  After each case: what was received is a
prefix of what was sent, the source was released exactly once, nothing is
left running, no warning (warnings are errors).
"""

from __future__ import annotations

import threading
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bridges
from bridges import BufferOverflowError, testing
from bridges.testing import ConsumerError, End, Plan, Probe, Script, SourceError, TestSource

from ..conformance.registry import HARNESSES, KNOWN_FAILURES
from ..conftest import BACKENDS
from .conftest import STRESS

pytestmark = pytest.mark.anyio

_BACKENDS = {p.id: p for p in BACKENDS}


#: harnesses left out of the fuzz, and why (none: every harness is fuzzed)
NOT_FUZZED: dict[str, str] = {}


def _cases(kind: type, rule: str) -> list[Any]:
    out = []
    for h in HARNESSES:
        if not isinstance(h, kind) or rule not in h.claims.applicable():
            continue
        if h.name in NOT_FUZZED:
            continue
        for bid, p in _BACKENDS.items():
            if bid in h.backends:
                out.append(pytest.param(h, p.values[0], id=f"{h.name}-{bid}", marks=p.marks))
    return out


def _threads_now() -> set[Any]:
    return testing._threads()


@pytest.fixture
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.node.callspec.params["backend"]


consumer_actions = st.sampled_from(["drain", "break", "raise", "cancel_outside"])


def _policies(kind: type, rule: str) -> list[Any]:
    """(harness, backend, overflow): every policy each harness takes."""
    out = []
    for case in _cases(kind, rule):
        harness, backend = case.values
        for overflow in harness.overflows:
            out.append(
                pytest.param(
                    harness, backend, overflow, id=f"{case.id}-{overflow}", marks=case.marks
                )
            )
    return out


def _survives_timeouts(harness: testing.PushHarness) -> bool:
    """A timeout around ``__anext__`` must take nothing (R19) where the harness claims it."""
    return "R19" in harness.claims.applicable() and (harness.name, "R19") not in KNOWN_FAILURES


@pytest.mark.parametrize(("harness", "backend", "overflow"), _policies(testing.PushHarness, "R6"))
@given(
    n=st.integers(0, 150),
    end=st.sampled_from(list(End)),
    buffer=st.sampled_from([1, 2, 8]),
    action=consumer_actions,
    k=st.integers(0, 45),
    cancel_after=st.integers(0, 30),
    timeouts=st.lists(st.one_of(st.none(), st.integers(-1, 2)), max_size=8),
)
async def test_push_fuzz(
    harness: testing.PushHarness,
    backend: Any,
    overflow: str,
    n: int,
    end: End,
    buffer: int,
    action: str,
    k: int,
    cancel_after: int,
    timeouts: list[int | None],
) -> None:
    threads_before = _threads_now()
    k = min(k, n)
    if end is End.HANG and overflow in {"drop_oldest", "drop_newest"}:
        # values may be dropped: a count the consumer waits for may never come
        action = "cancel_outside"
    elif end is End.HANG and action == "drain":
        action, k = "break", n  # a hanging source never ends: the consumer must leave
    if not _survives_timeouts(harness):
        timeouts = []
    boom = SourceError("boom")
    probe = Probe()
    it: Any = harness.open(Script(range(n), end, boom), probe, buffer=buffer, overflow=overflow)
    got: list[int] = []
    error: BaseException | None = None
    calls = 0

    async def next_value(tg: Any) -> None:
        # Some calls run in a scope that is cancelled, while values may be ready:
        # before the call (an expired timeout), or by another task after it has
        # let a few checkpoints pass (a timeout firing while the call is
        # suspended, e.g. at its periodic checkpoint).  A cancelled call takes
        # nothing; the next one (never cancelled) gets the value.
        nonlocal calls
        calls += 1
        when = timeouts[calls % len(timeouts)] if timeouts else None
        if when is None:
            got.append(await it.__anext__())
            return
        with anyio.CancelScope() as scope:
            if when < 0:
                scope.cancel()
            else:
                tg.start_soon(_cancel_after, scope, when)
            got.append(await it.__anext__())
        if scope.cancelled_caught:
            got.append(await it.__anext__())  # progress: the next call is not cancelled

    async def consume(tg: Any) -> None:
        async with it:
            if k == 0 and action in {"break", "raise"}:
                if action == "raise":
                    raise ConsumerError
                return
            while True:
                try:
                    await next_value(tg)
                except StopAsyncIteration:
                    return
                if len(got) >= k and action in {"break", "raise"}:
                    if action == "raise":
                        raise ConsumerError
                    return

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:  # also runs the timeouts' cancellers
            if action == "cancel_outside":
                tg.start_soon(_swallow, consume, tg)
                for _ in range(cancel_after):
                    await anyio.lowlevel.checkpoint()
                tg.cancel_scope.cancel()
            else:
                try:
                    await consume(tg)
                except (ConsumerError, SourceError, BufferOverflowError) as exc:
                    error = exc

    if overflow in {"block", "error"}:
        assert got == list(range(len(got))), "received values are not a prefix of those sent"
    else:  # a drop policy loses values, never reorders or repeats them
        assert got == sorted(set(got)), f"received out of order or twice: {got}"
        assert set(got) <= set(range(n))
    if action == "drain" and error is None:
        if overflow == "block":
            assert got == list(range(n)), "a value was lost"
        elif overflow == "drop_oldest" and n:
            assert got[-1] == n - 1, "drop_oldest lost the newest value"
        elif overflow == "drop_newest" and n:
            assert got[0] == 0, "drop_newest lost the first value (the buffer was empty)"
    if action == "drain" and end is End.FAIL and "R5" in harness.claims.applicable():
        if overflow == "error" and isinstance(error, BufferOverflowError):
            pass  # the buffer overflowed before the source failed
        else:
            assert error is boom, f"the source's error did not arrive as itself: {error!r}"
    if action == "raise" and len(got) >= k:
        assert isinstance(error, ConsumerError), error
    assert probe.started <= 1
    if probe.started:  # a consumer cancelled before it began never started the source (R1)
        await testing._wait_released(probe)
    assert probe.released == probe.started, f"started {probe.started}, released {probe.released}"
    await testing._wait_threads_gone(threads_before)


async def _cancel_after(scope: anyio.CancelScope, checkpoints: int) -> None:
    for _ in range(checkpoints):
        await anyio.lowlevel.checkpoint()
    scope.cancel()


async def _swallow(fn: Any, *args: Any) -> None:
    try:
        await fn(*args)
    except (SourceError, ConsumerError, BufferOverflowError):
        pass


@pytest.mark.parametrize(("harness", "backend"), _cases(testing.PullHarness, "R11"))
@given(
    n=st.integers(0, 30),
    end=st.sampled_from(list(End)),
    take=st.one_of(st.none(), st.integers(0, 35)),
    fail_after=st.one_of(st.none(), st.integers(0, 35)),
    cancel_after=st.one_of(st.none(), st.integers(0, 40)),
)
async def test_pull_fuzz(
    harness: testing.PullHarness,
    backend: Any,
    n: int,
    end: End,
    take: int | None,
    fail_after: int | None,
    cancel_after: int | None,
) -> None:
    threads_before = _threads_now()
    boom = SourceError("boom")
    source = TestSource(range(n), end, boom)
    if end is End.HANG and cancel_after is None:
        # someone must stop a hanging source; an early stop by value count may
        # never come (a batcher waits for a full batch), so cancel from outside
        cancel_after = 60
    plan = Plan(take=take, fail_after=fail_after)
    outcome: testing.Outcome | None = None
    with anyio.fail_after(10):
        if cancel_after is None:
            outcome = await harness.drive(source, plan)
        else:
            async with anyio.create_task_group() as tg:

                async def run() -> None:
                    nonlocal outcome
                    try:
                        outcome = await harness.drive(source, plan)
                    except (SourceError, ConsumerError):
                        # the receiver failed just as the cancellation came: the
                        # adapter reports the error (as itself) instead of outcome
                        pass

                tg.start_soon(run)
                for _ in range(cancel_after):
                    await anyio.lowlevel.checkpoint()
                tg.cancel_scope.cancel()
    if outcome is not None:
        assert outcome.values == list(range(len(outcome.values)))
        if outcome.error is not None:
            assert outcome.error is boom or isinstance(outcome.error, ConsumerError), outcome.error
        if cancel_after is None and take is None and fail_after is None:
            # nothing stopped it early: everything arrived, then the source's own end
            # (a failing source may take with it the values of the unit its last pull
            # was filling: a page or a batch, fewer than in_flight)
            lost = n - len(outcome.values)
            assert lost == 0 or (end is End.FAIL and lost < harness.in_flight), (
                f"a value was lost: {outcome.values}"
            )
            assert outcome.error is (boom if end is End.FAIL else None), outcome.error
    if source.pulled:
        assert source.closed == 1, f"source closed {source.closed} times"
    # exactly once, still, after the adapter had the time to act on the source again
    pulled, closed = source.pulled, source.closed
    await testing._let_it_run()
    await testing._wait_threads_gone(threads_before)
    assert (source.pulled, source.closed) == (pulled, closed), (
        f"after the bridge returned the source was pulled {source.pulled - pulled} and "
        f"closed {source.closed - closed} more times"
    )


# ---------------------------------------------- R21: timeouts, exits and slow calls


@pytest.mark.parametrize(("harness", "backend"), _cases(testing.CallHarness, "R21"))
@given(
    n=st.integers(0, 10),
    hold=st.sets(st.integers(0, 10), max_size=3),
    actions=st.lists(st.sampled_from(["next", "timeout", "timeout", "release"]), max_size=20),
    leave=st.sampled_from(["drain", "exit", "cancel"]),
)
async def test_call_fuzz(
    harness: testing.CallHarness,
    backend: Any,
    n: int,
    hold: set[int],
    actions: list[str],
    leave: str,
) -> None:
    """Timeouts around __anext__, early exits and cancellations while calls are slow (held).

    Whatever the mix: never two calls at once, never a value skipped or fetched twice,
    never a close during a call, and no call running when the exit completes.
    """
    threads_before = _threads_now()
    source = testing.CallSource(n, hold=sorted(hold))
    it: Any = harness.open(source)
    got: list[int] = []
    at_exit: list[int] = []  # calls running when the exit completed
    leaving = anyio.Event()
    consumer = anyio.CancelScope()

    async def consume() -> None:
        with consumer:
            try:
                async with it:
                    for action in actions:
                        if action == "release":
                            source.release.set()
                        elif action == "timeout":
                            taken, ended = await testing._timed_out_next(
                                it, anyio.wait_all_tasks_blocked
                            )
                            got.extend(taken)
                            if ended:
                                break
                        else:
                            source.release.set()  # a held call returns: no wait for grace
                            try:
                                got.append(await it.__anext__())
                            except StopAsyncIteration:
                                break
                    if leave == "drain":
                        source.release.set()
                        got.extend([v async for v in it])
                    leaving.set()
                    if leave == "cancel":
                        await anyio.sleep_forever()
            finally:
                at_exit.append(source.active)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await testing._consumer_leaving(leaving, consumer, leave)
            source.release.set()  # a held call in progress returns while the exit waits

    assert got == list(range(len(got))), f"a value was skipped or fetched twice: {got}"
    if leave == "drain":
        assert got == list(range(n))
    assert source.most <= 1, "two calls of the source ran at once"
    assert at_exit == [0], "a call of the source was running when the exit completed"
    assert source.closed_during_call == 0, "the source was closed while a call ran"
    assert source.called_after_close == 0, "the source was called after close()"
    if harness.closes_source:
        assert source.closed == 1, f"closed {source.closed} times"
    await testing._wait_threads_gone(threads_before)


# ------------------------------------------- several producers: threads and tasks


_OVERFLOWS = ["block", "drop_oldest", "drop_newest", "error"]
#: what a producer may be told under overflow="error": it tripped, or the stream is over
_TOLD_OVER = (bridges.BufferOverflowError, anyio.BrokenResourceError, anyio.ClosedResourceError)


@pytest.mark.parametrize("overflow", _OVERFLOWS)
@pytest.mark.parametrize("backend", [p.values[0] for p in BACKENDS], ids=list(_BACKENDS))
# cheap (about 20 ms an example): more examples than the short profile's 12 fit the budget
@settings(max_examples=300 if STRESS else 40)
@given(
    producers=st.lists(
        st.tuples(st.sampled_from(["thread", "task"]), st.integers(0, 60)), min_size=1, max_size=5
    ),
    buffer=st.sampled_from([1, 2, 8]),
    slow=st.integers(0, 3),
)
async def test_several_producers_fuzz(
    backend: Any, overflow: str, producers: list[tuple[str, int]], buffer: int, slow: int
) -> None:
    """Producer threads and tasks share one open_channel, each through its own clone.

    Under ``block`` every producer's values arrive, all of them, in its order;
    under a drop policy each producer's values arrive in order, and what
    arrived plus what was counted dropped is everything sent; under ``error``
    each producer's values are a prefix of what it sent, and the stream ends
    cleanly or with BufferOverflowError.
    """
    threads_before = _threads_now()
    send, receive = bridges.open_channel[tuple[int, int]](buffer, overflow)
    ends = [send.clone() for _ in producers]
    send.close()
    unexpected: list[BaseException] = []
    told: list[BaseException] = []

    def told_over(exc: BaseException) -> None:
        (told if overflow == "error" and isinstance(exc, _TOLD_OVER) else unexpected).append(exc)

    def in_thread(k: int, count: int, end: bridges.ChannelSender[tuple[int, int]]) -> None:
        with end:
            try:
                for i in range(count):
                    end.send_blocking((k, i))
            except BaseException as exc:
                told_over(exc)

    async def in_task(k: int, count: int, end: bridges.ChannelSender[tuple[int, int]]) -> None:
        with end:
            try:
                for i in range(count):
                    await end.send((k, i))
            except Exception as exc:
                told_over(exc)

    threads = [
        threading.Thread(target=in_thread, args=(k, count, end), name="bridges-test-producer")
        for k, ((kind, count), end) in enumerate(zip(producers, ends, strict=True))
        if kind == "thread"
    ]
    got: dict[int, list[int]] = {k: [] for k in range(len(producers))}
    error: BaseException | None = None
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for k, ((kind, count), end) in enumerate(zip(producers, ends, strict=True)):
                if kind == "task":
                    tg.start_soon(in_task, k, count, end)
            for t in threads:
                t.start()
            async with receive:
                try:
                    async for k, i in receive:
                        got[k].append(i)
                        for _ in range(slow):
                            await anyio.lowlevel.checkpoint()
                except bridges.BufferOverflowError as exc:
                    error = exc
    await testing._wait_threads_gone(threads_before)
    assert not unexpected, unexpected
    sent = {k: count for k, (_, count) in enumerate(producers)}
    if overflow == "block":
        assert error is None and not told
        for k, values in got.items():
            assert values == list(range(sent[k])), f"producer {k}: got {values}"
    elif overflow == "error":
        assert error is not None or not told, f"producers were told {told}, the consumer not"
        for k, values in got.items():
            assert values == list(range(len(values))), f"producer {k}: got {values}"
    else:
        assert error is None
        for k, values in got.items():
            assert values == sorted(set(values)) and set(values) <= set(range(sent[k])), (
                f"producer {k}: got {values}"
            )
        arrived = sum(map(len, got.values()))
        assert arrived + receive.stats.dropped == sum(sent.values()), (
            f"{arrived} arrived and {receive.stats.dropped} dropped of {sum(sent.values())}"
        )
