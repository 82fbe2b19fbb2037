"""Deliberately broken adapters: each breaks exactly one rule of the adapter it derives from.

``test_mutants.py`` runs every rule they claim through the kit and expects
exactly the broken one to fail: proof that each check can fail.  They live
outside ``harnesses/``, so the registry (and the rules table) never sees them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import sniffio
import trio
import trio.lowlevel

import bridges
from bridges import ChannelSender, Stats, callbacks, channels, testing
from bridges.callbacks import Emitter
from bridges.testing import (
    HookedSource,
    Probe,
    PushHarness,
    Script,
    ScriptedProducer,
    TestSource,
)

from .harness_kit import IntValues
from .harnesses.callbacks import ToAiterPausedHarness, ToAiterThreadHarness
from .harnesses.channels import FromAiterAnyioHarness
from .harnesses.core import ChannelHarness, CoreThreadHarness
from .harnesses.threads import ToAiterFactoryHarness

if TYPE_CHECKING:
    from typing_extensions import Self


class _Sender:
    """Wraps a ChannelSender: every call goes to it (the mutants below override one)."""

    def __init__(self, inner: ChannelSender[int]) -> None:
        self._inner = inner

    async def send(self, value: int) -> None:
        await self._inner.send(value)

    def send_nowait(self, value: int) -> None:
        self._inner.send_nowait(value)

    def close(self) -> None:
        self._inner.close()

    def clone(self) -> Self:
        return type(self)(self._inner.clone())

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._inner.__exit__(*exc_info)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self._inner.__aexit__(*exc_info)


class _ClosingSender(_Sender):
    """A producer end whose block always closes, also when it is left by an error (R16)."""

    def __exit__(self, *exc_info: Any) -> None:
        self._inner.close()  # the bug: an error is not passed on

    async def __aexit__(self, *exc_info: Any) -> None:
        self._inner.close()


class ExitClosesHarness(ChannelHarness):
    """Breaks R16: a producer block left by an error ends the stream cleanly."""

    name = "mutant:exit-closes"

    def open_producer(self, *, buffer: int) -> tuple[Any, AsyncIterator[int]]:
        send, receive = super().open_producer(buffer=buffer)
        return _ClosingSender(send), receive


class _SilentSender(ChannelSender[int]):
    """A sender that does nothing when it is collected: no warning, the stream never ends."""

    __slots__ = ()

    def __del__(self) -> None:  # the bug: no handling of a dropped end
        pass


class NoDelHarness(ChannelHarness):
    """Breaks R17: a dropped sender neither warns nor ends the stream (its consumer hangs)."""

    name = "mutant:no-del"

    def open_producer(self, *, buffer: int) -> tuple[Any, AsyncIterator[int]]:
        send, receive = super().open_producer(buffer=buffer)
        send.__class__ = _SilentSender
        return send, receive


class _Receiver(IntValues):
    """Wraps a ChannelReceiver; everything but ``__anext__`` goes to it."""

    def __getattr__(self, name: str) -> Any:  # stats, receive_nowait, ...
        return getattr(self._inner, name)


class _WrappingHarness(ChannelHarness):
    """open_channel, its receiver wrapped in ``wrapper`` (the mutants below set one)."""

    wrapper: type[_Receiver] = _Receiver
    #: wrap the receiver of ``open_producer`` too (the checks that send on their own end)
    wrap_producer = False

    def open(
        self, script: Script, probe: Probe, *, buffer: int | None, overflow: str
    ) -> AsyncIterator[int]:
        return self.wrapper(super().open(script, probe, buffer=buffer, overflow=overflow))

    def open_producer(self, *, buffer: int) -> tuple[Any, AsyncIterator[int]]:
        send, receive = super().open_producer(buffer=buffer)
        return send, (self.wrapper(receive) if self.wrap_producer else receive)


class _TakesFirst(_Receiver):
    async def __anext__(self) -> int:
        try:
            value = self._inner.receive_nowait()
        except (anyio.WouldBlock, anyio.EndOfStream):
            return await super().__anext__()  # (at the end, the receiver's own end and release)
        # the bug: the cancel point comes after the take (one that does not yield: a
        # cancellation that arrives while the call runs finds the value delivered, as R6 asks)
        await anyio.lowlevel.checkpoint_if_cancelled()
        return int(value)


class TakesFirstHarness(_WrappingHarness):
    """Breaks R19: ``__anext__`` takes a ready value before it checks for cancellation."""

    name = "mutant:takes-first"
    wrapper = _TakesFirst
    wrap_producer = True


class _Lifo(_Receiver):
    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self._waiting: list[object] = []

    async def __anext__(self) -> int:
        await anyio.lowlevel.checkpoint_if_cancelled()
        me = object()
        self._waiting.append(me)
        try:
            while True:
                if self._waiting[-1] is me:  # the bug: the newest waiter is served first
                    try:
                        return int(self._inner.receive_nowait())
                    except anyio.WouldBlock:
                        pass
                    except anyio.EndOfStream:
                        return await super().__anext__()  # the receiver's own end and release
                await anyio.sleep(0.001)
        finally:
            self._waiting.remove(me)


class LifoHarness(_WrappingHarness):
    """Breaks R20: waiting consumers are served last come, first served."""

    name = "mutant:lifo"
    wrapper = _Lifo
    wrap_producer = True


class _SendsFirst(_Sender):
    async def send(self, value: int) -> None:
        try:
            self._inner.send_nowait(value)
        except anyio.WouldBlock:
            await self._inner.send(value)
        else:
            await anyio.lowlevel.checkpoint()  # the bug: the cancel point comes after the send


class SendsFirstHarness(ChannelHarness):
    """Breaks R19 on the producer side: ``send`` delivers before it checks for cancellation."""

    name = "mutant:sends-first"

    def open_producer(self, *, buffer: int) -> tuple[Any, AsyncIterator[int]]:
        send, receive = super().open_producer(buffer=buffer)
        return _SendsFirst(send), receive


def _dropping(hook: Callable[[], object]) -> Callable[[], None]:
    def call() -> None:
        hook()  # the bug: what the hook returns is dropped (an awaitable is never awaited)

    return call


class DropsAsyncHookHarness(ToAiterPausedHarness):
    """Breaks R18: the adapter calls its hooks and drops what they return.

    An async hook then makes a coroutine that nobody awaits: the source is
    never paused (or released), and nothing says so.
    """

    name = "mutant:drops-async-hook"

    def open_hooked(self, source: HookedSource, *, buffer: int) -> AsyncIterator[int]:
        for hook, fn in list(source.hooks.items()):
            source.hooks[hook] = _dropping(fn)
        return super().open_hooked(source, buffer=buffer)


class DefersPauseHarness(ToAiterPausedHarness):
    """Breaks R18: a pause asked for from inside ``resume()`` waits until ``resume()`` returns.

    A source that produces inside its resume hook then produces everything
    it has before it is paused: the buffer no longer bounds it.
    """

    name = "mutant:defers-pause"

    def open_hooked(self, source: HookedSource, *, buffer: int) -> AsyncIterator[int]:
        pause, resume = source.hooks["pause"], source.hooks["resume"]
        state = {"resuming": False, "asked": False}

        def deferred_pause() -> object:
            if state["resuming"]:
                state["asked"] = True  # the bug: re-entered, the pause waits
                return None
            return pause()

        def resume_then_pause() -> object:
            state["resuming"] = True
            try:
                return resume()
            finally:
                state["resuming"] = False
                if state["asked"]:
                    state["asked"] = False
                    pause()

        source.hooks["pause"], source.hooks["resume"] = deferred_pause, resume_then_pause
        return super().open_hooked(source, buffer=buffer)


#: each mutant and the one rule it breaks; a mutant claims what the harness it derives from does
MUTANTS: list[tuple[PushHarness, str]] = [
    (ExitClosesHarness(), "R16"),
    (NoDelHarness(), "R17"),
    (TakesFirstHarness(), "R19"),
    (SendsFirstHarness(), "R19"),
    (LifoHarness(), "R20"),
    (DropsAsyncHookHarness(), "R18"),
    (DefersPauseHarness(), "R18"),
]


# ------------------------------------------------------------ push rules R1-R9


def _enter_now(it: AsyncIterator[int]) -> None:
    """Enter ``it``'s ``async with`` at once, from sync code (its ``__aenter__`` never waits)."""
    entering = it.__aenter__()  # type: ignore[attr-defined]
    try:
        entering.send(None)
    except StopIteration:
        return
    entering.close()
    raise AssertionError("__aenter__ waited")


class EagerHarness(CoreThreadHarness):
    """Breaks R1: the source is started when the iterator is made, not when it is used."""

    name = "mutant:eager"

    def open(
        self, script: Script, probe: Probe, *, buffer: int | None, overflow: str
    ) -> AsyncIterator[int]:
        it = super().open(script, probe, buffer=buffer, overflow=overflow)
        _enter_now(it)  # the bug: subscribes eagerly
        return it


class _Skips(_Receiver):
    """Loses one value of a long stream."""

    LOST = 1000

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self._count = 0

    async def __anext__(self) -> int:
        value = await super().__anext__()
        self._count += 1
        if self._count == self.LOST:  # the bug: this value is lost
            value = await super().__anext__()
        return value


class LosesOneHarness(_WrappingHarness):
    """Breaks R2: the 1000th value of a stream is lost."""

    name = "mutant:loses-one"
    wrapper = _Skips


class _ReadsAhead(_Receiver):
    """Takes up to ``AHEAD`` more values out of the buffer than it delivers."""

    AHEAD = 2

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self._ahead: deque[int] = deque()

    async def __anext__(self) -> int:
        await anyio.lowlevel.checkpoint_if_cancelled()
        if self._ahead:
            return self._ahead.popleft()
        value = await super().__anext__()
        try:
            while len(self._ahead) < self.AHEAD:  # the bug: held beyond the buffer
                self._ahead.append(int(self._inner.receive_nowait()))
        except (anyio.WouldBlock, anyio.EndOfStream):
            pass
        return value


class ReadsAheadHarness(_WrappingHarness):
    """Breaks R3: holds two values beyond ``buffer``, and its stats (the channel's) hide them."""

    name = "mutant:reads-ahead"
    wrapper = _ReadsAhead


class _EndsEarly(_Receiver):
    """Under ``block``, a stream that completed before the first take ends without its values."""

    def __init__(self, inner: Any, completed: threading.Event) -> None:
        super().__init__(inner)
        self._completed = completed
        self._took = False

    async def __anext__(self) -> int:
        if self._completed.is_set() and not self._took:  # the bug: the end before the buffer
            raise StopAsyncIteration
        self._took = True
        return await super().__anext__()


class EndsEarlyHarness(ChannelHarness):
    """Breaks R4: checks for the end before the buffer, so values buffered at completion are lost
    when the consumer had not taken any yet."""

    name = "mutant:ends-early"

    def open(
        self, script: Script, probe: Probe, *, buffer: int | None, overflow: str
    ) -> AsyncIterator[int]:
        self._completed = threading.Event()
        completed = self._completed
        inner = super().open(script, probe, buffer=buffer, overflow=overflow)
        return _EndsEarly(inner, completed) if overflow == "block" else inner

    def producer(self, script: Script, probe: Probe, send: ChannelSender[int]) -> ScriptedProducer:
        completed = self._completed

        def close() -> None:
            send.close()
            completed.set()

        return ScriptedProducer(script, probe, send=send.send_blocking, close=close, fail=send.fail)


class _RaisesTwice(_Receiver):
    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self._error: BaseException | None = None

    async def __anext__(self) -> int:
        if self._error is not None:
            raise self._error  # the bug: the error again, not the end
        try:
            return await super().__anext__()
        except testing.SourceError as exc:
            self._error = exc
            raise


class RaisesTwiceHarness(_WrappingHarness):
    """Breaks R5: the source's error is raised again by the next ``__anext__``."""

    name = "mutant:raises-twice"
    wrapper = _RaisesTwice


class _Copies(_Receiver):
    async def __anext__(self) -> int:
        try:
            return await super().__anext__()
        except testing.SourceError as exc:
            raise testing.SourceError(*exc.args) from None  # the bug: a copy, not the original


class CopiesErrorHarness(_WrappingHarness):
    """Breaks R5: raises a copy of the source's error (same type, its traceback lost)."""

    name = "mutant:copies-error"
    wrapper = _Copies


class _EarlyExitHarness(ChannelHarness):
    """open_channel whose release, when the consumer leaves a source that still runs
    (``End.HANG``), is ``early_exit()`` (the mutants below break it)."""

    def early_exit(self, release: Callable[[], None], probe: Probe) -> None:
        release()

    def release(
        self, script: Script, probe: Probe, producer: ScriptedProducer
    ) -> Callable[[], None]:
        release = super().release(script, probe, producer)
        if script.end is not testing.End.HANG:
            return release
        return lambda: self.early_exit(release, probe)


class ReleasesTwiceHarness(_EarlyExitHarness):
    """Breaks R6: a source still running when the consumer leaves is released once at the
    exit and once more soon after, from another thread."""

    name = "mutant:releases-twice"

    def early_exit(self, release: Callable[[], None], probe: Probe) -> None:
        release()
        # the bug: a second release, later
        threading.Thread(target=probe.release, name="bridges-test-mutant").start()


def _soon(fn: Callable[[], object]) -> None:
    """Run ``fn`` on the running event loop's thread, after the current task yields."""
    if sniffio.current_async_library() == "trio":
        trio.lowlevel.current_trio_token().run_sync_soon(fn)
    else:
        asyncio.get_running_loop().call_soon(fn)


class ReleasesLateHarness(_EarlyExitHarness):
    """Breaks R6: a source still running when the consumer leaves is released after the exit."""

    name = "mutant:releases-late"

    def early_exit(self, release: Callable[[], None], probe: Probe) -> None:
        _soon(release)  # the bug: the exit completes first


#: tasks the R14 mutant left behind (held so that they are not collected while they run)
_LINGERING: set[Any] = set()


def _leave_a_task() -> None:
    """Start a task nobody owns on the running loop; it ends a second later."""

    async def linger() -> None:
        await anyio.sleep(1)

    if sniffio.current_async_library() == "trio":
        trio.lowlevel.spawn_system_task(linger)
    else:
        task = asyncio.get_running_loop().create_task(linger())
        _LINGERING.add(task)
        task.add_done_callback(_LINGERING.discard)


class LeavesATaskHarness(ChannelHarness):
    """Breaks R14: releasing the source starts a task that outlives the bridge."""

    name = "mutant:leaves-a-task"

    def release(
        self, script: Script, probe: Probe, producer: ScriptedProducer
    ) -> Callable[[], None]:
        release = super().release(script, probe, producer)

        def and_a_task() -> None:
            release()
            _leave_a_task()  # the bug: a task of the bridge's own that nobody waits for

        return and_a_task


class _PopsBeforeCheckpoint(_Receiver):
    """Takes the value, then takes its coalesced schedule point (every 64th call)."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self._calls = 0

    async def __anext__(self) -> int:
        await anyio.lowlevel.checkpoint_if_cancelled()
        self._calls += 1
        if self._calls % 64 == 0:
            try:
                value = int(self._inner.receive_nowait())
            except (anyio.WouldBlock, anyio.EndOfStream):
                pass
            else:
                await anyio.lowlevel.checkpoint()  # the bug: a cancellation here loses it
                return value
        return await super().__anext__()


class PopsBeforeCheckpointHarness(_WrappingHarness):
    """Breaks R6: a timeout that lands on the 64th call's schedule point loses its value."""

    name = "mutant:pops-before-checkpoint"
    wrapper = _PopsBeforeCheckpoint


class SaysYesWhenClosedHarness(ToAiterThreadHarness):
    """Breaks R7: a producer thread that calls in after the stream closed is told its
    value was taken."""

    name = "mutant:says-yes-when-closed"

    async def emit_after_close(self, probe: Probe) -> None:
        emitters: list[Emitter[int]] = []
        async with callbacks.to_aiter(emitters.append, buffer=1):
            pass

        def send(value: int) -> bool:
            emitters[0].send(value)
            return True  # the bug: ignored, but says it was taken

        probe.late_results.append(await anyio.to_thread.run_sync(send, 1))


class SleepsOnOverflowHarness(ToAiterThreadHarness):
    """Breaks R8: the overflow path blocks the event loop for a second before it fails."""

    name = "mutant:sleeps-on-overflow"

    def emit_from_loop(self, script: Script, probe: Probe, *, buffer: int) -> AsyncIterator[int]:
        def subscribe(emit: Emitter[int]) -> None:
            for v in script.values:
                if not emit.send(v):
                    time.sleep(2.0)  # the bug: blocks the loop thread
                    return
            emit.close()

        return callbacks.to_aiter(subscribe, buffer=buffer)


class IgnoresPauseHarness(ToAiterPausedHarness):
    """Breaks R8: the source offers pause/resume hooks, the adapter is not given them (so it
    fails the stream when the loop-thread source overfills it)."""

    name = "mutant:ignores-pause"

    def loop_hooks(
        self, pause: Callable[[], object], resume: Callable[[], object]
    ) -> dict[str, Callable[[], object]]:
        return {}  # the bug: the hooks go unused


class _MiscountsDrops(_Receiver):
    @property
    def stats(self) -> Stats:
        stats: Stats = self._inner.stats
        return dataclasses.replace(stats, dropped=max(0, stats.dropped - 1))  # the bug


class MiscountsDropsHarness(_WrappingHarness):
    """Breaks R9: ``stats.dropped`` counts one drop fewer than were made."""

    name = "mutant:miscounts-drops"
    wrapper = _MiscountsDrops


#: the push rules' mutants (R1-R9), each with the one rule it breaks
PUSH_RULE_MUTANTS: list[tuple[PushHarness, str]] = [
    (EagerHarness(), "R1"),
    (LosesOneHarness(), "R2"),
    (ReadsAheadHarness(), "R3"),
    (EndsEarlyHarness(), "R4"),
    (RaisesTwiceHarness(), "R5"),
    (CopiesErrorHarness(), "R5"),
    (ReleasesTwiceHarness(), "R6"),
    (ReleasesLateHarness(), "R6"),
    (PopsBeforeCheckpointHarness(), "R6"),
    (SaysYesWhenClosedHarness(), "R7"),
    (LeavesATaskHarness(), "R14"),
    (SleepsOnOverflowHarness(), "R8"),
    (IgnoresPauseHarness(), "R8"),
    (MiscountsDropsHarness(), "R9"),
]
MUTANTS.extend(PUSH_RULE_MUTANTS)


_END: Any = object()


def _next_or_end(source: testing.CallSource) -> Any:
    try:
        return next(source)
    except StopIteration:
        return _END


class _Refetching:
    """Runs each ``next()`` in a worker thread that a cancellation abandons."""

    def __init__(self, source: testing.CallSource) -> None:
        self._source = source
        self._closed = False

    def __aiter__(self) -> _Refetching:
        return self

    async def __anext__(self) -> int:
        if self._closed:
            raise StopAsyncIteration
        # the bug: a timeout abandons the call, and the next request starts another
        value = await anyio.to_thread.run_sync(_next_or_end, self._source, abandon_on_cancel=True)
        if value is _END:
            await self.aclose()
            raise StopAsyncIteration
        return int(value)

    async def __aenter__(self) -> _Refetching:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._source.close()


class RefetchingHarness(testing.CallHarness):
    """Breaks R21: a cancelled request abandons its call; the next one starts a second call."""

    name = "mutant:refetching"

    def open(self, source: testing.CallSource) -> AsyncIterator[int]:
        return _Refetching(source)


#: mutants of the R21 kind (a CallHarness) and the rule each breaks
CALL_MUTANTS: list[tuple[testing.CallHarness, str]] = [(RefetchingHarness(), "R21")]


# ------------------------------------------------- pull mutants (R10-R15)
#
# Each derives from channels.from_aiter's harness (every backend, every pull rule
# claimed) and breaks one rule: by wrapping the source it hands the adapter, or
# the ``async with`` the adapter returns (whose exit sees whether the consumer
# left cleanly or with an error).  Their leftovers (a source left open, a task
# left waiting) are cleaned up by ``settle()``, after the kit has reported.


def _spawn_detached(fn: Callable[[], Awaitable[None]]) -> None:
    """Start ``fn()`` in a task that no task group of the caller's owns (the bug of R14)."""

    async def run() -> None:
        try:
            await fn()
        except BaseException:  # a detached task has nobody to report to
            pass

    if sniffio.current_async_library() == "trio":
        trio.lowlevel.spawn_system_task(run)
    else:
        _DETACHED.add(task := asyncio.get_running_loop().create_task(run()))
        task.add_done_callback(_DETACHED.discard)


_DETACHED: set[asyncio.Task[None]] = set()


class _Source:
    """Wraps the source handed to the adapter; iterates it once (the mutants override a step)."""

    def __init__(self, source: AsyncIterable[int]) -> None:
        self.source = source
        self._it = source.__aiter__()
        self.ended = False  # the source ended by itself (its end or its error)
        self.error: BaseException | None = None  # the source's own error

    def __aiter__(self) -> _Source:
        return self

    async def __anext__(self) -> int:
        try:
            return await self._it.__anext__()
        except StopAsyncIteration:
            self.ended = True
            raise
        except Exception as exc:
            self.ended, self.error = True, exc
            raise

    async def aclose(self) -> None:
        await self.really_close()

    async def really_close(self) -> None:
        with anyio.CancelScope(shield=True):
            await self._it.aclose()  # type: ignore[attr-defined]


class _Exit:
    """Wraps the adapter's ``async with``; the mutants override what its exit does."""

    def __init__(self, inner: AbstractAsyncContextManager[Any], source: _Source) -> None:
        self.inner = inner
        self.source = source

    async def __aenter__(self) -> Any:
        return await self.inner.__aenter__()

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        return await self.inner.__aexit__(*exc_info)


class _PullMutant(FromAiterAnyioHarness):
    """``open(source)`` is ``exit_kind(from_aiter(source_kind(source)), ...)``.

    With ``buffer=0`` the pump pulls only while the consumer waits: when the
    consumer leaves between values, the source is suspended at a ``yield``, and
    only the adapter's ``aclose()`` of it can run its cleanup.
    """

    buffer = 0
    in_flight = 0
    source_kind: type[_Source] = _Source
    exit_kind: type[_Exit] = _Exit

    def __init__(self) -> None:
        self.left: list[_Source] = []  # sources left open, closed by settle()
        self.waiting: list[anyio.Event] = []  # what leaked tasks wait for

    def open_twice(self, source: AsyncIterable[int]) -> AbstractAsyncContextManager[Any]:
        return FromAiterAnyioHarness.open(self, source)  # R13: the adapter as it is

    def open(self, source: AsyncIterable[int]) -> AbstractAsyncContextManager[Any]:
        if not hasattr(source, "__aiter__"):
            return super().open(source)  # bad input: the adapter's own answer (R15)
        wrapped = self.source_kind(source)
        cm = self.exit_kind(super().open(wrapped), wrapped)
        cm.mutant = self  # type: ignore[attr-defined]
        return cm

    async def settle(self) -> None:
        """After the kit reported: end what the mutant left behind."""
        for event in self.waiting:
            event.set()
        for source in self.left:
            await source.really_close()
        for _ in range(5):
            await anyio.lowlevel.checkpoint()
        await anyio.wait_all_tasks_blocked()


class _ReadAhead(_Source):
    def __init__(self, source: AsyncIterable[int]) -> None:
        super().__init__(source)
        self._held: deque[int] = deque()
        self._error: BaseException | None = None

    async def __anext__(self) -> int:
        # the bug: pulls the source far ahead of what the adapter was asked for
        while not self.ended and len(self._held) < ReadsAheadHarness.in_flight + 2:
            try:
                self._held.append(await super().__anext__())
            except StopAsyncIteration:
                pass
            except Exception as exc:
                self._error = exc
        if self._held:
            return self._held.popleft()
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        raise StopAsyncIteration


class ReadsAheadHarness(_PullMutant):
    """Breaks R10: the source is pulled ahead of demand (a read-ahead the adapter adds)."""

    name = "mutant:reads-ahead"
    source_kind = _ReadAhead


class _KeptOpen(_Source):
    """Closed only when told to (``closing``): the adapter's aclose() may do nothing."""

    closing = False

    async def aclose(self) -> None:
        if self.closing:
            await self.really_close()


class _CleanExit(_Exit):
    """An exit whose clean case (the consumer left without an error) the mutants break."""

    source: _KeptOpen

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        if exc_info[0] is not None or self.source.ended:
            self.source.closing = True  # an error, a cancellation: the source is closed
            return await self.inner.__aexit__(*exc_info)
        await self.inner.__aexit__(*exc_info)
        await self.left_early()
        return None

    async def left_early(self) -> None:
        raise NotImplementedError


class _EarlyExitMutant(_PullMutant):
    """The source is closed only when the exit says so (the mutants break the clean exit)."""

    source_kind = _KeptOpen


class _LeavesOpen(_CleanExit):
    async def left_early(self) -> None:
        self.mutant.left.append(self.source)  # type: ignore[attr-defined]  # the bug


class LeavesOpenHarness(_EarlyExitMutant):
    """Breaks R11: a consumer that leaves early (cleanly) leaves the source open."""

    name = "mutant:leaves-open"
    exit_kind = _LeavesOpen


class _ClosesLate(_CleanExit):
    async def left_early(self) -> None:
        _spawn_detached(self.source.really_close)  # the bug: closed after the exit returned


class ClosesLateHarness(_EarlyExitMutant):
    """Breaks R11: a consumer that leaves early gets control back before the source is closed."""

    name = "mutant:closes-late"
    exit_kind = _ClosesLate


class _RaisesOnExit(_CleanExit):
    async def left_early(self) -> None:
        await self.source.really_close()
        # the bug: the pump's early exit (the receiver gone) comes out as an error
        raise anyio.BrokenResourceError("the receiving side left before the end of the source")


class RaisesOnExitHarness(_EarlyExitMutant):
    """Breaks R11: every early exit of the pump raises BrokenResourceError (issue 16's case)."""

    name = "mutant:raises-on-exit"
    exit_kind = _RaisesOnExit


class _SwallowsErrors(_Exit):
    async def __aexit__(self, *exc_info: Any) -> bool | None:
        await self.inner.__aexit__(*exc_info)
        # the bug: an error of the receiving side stops the stream, and is not reported
        error = exc_info[1]
        return isinstance(error, Exception) and error is not self.source.error


class SwallowsReceiverErrorHarness(_PullMutant):
    """Breaks R12: an error raised by the receiving side is swallowed."""

    name = "mutant:swallows-receiver-error"
    exit_kind = _SwallowsErrors


class _EndsOnError(_Source):
    async def __anext__(self) -> int:
        try:
            return await super().__anext__()
        except StopAsyncIteration:
            raise
        except Exception:
            raise StopAsyncIteration from None  # the bug: a source error ends the stream


class SwallowsSourceErrorHarness(_PullMutant):
    """Breaks R12: a source error becomes a clean end."""

    name = "mutant:swallows-source-error"
    source_kind = _EndsOnError


class _Once:
    """A re-iterable made one-shot: every ``__aiter__`` hands out the first iterator."""

    def __init__(self, source: AsyncIterable[int]) -> None:
        self._it = source.__aiter__()

    def __aiter__(self) -> AsyncIterator[int]:
        return self._it


class NotRestartedHarness(_PullMutant):
    """Breaks R13: a second subscription of a re-iterable does not start a fresh iteration."""

    name = "mutant:not-restarted"

    def open_twice(self, source: AsyncIterable[int]) -> AbstractAsyncContextManager[Any]:
        return channels.from_aiter(_Once(source), buffer=self.buffer)  # the bug


class _Fresh:
    """Hides a one-shot iterator behind an iterable, so the adapter cannot tell it is one."""

    def __init__(self, source: AsyncIterable[int]) -> None:
        self._source = source

    def __aiter__(self) -> AsyncIterator[int]:
        return self._source.__aiter__()


class NoClearErrorHarness(_PullMutant):
    """Breaks R13: a second subscription of a one-shot source silently gets nothing."""

    name = "mutant:no-clear-error"

    def open_twice(self, source: AsyncIterable[int]) -> AbstractAsyncContextManager[Any]:
        return channels.from_aiter(_Fresh(source), buffer=self.buffer)  # the bug


class _LeaksTask(_Exit):
    async def __aenter__(self) -> Any:
        done = anyio.Event()
        self.mutant.waiting.append(done)  # type: ignore[attr-defined]
        _spawn_detached(done.wait)  # the bug: a helper task the bridge never ends
        return await super().__aenter__()


class LeaksTaskHarness(_PullMutant):
    """Breaks R14: a task of the bridge outlives it."""

    name = "mutant:leaks-task"
    exit_kind = _LeaksTask


class _PullsLate(_Exit):
    async def __aexit__(self, *exc_info: Any) -> bool | None:
        try:
            return await super().__aexit__(*exc_info)
        finally:

            async def pull() -> None:
                await anyio.lowlevel.checkpoint()
                await self.source.source.__aiter__().__anext__()

            _spawn_detached(pull)  # the bug: a task that acts on the source after the exit


class PullsLateHarness(_PullMutant):
    """Breaks R14: a leftover task pulls the source after the bridge returned (then ends)."""

    name = "mutant:pulls-late"
    exit_kind = _PullsLate


class AcceptsBadInputHarness(_PullMutant):
    """Breaks R15: a source that is not an async iterable is taken as an empty one."""

    name = "mutant:accepts-bad-input"

    def open(self, source: AsyncIterable[int]) -> AbstractAsyncContextManager[Any]:
        if not hasattr(source, "__aiter__"):
            source = _Fresh(TestSource([]))  # the bug: no TypeError
        return super().open(source)


class _WaitsForever:
    async def __aenter__(self) -> Any:
        await anyio.Event().wait()  # the bug: waits for a source that never comes

    async def __aexit__(self, *exc_info: Any) -> None:
        pass


class HangsOnBadInputHarness(_PullMutant):
    """Breaks R15: a source that is not an async iterable makes the adapter hang."""

    name = "mutant:hangs-on-bad-input"

    def open(self, source: AsyncIterable[int]) -> AbstractAsyncContextManager[Any]:
        if not hasattr(source, "__aiter__"):
            return _WaitsForever()  # type: ignore[return-value]
        return super().open(source)


#: pull mutants and the one rule each breaks; each claims what from_aiter's harness does
PULL_MUTANTS: list[tuple[_PullMutant, str]] = [
    (ReadsAheadHarness(), "R10"),
    (LeavesOpenHarness(), "R11"),
    (ClosesLateHarness(), "R11"),
    (RaisesOnExitHarness(), "R11"),
    (SwallowsReceiverErrorHarness(), "R12"),
    (SwallowsSourceErrorHarness(), "R12"),
    (NotRestartedHarness(), "R13"),
    (NoClearErrorHarness(), "R13"),
    (LeaksTaskHarness(), "R14"),
    (PullsLateHarness(), "R14"),
    (AcceptsBadInputHarness(), "R15"),
    (HangsOnBadInputHarness(), "R15"),
]


# ------------------------------------- push mutants of the exit (R6) and of bad input (R15)


class _LeavesWorker(_Receiver):
    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        # the bug: leaves without waiting for the worker to close the source (the
        # iterator's own aclose() waits for that; its base class's does not)
        await bridges.BufferedIterator.aclose(self._inner)


class LeavesWorkerHarness(ToAiterFactoryHarness):
    """Breaks R6: leaving does not wait for the worker thread to close the blocking source."""

    name = "mutant:leaves-worker"

    def open(
        self, script: Script, probe: Probe, *, buffer: int | None, overflow: str
    ) -> AsyncIterator[int]:
        return _LeavesWorker(super().open(script, probe, buffer=buffer, overflow=overflow))


class LenientOverflowHarness(ChannelHarness):
    """Breaks R15: an unknown ``overflow=`` is taken as ``"block"`` instead of a ValueError."""

    name = "mutant:lenient-overflow"

    def open(
        self, script: Script, probe: Probe, *, buffer: int | None, overflow: str
    ) -> AsyncIterator[int]:
        if overflow not in {"block", "drop_oldest", "drop_newest", "error"}:
            overflow = "block"  # the bug
        return super().open(script, probe, buffer=buffer, overflow=overflow)


#: push mutants of R6 (the blocking_calls waiver's case) and R15, and the rule each breaks
EXIT_AND_INPUT_MUTANTS: list[tuple[PushHarness, str]] = [
    (LeavesWorkerHarness(), "R6"),
    (LenientOverflowHarness(), "R15"),
]
