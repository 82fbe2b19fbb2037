"""Running an asyncio-only client from any backend: a helper asyncio loop in its own thread.

The broker spokes (``bridges.nats``, ``bridges.redis``) wrap clients that run
only on asyncio.  On asyncio they run on the caller's loop; under trio on a
helper asyncio loop in a thread of its own, and values, commands and results
cross over [`open_channel`][bridges.open_channel].  These are the pieces both
use: run a call there and wait for it here, start a task there, wait for one
to end, start and stop the helper loop; the consumer iterator both
spokes' ``to_aiter`` return (`HelperConsumer`),
over a pump of their own that runs on the client's loop; and `feed`, which
pulls a source on the caller's loop for a consumer on the client's loop,
with the room that consumer gives back as the pull's window.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import itertools
import threading
import types
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator, Iterator
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar, cast, final

import anyio
import sniffio
from anyio.lowlevel import checkpoint

from ._buffer import Stats
from ._channel import ChannelReceiver, ChannelSender, open_channel
from ._iterator import BridgeIterator

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = [
    "HelperConsumer",
    "Pump",
    "Room",
    "Values",
    "feed",
    "Receiver",
    "on_loop",
    "run_on",
    "spawn",
    "start_loop",
    "stop_loop",
    "wait_done",
]

R = TypeVar("R")
T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


def on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether the caller runs on ``loop`` (asyncio, that very loop)."""
    try:
        if sniffio.current_async_library() != "asyncio":
            return False
    except sniffio.AsyncLibraryNotFoundError:
        return False
    return asyncio.get_running_loop() is loop


async def run_on(loop: asyncio.AbstractEventLoop, fn: Callable[[], Awaitable[R]]) -> R:
    """Run ``fn()`` on ``loop`` (maybe another thread's) and wait for its result here.

    Cancellation here cancels it there and waits until it ended.
    """
    if on_loop(loop):
        return await fn()
    send, receive = open_channel[tuple[bool, Any]](1)

    async def run() -> None:
        with send:
            try:
                result = await fn()
            except BaseException as exc:
                send.send_nowait((False, exc))
                if not isinstance(exc, Exception):
                    raise
            else:
                send.send_nowait((True, result))

    future = spawn(loop, run())
    async with receive:
        try:
            ok, value = await receive.receive()
        except BaseException:
            future.cancel()
            with anyio.CancelScope(shield=True):
                try:
                    async for _ in receive:
                        pass
                except Exception:
                    # how it ended there (cancelled by us) is not news: ours goes on
                    pass
            raise
    if ok:
        return value  # type: ignore[no-any-return]
    raise value


def spawn(
    loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, None]
) -> concurrent.futures.Future[None]:
    """Run ``coro`` as a task on ``loop`` (any thread's), in a context of its own.

    Not in a copy of the caller's: a trio caller's context says "trio" to
    sniffio, and the task on the asyncio loop must not believe it.
    """
    return contextvars.Context().run(asyncio.run_coroutine_threadsafe, coro, loop)


async def wait_done(loop: asyncio.AbstractEventLoop, future: Any, grace: float = 5.0) -> None:
    """Wait, shielded, until ``future`` (a concurrent future of a coroutine on ``loop``) ended.

    After ``grace`` seconds it is cancelled (a close stuck on a dead connection).
    """
    send, receive = open_channel[None](1)

    def done(_: object) -> None:
        send.close()

    future.add_done_callback(done)
    with anyio.CancelScope(shield=True):
        with anyio.move_on_after(grace):
            async with receive:
                async for _ in receive:
                    pass
            return
        future.cancel()


def start_loop(name: str) -> tuple[asyncio.AbstractEventLoop, threading.Thread]:
    """A new asyncio loop running forever in a daemon thread called ``name``."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name=name, daemon=True)
    thread.start()
    return loop, thread


async def stop_loop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    """Stop a loop from ``start_loop``, wait (shielded) until its thread ended, close it."""
    loop.call_soon_threadsafe(loop.stop)
    with anyio.CancelScope(shield=True):
        await anyio.to_thread.run_sync(thread.join)
    loop.close()


@final
class Room:
    """How a consumer that `feed` runs on the client's loop gives the puller room back.

    Its calls come from the client's loop (its thread); the puller, on the
    caller's loop, pulls one value from the source for each unit of room.
    """

    __slots__ = ("_sender",)

    def __init__(self, sender: ChannelSender[int]) -> None:
        self._sender = sender

    def give(self, n: int) -> None:
        """``n`` more values may be pulled (``n`` values were done with); nothing if the
        puller has stopped."""
        try:
            self._sender.send_nowait(n)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass

    def close(self) -> None:
        """Pull no more: the puller stops before its next pull and ends the values
        (idempotent; the consumer's ending closes it too)."""
        self._sender.close()


@types.coroutine
def _awaiting(aw: Awaitable[R], before_waiting: Callable[[], object]) -> Generator[Any, Any, R]:
    """``await aw``, calling ``before_waiting()`` once if it is about to suspend the task
    (just before it first does), and not at all if it completes without waiting.

    The rest is ``yield from``, written out (PEP 380): after the first
    suspension, what the task is resumed with, or the exception thrown into it
    (a cancellation), goes on to ``aw``.
    """
    it: Any = aw.__await__()
    try:
        request = it.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    before_waiting()
    while True:
        try:
            reply = yield request
        except GeneratorExit:
            close = getattr(it, "close", None)
            if close is not None:
                close()
            raise
        except BaseException as exc:
            throw = getattr(it, "throw", None)
            if throw is None:
                raise
            try:
                request = throw(exc)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
        else:
            try:
                request = it.send(reply)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]


@final
class _Run(Generic[T]):
    """The values `feed`'s puller took and has not handed over yet."""

    __slots__ = ("gone", "send", "values")

    def __init__(self, send: ChannelSender[list[T]]) -> None:
        self.send = send
        self.values: list[T] = []
        #: the consumer left (its end of the values is closed)
        self.gone = False

    def hand_over(self) -> None:
        values = self.values
        if values:
            self.values = []
            try:
                self.send.send_nowait(values)  # never full: a run holds one value at least
            except anyio.BrokenResourceError:
                self.gone = True


async def _pull(
    source: AsyncIterator[T],
    send: ChannelSender[list[T]],
    given: ChannelReceiver[int],
    window: int,
) -> None:
    """`feed`'s puller: a value from ``source`` for each unit of room, handed over in runs.

    A run is what the source gave without waiting: it is handed over when the
    source is about to wait, when the room is spent, and at the end.  One
    wake-up of the client's loop (and one write of its client) per run rather
    than per value, and no value is held back while the source waits.
    """
    run = _Run(send)
    room = window
    returned = given.handoff
    with send:  # left by the source's error: the consumer gets that error, after the values
        try:
            while not run.gone:
                # room given back is taken as it comes, and a closed room is seen before
                # the next pull, not after the room in hand is spent
                ok, more = returned.get_nowait()
                if ok:
                    room += cast(int, more)
                elif not returned.open:
                    return
                elif not room:
                    run.hand_over()
                    try:
                        room = await given.receive()
                    except anyio.EndOfStream:
                        return
                try:
                    value = await _awaiting(source.__anext__(), run.hand_over)
                except StopAsyncIteration:
                    return
                room -= 1
                run.values.append(value)
        finally:
            run.hand_over()  # what was pulled before the end, an error, a cancellation


@final
@final
class Values(Generic[T]):
    """The values of the runs `feed`'s puller hands over: one by one, or what is left
    of the run in hand (the values the source gave together, without waiting)."""

    __slots__ = ("_run", "_runs")

    def __init__(self, runs: ChannelReceiver[list[T]]) -> None:
        self._runs = runs
        self._run: Iterator[T] = iter(())

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> T:
        for value in self._run:
            return value
        run = iter(await self._runs.__anext__())  # the end, or the source's error
        self._run = run
        return next(run)  # a run is never empty

    def rest_of_run(self, most: int) -> list[T]:
        """Up to ``most`` more values of the run in hand, without waiting (none at its end)."""
        return list(itertools.islice(self._run, most))


async def feed(
    loop: asyncio.AbstractEventLoop,
    source: AsyncIterator[T],
    window: int,
    consume: Callable[[Values[T], Room], Coroutine[Any, Any, R]],
) -> R:
    """Pull ``source`` here, run ``consume(values, room)`` on ``loop``, and return its result.

    The values cross over [`open_channel`][bridges.open_channel] in runs: what
    the source gives without waiting goes over together, when it is about to
    wait or the room is spent (one wake-up of ``loop`` per run, and nothing
    held back while the source waits).  ``consume`` gets them as `Values`: one
    by one, or the rest of a run at once.  The
    source is pulled only when there is room: ``window`` units at
    first, then what ``consume`` gives back with ``room.give(n)``, so that at
    most ``window`` values are taken from the source and not yet given back.
    ``room.close()``, or ``consume`` ending, stops the pulling; the values end
    when the source does, or fail with the source's error.

    Raises the source's error (as itself, once ``consume`` ended), else
    ``consume``'s; a cancellation here cancels ``consume`` there and waits
    until it ended.  The source is not closed here: the caller closes it.
    """
    send, receive = open_channel[list[T]](window)
    give, given = open_channel[int](None)
    outcome: list[tuple[bool, Any]] = []

    async def there() -> R:
        with give:  # closed on the way out: a puller waiting for room stops
            async with receive:
                return await consume(Values(receive), Room(give))

    async def run() -> None:
        try:
            outcome.append((True, await run_on(loop, there)))
        except Exception as exc:
            outcome.append((False, exc))

    source_error: Exception | None = None
    try:
        with given:
            async with anyio.create_task_group() as tg:
                tg.start_soon(run)
                try:
                    await _pull(source, send, given, window)
                except Exception as exc:
                    source_error = exc
    finally:
        receive.close()  # in case ``there`` was cancelled before it started
    if source_error is not None:
        raise source_error
    ok, value = outcome[0]
    if ok:
        return value  # type: ignore[no-any-return]
    raise value


class Receiver(Protocol[T_co]):
    """Where a `HelperConsumer` takes its items: the receiver of an
    [`open_channel`][bridges.open_channel], or a pump's own end over one (such as
    one that hands out one by one the items that crossed over in a batch)."""

    async def receive(self) -> T_co:
        """The next item, waiting for it; a cancel point (nothing is taken when cancelled).

        :raises anyio.EndOfStream: the pump ended and every item was taken
        """

    async def aclose(self) -> None:
        """Stop receiving: what the pump sends later is not taken."""


class Pump(Protocol[T]):
    """What a broker spoke's read loop offers its `HelperConsumer`.

    It runs on ``loop`` (``run()``), sends what it reads into the channel
    ``open()`` made, and takes the consumer's word (a take, an ack) over
    ``commands``, whose closing tells it the consumer left.
    """

    #: "on_next", "manual" or "on_receive"
    ack: str
    #: the most items it reads ahead (the demand's limit)
    buffer: int
    #: the most items held at once so far
    high_water: int
    #: the consumer's commands: closed when the consumer leaves
    commands: ChannelSender[Any]

    def open(self) -> Receiver[T]:
        """Make its channels (called once, when the iterator starts); the items' receiver."""

    def run(self) -> Coroutine[Any, Any, None]:
        """The read loop, to run on the client's loop until the commands close."""

    def holding(self) -> int:
        """Items read and not let go of: waiting to be taken, or taken and not yet acked
        (with ack="on_next")."""

    def offer(self, verb: str, item: T) -> None:
        """Tell the read loop (``"take"``, ``"ack"``); nothing if it ended already."""

    def settle(self, item: T) -> None:
        """Acknowledge ``item`` unless it was already (``offer("ack", item)`` once)."""


class HelperConsumer(BridgeIterator[T]):
    """The iterator of a broker spoke's ``to_aiter``: it starts the pump on the
    client's loop at the first ``__anext__`` (or ``async with``), takes what it
    sends, acks as ``pump.ack`` says, and on close waits until the pump let go.

    Subclasses (one per spoke, for the docs) name themselves in ``what``.
    """

    __slots__ = ("_closed", "_delivered", "_last", "_loop", "_pump", "_receiver", "_run")

    #: how the dropped-unclosed warning names the spoke's function
    what: ClassVar[str] = "to_aiter()"
    #: the longest wait for the pump to end on close (a dead connection)
    close_grace: ClassVar[float] = 5.0

    def __init__(self, pump: Pump[T], loop: asyncio.AbstractEventLoop) -> None:
        self._pump = pump
        self._loop = loop
        self._receiver: Receiver[T] | None = None
        self._last: T | None = None
        self._closed = False
        self._delivered = 0
        self._run: concurrent.futures.Future[None] | None = None

    def _stats(self) -> Stats:
        pump = self._pump
        run = self._run
        ended = self._closed or (run is not None and run.done())
        return Stats(
            buffered=0 if self._closed else pump.holding(),
            high_water=pump.high_water,
            delivered=self._delivered,
            dropped=0,
            capacity=pump.buffer,
            open_senders=0 if ended else 1,
            open_receivers=0 if self._closed else 1,
        )

    def _start(self) -> Receiver[T]:
        receiver = self._receiver = self._pump.open()
        self._run = spawn(self._loop, self._pump.run())
        return receiver

    async def __aenter__(self) -> Self:
        if self._receiver is None and not self._closed:
            self._start()
        try:
            await checkpoint()
        except BaseException:  # cancelled on the way in: no __aexit__ will close it
            await self.aclose()
            raise
        return self

    async def __anext__(self) -> T:
        if self._closed:
            raise StopAsyncIteration
        receiver = self._receiver
        if receiver is None:
            receiver = self._start()
        pump = self._pump
        last = self._last
        if last is not None:
            self._last = None
            pump.settle(last)
        try:
            item = await receiver.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None
        pump.offer("take", item)
        ack = pump.ack
        if ack == "on_next":
            self._last = item
        elif ack == "on_receive":
            pump.settle(item)
        self._delivered += 1
        return item

    async def aclose(self) -> None:
        """Stop consuming; wait (shielded) until the pump on the client's loop ended."""
        if self._closed:
            return
        self._closed = True
        self._last = None
        receiver = self._receiver
        if receiver is None:
            return  # never started: nothing was asked of the server
        self._pump.commands.close()
        await receiver.aclose()
        await wait_done(self._loop, self._run, self.close_grace)

    def __del__(self) -> None:
        if self._receiver is not None and not self._closed:
            warnings.warn(
                f"a bridges.{self.what} iterator was dropped unclosed: use 'async with'",
                ResourceWarning,
                stacklevel=2,
            )
            self._pump.commands.close()
