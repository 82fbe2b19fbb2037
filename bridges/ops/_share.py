"""[`share`][bridges.ops.share]: multicast one source to many subscribers."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import TYPE_CHECKING, Generic, TypeVar

import anyio
import anyio.lowlevel

from .._buffer import FULL, GONE, TAKEN, Handoff, Overflow, Result, validate_buffer
from .._enter import ExcType, Tb, not_entered
from .._iterator import (
    DONE,
    NEW,
    NOTHING,
    RUNNING,
    BridgeIterator,
    BufferedIterator,
    log_cleanup_error,
)
from .._pump import INTERRUPTED, STOPPED, Ending, PushSink, drive
from ._base import require_aiterable

if TYPE_CHECKING:
    from anyio.abc import TaskGroup
    from typing_extensions import Self


T = TypeVar("T")


class _Members(PushSink[T]):
    """The members of one run as the pump's sink: each value goes to every member; a
    full one makes the pump wait (the slowest paces the source); with none left open
    the pump stops."""

    __slots__ = ("_full", "members")

    def __init__(self, members: list[Handoff[T]]) -> None:
        self.members = members
        self._full: list[Handoff[T]] = []

    def put_nowait(self, item: T) -> Result:
        full = self._full
        for h in tuple(self.members):
            if h.put_nowait(item) is FULL:
                full.append(h)
        if full:
            return FULL  # put() waits for them
        return self._taken()

    async def put(self, item: T) -> Result:
        full, self._full = self._full, []
        for h in full:
            await h.put(item)  # block: the slowest paces the source
        return self._taken()

    def _taken(self) -> Result:
        return TAKEN if any(h.open for h in self.members) else GONE  # nobody can take more


class _Run(Generic[T]):
    """One iteration of a shared source: its members and the pump that feeds them."""

    __slots__ = ("done", "ended", "it", "members", "scope", "started")

    def __init__(self) -> None:
        self.members: list[Handoff[T]] = []
        self.it: AsyncIterator[T] | None = None
        self.started = False
        self.ended = False
        self.scope: anyio.CancelScope | None = None
        self.done: anyio.Event | None = None


class _Subscriber(BufferedIterator[T]):
    """One subscriber of a [`Shared`][bridges.ops.Shared]: its own buffer, fed by the share's
    pump."""

    __slots__ = ("_run", "_shared")

    def __init__(self, handoff: Handoff[T], shared: Shared[T], run: _Run[T]) -> None:
        super().__init__(handoff, self._begin_run)
        self._shared = shared
        self._run = run

    def _begin_run(self, h: Handoff[T]) -> Callable[[], object]:
        self._shared._demand(self._run)
        return self._leave

    def _leave(self) -> None:
        self._shared._leave(self._run, self.handoff)

    async def aclose(self) -> None:
        """Leave: release this subscriber's buffer; the last one to leave closes the source.

        When this was the last subscriber of a running source, the source is
        closed before this returns.
        """
        await super().aclose()
        run = self._run
        done = run.done
        if not run.members and done is not None and not done.is_set():
            with anyio.CancelScope(shield=True):
                await done.wait()


class Shared(Generic[T]):
    """One source multicast to many subscribers; made by [`share`][bridges.ops.share].

    Use it as ``async with share(source) as shared:``; inside the block each
    ``aiter(shared)`` (each ``async for v in shared``) or
    [`subscribe`][bridges.ops.Shared.subscribe] is one subscriber.  See [`share`][bridges.ops.share]
    for the semantics.
    """

    __slots__ = (
        "__weakref__",
        "_buffer",
        "_entered",
        "_overflow",
        "_run",
        "_runs",
        "_source",
        "_started_once",
        "_state",
        "_tg",
    )

    def __init__(self, source: AsyncIterable[T], buffer: int | None, overflow: Overflow) -> None:
        self._source = source
        self._buffer = buffer
        self._overflow = overflow
        self._tg: TaskGroup | None = None
        self._state = NEW  # then RUNNING inside the block, DONE once it exited
        self._entered = False
        self._run: _Run[T] | None = None
        self._runs: list[_Run[T]] = []  # runs whose pump was started and is not done
        self._started_once = False

    def subscribe(
        self, *, buffer: int | object | None = NOTHING, overflow: Overflow | str | None = None
    ) -> BufferedIterator[T]:
        """A new subscriber, joined now, with its own buffer and overflow policy.

        It receives every value pulled from the source after this call (under
        ``block``; a drop policy drops for this subscriber alone and counts it in
        ``stats.dropped``).  Leaving it (``aclose()``, its ``async with``)
        releases its buffer; the last subscriber to leave closes the source.

        :param buffer: this subscriber's capacity (default: the share's)
        :param overflow: this subscriber's policy (default: the share's)
        :raises ValueError: a bad ``buffer`` / ``overflow``
        :raises RuntimeError: the share's ``async with`` block has exited
        """
        if self._state == DONE:
            raise RuntimeError(
                "this share() has been closed (its 'async with' block exited); "
                "subscribe inside the block"
            )
        cap = self._buffer if buffer is NOTHING else validate_buffer(buffer)
        policy = self._overflow if overflow is None else Overflow.parse(overflow)
        handoff: Handoff[T] = Handoff(cap, policy)
        run = self._run
        if run is None or run.ended:
            run = self._run = _Run()
        run.members.append(handoff)
        handoff.on_consumer_gone(functools.partial(self._leave, run, handoff))
        return _Subscriber(handoff, self, run)

    def __aiter__(self) -> BufferedIterator[T]:
        return self.subscribe()

    async def __aenter__(self) -> Self:
        if self._state != NEW:
            raise RuntimeError("a share() can be entered once")
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        self._state = RUNNING
        if isinstance(self._source, BridgeIterator):
            try:
                await self._source.__aenter__()
            except BaseException:
                self._tg = None
                await tg.__aexit__(None, None, None)
                raise
            self._entered = True
        return self

    async def __aexit__(self, exc_type: ExcType, exc: BaseException | None, tb: Tb) -> None:
        self._state = DONE
        pending = exc
        run = self._run
        self._run = None
        if run is not None and not run.started:
            run.ended = True
            for h in run.members:
                h.close()
        for r in self._runs:
            if r.scope is not None:
                r.scope.cancel()
        with anyio.CancelScope(shield=True):
            while self._runs:
                done = self._runs[0].done
                assert done is not None
                await done.wait()
        if self._entered:
            self._entered = False
            try:
                await self._source.__aexit__(exc_type, exc, tb)  # type: ignore[attr-defined]
            except BaseException as cleanup_exc:
                if pending is None:
                    pending = cleanup_exc
                else:
                    log_cleanup_error(cleanup_exc, "exiting the shared source")
        tg, self._tg = self._tg, None
        if tg is not None:
            await tg.__aexit__(None, None, None)
        if pending is not None and pending is not exc:
            raise pending

    # ------------------------------------------------------------ internals

    def _demand(self, run: _Run[T]) -> None:
        """A subscriber of ``run`` wants values: start its pump (once)."""
        if run.started or run.ended:
            return
        tg = self._tg
        if tg is None:
            raise not_entered(
                "share()",
                "async with bridges.ops.share(source) as shared: ... subscribe inside the block",
                "it reads its source in a helper task, which needs an owner",
            )
        it = self._source.__aiter__()
        if it is self._source and self._started_once:
            raise RuntimeError(
                "this share()'s source is a one-shot async iterator and its iteration is over "
                "(it ended, or every subscriber left); a new subscriber cannot restart it. "
                "Share a re-iterable (whose __aiter__ returns a fresh iterator), or keep one "
                "subscriber joined for as long as others may join"
            )
        self._started_once = True
        run.started = True
        run.it = it
        run.scope = anyio.CancelScope()
        run.done = anyio.Event()
        self._runs.append(run)
        tg.start_soon(self._pump, run)

    def _leave(self, run: _Run[T], handoff: Handoff[T]) -> None:
        try:
            run.members.remove(handoff)
        except ValueError:
            return
        if not run.members:
            # refcount zero: the source is closed (a new subscriber starts afresh)
            if not run.ended:
                run.ended = True
                if self._run is run:
                    self._run = None
            if run.scope is not None:
                run.scope.cancel()

    async def _pump(self, run: _Run[T]) -> None:
        it = run.it
        assert it is not None
        assert run.scope is not None
        assert run.done is not None
        ending = Ending(STOPPED)
        try:
            with run.scope:  # cancelled when the last member leaves
                ending = await drive(it, _Members(run.members), paced=False)
                if ending.how is INTERRUPTED and not isinstance(ending.error, Exception):
                    raise ending.error  # type: ignore[misc]
        finally:
            run.ended = True
            if self._run is run:
                self._run = None
            error = ending.error if isinstance(ending.error, Exception) else None
            if error is None:
                error = ending.cleanup_error
            elif ending.cleanup_error is not None:
                log_cleanup_error(ending.cleanup_error, "closing the shared source")
            for h in run.members:
                if error is None:
                    h.close()
                else:
                    h.fail(error)
            self._runs.remove(run)
            run.done.set()


def share(
    source: AsyncIterable[T], *, buffer: int | None = 64, overflow: Overflow | str = "block"
) -> Shared[T]:
    """Multicast one source to many subscribers.

    ``async with share(source) as shared:`` opens the task group that owns the
    helper task (the *pump*) reading the source.  Inside the block, each
    ``aiter(shared)`` - each ``async for v in shared`` - or
    ``shared.subscribe(buffer=..., overflow=...)`` is one subscriber, joined
    at that moment, with its own buffer of ``buffer`` values and its own
    ``overflow`` policy (these are the defaults).  Subscribe every consumer
    before starting them when each must see every value.

    The pump starts at the first value any subscriber asks for and pulls
    the source; each value pulled goes to every subscriber joined by then.
    Under ``block`` every such value reaches the subscriber: the pump waits
    for room in each ``block`` subscriber's buffer, so the slowest one paces
    the source (a subscriber that is not read at all holds it back once its
    buffer is full: leave the subscribers you stop reading).  ``drop_oldest``
    / ``drop_newest`` subscribers never hold the pump back: they drop for
    themselves alone and count it (``stats.dropped``);
    an ``error`` subscriber whose buffer overflows gets its buffered values,
    then [`bridges.BufferOverflowError`][bridges.BufferOverflowError], while the others go on.  With
    no ``block`` subscriber the source is read as fast as it yields.

    Leaving a subscriber (``aclose()``, its ``async with``) releases its
    buffer.  Reference counting: when the last subscriber leaves, the pump is
    cancelled and the source closed before that ``aclose()`` returns; a
    subscriber that joins later starts a fresh iteration of the source (a
    one-shot async iterator cannot be restarted: that subscriber gets a
    ``RuntimeError``).  The source ending ends every subscriber after its
    buffered values; a source error is raised, as itself, at every subscriber
    after its buffered values.  Leaving the ``async with`` block closes the
    source and ends the remaining subscribers.

    :param source: any async iterable
    :param buffer: each subscriber's capacity (an int >= 0, or None: unbounded)
    :param overflow: each subscriber's policy ([`bridges.Overflow`][bridges.Overflow])
    :raises TypeError: ``source`` is not an async iterable; a bad ``buffer`` type
    :raises ValueError: a bad ``buffer`` / ``overflow``
    """
    require_aiterable(source)
    Handoff(buffer, overflow)  # validates buffer and overflow together (R15)
    return Shared(source, validate_buffer(buffer), Overflow.parse(overflow))
