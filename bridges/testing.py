"""The conformance kit: run the semantics contract (R1-R21) against any adapter.

Describe an adapter in a few lines with a *harness*, and the checks here
exercise every rule it claims, on whatever backend runs them (asyncio,
uvloop, trio).  This project runs its own adapters through the same kit
(``tests/conformance``); a library author can run theirs:

    from bridges import testing

    class MyHarness(testing.PushHarness):
        name = "mylib"
        claims = testing.claim_push(na={"R8": "producers never run on the loop thread"})

        def open(self, script, probe, *, buffer, overflow):
            def subscribe(emit):
                ...  # start a producer that follows ``script`` and updates ``probe``
            return mylib.to_aiter(subscribe, buffer=buffer, overflow=overflow)

    @pytest.mark.bridges_conformance(MyHarness())
    async def test_rules(bridges_case):
        await testing.check(*bridges_case)

The ``bridges_conformance`` marker is the pytest plugin's
(``bridges._pytest_plugin``): the test runs once per rule claimed and
backend, under anyio's pytest plugin (see ``docs/testing.md``).

Two kinds of harness:

* [`PushHarness`][bridges.testing.PushHarness] - something pushes values and the adapter returns an
  async iterator (rules R1-R9, R14-R20).
* [`PullHarness`][bridges.testing.PullHarness] - an async iterable drives something that is pushed
  to (rules R10-R15).

Each harness says, rule by rule, whether it claims it or why it does not
apply ([`Claims`][bridges.testing.Claims]); a rule that does not apply is listed with its
reason, never silently skipped.
"""

from __future__ import annotations

import asyncio
import enum
import gc
import inspect
import threading
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

import anyio
import anyio.lowlevel
import sniffio

from ._buffer import BufferOverflowError
from ._hooks import AsyncHookError, checked

__all__ = [
    "BACKENDS",
    "CALL_RULES",
    "CallHarness",
    "CallSource",
    "PULL_RULES",
    "PUSH_RULES",
    "Case",
    "Claims",
    "ConsumerError",
    "End",
    "HOOKS",
    "HookedSource",
    "Outcome",
    "Plan",
    "Probe",
    "PullHarness",
    "PushHarness",
    "Script",
    "SourceError",
    "TestSource",
    "ScriptedProducer",
    "cases",
    "check",
    "claim_call",
    "claim_pull",
    "claim_push",
]

#: The rules a push -> pull adapter (something pushes, an async iterator pulls) can claim.
PUSH_RULES: tuple[str, ...] = (
    "R1",
    "R2",
    "R3",
    "R4",
    "R5",
    "R6",
    "R7",
    "R8",
    "R9",
    "R14",
    "R15",
    "R16",
    "R17",
    "R18",
    "R19",
    "R20",
)
#: The rules a pull -> push adapter (an async iterable drives a receiver) can claim.
PULL_RULES: tuple[str, ...] = ("R10", "R11", "R12", "R13", "R14", "R15")
#: The backends a harness may run on (``PushHarness.backends`` names some of these).
BACKENDS: tuple[str, ...] = ("asyncio", "uvloop", "trio")


class SourceError(Exception):
    """The error a scripted source fails with (compared by identity)."""

    __test__ = False


class ConsumerError(Exception):
    """The error a scripted consumer raises from its own code."""

    __test__ = False


@dataclass(frozen=True)
class Claims:
    """Which rules a harness claims, and why the others do not apply."""

    rules: Mapping[str, str | None]
    """rule -> None when claimed, or the reason it does not apply"""

    def applicable(self) -> list[str]:
        """The claimed rules, in order."""
        return [r for r, why in self.rules.items() if why is None]

    def not_applicable(self) -> dict[str, str]:
        """rule -> reason, for the rules that do not apply."""
        return {r: why for r, why in self.rules.items() if why is not None}


def _claims(all_rules: Sequence[str], na: Mapping[str, str] | None) -> Claims:
    na = dict(na or {})
    unknown = set(na) - set(all_rules)
    if unknown:
        raise ValueError(f"unknown rules {sorted(unknown)}; the rules are {list(all_rules)}")
    for rule, why in na.items():
        if not why:
            raise ValueError(f"give the reason {rule} does not apply")
    return Claims({r: na.get(r) for r in all_rules})


def claim_push(na: Mapping[str, str] | None = None) -> Claims:
    """Claims for a push -> pull harness: every rule of `PUSH_RULES` but those in ``na``."""
    return _claims(PUSH_RULES, na)


def claim_pull(na: Mapping[str, str] | None = None) -> Claims:
    """Claims for a pull -> push harness: every rule of `PULL_RULES` but those in ``na``."""
    return _claims(PULL_RULES, na)


class End(enum.Enum):
    """How a scripted source ends after its values."""

    COMPLETE = "complete"
    FAIL = "fail"
    HANG = "hang"
    """stays open (emits nothing more) until it is released"""


@dataclass
class Script:
    """What a push source must do: emit ``values`` in order, then ``end``.

    With ``gate`` set, the source emits ``values[:gate]``, then waits until
    ``probe.open_gate`` is set before emitting the rest.
    """

    values: Sequence[int]
    """the values the source emits, in this order"""
    end: End = End.COMPLETE
    """what the source does after its values: complete, fail with ``error``, or hang"""
    error: BaseException | None = None
    """the error a source with ``end=End.FAIL`` fails with"""
    gate: int | None = None
    """emit this many values, then wait for ``probe.open_gate`` (None: no gate)"""


@dataclass
class Probe:
    """What a harness reports about its source; every field is thread-safe to update."""

    started: int = 0
    """times the source was started (subscribed, registered, thread started)"""
    released: int = 0
    """times the source was released (unsubscribed, closed, disposed)"""
    released_event: threading.Event = field(default_factory=threading.Event)
    """set when the source is released"""
    started_event: threading.Event = field(default_factory=threading.Event)
    """set when the source is started"""
    open_gate: threading.Event = field(default_factory=threading.Event)
    """set by the checks to let a gated source go on"""
    late_results: list[object] = field(default_factory=list)
    """what the producer was told when it emitted after the stream closed"""
    handed: int = 0
    """values the source handed to the adapter: each one's ``send`` (``on_next``,
    ``put``) returned, or the source was asked for the next one
    ([`hand_over`][bridges.testing.Probe.hand_over] counts them)"""
    consumed: int = 0
    """values the checks' consumer has received (the checks count them)"""
    max_held: int = 0
    """the most values handed and not yet consumed, seen whenever the source handed
    one over: an independent count of what the adapter held (R3)"""
    _consuming: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _changed: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self._changed = threading.Condition(self._lock)

    def hand_over(self) -> None:
        """Record that the source handed one value to the adapter (thread-safe).

        Call it when the adapter's call for that value (``send``, ``on_next``,
        ``put``) returned, whatever it answered, or, for a source the adapter
        pulls (a generator), when it asks for the next value.  Under ``block``
        the value is then the adapter's: the checks count the values their
        consumer received, and the difference is what the adapter holds (R3,
        [`max_held`][bridges.testing.Probe.max_held]).  The checks also wait
        on this count instead of sleeping, so a harness whose source does not
        call it fails the rules that need it (R3, R6, R9, R19).
        [`ScriptedProducer`][bridges.testing.ScriptedProducer] calls it.
        """
        with self._lock:
            self.handed += 1
            # a value __anext__ is returning right now may not be counted yet
            held = self.handed - self.consumed - self._consuming
            if held > self.max_held:
                self.max_held = held
            self._changed.notify_all()

    def _wait_handed(self, count: int, timeout: float) -> bool:
        with self._lock:
            return self._changed.wait_for(lambda: self.handed >= count, timeout)

    def start(self) -> None:
        """Record that the source started."""
        with self._lock:
            self.started += 1
        self.started_event.set()

    def release(self) -> None:
        """Record that the source was released."""
        with self._lock:
            self.released += 1
        self.released_event.set()


_PRODUCER_WHY = (
    "the producer thread calls it synchronously, where nothing can await it; pass the "
    "blocking form (ChannelSender.send_blocking, Emitter.send) or a plain function"
)


class ScriptedProducer:
    """Plays a [`Script`][bridges.testing.Script] on a producer thread through send / close / fail
    callables.

    ``send(value)`` should block under ``block`` and return False (or raise)
    once the stream is closed; the thread then stops.  ``send``, ``close``
    and ``fail`` are plain functions (the thread calls them synchronously):
    an async one is refused with ``TypeError`` (pass the blocking form, such
    as ``ChannelSender.send_blocking``).  [`stop`][bridges.testing.ScriptedProducer.stop] asks the
    thread to stop (it ends as soon as its current call returns).  The
    thread's name starts with ``bridges-test-producer``.
    """

    def __init__(
        self,
        script: Script,
        probe: Probe,
        send: Callable[[int], object],
        close: Callable[[], object],
        fail: Callable[[BaseException], object],
    ) -> None:
        self._script = script
        self._probe = probe
        self._send = checked(send, "send", _PRODUCER_WHY)
        self._close = checked(close, "close", _PRODUCER_WHY)
        self._fail = checked(fail, "fail", _PRODUCER_WHY)
        #: the refusal of a hook that returned an awaitable (the thread then
        #: fails the stream with it, unless ``fail`` itself was the offender)
        self.error: AsyncHookError | None = None
        self._stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="bridges-test-producer", daemon=True)

    def start(self) -> None:
        """Start the producer thread."""
        self.thread.start()

    def stop(self) -> None:
        """Ask the producer thread to stop (thread-safe, idempotent)."""
        self._stopped.set()

    def _run(self) -> None:
        script, probe = self._script, self._probe
        try:
            for i, v in enumerate(script.values):
                if script.gate is not None and i == script.gate:
                    while not probe.open_gate.wait(0.01):
                        if self._stopped.is_set():
                            return
                if self._stopped.is_set():
                    return
                if self._send(v) is False and self._stopped.is_set():
                    return
                probe.hand_over()
            if script.end is End.COMPLETE:
                self._close()
            elif script.end is End.FAIL:
                assert script.error is not None
                self._fail(script.error)
            else:
                self._stopped.wait()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, BufferOverflowError):
            return  # told the stream is over for it (overflow="error": the receiver is told too)
        except AsyncHookError as exc:
            # a coroutine nothing awaits did nothing: fail the stream, never hang it
            self.error = exc
            try:
                self._fail(exc)
            except AsyncHookError:
                pass  # fail is the offender: the check reads self.error


#: The hooks R18 knows: a loop-thread source's "stop calling me" (``pause``), "go on"
#: (``resume``), and "I am done with you" (``release``: unsubscribe, dispose, close).
HOOKS: tuple[str, ...] = ("pause", "resume", "release")


_HOOKED_WHY = (
    "the source calls it synchronously on the event-loop thread, where nothing can await "
    "it; pass the adapter's plain loop-thread calls (such as emit.send and emit.close)"
)


class HookedSource:
    """A source on the event-loop thread with pause / resume / release hooks (R18).

    Like an asyncio transport: while it is not paused it produces
    synchronously, in [`start`][bridges.testing.HookedSource.start] and inside
    [`resume`][bridges.testing.HookedSource.resume] too, so it re-enters the adapter from inside the
    adapter's own call of ``resume()`` (the adapter must pause it again, from inside that call, as
    soon as its buffer fills).  It produces ``values`` values (0, 1, ...), then closes.

    A harness's [`PushHarness.open_hooked`][bridges.testing.PushHarness.open_hooked] wires it: it
    calls ``start(send, close)`` when the adapter starts its source, and hands the
    adapter the callables in [`hooks`][bridges.testing.PushHarness.hooks] where the adapter takes
    hooks. The check may have swapped some of them for async callables, to see what
    the adapter does with those.
    """

    __test__ = False

    def __init__(self, values: int, *, late: int = 0) -> None:
        """:param values: how many values to produce (0, 1, ...) before closing
        :param late: how many values the source still produces after each ``pause()``
            before it stops (a source that honours pause late, like a transport
            with data already read; R3 checks that the adapter keeps them and
            shows the overshoot in ``stats.high_water``)

        :raises TypeError: ``values`` or ``late`` is not an int
        :raises ValueError: ``values`` or ``late`` is negative
        """
        for name, n in (("values", values), ("late", late)):
            if not isinstance(n, int) or isinstance(n, bool):
                raise TypeError(f"{name} must be an int (how many to produce), not {n!r}")
            if n < 0:
                raise ValueError(f"{name} must be >= 0, not {n}")
        #: hook name (one of `HOOKS`) -> what to give the adapter for it
        self.hooks: dict[str, Callable[[], object]] = {
            "pause": self.pause,
            "resume": self.resume,
            "release": self.release,
        }
        #: the hooks called, in order
        self.calls: list[str] = []
        #: hook calls out of turn (``pause`` while paused, ``resume`` while running)
        self.errors: list[str] = []
        #: values produced so far
        self.emitted = 0
        #: values the check's consumer has received (the check counts them)
        self.taken = 0
        #: the most values produced and not yet received, at any moment
        self.max_held = 0
        #: times ``pause`` came from inside ``resume`` (the source re-entered the adapter)
        self.paused_in_resume = 0
        #: times ``release`` was called
        self.released = 0
        self._values = values
        self._late = late
        self._late_left = 0
        self._paused = False
        self._stopped = False
        self._closed = False
        self._in_resume = False
        self._send: Callable[[int], object] | None = None
        self._close: Callable[[], object] | None = None

    def start(self, send: Callable[[int], object], close: Callable[[], object]) -> None:
        """Begin: produce through ``send(value)`` (synchronously) until paused, then ``close()``.

        ``send`` and ``close`` are the adapter's loop-thread calls, plain
        functions (``emit.send``, ``emit.close``).

        :raises TypeError: ``send`` or ``close`` is an async callable, or
            returned an awaitable (nothing here could await it)
        """
        self._send = checked(send, "send", _HOOKED_WHY)
        self._close = checked(close, "close", _HOOKED_WHY)
        self._produce()

    def _produce(self) -> None:
        send = self._send
        assert send is not None, "start() the source first"
        while not self._stopped and self.emitted < self._values:
            if self._paused:
                if not self._late_left:
                    break
                self._late_left -= 1  # paused, but this one was on its way already
            value = self.emitted
            self.emitted += 1
            self.max_held = max(self.max_held, self.emitted - self.taken)
            send(value)  # may re-enter: the adapter pauses the source from inside
        if self.emitted == self._values and not (self._stopped or self._closed):
            self._closed = True
            assert self._close is not None
            self._close()

    def pause(self) -> None:
        """The pause hook: stop producing (takes effect before the next value)."""
        self.calls.append("pause")
        if self._paused:
            self.errors.append("pause() while paused")
        if self._in_resume:
            self.paused_in_resume += 1
        if not self._paused:
            self._late_left = self._late
        self._paused = True

    def resume(self) -> None:
        """The resume hook: go on, producing synchronously inside this call until paused."""
        self.calls.append("resume")
        if not self._paused:
            self.errors.append("resume() while not paused")
        self._paused = False
        if self._send is None or self._stopped:
            return
        self._in_resume = True
        try:
            self._produce()
        finally:
            self._in_resume = False

    def release(self) -> None:
        """The release hook (unsubscribe): produce nothing more."""
        self.calls.append("release")
        self.released += 1
        self._stopped = True


class PushHarness(ABC):
    """Describes a push -> pull adapter to the checks.

    ``open()`` builds the adapter's async iterator over a source that follows
    ``script``; the source calls ``probe.start()`` when it is started and
    ``probe.release()`` when it is released.  Producers should emit with
    the adapter's backpressure (for a loop-thread producer without pause
    hooks, use a thread or a scheduler so that ``block`` can wait).
    """

    name: str = "adapter"
    """the adapter's name in reports and in the rules table"""
    claims: Claims = claim_push()
    """which rules the adapter claims, and why each other one is n/a"""
    backends: frozenset[str] = frozenset({"asyncio", "uvloop", "trio"})
    """backends this adapter runs on"""
    overflows: tuple[str, ...] = ("block", "drop_oldest", "drop_newest", "error")
    """overflow policies the adapter takes (R9 checks the drop ones)"""
    hooks: Mapping[str, str] = MappingProxyType({})
    """For R18: the hooks the adapter takes, each of `HOOKS` it has -> the
    adapter's own name for it (its TypeError for an async one must name
    it), e.g. ``{"pause": "pause", "resume": "resume", "release": "unsubscribe"}``.
    Empty when the adapter takes no hooks (then declare R18 n/a).
    """
    pause_hooks: bool = False
    """For R8: True when the source [`emit_from_loop`][bridges.testing.PushHarness.emit_from_loop]
    builds gives the adapter pause/resume hooks.  R8 then requires every value,
    in order, and no error: a ``BufferOverflowError`` means the adapter left
    the hooks unused.  False: the adapter must fail the stream with
    ``BufferOverflowError`` after the values that fit.
    """

    @abstractmethod
    def open(
        self, script: Script, probe: Probe, *, buffer: int | None, overflow: str
    ) -> AsyncIterator[int]:
        """The adapter's async iterator over a source following ``script``."""

    def open_bad(self, **kwargs: Any) -> object:
        """Call the adapter's entry point with bad arguments (R15): must raise at once."""
        return self.open(Script([1]), Probe(), **{"buffer": 4, "overflow": "block", **kwargs})

    def emit_from_loop(
        self, script: Script, probe: Probe, *, buffer: int
    ) -> AsyncIterator[int] | None:
        """For R8: an iterator whose source emits synchronously on the loop thread.

        The source emits ``script.values`` (more than ``buffer`` of them) and
        completes.  Set [`pause_hooks`][bridges.testing.PushHarness.pause_hooks]
        when it gives the adapter pause/resume hooks.  Return None when the
        adapter has no loop-thread producer.
        """
        return None

    async def emit_after_close(self, probe: Probe) -> None:
        """For R7: after the iterator closed, have a producer thread emit once more.

        Append what the producer was told (its return value or exception) to
        ``probe.late_results``.  The default does nothing (then R7 checks only
        that closing releases a blocked producer thread).
        """

    def open_producer(self, *, buffer: int) -> tuple[Any, AsyncIterator[int]] | None:
        """For R16, R17, R20 and R19's producer side: a fresh producer end and its iterator.

        The producer end (``open_channel``'s [`ChannelSender`][bridges.ChannelSender] is
        one) has ``async send(value)``, ``send_nowait(value)`` (raising
        ``anyio.WouldBlock`` when full) and ``close()``, and is a context
        manager, sync (``with``), async (``async with``) or both.  Keep no
        reference to it: R17 drops it.  Return None when the adapter has no
        such end (then declare R16, R17 and R20 n/a; R19 then checks the
        consumer's side only).
        """
        return None

    def open_hooked(self, source: HookedSource, *, buffer: int) -> AsyncIterator[int] | None:
        """For R18: the adapter's iterator, with ``overflow="block"``, over a source with hooks.

        When the adapter starts its source, call ``source.start(send, close)``
        with the adapter's loop-thread ``send(value)`` and ``close()``; give the
        adapter ``source.hooks[name]`` for each hook of
        [`hooks`][bridges.testing.PushHarness.hooks], as it is (some may be async callables: the
        check watches what the adapter does with them).  Return None when the adapter takes no
        hooks.
        """
        return None


class PullHarness(ABC):
    """Describes a pull -> push adapter to the checks.

    ``drive()`` connects ``source`` to the adapter's receiving side and
    consumes it following ``plan``: call ``plan.seen(v)`` for each value as
    it is received, stop early after ``plan.take`` values, raise
    [`ConsumerError`][bridges.testing.ConsumerError] from the receiving side after
    ``plan.fail_after`` values.  Return the [`Outcome`][bridges.testing.Outcome]; a receiver-side
    error that the adapter reports (raises) is caught and returned in ``Outcome.error``.
    Put there every error the receiving side gets, not only the expected ones:
    the checks fail on one the plan did not cause (an early exit must end
    cleanly).  A cancellation from outside must propagate out of ``drive()``.
    Each drive has a deadline (10 s): a hang fails the rule.
    """

    name: str = "adapter"
    """the adapter's name in reports and in the rules table"""
    claims: Claims = claim_pull()
    """which rules the adapter claims, and why each other one is n/a"""
    backends: frozenset[str] = frozenset({"asyncio", "uvloop", "trio"})
    """backends this adapter runs on"""
    in_flight: int = 1
    """values the adapter may pull ahead of the receiving side (R10)"""

    @abstractmethod
    async def drive(self, source: AsyncIterable[int], plan: Plan) -> Outcome:
        """Run ``source`` through the adapter under ``plan``."""

    async def drive_bad(self) -> object:
        """R15: call the adapter with a wrong-typed source; must raise TypeError at once."""
        return await self.drive(42, Plan())  # type: ignore[arg-type]

    async def subscribe_twice(
        self, make: Callable[[], AsyncIterable[int]], one_shot: bool
    ) -> tuple[list[int], list[int] | BaseException]:
        """R13 (for adapters that can be subscribed many times).

        Build the adapter's target from ``make()`` (a re-iterable when
        ``one_shot`` is False, a one-shot async iterator when True), consume
        it twice; return the first run's values and the second run's values
        or exception.  An optional hook, not an abstract one: only harnesses
        that claim R13 implement it, and the kit calls it only for them; a
        harness that claims R13 without it gets this error naming the fix.
        """
        raise NotImplementedError(
            f"{self.name} claims R13 but does not implement subscribe_twice()"
        )


@dataclass
class Plan:
    """What a scripted consumer does."""

    take: int | None = None
    """stop (early exit) after this many values"""
    fail_after: int | None = None
    """raise [`ConsumerError`][bridges.testing.ConsumerError] from the receiving side after this
    many values
    """
    slow: int = 0
    """yield to the scheduler this many times per value (a slow consumer)"""
    on_value: Callable[[int], None] | None = None
    """called with each value as it is received"""

    def seen(self, value: int) -> None:
        if self.on_value is not None:
            self.on_value(value)


@dataclass
class Outcome:
    """What a scripted consumer saw."""

    values: list[int] = field(default_factory=list)
    """the values received, in order"""
    error: BaseException | None = None
    """the error the receiving side got (None: a clean end, or it left early)"""
    errors_seen: int = 0
    """how many errors the receiving side was handed (an error arrives once: R5, R12)"""


class TestSource:
    """An instrumented async iterator for pull -> push checks.

    Counts pulls, records whether it was closed (its ``finally`` ran) and how
    many times; optionally fails after its values or hangs.  When it is closed
    by ``aclose()`` while suspended at a ``yield``, its cleanup awaits (a
    checkpoint, like closing a connection) before it counts the close, so a
    close that an adapter leaves exposed to a cancellation is cut short and
    never counted: every adapter must shield the source's ``aclose()`` (R11).
    (A cancellation delivered inside the source's own body, while it hangs,
    ends it there; that cleanup does not await, as no adapter can shield it.)
    """

    __test__ = False

    def __init__(
        self, values: Sequence[int], end: End = End.COMPLETE, error: BaseException | None = None
    ) -> None:
        self.values = list(values)
        self.end = end
        self.error = error
        self.pulled = 0
        self.closed = 0
        self.finished = False
        #: set when the source has yielded its values and hangs (from any thread)
        self.hanging = threading.Event()
        self._gen: AsyncIterator[int] | None = None

    async def _run(self) -> AsyncIterator[int]:
        closing = False
        try:
            for v in self.values:
                await anyio.lowlevel.checkpoint()
                yield v
            if self.end is End.FAIL:
                assert self.error is not None
                raise self.error
            if self.end is End.HANG:
                self.hanging.set()
                await anyio.sleep_forever()
        except GeneratorExit:
            closing = True  # aclose() at a yield: this cleanup runs inside the adapter's close
            raise
        finally:
            if closing:
                # awaits first: a close left exposed to a cancellation never gets counted
                await anyio.lowlevel.checkpoint()
            self.closed += 1

    def __aiter__(self) -> TestSource:
        return self

    async def __anext__(self) -> int:
        if self._gen is None:
            self._gen = self._run()
        self.pulled += 1
        return await self._gen.__anext__()

    async def aclose(self) -> None:
        if self._gen is not None:
            await self._gen.aclose()  # type: ignore[attr-defined]


# ----------------------------------------------------------------------- helpers


def _threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.is_alive() and not _cache_worker(t)}


def _cache_worker(t: threading.Thread) -> bool:
    return t.name.startswith(
        ("AnyIO worker thread", "Trio thread", "ThreadPoolExecutor", "asyncio_")
    ) or ("asyncio_" in t.name)


async def _wait_threads_gone(
    before: set[threading.Thread], timeout: float = 5.0, rule: str = "R14"
) -> None:
    """Wait (joining them, no polling) until no thread but those in ``before`` runs.

    :raises AssertionError: one still runs after ``timeout`` seconds (named, with ``rule``)
    """
    deadline = time.monotonic() + timeout
    while True:
        extra = _threads() - before
        if not extra:
            return
        left = deadline - time.monotonic()
        if left <= 0:
            names = sorted(t.name for t in extra)
            raise AssertionError(f"{rule}: threads outlived the bridge by {timeout:g} s: {names}")
        # a worker blocked in a source call ends when that call returns (R14)
        await anyio.to_thread.run_sync(_join_all, extra, left, abandon_on_cancel=True)


def _join_all(threads: set[threading.Thread], timeout: float) -> None:
    """Join each thread, all within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    me = threading.current_thread()  # a thread cache may hand this job the thread it waits for
    for t in threads:
        if t is not me:
            t.join(max(0.0, deadline - time.monotonic()))


async def _wait_set(event: threading.Event, what: str, timeout: float = 5.0) -> None:
    """Wait for a thread-safe event, in a worker thread, with a deadline.

    The worker waits in slices of 50 ms: a wait that is cancelled (a timeout
    around it fired) then leaves no worker blocked for long, which a thread
    check that follows would count (trio names a busy cache worker after its job).

    :raises AssertionError: ``what`` (the rule and what never happened) after ``timeout`` seconds
    """
    deadline = time.monotonic() + timeout
    while not await anyio.to_thread.run_sync(event.wait, 0.05):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} (waited {timeout:g} s)")


def _tasks() -> int:
    return len(anyio.get_running_tasks())


async def _drain(it: AsyncIterator[int], slow: int = 0) -> list[int]:
    got = []
    async for v in it:
        got.append(v)
        for _ in range(slow):
            await anyio.lowlevel.checkpoint()
    return got


async def _aclose(it: object) -> None:
    aclose = getattr(it, "aclose", None)
    if aclose is not None:
        await aclose()


async def _wait_released(probe: Probe, count: int = 1, timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while probe.released < count:
            await anyio.to_thread.run_sync(probe.released_event.wait, 0.05)


async def _outcome(
    it: AsyncIterator[int], rule: str, timeout: float = 5.0
) -> tuple[list[int], BaseException | None]:
    """Everything the consumer gets until the end: the values and the error (None: a clean end)."""
    got: list[int] = []
    try:
        with anyio.fail_after(timeout):
            async for v in it:
                got.append(v)
    except TimeoutError:
        raise AssertionError(f"{rule}: the consumer hung after {got}") from None
    except Exception as exc:
        return got, exc
    return got, None


def _producer(h: PushHarness, rule: str, buffer: int) -> tuple[Any, AsyncIterator[int]]:
    pair = h.open_producer(buffer=buffer)
    if pair is None:
        raise AssertionError(f"{rule} is claimed but open_producer() returned None")
    return pair


async def _settle(it: AsyncIterator[int]) -> None:
    """After a failed check: let the producer finish (take what is left), then close."""
    try:
        with anyio.move_on_after(2):
            async for _ in it:
                pass
    except Exception:
        pass
    await _aclose(it)


async def _handed(probe: Probe, count: int, rule: str, timeout: float = 5.0) -> None:
    """Wait until the source has handed ``count`` values to the adapter (`Probe.hand_over`)."""
    if not await anyio.to_thread.run_sync(probe._wait_handed, count, timeout):
        raise AssertionError(
            f"{rule}: the source handed {probe.handed} of {count} values to the adapter "
            f"within {timeout} s (a harness's source reports each with Probe.hand_over())"
        )


# ----------------------------------------------------------------------- push rules


async def _push_r1(h: PushHarness) -> None:
    probe = Probe()
    it = h.open(Script(range(3)), probe, buffer=4, overflow="block")
    try:
        for _ in range(3):
            await anyio.lowlevel.checkpoint()
        assert probe.started == 0, "R1: the source started before the first __anext__"
        assert await it.__anext__() == 0
        assert probe.started == 1
    finally:
        await _aclose(it)
    probe2 = Probe()
    it2 = h.open(Script(range(3)), probe2, buffer=4, overflow="block")
    assert probe2.started == 0
    async with it2:  # type: ignore[attr-defined]
        # entering starts the source; an adapter that subscribes through a
        # scheduler (rx's subscribe_on) starts it on that scheduler's thread
        with anyio.fail_after(5):
            while probe2.started == 0:
                await anyio.to_thread.run_sync(probe2.started_event.wait, 0.05)
        assert probe2.started == 1, "R1: entering 'async with' starts the source once"


async def _push_r2(h: PushHarness) -> None:
    n = 2000
    probe = Probe()
    it = h.open(Script(range(n)), probe, buffer=4, overflow="block")
    async with it:  # type: ignore[attr-defined]
        got = await _drain(it)
    assert got == list(range(n)), "R2: values lost, duplicated or reordered"


async def _counted(it: AsyncIterator[int], probe: Probe, slow: int = 0) -> list[int]:
    """Drain ``it``, counting each value received in ``probe`` (R3's independent count)."""
    got: list[int] = []
    while True:
        with probe._lock:
            probe._consuming = True  # the value __anext__ returns is not counted yet
        try:
            v = await it.__anext__()
        except BaseException as exc:
            with probe._lock:
                probe._consuming = False
            if isinstance(exc, StopAsyncIteration):
                return got
            raise
        with probe._lock:  # one step: the value is never counted twice or not at all
            probe.consumed += 1
            probe._consuming = False
        got.append(v)
        for _ in range(slow):
            await anyio.lowlevel.checkpoint()


async def _push_r3(h: PushHarness) -> None:
    n = 300
    for buffer in (1, 4):
        probe = Probe()
        it = h.open(Script(range(n)), probe, buffer=buffer, overflow="block")
        async with it:  # type: ignore[attr-defined]
            got = await _counted(it, probe, slow=3)
            stats = getattr(it, "stats", None)
        assert got == list(range(n)), f"R3: values lost, duplicated or reordered: {got}"
        assert stats is not None, "R3: a buffered iterator exposes .stats"
        assert probe.handed == n, (
            f"R3: the source reported {probe.handed} of {n} values handed over "
            "(a harness's source calls Probe.hand_over() for each)"
        )
        # counted by the source and the consumer, not by the adapter
        assert probe.max_held <= buffer, (
            f"R3: held {probe.max_held} values at once (values handed over minus values "
            f"received) with buffer={buffer}; stats.high_water says {stats.high_water}"
        )
        assert stats.high_water <= buffer, (
            f"R3: stats.high_water is {stats.high_water} with buffer={buffer}"
        )
    if {"pause", "resume"} <= set(h.hooks):
        await _push_r3_late_pause(h)


async def _push_r3_late_pause(h: PushHarness) -> None:
    """A source that honours pause late: its extra values are kept, and high_water shows them."""
    buffer, late, n = 4, 2, 40
    source = HookedSource(n, late=late)
    got, stats = await _consume_hooked(h, source, buffer)
    assert got == list(range(n)), f"R3: a source that pauses late lost values: {got}"
    assert stats is not None, "R3: a buffered iterator exposes .stats"
    # HookedSource counts a value as held from just before it is sent (so: + 1)
    assert buffer + late <= source.max_held <= stats.high_water + 1, (
        f"R3: a source that honours pause {late} values late held {source.max_held} at "
        f"once with buffer={buffer}; stats.high_water must show the overshoot, it says "
        f"{stats.high_water}"
    )


async def _push_r4(h: PushHarness) -> None:
    probe = Probe()
    it = h.open(Script(range(5)), probe, buffer=8, overflow="block")
    try:
        got = await _drain(it)
        assert got == [0, 1, 2, 3, 4], f"R4: the values before the end, got {got}"
        for _ in range(2):
            try:
                await it.__anext__()
            except StopAsyncIteration:
                pass
            else:
                raise AssertionError("R4: a value after the end")
        await _wait_released(probe)
        assert probe.released == 1, "R4: the source is released once at the end"
    finally:
        await _aclose(it)
    assert probe.released == 1
    if "R3" in h.claims.applicable():
        await _push_r4_complete_before_first_take(h)


async def _push_r4_complete_before_first_take(h: PushHarness) -> None:
    """The source completes with every value still buffered (an adapter holding ``buffer``
    values, as R3 says, can hold them all), before the consumer's first take."""
    probe = Probe()
    before = _threads()
    async with h.open(Script(range(5)), probe, buffer=16, overflow="block") as it:  # type: ignore[attr-defined]
        await _handed(probe, 5, "R4")
        await _wait_threads_gone(before)  # a producer thread ends once it completed
        got, err = await _outcome(it, "R4")
    assert (got, err) == ([0, 1, 2, 3, 4], None), (
        f"R4: the source completed with 5 values buffered; the consumer got {got} "
        f"and {err!r} instead of all of them, then the end"
    )


async def _push_r5(h: PushHarness) -> None:
    probe = Probe()
    boom = SourceError("boom")
    it = h.open(Script(range(4), End.FAIL, boom), probe, buffer=8, overflow="block")
    got: list[int] = []
    try:
        async for v in it:
            got.append(v)
    except SourceError as exc:
        assert exc is boom, "R5: the original exception object"
    except BaseException as exc:
        raise AssertionError(f"R5: expected the source's SourceError, got {exc!r}") from exc
    else:
        raise AssertionError("R5: the source error was not raised")
    assert got == [0, 1, 2, 3], "R5: values before the error come first"
    try:
        await it.__anext__()
    except StopAsyncIteration:
        pass
    except Exception as exc:
        raise AssertionError(
            f"R5: the error is raised once; the next __anext__ raised {exc!r} "
            "instead of StopAsyncIteration"
        ) from exc
    else:
        raise AssertionError("R5: a value after the error")
    await _wait_released(probe)
    await _aclose(it)
    assert probe.released == 1


async def _released_on_exit(h: PushHarness, probe: Probe, what: str) -> None:
    # No waiver for sources run in a worker thread: the exit waits for a call in
    # progress (R21, bounded by the adapter's grace period) and for the source's close.
    assert probe.released == 1, what


@contextmanager
def _cancelled_if_it_waits() -> Iterator[anyio.CancelScope]:
    """A scope cancelled as soon as the code in it yields to the scheduler, never before.

    A call that returns without waiting is not touched; one that takes a
    schedule point (a coalesced checkpoint) is cancelled right there.
    """
    with anyio.CancelScope() as scope:
        if sniffio.current_async_library() == "trio":
            # trio expires deadlines in its scheduler: at the next schedule point
            scope.deadline = anyio.current_time()
            yield scope
        else:
            # asyncio runs ready callbacks first in, first out: this one runs
            # before a task that yields after it was scheduled
            armed = True

            def cancel() -> None:
                if armed:
                    scope.cancel()

            asyncio.get_running_loop().call_soon(cancel)
            try:
                yield scope
            finally:
                armed = False


async def _push_r6_timeouts_with_values_ready(h: PushHarness) -> Probe:
    """A cancellation around one __anext__ at every position of a full buffer.

    The buffer holds more values than a consumer takes between two schedule
    points, so the calls cross the coalesced checkpoints: a call cancelled
    there must leave its value for the next call.
    """
    n = 3 * 64 + 8
    probe = Probe()
    got: list[int] = []
    # room for one more: a source the adapter pulls is asked for the next value
    # (which counts the last one handed over) only when there is room for it
    async with h.open(Script(range(n), End.HANG), probe, buffer=n + 1, overflow="block") as it:  # type: ignore[attr-defined]
        await _handed(probe, n, "R6")
        with anyio.fail_after(5):
            while len(got) < n:
                with _cancelled_if_it_waits() as trap:
                    got.append(await it.__anext__())
                if trap.cancelled_caught:
                    got.append(await it.__anext__())  # the value that call left
                if got != list(range(len(got))):
                    raise AssertionError(
                        "R6: a timeout around __anext__ with values ready lost or moved a "
                        f"value: after {got[-3:]} (position {len(got) - 1} of a full buffer)"
                    )
        assert probe.released == 0, "R6: a caught timeout must not release the source"
    return probe


async def _push_r6(h: PushHarness, backend: str) -> None:
    threads_before = _threads()
    probes: list[Probe] = []
    # break out of 'async with'
    probe = Probe()
    probes.append(probe)
    async with h.open(Script(range(10), End.HANG), probe, buffer=4, overflow="block") as it:  # type: ignore[attr-defined]
        async for v in it:
            if v == 2:
                break
    await _released_on_exit(
        h, probe, "R6: leaving 'async with' releases the source before it exits"
    )

    # an exception in the loop body
    probe = Probe()
    probes.append(probe)
    try:
        async with h.open(Script(range(10), End.HANG), probe, buffer=4, overflow="block") as it:  # type: ignore[attr-defined]
            async for _ in it:
                raise ConsumerError
    except ConsumerError:
        pass
    await _released_on_exit(h, probe, "R6: the source is released once")

    # aclose(), idempotent
    probe = Probe()
    probes.append(probe)
    it = h.open(Script(range(10), End.HANG), probe, buffer=4, overflow="block")
    assert await it.__anext__() == 0
    await _aclose(it)
    await _aclose(it)
    await _released_on_exit(h, probe, "R6: the source is released once")

    # cancellation of the consuming task propagates unchanged and releases
    probe = Probe()
    probes.append(probe)
    started = anyio.Event()
    with anyio.CancelScope() as scope:
        async with h.open(Script(range(3), End.HANG), probe, buffer=4, overflow="block") as it:  # type: ignore[attr-defined]
            async for v in it:
                if v == 2:
                    started.set()
                    scope.cancel()
                    await anyio.lowlevel.checkpoint()
                    raise AssertionError("R6: cancellation did not propagate")
    assert scope.cancelled_caught
    await _released_on_exit(h, probe, "R6: the source is released once")

    # a timeout around one __anext__ releases nothing and loses nothing
    probe = Probe()
    async with h.open(
        Script(range(6), End.COMPLETE, gate=3), probe, buffer=4, overflow="block"
    ) as it:  # type: ignore[attr-defined]
        assert [await it.__anext__() for _ in range(3)] == [0, 1, 2]
        with anyio.move_on_after(0.02):
            await it.__anext__()
            raise AssertionError("the gated source emitted before its gate opened")
        assert probe.released == 0, "R6: a caught timeout must not release the source"
        probe.open_gate.set()
        assert [await it.__anext__() for _ in range(3)] == [3, 4, 5]
    probes.append(await _push_r6_timeouts_with_values_ready(h))

    # a bare break with no aclose(): released when collected, with a ResourceWarning
    probe = Probe()
    it = h.open(Script(range(10), End.HANG), probe, buffer=4, overflow="block")
    async for v in it:
        if v == 1:
            break
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del it
        for _ in range(3):
            gc.collect()
    assert any(issubclass(w.category, ResourceWarning) for w in caught), "R6: no ResourceWarning"
    await _wait_released(probe)
    probes.append(probe)

    # exactly once, again, after the adapter had time to misbehave: its threads
    # ended, and what it left for the event loop to run has run
    await _wait_threads_gone(threads_before)
    for _ in range(3):
        await anyio.lowlevel.checkpoint()
    counts = [p.released for p in probes]
    assert counts == [1] * len(probes), (
        f"R6: each source is released exactly once; at teardown the counts were {counts}"
    )


async def _push_r7(h: PushHarness) -> None:
    probe = Probe()
    before = _threads()
    it = h.open(Script(range(100), End.HANG), probe, buffer=1, overflow="block")
    assert await it.__anext__() == 0
    await _aclose(it)  # a producer thread blocked in send must be released
    await _wait_threads_gone(before, rule="R7")
    await h.emit_after_close(probe)
    for result in probe.late_results:
        assert result is False or isinstance(result, anyio.BrokenResourceError), (
            f"R7: a late emit said {result!r}, expected False or BrokenResourceError"
        )


#: R8: the longest the event loop may go without running another task while a
#: loop-thread producer overflows (generous: a loaded machine must not fail it; a
#: producer blocked for a second in the overflow path must)
_R8_STALL = 1.0


async def _push_r8(h: PushHarness) -> None:
    buffer, n = 2, 10
    probe = Probe()
    it = h.emit_from_loop(Script(range(n)), probe, buffer=buffer)
    if it is None:
        raise AssertionError("R8 is claimed but emit_from_loop() returned None")
    got: list[int] = []
    error: BufferOverflowError | None = None
    stall = 0.0
    ticking, consumed, ticked_after = anyio.Event(), anyio.Event(), anyio.Event()

    async def ticker() -> None:  # another task on the loop: how long it waits is the stall
        nonlocal stall
        last = time.perf_counter()
        ticking.set()
        while True:
            await anyio.lowlevel.checkpoint()
            now = time.perf_counter()
            stall = max(stall, now - last)
            last = now
            if consumed.is_set():  # this tick measured everything up to the consumer's end
                ticked_after.set()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker)
            await ticking.wait()
            try:
                with anyio.fail_after(5):  # never a deadlock
                    async for v in it:
                        got.append(v)
            except BufferOverflowError as exc:
                error = exc
            except TimeoutError:
                raise AssertionError(f"R8: the consumer hung after {got}") from None
            finally:
                consumed.set()
                with anyio.move_on_after(5):
                    await ticked_after.wait()
                tg.cancel_scope.cancel()
    finally:
        await _aclose(it)
    assert stall < _R8_STALL, (
        f"R8: the event loop was blocked for {stall:.2f} s while the producer overflowed "
        "(a producer on the loop thread must never be blocked)"
    )
    if h.pause_hooks:
        assert error is None, (
            f"R8: the source has pause/resume hooks, but the adapter failed the stream "
            f"with {error!r} instead of pausing it"
        )
        assert got == list(range(n)), f"R8: with pause hooks every value arrives, got {got}"
    elif error is None:
        assert got == list(range(n)), f"R8: values were dropped silently, got {got}"
    else:
        assert "pause" in str(error) and "buffer=" in str(error), (
            f"R8: the BufferOverflowError's message names the fixes: {error}"
        )
        assert got == list(range(buffer)), (
            f"R8: the {buffer} values that fitted come before the BufferOverflowError, got {got}"
        )


async def _push_r9(h: PushHarness) -> None:
    for overflow in ("drop_oldest", "drop_newest"):
        if overflow not in h.overflows:
            continue
        probe = Probe()
        # a gate holds the consumer back: the producer fills and overflows first
        it = h.open(Script(range(20), End.COMPLETE), probe, buffer=4, overflow=overflow)
        async with it:  # type: ignore[attr-defined]
            await _handed(probe, 20, "R9")
            got = await _drain(it)
            stats = it.stats  # type: ignore[attr-defined]
        assert len(got) + stats.dropped == 20, f"R9: {overflow} lost values uncounted"
        if overflow == "drop_newest":
            assert got == sorted(got) and got[:4] == [0, 1, 2, 3], "R9: drop_newest keeps the first"
        else:
            assert got == sorted(got) and got[-4:] == [16, 17, 18, 19], (
                "R9: drop_oldest keeps the latest"
            )


async def _push_r14(h: PushHarness) -> None:
    threads_before = _threads()
    tasks_before = _tasks()
    for end in (End.COMPLETE, End.HANG, End.FAIL):
        probe = Probe()
        it = h.open(Script(range(50), end, SourceError("x")), probe, buffer=4, overflow="block")
        try:
            async with it:  # type: ignore[attr-defined]
                async for v in it:
                    if v == 10 and end is End.HANG:
                        break
        except SourceError:
            pass
        await _wait_threads_gone(threads_before)
        for _ in range(5):
            await anyio.lowlevel.checkpoint()
        assert _tasks() <= tasks_before, "R14: a task outlived the bridge"
        assert probe.released, f"R14: the source outlived the bridge ({end}): never released"


async def _push_r15(h: PushHarness) -> None:
    # open_bad() is a plain call: a deadline cannot interrupt it, so "at once" is what
    # it returns or raises; a value it returns is an iterator that accepted bad input
    for kwargs, expected in (
        ({"buffer": -1}, ValueError),
        ({"buffer": "x"}, TypeError),
        ({"overflow": "sometimes"}, ValueError),
    ):
        try:
            result = h.open_bad(**kwargs)
        except expected as exc:
            assert str(exc), f"R15: {kwargs}: the {expected.__name__} has no message"
            continue
        except Exception as exc:
            raise AssertionError(f"R15: {kwargs} raised {exc!r}, not {expected.__name__}") from exc
        await _aclose(result)
        raise AssertionError(f"R15: {kwargs} did not raise {expected.__name__} (it returned)")


async def _push_r16(h: PushHarness) -> None:
    kinds = 0
    for kind in ("with", "async with"):
        end, it = _producer(h, "R16", 8)
        if not hasattr(end, "__enter__" if kind == "with" else "__aenter__"):
            end.close()
            await _aclose(it)
            continue
        kinds += 1
        boom = SourceError(f"a '{kind}' block left by an error")
        try:
            if kind == "with":
                with end:
                    for v in range(3):
                        await end.send(v)
                    raise boom
            else:
                async with end:
                    for v in range(3):
                        await end.send(v)
                    raise boom
        except SourceError as exc:
            assert exc is boom, f"R16: the '{kind}' block changed the producer's error"
        else:
            raise AssertionError(f"R16: the '{kind}' block swallowed the producer's error")
        try:
            got, err = await _outcome(it, "R16")
            assert got == [0, 1, 2], f"R16: the values before the error, got {got}"
            assert err is boom, (
                f"R16: a '{kind}' block left by an error must fail the stream with that "
                f"error itself; the consumer got {err!r}"
            )
            got, err = await _outcome(it, "R16")
            assert got == [] and err is None, "R16: the error arrives once, then the end"
        finally:
            await _aclose(it)
    assert kinds, "R16: the producer end is neither a context manager nor an async one"
    # a clean exit still ends the stream cleanly
    end, it = _producer(h, "R16", 8)
    if hasattr(end, "__aenter__"):
        async with end:
            await end.send(1)
    else:
        with end:
            await end.send(1)
    try:
        assert await _outcome(it, "R16") == ([1], None), "R16: a clean exit ends cleanly"
    finally:
        await _aclose(it)


async def _push_r17(h: PushHarness) -> None:
    end, it = _producer(h, "R17", 8)
    try:
        for v in range(3):
            await end.send(v)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if hasattr(end, "clone"):  # one clone dropped: the others keep the stream open
                clone = end.clone()
                del clone
                for _ in range(3):
                    gc.collect()
                assert any(issubclass(w.category, ResourceWarning) for w in caught), (
                    "R17: a producer end collected while open must warn (ResourceWarning)"
                )
                await end.send(3)
                caught.clear()
            del end
            for _ in range(3):
                gc.collect()
        assert any(issubclass(w.category, ResourceWarning) for w in caught), (
            "R17: a producer end collected while open must warn (ResourceWarning)"
        )
        got, err = await _outcome(it, "R17")
        assert got == list(range(len(got))) and len(got) >= 3, (
            f"R17: the values sent come before the end, got {got}"
        )
        assert err is not None and str(err), (
            f"R17: every producer end dropped: the consumer must end with an error naming "
            f"the cause, got {err!r}"
        )
    finally:
        await _aclose(it)


async def _push_r18(h: PushHarness) -> None:
    if not h.hooks:
        raise AssertionError("R18 is claimed but the harness names no hooks (PushHarness.hooks)")
    unknown = set(h.hooks) - set(HOOKS)
    assert not unknown, f"R18: unknown hooks {sorted(unknown)}; the kit knows {list(HOOKS)}"
    await _push_r18_reentrant_resume(h)
    # An unawaited coroutine warns when it is freed: at once when dropped, by the
    # collector when caught in a cycle (one collection at the end: it is not cheap).
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for hook in h.hooks:
            for flavour in _ASYNC_FLAVOURS:
                await _push_r18_async_hook(h, hook, flavour, caught)
        gc.collect()
        _never_awaited(caught, "an async callable given as a hook")


def _hooked(h: PushHarness, source: HookedSource, buffer: int) -> Any:
    it = h.open_hooked(source, buffer=buffer)
    if it is None:
        raise AssertionError("R18 is claimed but open_hooked() returned None")
    return it


async def _consume_hooked(
    h: PushHarness, source: HookedSource, buffer: int
) -> tuple[list[int], Any]:
    """Every value of the adapter over ``source``, counted in ``source.taken``; and its stats."""
    got: list[int] = []
    with anyio.fail_after(5):
        async with _hooked(h, source, buffer) as it:
            async for v in it:
                got.append(v)
                source.taken += 1
                await anyio.lowlevel.checkpoint()  # a slow consumer: the source pauses often
            return got, getattr(it, "stats", None)


async def _push_r18_reentrant_resume(h: PushHarness) -> None:
    """The source produces inside ``resume()``: paused again from inside, alternation, bounded."""
    buffer, n = 4, 40
    source = HookedSource(n)
    got, _ = await _consume_hooked(h, source, buffer)
    assert got == list(range(n)), f"R18: with hooks, the values came as {got}"
    assert not source.errors, (
        f"R18: pause and resume must alternate, starting with pause: {source.errors} "
        f"(calls: {source.calls})"
    )
    assert "resume" in source.calls, f"R18: the source was never resumed (calls: {source.calls})"
    assert source.paused_in_resume, (
        "R18: a source that produces inside resume() must be paused again from inside "
        f"resume() once the buffer fills; it never was (calls: {source.calls})"
    )
    assert source.max_held <= buffer + 1, (
        f"R18: {source.max_held} values were held at once with buffer={buffer} (at most the "
        "buffer and the value being delivered): pause() from inside resume() came late"
    )
    assert source.released == 1, f"R18: released {source.released} times"


#: the kinds of async callable R18 gives in place of a plain hook
_ASYNC_FLAVOURS = ("async def", "a plain function that returns a coroutine")


@dataclass
class _AsyncHookRuns:
    started: int = 0
    finished: int = 0
    coroutines: list[Any] = field(default_factory=list)


def _async_hook(
    hook_name: str, action: Callable[[], object], flavour: str, runs: _AsyncHookRuns
) -> Any:
    """An async callable that does ``action()`` when awaited, and counts how far it got."""

    async def hook() -> None:
        runs.started += 1
        await anyio.lowlevel.checkpoint()
        action()
        runs.finished += 1

    hook.__qualname__ = f"async {hook_name} hook"  # what a "never awaited" warning names
    if flavour == "async def":
        return hook

    def returns_coroutine() -> object:
        coro = hook()
        runs.coroutines.append(coro)
        return coro

    return returns_coroutine


def _never_awaited(
    caught: list[warnings.WarningMessage], what: str, unstarted: Sequence[str] = ()
) -> None:
    never = [*unstarted, *(str(w.message) for w in caught if "never awaited" in str(w.message))]
    assert not never, (
        f"R18: {what} was called and never awaited, so it silently did nothing; await it "
        f"or refuse it with TypeError: {never}"
    )


async def _push_r18_async_hook(
    h: PushHarness, hook: str, flavour: str, caught: list[warnings.WarningMessage]
) -> None:
    """An async callable as one hook: awaited to its end, or refused with a TypeError naming it."""
    name = h.hooks[hook]
    what = f"an async callable as the {name} hook ({flavour})"
    source = HookedSource(30)
    runs = _AsyncHookRuns()
    source.hooks[hook] = _async_hook(hook, source.hooks[hook], flavour, runs)
    got: list[int] = []
    refused: TypeError | None = None
    released_on_exit = -1
    try:
        with anyio.fail_after(5):
            async with _hooked(h, source, 4) as it:
                async for v in it:
                    got.append(v)
                    source.taken += 1
                    if len(got) == 10:
                        break  # leave early: the source is released
            released_on_exit = source.released
    except TypeError as exc:
        refused = exc
    except TimeoutError:
        raise AssertionError(f"R18: with {what}, the stream hung after {got}") from None
    unstarted = []
    for coro in runs.coroutines:
        if inspect.getcoroutinestate(coro) == inspect.CORO_CREATED:
            coro.close()  # (closed unstarted, it does not warn)
            unstarted.append(f"coroutine {coro.__qualname__!r} was never awaited")
    _never_awaited(caught, what, unstarted)
    assert got == list(range(len(got))), f"R18: with {what}, the values came as {got}"
    if refused is not None:
        assert name in str(refused), (
            f"R18: {what} was refused, but the TypeError does not name the hook: {refused}"
        )
        return
    assert runs.started and runs.finished == runs.started, (
        f"R18: {what} was neither awaited to its end nor refused with TypeError "
        f"(started {runs.started}, finished {runs.finished})"
    )
    if hook == "release":
        assert released_on_exit == 1, (
            f"R18: {what} was awaited, but not before leaving 'async with' completed"
        )


_CANCELLED_HOW = ("cancel()", "an expired deadline")


async def _in_cancelled_scope(how: str, call: Callable[[], Awaitable[object]]) -> tuple[bool, bool]:
    """Await ``call()`` in a scope cancelled by ``how``: (it returned, the scope caught it)."""
    returned = False
    with anyio.CancelScope() if how == "cancel()" else anyio.move_on_after(0) as scope:
        if how == "cancel()":
            scope.cancel()
        await call()
        returned = True
    return returned, scope.cancelled_caught


async def _push_r19(h: PushHarness) -> None:
    await _push_r19_consumer(h)
    await _push_r19_producer(h)


async def _push_r19_consumer(h: PushHarness) -> None:
    probe = Probe()
    it = h.open(Script(range(6), End.COMPLETE, gate=3), probe, buffer=8, overflow="block")
    try:
        assert await it.__anext__() == 0
        await _handed(probe, 2, "R19")  # 1 is ready to take
        taken: list[int] = []

        async def take() -> None:
            taken.append(await it.__anext__())

        for how in _CANCELLED_HOW:
            _, caught = await _in_cancelled_scope(how, take)
            assert not taken, f"R19: __anext__ in a cancelled scope ({how}) took {taken}"
            assert caught, (
                f"R19: __anext__ in a cancelled scope ({how}) did not raise the cancellation"
            )
        nxt: list[int] = []
        with anyio.move_on_after(1):  # 1 is ready: a wait means it was lost
            nxt.append(await it.__anext__())
        assert nxt == [1], f"R19: after the cancelled calls, the next __anext__ got {nxt}, not 1"
        probe.open_gate.set()
        assert await _drain(it) == [2, 3, 4, 5]
    finally:
        probe.open_gate.set()
        await _settle(it)


async def _push_r19_producer(h: PushHarness) -> None:
    """R19 on the producer side, for a harness with an async producer end (``open_producer``).

    ``send`` in a cancelled scope must raise the cancellation and deliver
    nothing: neither into a buffer with room nor to a consumer waiting for it.
    """
    pair = h.open_producer(buffer=4)
    if pair is None:
        return  # no async producer end: the consumer's side is the whole rule
    end, it = pair
    try:
        for how in _CANCELLED_HOW:  # room in the buffer: send would not wait
            returned, caught = await _in_cancelled_scope(how, lambda: end.send(90))
            assert caught and not returned, (
                f"R19: send in a cancelled scope ({how}) did not raise the cancellation"
            )
        await end.send(0)
        with anyio.fail_after(5):
            first = await it.__anext__()
        assert first == 0, (
            f"R19: a send in a cancelled scope delivered its value: the consumer got {first} "
            "before the 0 sent after it"
        )
        got: list[int] = []

        async def take() -> None:
            got.append(await it.__anext__())

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(take)
                await anyio.wait_all_tasks_blocked()  # a consumer waits for the next value
                for how in _CANCELLED_HOW:
                    returned, caught = await _in_cancelled_scope(how, lambda: end.send(91))
                    assert caught and not returned, (
                        f"R19: send in a cancelled scope ({how}), with a consumer waiting, "
                        "did not raise the cancellation"
                    )
                await end.send(1)
        assert got == [1], (
            f"R19: a send in a cancelled scope handed its value to the waiting consumer: it got "
            f"{got}, not the 1 sent after it"
        )
        end.close()
        rest = await _outcome(it, "R19")
        assert rest == ([], None), f"R19: after the cancelled sends, the consumer got {rest}"
    finally:
        end.close()
        await _aclose(it)


async def _push_r20(h: PushHarness) -> None:
    # waiting consumers are served in the order they waited
    end, it = _producer(h, "R20", 4)
    try:
        got: dict[int, int] = {}

        async def take(k: int) -> None:
            got[k] = await it.__anext__()

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                for k in range(4):
                    tg.start_soon(take, k)
                    await anyio.wait_all_tasks_blocked()
                for v in range(4):
                    end.send_nowait(v)
        assert [got[k] for k in range(4)] == [0, 1, 2, 3], (
            f"R20: waiting consumers were not served in the order they waited: {got}"
        )

        # a value sent while a consumer waits goes to it, not to a later receive
        got.clear()
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(take, 0)
                await anyio.wait_all_tasks_blocked()
                end.send_nowait(10)
                stolen: list[int] = []
                nowait = getattr(it, "receive_nowait", None)
                if nowait is not None:
                    try:
                        stolen.append(nowait())
                    except anyio.WouldBlock:
                        pass
                else:
                    with anyio.move_on_after(0.05):
                        stolen.append(await it.__anext__())
                assert not stolen, f"R20: a later receive took {stolen}, sent to a waiting one"
        assert got == {0: 10}
    finally:
        end.close()
        await _aclose(it)

    # blocked producers' values go before later ones, in the order they blocked
    end, it = _producer(h, "R20", 1)
    try:
        end.send_nowait(0)
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                for v in (1, 2, 3):
                    tg.start_soon(end.send, v)
                    await anyio.wait_all_tasks_blocked()
                assert await it.__anext__() == 0
                try:
                    end.send_nowait(99)
                except anyio.WouldBlock:
                    pass
                else:
                    raise AssertionError("R20: a later value went before blocked producers'")
                after = [await it.__anext__() for _ in range(3)]
        assert after == [1, 2, 3], f"R20: blocked producers' values came as {after}"
    finally:
        end.close()
        await _aclose(it)


# ----------------------------------------------------------------------- pull rules


async def _pull_r10(h: PullHarness) -> None:
    source = TestSource(range(200))
    ahead: list[int] = []
    delivered = 0

    def on_value(v: int) -> None:
        nonlocal delivered
        delivered += 1
        ahead.append(source.pulled - delivered)

    outcome = await _drive(h, source, Plan(slow=3, on_value=on_value), "R10")
    assert outcome.error is None, f"R10: unexpected error {outcome.error!r}"
    assert outcome.values == list(range(200))
    assert max(ahead) <= h.in_flight, f"R10: pulled {max(ahead)} ahead (allowed {h.in_flight})"


async def _drive(
    h: PullHarness, source: TestSource, plan: Plan, rule: str, timeout: float = 10.0
) -> Outcome:
    """``h.drive(source, plan)``, with a deadline: a hang fails ``rule``."""
    try:
        with anyio.fail_after(timeout):
            return await h.drive(source, plan)
    except TimeoutError:
        raise AssertionError(
            f"{rule}: the drive hung ({timeout:g} s) after the source was pulled "
            f"{source.pulled} times"
        ) from None


def _unexpected(
    outcome: Outcome, rule: str, what: str, expected: object = None, missing_ok: bool = False
) -> None:
    """Fail unless the receiving side got ``expected`` (an exception object, a class, or None).

    With ``missing_ok``, no error at all passes too (another rule asks for it).
    """
    error = outcome.error
    if error is expected or (isinstance(expected, type) and isinstance(error, expected)):
        return
    if error is None and missing_ok:
        return
    raise AssertionError(
        f"{rule}: {what}: the receiving side got {error!r}, expected "
        f"{'a clean end' if expected is None else repr(expected)}"
    )


async def _drive_cancelled(h: PullHarness, source: TestSource, rule: str) -> None:
    """Drive a hanging ``source`` and cancel the drive from outside once it hangs.

    :raises AssertionError: the drive ended before the cancellation, or swallowed it
    """
    ended: list[Outcome] = []
    try:
        with anyio.fail_after(10), anyio.CancelScope() as scope:

            async def cancel_once_it_hangs() -> None:
                # the source may run in another thread's loop: a thread-safe event
                await _wait_set(source.hanging, f"{rule}: the source never got to its end")
                scope.cancel()

            async with anyio.create_task_group() as tg:
                tg.start_soon(cancel_once_it_hangs)
                ended.append(await h.drive(source, Plan()))
                tg.cancel_scope.cancel()
    except TimeoutError:
        raise AssertionError(f"{rule}: the drive went on after it was cancelled (10 s)") from None
    assert scope.cancel_called, (
        f"{rule}: a hanging source must keep the receiver waiting, but the drive ended: {ended}"
    )
    assert not ended, f"{rule}: the cancellation from outside was swallowed: the drive returned"


async def _pull_r11(h: PullHarness) -> None:
    source = TestSource(range(100), End.HANG)
    outcome = await _drive(h, source, Plan(take=5), "R11")
    _unexpected(outcome, "R11", "the receiving side left early")
    assert outcome.values == [0, 1, 2, 3, 4], f"R11: the receiving side got {outcome.values}"
    assert source.closed == 1, "R11: the source's cleanup did not run before control returned"
    # cancelling the whole thing from outside
    source = TestSource(range(3), End.HANG)
    await _drive_cancelled(h, source, "R11")
    assert source.closed == 1, "R11: cancellation did not close the source"


async def _pull_r12(h: PullHarness) -> None:
    boom = SourceError("boom")
    source = TestSource(range(3), End.FAIL, boom)
    outcome = await _drive(h, source, Plan(), "R12")
    assert outcome.values == [0, 1, 2], f"R12: the values before the error came as {outcome.values}"
    _unexpected(outcome, "R12", "the source failed", boom)
    assert outcome.errors_seen <= 1, "R12: the error arrived more than once"
    source = TestSource(range(100), End.HANG)
    outcome = await _drive(h, source, Plan(fail_after=3), "R12")
    assert outcome.values == [0, 1, 2], f"R12: the values before the error came as {outcome.values}"
    _unexpected(outcome, "R12", "the receiver's error was not reported", ConsumerError)
    assert outcome.errors_seen <= 1, "R12: the receiver's error arrived more than once"
    assert source.closed == 1, "R12: a receiver error must close the source"


async def _pull_r13(h: PullHarness) -> None:
    class Reiterable:
        def __aiter__(self) -> AsyncIterator[int]:
            return TestSource(range(3)).__aiter__()

    first, second = await h.subscribe_twice(Reiterable, one_shot=False)
    assert first == [0, 1, 2] and second == [0, 1, 2], (
        f"R13: a re-iterable is cold: each subscription starts afresh; got {first}, {second!r}"
    )
    first, second = await h.subscribe_twice(lambda: TestSource(range(3)), one_shot=True)
    assert first == [0, 1, 2], f"R13: the first subscription of a one-shot source got {first}"
    assert isinstance(second, BaseException) and str(second), (
        f"R13: a one-shot source gives a clear error on a second subscription, not {second!r}"
    )


async def _let_it_run() -> None:
    """Give what may still run of a bridge the time to do it: checkpoints, all tasks blocked."""
    for _ in range(5):
        await anyio.lowlevel.checkpoint()
    await anyio.wait_all_tasks_blocked()


async def _pull_r14(h: PullHarness) -> None:
    threads_before = _threads()
    tasks_before = _tasks()
    boom = SourceError("x")
    runs: tuple[tuple[str, Plan | None, End, object], ...] = (
        ("it completed", Plan(), End.COMPLETE, None),
        ("the source failed", Plan(), End.FAIL, boom),
        ("the receiver failed", Plan(fail_after=1), End.HANG, ConsumerError),
        ("it was cancelled from outside", None, End.HANG, None),
    )
    for how, plan, end, expected in runs:
        source = TestSource(range(5), end, boom)
        if plan is None:
            await _drive_cancelled(h, source, "R14")
        else:
            outcome = await _drive(h, source, plan, "R14")
            # an error that should be there and is not is R12's to report
            _unexpected(outcome, "R14", how, expected, missing_ok=True)
        pulled, closed = source.pulled, source.closed
        await _let_it_run()
        await _wait_threads_gone(threads_before, rule="R14")
        assert _tasks() <= tasks_before, f"R14: a task outlived the bridge ({how})"
        # what a task or thread did after the bridge returned, even if it ended since
        assert (source.pulled, source.closed) == (pulled, closed), (
            f"R14: after the bridge returned ({how}), something of it still acted on the "
            f"source: pulled {pulled} -> {source.pulled} times, closed {closed} -> "
            f"{source.closed} times"
        )
        assert source.closed == 1, f"R14: the source was closed {source.closed} times ({how})"


async def _pull_r15(h: PullHarness) -> None:
    try:
        with anyio.fail_after(1):
            result = await h.drive_bad()
    except TypeError as exc:
        assert str(exc), "R15: the TypeError has no message"
        return
    except TimeoutError:
        raise AssertionError("R15: a wrong-typed source hung the adapter (1 s)") from None
    except Exception as exc:
        raise AssertionError(
            f"R15: a wrong-typed source raised {exc!r}, not a TypeError naming what was expected"
        ) from exc
    await _aclose(result)
    raise AssertionError(f"R15: a wrong-typed source did not raise TypeError (got {result!r})")


_PUSH: dict[str, Callable[..., Awaitable[None]]] = {
    "R1": _push_r1,
    "R2": _push_r2,
    "R3": _push_r3,
    "R4": _push_r4,
    "R5": _push_r5,
    "R6": _push_r6,
    "R7": _push_r7,
    "R8": _push_r8,
    "R9": _push_r9,
    "R14": _push_r14,
    "R15": _push_r15,
    "R16": _push_r16,
    "R17": _push_r17,
    "R18": _push_r18,
    "R19": _push_r19,
    "R20": _push_r20,
}
_PULL: dict[str, Callable[..., Awaitable[None]]] = {
    "R10": _pull_r10,
    "R11": _pull_r11,
    "R12": _pull_r12,
    "R13": _pull_r13,
    "R14": _pull_r14,
    "R15": _pull_r15,
}


class Case(NamedTuple):
    """One conformance case: a harness, a rule it claims, and the backend to run it on.

    ``await check(*case)`` runs it (in an event loop of that backend).
    """

    harness: PushHarness | PullHarness | CallHarness
    """the adapter's harness"""
    rule: str
    """the rule to check, ``"R1"`` to ``"R21"``"""
    backend: str
    """``"asyncio"``, ``"uvloop"`` or ``"trio"``"""


def cases(harness: PushHarness | PullHarness | CallHarness) -> list[Case]:
    """Every case of a harness: each rule it claims on each of its backends, in order.

    :raises TypeError: ``harness`` is not a harness instance
    """
    _require_harness(harness, "cases()")
    return [
        Case(harness, rule, backend)
        for rule in harness.claims.applicable()
        for backend in BACKENDS
        if backend in harness.backends
    ]


def _require_harness(harness: object, what: str) -> None:
    if isinstance(harness, (PushHarness, PullHarness, CallHarness)):
        return
    hint = ""
    if isinstance(harness, type) and issubclass(harness, (PushHarness, PullHarness)):
        hint = f"; instantiate it: {harness.__name__}()"
    raise TypeError(
        f"{what} takes a harness: an instance of a testing.PushHarness or testing.PullHarness "
        f"subclass, not {type(harness).__name__}{hint}"
    )


async def check(
    harness: PushHarness | PullHarness | CallHarness, rule: str, backend: str = ""
) -> None:
    """Check one rule against a harness, in the running event loop.

    ``backend`` names the running backend (``"uvloop"`` is not visible from
    inside the loop); ``check(*case)`` passes it from a [`Case`][bridges.testing.Case].

    :raises AssertionError: the rule does not hold (the message says how)
    :raises ValueError: the harness does not claim ``rule``
    :raises TypeError: ``harness`` is not a [`PushHarness`][bridges.testing.PushHarness],
        [`PullHarness`][bridges.testing.PullHarness]
        or [`CallHarness`][bridges.testing.CallHarness], or it sets ``blocking_calls``
        (a waiver of R6 the kit no longer has: the message says what to do instead)
    """
    _require_harness(harness, "check()")
    if getattr(harness, "blocking_calls", False):
        raise TypeError(
            f"{harness.name} sets blocking_calls, a waiver the kit no longer has: leaving "
            "waits for a call of the source in progress (R21, up to the adapter's grace "
            "period), so R6 expects the source released before the exit completes. Drop "
            "the attribute, and have the harness's blocking source end its call when the "
            "consumer leaves (as threads.consumer_gone() lets it)"
        )
    why = harness.claims.rules.get(rule, "not a rule of this direction")
    if why is not None:
        raise ValueError(f"{harness.name} does not claim {rule}: {why}")
    if isinstance(harness, CallHarness):
        await _CALL[rule](harness)
        return
    table = _PUSH if isinstance(harness, PushHarness) else _PULL
    fn = table[rule]
    if rule == "R6":
        await fn(harness, backend)
    else:
        await fn(harness)


# ------------------------------------------------- R21: one call at a time per source

#: The rules an adapter that runs a sync call of the user's in a worker thread can claim.
CALL_RULES: tuple[str, ...] = ("R21",)


def claim_call(na: Mapping[str, str] | None = None) -> Claims:
    """Claims for a [`CallHarness`][bridges.testing.CallHarness]: every rule of `CALL_RULES` but
    those in ``na``."""
    return _claims(CALL_RULES, na)


class CallSource:
    """A blocking source for R21 that records how it is called; values ``0 .. n-1``.

    An iterator with ``close()`` (a cursor's shape): each ``next()`` is one
    call.  The call that would return a value in ``hold`` blocks until
    `release` is set (`inside` says it has begun): a slow read.
    Thread-safe; it counts calls running at once (`most`), calls
    after ``close()``, and ``close()`` while a call ran.
    """

    __test__ = False

    def __init__(self, n: int, hold: Sequence[int] = ()) -> None:
        #: how many values (``0 .. n-1``) the source has
        self.n = n
        #: the values whose call blocks until `release` is set (a slow read)
        self.hold = frozenset(hold)
        #: set when a held call has begun
        self.inside = threading.Event()
        #: set (by the checks) to let held calls return
        self.release = threading.Event()
        #: calls made
        self.calls = 0
        #: calls running now
        self.active = 0
        #: the most calls ever running at once (R21: 1)
        self.most = 0
        #: values returned by calls, in order
        self.returned: list[int] = []
        #: times ``close()`` was called
        self.closed = 0
        #: times ``close()`` was called while a call ran
        self.closed_during_call = 0
        #: calls made after ``close()``
        self.called_after_close = 0
        self._next = 0
        self._lock = threading.Lock()

    def __iter__(self) -> CallSource:
        return self

    def __next__(self) -> int:
        with self._lock:
            self.calls += 1
            self.active += 1
            self.most = max(self.most, self.active)
            if self.closed:
                self.called_after_close += 1
            i = self._next
        try:
            if i in self.hold:
                self.inside.set()
                self.release.wait(10)  # bounded: a check that forgot to release fails, not hangs
            if i >= self.n:
                raise StopIteration
            with self._lock:
                self._next = i + 1
                self.returned.append(i)
            return i
        finally:
            with self._lock:
                self.active -= 1

    def close(self) -> None:
        """Record the close (and whether a call was running)."""
        with self._lock:
            self.closed += 1
            if self.active:
                self.closed_during_call += 1


class CallHarness(ABC):
    """Describes an adapter that runs a sync call of the user's in a worker thread (R21).

    ``open(source)`` returns the adapter's async iterator over the values of
    ``source`` (a [`CallSource`][bridges.testing.CallSource]), making one call of it per value:
    ``threads.to_aiter(source)``, or a ``fetch_page`` that returns
    ``([next(source)], token)``.
    """

    name: str = "adapter"
    """the adapter's name in reports and in the rules table"""
    claims: Claims = claim_call()
    """which rules the adapter claims (R21), or why it is n/a"""
    backends: frozenset[str] = frozenset({"asyncio", "uvloop", "trio"})
    """backends this adapter runs on"""
    closes_source: bool = True
    """True when the adapter calls ``source.close()`` itself (at the end, on early exit)"""

    @abstractmethod
    def open(self, source: CallSource) -> AsyncIterator[int]:
        """The adapter's async iterator over ``source``, one call per value."""


async def _timed_out_next(
    it: AsyncIterator[int], until: Callable[[], Awaitable[None]]
) -> tuple[list[int], bool]:
    """One ``__anext__`` cancelled once ``until()`` returns: a timeout around it.

    Returns what it took, and whether it met the end of the stream instead.
    """
    taken: list[int] = []
    ended = False
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:

            async def take() -> None:
                nonlocal ended
                try:
                    taken.append(await it.__anext__())
                except StopAsyncIteration:
                    ended = True
                scope.cancel()

            tg.start_soon(take)
            await until()
            scope.cancel()
    return taken, ended


_NEVER_HELD = "R21: the adapter never made the call of the source that is held (a slow read)"


async def _call_r21(h: CallHarness) -> None:
    # timeouts around __anext__ while a call runs: no second call, nothing lost
    source = CallSource(6, hold=[2])
    it = h.open(source)
    got: list[int] = []
    try:
        async with it:  # type: ignore[attr-defined]
            with anyio.fail_after(5):
                got += [await it.__anext__(), await it.__anext__()]
                got += (await _timed_out_next(it, lambda: _wait_set(source.inside, _NEVER_HELD)))[0]
                for _ in range(3):  # more timeouts while that call still runs
                    got += (await _timed_out_next(it, anyio.wait_all_tasks_blocked))[0]
            assert source.most == 1, (
                "R21: a timeout around __anext__ started a second call while one was running"
            )
            source.release.set()
            with anyio.fail_after(5):
                got += [v async for v in it]
    finally:
        source.release.set()
    assert got == list(range(6)), (
        f"R21: after timeouts around __anext__ the consumer got {got}: a result was "
        "discarded or a value fetched twice"
    )
    assert source.most == 1, "R21: two calls of the source ran at once"

    # leaving while a call runs (after a timeout): the exit completes after it returned
    for how in ("exit", "cancel"):
        await _leave_during_a_call(h, how)


async def _consumer_leaving(leaving: anyio.Event, consumer: anyio.CancelScope, how: str) -> None:
    """Wait until the consumer is in its exit (cancel it first, for ``how="cancel"``)."""
    await leaving.wait()
    await anyio.wait_all_tasks_blocked()
    if how == "cancel":
        consumer.cancel()
        await anyio.wait_all_tasks_blocked()


async def _leave_during_a_call(h: CallHarness, how: str) -> None:
    source = CallSource(6, hold=[3])
    it = h.open(source)
    leaving = anyio.Event()
    consumer = anyio.CancelScope()
    at_exit: list[tuple[int, int]] = []  # (calls running, closes) when the exit completed

    async def consume() -> None:
        with consumer:
            try:
                async with it:  # type: ignore[attr-defined]
                    for _ in range(3):
                        await it.__anext__()
                    # a timeout around __anext__ while the call for 3 runs
                    await _timed_out_next(it, lambda: _wait_set(source.inside, _NEVER_HELD))
                    leaving.set()
                    if how == "cancel":
                        await it.__anext__()  # cancelled from outside while it waits
            finally:
                at_exit.append((source.active, source.closed))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await _consumer_leaving(leaving, consumer, how)
            early = list(at_exit)
            source.release.set()
    assert not early, (
        f"R21: the exit ({how}) completed while a call of the source was running; it must "
        "wait for the call to return (up to its documented grace period)"
    )
    assert at_exit and at_exit[0][0] == 0, (
        f"R21: a call was running when the exit ({how}) completed"
    )
    if h.closes_source:
        assert at_exit[0][1] == 1, f"R21: the source was not closed before the exit ({how})"
    assert source.closed_during_call == 0, "R21: the source was closed while a call ran"
    assert source.called_after_close == 0, "R21: the source was called after close()"
    assert source.most == 1, "R21: two calls of the source ran at once"


_CALL: dict[str, Callable[..., Awaitable[None]]] = {"R21": _call_r21}
