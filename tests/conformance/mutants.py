"""Deliberately broken adapters: each breaks exactly one rule of the adapter it derives from.

``test_mutants.py`` runs every rule they claim through the kit and expects
exactly the broken one to fail: proof that each check can fail.  They live
outside ``harnesses/``, so the registry (and the rules table) never sees them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from bridges import ChannelSender, testing
from bridges.testing import HookedSource, Probe, PushHarness, Script

from .harnesses.callbacks import ToAiterPausedHarness
from .harnesses.core import ChannelHarness

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


class _Receiver:
    """Wraps a ChannelReceiver; everything but ``__anext__`` goes to it."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __aiter__(self) -> _Receiver:
        return self

    async def __anext__(self) -> int:
        return int(await self._inner.__anext__())

    async def __aenter__(self) -> _Receiver:
        await self._inner.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self._inner.__aexit__(*exc_info)

    async def aclose(self) -> None:
        await self._inner.aclose()

    def __getattr__(self, name: str) -> Any:  # stats, receive_nowait, ...
        return getattr(self._inner, name)


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


class TakesFirstHarness(ChannelHarness):
    """Breaks R19: ``__anext__`` takes a ready value before it checks for cancellation."""

    name = "mutant:takes-first"

    def open(
        self, script: Script, probe: Probe, *, buffer: int | None, overflow: str
    ) -> AsyncIterator[int]:
        return _TakesFirst(super().open(script, probe, buffer=buffer, overflow=overflow))

    def open_producer(self, *, buffer: int) -> tuple[Any, AsyncIterator[int]]:
        send, receive = super().open_producer(buffer=buffer)
        return send, _TakesFirst(receive)


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


class LifoHarness(ChannelHarness):
    """Breaks R20: waiting consumers are served last come, first served."""

    name = "mutant:lifo"

    def open(
        self, script: Script, probe: Probe, *, buffer: int | None, overflow: str
    ) -> AsyncIterator[int]:
        return _Lifo(super().open(script, probe, buffer=buffer, overflow=overflow))

    def open_producer(self, *, buffer: int) -> tuple[Any, AsyncIterator[int]]:
        send, receive = super().open_producer(buffer=buffer)
        return send, _Lifo(receive)


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
