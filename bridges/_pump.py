"""The pump: one driver that pulls an async source into a sink, and its edges.

Every loop that pulls an async source into something (``channels.from_aiter``
and ``pump``, ``rx.from_aiter``, ``threads.from_aiter``,
``callbacks.from_aiter``, ``streams``' writers and feeders) is `drive`.  It
pulls a value only when the sink can take it (R10), hands it over, lets
other tasks run now and then, closes the source on every way out (shielded,
R11), and says how the run ended in an `Ending`:

* ``FINISHED``: the source ended;
* ``FAILED``: the source raised ``error``;
* ``STOPPED``: the sink takes no more (the consumer left, the observer was
  disposed), or the source raised while a cancellation of its task was
  unwinding it (then that is a ``cleanup_error``: the block around the pump
  is exiting); a source that raises on its own in a cancelled task has
  ``FAILED``;
* ``INTERRUPTED``: something else ended the run, a cancellation or an error
  the sink raised: ``error`` is it, and the caller raises it (or maps it).

``cleanup_error`` is what closing the source raised (an ``Exception``).
Each spoke maps the ending onto its own world (``close``/``fail``,
``on_completed``/``on_error``, ``writer.close()``); none writes its own loop.

A sink speaks the hand-off's verbs (a `bridges._buffer.Handoff` is one):
``has_room``/``wait_room``/``is_open`` pace the pull, ``put_nowait`` hands a
value over and says what it did with a `Result` (``TAKEN``; ``FULL``: finish
with ``await put(value)``; a refused result: stop).

Two smaller edges are here too, for the loops that are not a pump (a
pipeline helper pulling on demand): `close_source` (shielded; another
exception on its way wins and a cleanup error is logged) and
`cancelled_now` (is this task being cancelled?), the one way to tell "the
source failed" from "the block around me is exiting".
"""

from __future__ import annotations

import asyncio
import enum
import math
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import anyio
from anyio.lowlevel import checkpoint

from ._buffer import FULL, Result
from ._iterator import CHECKPOINT_EVERY, enter_foreign_context, log_cleanup_error

if sys.version_info >= (3, 11):
    import builtins

    _BaseExceptionGroup = builtins.BaseExceptionGroup
else:  # pragma: no cover - anyio brings the backport
    from exceptiongroup import (  # type: ignore[import-not-found, unused-ignore]
        BaseExceptionGroup as _BaseExceptionGroup,
    )

T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)

__all__ = [
    "FAILED",
    "FINISHED",
    "INTERRUPTED",
    "STOPPED",
    "Ending",
    "How",
    "PushSink",
    "Sink",
    "aclose_shielded",
    "cancelled_now",
    "close_source",
    "drive",
    "is_cancellation",
]


class Sink(Protocol[T_contra]):
    """What `drive` pumps into: the producer half of the hand-off's interface.

    A `bridges._buffer.Handoff` is a sink as it is; a spoke whose world is
    something else (an observer, a writer) wraps it in a small class with
    these five methods.
    """

    def has_room(self) -> bool:
        """True when a value can be taken now (a paced pump pulls only then, R10)."""

    async def wait_room(self) -> None:
        """Wait until `has_room` (or the sink closed: `is_open` says so)."""

    def is_open(self) -> bool:
        """False once the sink takes no more values: a paced pump stops before pulling."""

    def put_nowait(self, item: T_contra) -> Result:
        """Hand ``item`` over: ``TAKEN``; ``FULL`` when it needs `put` to finish; or a
        refused result (the sink takes no more: the pump stops)."""

    async def put(self, item: T_contra) -> Result:
        """Hand ``item`` over, waiting as long as it takes: ``TAKEN`` or a refused result."""


class PushSink(Generic[T_contra]):
    """A base for sinks that are not paced by room: `drive` them with ``paced=False``.

    They take a value when it is handed over (``put_nowait``), or make the pump
    wait in ``put``; a closed sink says so by raising or by a refused result.
    """

    __slots__ = ()

    def has_room(self) -> bool:
        """Always: the pull waits for the previous value to be taken, not for room."""
        return True

    async def wait_room(self) -> None:
        """Never waits (see `has_room`)."""

    def is_open(self) -> bool:
        """Always: a push sink stops the pump through its results or its errors."""
        return True


class How(enum.Enum):
    """How a run of `drive` ended (see the module's docs)."""

    #: The source ended (``StopAsyncIteration``).
    FINISHED = "finished"
    #: The source raised ``Ending.error``.
    FAILED = "failed"
    #: The sink took no more, or the source raised while being cancelled (a cleanup error).
    STOPPED = "stopped"
    #: A cancellation or the sink's own error (``Ending.error``) ended the run.
    INTERRUPTED = "interrupted"


FINISHED = How.FINISHED
FAILED = How.FAILED
STOPPED = How.STOPPED
INTERRUPTED = How.INTERRUPTED


@dataclass
class Ending:
    """How a run of `drive` ended; the source is closed by then."""

    #: which way it ended
    how: How
    #: ``FAILED``: the source's error; ``INTERRUPTED``: the cancellation or the sink's error
    error: BaseException | None = None
    #: what closing the source raised (or, ``STOPPED``, what it raised while being
    #: cancelled); when both happen the first is kept and the second is logged
    cleanup_error: Exception | None = None

    def add_cleanup_error(self, exc: Exception) -> None:
        """Keep ``exc`` as the cleanup error, or log it when there is one already."""
        if self.cleanup_error is None:
            self.cleanup_error = exc
        else:
            log_cleanup_error(exc, "closing the source")

    def raise_error(self, what: str = "closing the source") -> None:
        """For a caller with nowhere else to send an error: raise the source's error
        (``FAILED``) or what interrupted the run, its cleanup error logged; else the
        cleanup error, if any."""
        if self.how is FAILED:
            self.how = INTERRUPTED
        self.raise_interruption(what)
        if self.cleanup_error is not None:
            raise self.cleanup_error

    def raise_interruption(self, what: str = "closing the source") -> None:
        """``INTERRUPTED``: raise what interrupted the run, its cleanup error logged."""
        if self.how is INTERRUPTED:
            assert self.error is not None
            if self.cleanup_error is not None and not is_cancellation(self.cleanup_error):
                log_cleanup_error(self.cleanup_error, what)
            raise self.error


async def drive(
    source: AsyncIterator[T],
    sink: Sink[T],
    *,
    paced: bool = True,
    push: Callable[[T], object] | None = None,
) -> Ending:
    """Pull every value of ``source`` into ``sink``; close the source; say how it ended.

    With ``paced`` the next value is pulled only when ``sink.has_room()``
    (after ``await sink.wait_room()``), and not at all once
    ``sink.is_open()`` is False (R10).  With ``push`` (a callback that takes
    every value at once, an observer's ``on_next``), each value goes to
    ``push(value)`` instead of ``sink.put_nowait``, and ``sink.is_open()`` is
    asked before each pull and after it (a consumer may leave from inside
    the callback, or from another thread while the source is pulled).
    A source that never waits still lets
    other tasks run: a checkpoint every few dozen values that did not wait.

    A source that must be entered first (aiostream's streamers) is entered.
    The source is stepped and closed in one cancel scope, which is shielded
    for the close: a source that keeps a task group or a cancel scope open
    across ``yield`` nests it there and is closed in the same scope stack,
    and a cleanup that awaits runs to its end while the pump is cancelled
    (R11).  A ``GeneratorExit`` that closing threw into the source's own task
    group is no error.  A cleanup ``BaseException`` that is not an
    ``Exception`` (``KeyboardInterrupt``) is raised.

    Nothing that happens inside the run is raised: a cancellation or the
    sink's error comes back as ``INTERRUPTED`` (see `Ending`), for the
    caller to raise (`Ending.raise_interruption`) once it has mapped the rest.
    """
    ending = Ending(STOPPED)
    with anyio.CancelScope() as guard:
        try:
            await _pull(source, sink, paced, push, ending)
        except BaseException as exc:
            ending.how, ending.error = INTERRUPTED, exc
        finally:
            guard.shield = True
            await _close_in_place(source, ending)
            guard.shield = False
    return ending


async def _pull(
    source: AsyncIterator[T],
    sink: Sink[T],
    paced: bool,
    push: Callable[[T], object] | None,
    ending: Ending,
) -> None:
    try:
        await enter_foreign_context(source)  # aiostream's streamers
    except Exception as exc:
        _source_ended(exc, ending)
        return
    anext = source.__anext__
    if push is not None:
        await _push_each(anext, push, sink.is_open, ending)
        return
    put_nowait = sink.put_nowait
    has_room = sink.has_room
    is_open = sink.is_open
    tick = CHECKPOINT_EVERY
    while True:
        if paced:
            if not has_room():
                await sink.wait_room()  # R10: pull only when the sink can take it
                tick = CHECKPOINT_EVERY
            if not is_open():
                return  # STOPPED
        try:
            value = await anext()
        except Exception as exc:  # StopAsyncIteration included
            _source_ended(exc, ending)
            return
        result = put_nowait(value)
        if result:  # TAKEN is the only false member: this is the rare path
            if result is FULL:
                result = await sink.put(value)
                tick = CHECKPOINT_EVERY + 1  # it waited
            if result.refused:
                return  # STOPPED
        tick -= 1
        if not tick:
            # a source that never waits must still let other tasks run
            tick = CHECKPOINT_EVERY
            await checkpoint()


async def _push_each(
    anext: Callable[[], Awaitable[T]],
    push: Callable[[T], object],
    is_open: Callable[[], bool],
    ending: Ending,
) -> None:
    """`_pull` for a callback that takes every value at once (its own loop: one
    branch less per value, measurable on the hot path of ``rx.from_aiter``)."""
    tick = CHECKPOINT_EVERY
    while is_open():  # not after the callback stopped it
        try:
            value = await anext()
        except Exception as exc:  # StopAsyncIteration included
            _source_ended(exc, ending)
            return
        if not is_open():
            return  # stopped while the source was pulled: the value is not delivered
        push(value)
        tick -= 1
        if not tick:
            tick = CHECKPOINT_EVERY
            await checkpoint()


def _source_ended(exc: Exception, ending: Ending) -> None:
    """The source's step raised ``exc``: its end, its error, or its cleanup failing."""
    if isinstance(exc, StopAsyncIteration):
        ending.how = FINISHED
    elif cancelled_now() and _unwinding_a_cancellation(exc):
        # raised while the cancellation unwound the source: its cleanup failing
        ending.cleanup_error = exc
    else:
        ending.how, ending.error = FAILED, exc


def _unwinding_a_cancellation(exc: BaseException) -> bool:
    """True when ``exc`` was raised while a cancellation was being handled (a
    ``finally`` or ``except`` the cancellation ran); a source that fails before it
    awaits, in a task already cancelled, raises its own error, on its own."""
    seen: set[int] = set()
    context = exc.__context__
    while context is not None and id(context) not in seen:
        if is_cancellation(context):
            return True
        seen.add(id(context))
        context = context.__context__
    return False


async def _close_in_place(source: object, ending: Ending) -> None:
    aclose = getattr(source, "aclose", None)
    if aclose is None:
        return
    try:
        await aclose()
    except BaseException as exc:
        error: BaseException | None = exc
        if isinstance(exc, _BaseExceptionGroup):
            # a task group the source kept open across yield adds the GeneratorExit
            # that aclose() threw in to its group: that one is no error
            error = exc.split(GeneratorExit)[1]
        if error is None:
            return
        if not isinstance(error, Exception):
            raise
        ending.add_cleanup_error(error)


def cancelled_now() -> bool:
    """True when the calling task is being cancelled (its effective deadline is -inf)."""
    return anyio.current_effective_deadline() == -math.inf


def is_cancellation(exc: BaseException) -> bool:
    """True for the running library's cancellation (and asyncio's, wherever it comes from)."""
    return isinstance(exc, (asyncio.CancelledError, anyio.get_cancelled_exc_class()))


async def aclose_shielded(source: object) -> None:
    """``await source.aclose()`` (if it has one), shielded from cancellation (R11).

    A source is often closed while its pump is being cancelled (dispose, a task
    group ending, a receiver that left); its cleanup must still run to the end.
    """
    aclose = getattr(source, "aclose", None)
    if aclose is not None:
        with anyio.CancelScope(shield=True):
            await aclose()


async def close_source(source: object, pending: BaseException | None) -> None:
    """Close ``source`` (shielded); with no ``pending`` exception its cleanup error is raised.

    When ``pending`` is on its way, it wins: a cleanup error (other than a
    cancellation, or ``pending`` itself) is logged to the ``"bridges"`` logger.
    """
    if pending is None:
        await aclose_shielded(source)
        return
    try:
        await aclose_shielded(source)
    except BaseException as cleanup_exc:
        if cleanup_exc is not pending and not is_cancellation(cleanup_exc):
            log_cleanup_error(cleanup_exc, "closing the source")
