"""One call at a time per source (R21): a user's sync call in a worker thread.

A sync call of the user's (a blocking ``next()``, a sync ``fetch_page``)
cannot be interrupted once it runs in a worker thread.  So a timeout or a
cancellation around the consumer must neither start a second call on the
same source nor throw the running call's result away, and the source may be
closed (by the worker, or by the user after the exit) only once that call
has returned.  Two pieces keep that:

* `WorkerCall` runs one call in a worker thread and keeps its outcome
  until somebody takes it.  A cancelled wait leaves the call running; the
  next wait takes its outcome.
* `wait_returned` is what an early exit does: wait, shielded from
  cancellation, for the call in progress to return, at most ``grace``
  seconds; a call that outlasts that is left behind, with a
  `RuntimeWarning` that names the source.
"""

from __future__ import annotations

import reprlib
import warnings
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import anyio

from ._buffer import Handoff

R = TypeVar("R")

#: The default ``grace=``: how long an early exit waits for a call of the
#: source in progress to return before it leaves it behind (seconds).
GRACE = 1.0

_repr = reprlib.Repr()
_repr.maxother = 80
_repr.maxstring = 80


def describe(source: object) -> str:
    """A short repr of a user's source, for messages."""
    return _repr.repr(source)


def validate_grace(grace: object) -> float | None:
    """Check a ``grace=`` argument: seconds >= 0 as an int or float, or None (no limit).

    :raises TypeError: not a number or None
    :raises ValueError: negative or nan
    """
    if grace is None:
        return None
    if isinstance(grace, bool) or not isinstance(grace, (int, float)):
        raise TypeError(
            "grace must be a number of seconds (how long leaving waits for a call of the "
            f"source to return), or None to wait as long as it takes, not {type(grace).__name__}"
        )
    if not grace >= 0:
        raise ValueError(f"grace must be a number of seconds >= 0, or None, not {grace!r}")
    if grace == float("inf"):
        return None
    return float(grace)


async def wait_returned(done: Handoff[Any], grace: float | None) -> bool:
    """Wait until ``done`` is closed, at most ``grace`` seconds, shielded from cancellation.

    :return: True if it was closed (the call returned), False if ``grace`` ran out
    """
    with anyio.CancelScope(shield=True), anyio.move_on_after(grace):
        try:
            await done.get()
        except StopAsyncIteration:
            pass
        return True
    return False


def warn_left_behind(what: str, source: object, grace: float | None, after: str) -> None:
    """Say that an exit left a call of ``source`` running after ``grace`` seconds."""
    warnings.warn(
        f"{what}: a call of the source {describe(source)} was still running {grace:g} s "
        f"after its consumer left; the exit did not wait any longer, and {after}. "
        "Give grace= more seconds, or let the source see that its consumer left",
        RuntimeWarning,
        stacklevel=3,
    )


class WorkerCall(Generic[R]):
    """One call of a user's sync function in a worker thread; its outcome kept until taken.

    `outcome` starts the call (in anyio's worker threads) and waits for
    it; if that wait is cancelled the call goes on, and the next
    `outcome` waits for the same call and returns (or raises) what it
    returned (or raised).  The call runs once at most: a worker job that a
    cancellation left queued, and the one started again in its place, race
    for one token, and the loser returns without calling.
    """

    __slots__ = ("_args", "_error", "_fn", "_result", "_token", "done")

    def __init__(self, fn: Callable[..., R], *args: Any) -> None:
        self._fn = fn
        self._args = args
        self._token: deque[None] = deque([None])  # taken by whoever makes the call
        self._result: R | None = None
        self._error: BaseException | None = None
        #: closed by the worker once the call has returned (or raised)
        self.done: Handoff[None] = Handoff(0)

    @property
    def running(self) -> bool:
        """True from the moment a worker took the call until it has returned."""
        return not self._token and self.done.open

    def forgo(self) -> bool:
        """Make sure the call never starts; False if it has started already (or returned)."""
        try:
            self._token.pop()
        except IndexError:
            return False
        self.done.close()
        return True

    def _run(self) -> None:
        try:
            self._token.pop()
        except IndexError:
            return  # made (or forgone) already: never a second call
        try:
            self._result = self._fn(*self._args)
        except BaseException as exc:
            self._error = exc
        finally:
            self.done.close()

    async def outcome(self) -> R:
        """Start the call unless it has started, wait for it, and return (or raise) its outcome.

        Cancellation while waiting leaves the call running; call this again
        to take its outcome.
        """
        if self._token:
            # abandoned on cancellation: the call runs on and keeps its outcome here
            await anyio.to_thread.run_sync(self._run, abandon_on_cancel=True)
        try:
            await self.done.get()  # at once if it has returned
        except StopAsyncIteration:
            pass
        error = self._error
        if error is not None:
            try:
                raise error
            finally:
                del error
        return self._result  # type: ignore[return-value]
