"""What the harness modules share: noting the error a receiving side got, and
taking an error out of a harness's own task group."""

from __future__ import annotations

import sys
import threading
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from typing import Any

import anyio

from bridges.testing import ConsumerError, Outcome, Probe, Script

if sys.version_info < (3, 11):  # pragma: no cover - anyio brings the backport
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found, unused-ignore]


def gated_values(
    script: Script, probe: Probe, gone: threading.Event, poll: float
) -> Generator[int, None, bool]:
    """``script``'s values, each reported with ``probe.hand_over()`` once the next is asked for.

    At the script's gate it blocks (a real blocking call) until the gate
    opens, checking every ``poll`` seconds whether ``gone`` is set: then it
    stops early.  Returns whether it gave every value.
    """
    for i, v in enumerate(script.values):
        if script.gate is not None and i == script.gate:
            while not probe.open_gate.wait(poll):
                if gone.is_set():
                    return False
        yield v
        probe.hand_over()
    return True


def note_error(outcome: Outcome, exc: BaseException) -> None:
    """Note ``exc`` as an error the receiving side was handed (each one counts: R5, R12)."""
    outcome.error = exc
    outcome.errors_seen += 1


@contextmanager
def errors_noted(outcome: Outcome) -> Iterator[None]:
    """Record an error that leaves the block as the receiving side's (`note_error`).

    A harness's own check (an ``AssertionError``) is not an outcome: it passes through.
    """
    try:
        yield
    except AssertionError:
        raise
    except Exception as exc:
        note_error(outcome, exc)


def leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """The exceptions in ``group`` and in the groups nested in it, in order."""
    out: list[BaseException] = []
    for e in group.exceptions:
        out.extend(leaves(e) if isinstance(e, BaseExceptionGroup) else [e])
    return out


def unwrap(exc: BaseException) -> BaseException:
    """The one exception of the harness's own task group, taken out of its group.

    Under trio every task that a cancellation from outside reaches adds its
    ``Cancelled`` to the nursery's group, next to the error (the consumer's,
    say) that coincided with it: those are that one cancellation, not errors
    of their own, so the error alone comes out (or, with none, the cancellation).
    More than one error: the group itself.  Not a group: ``exc`` itself.
    """
    if not isinstance(exc, BaseExceptionGroup):
        return exc
    found = leaves(exc)
    errors = [e for e in found if not isinstance(e, anyio.get_cancelled_exc_class())]
    if len(errors) == 1:
        return errors[0]
    return found[0] if not errors else exc


def note_consumer_error(outcome: Outcome, group: BaseException) -> None:
    """Record the consumer's own error out of the harness's task group; raise anything else."""
    exc = unwrap(group)
    if not isinstance(exc, ConsumerError):
        raise exc from None
    note_error(outcome, exc)


class IntValues:
    """An adapter's iterator with each value turned into an int; the rest goes to it."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __aiter__(self) -> IntValues:
        return self

    async def __anext__(self) -> int:
        return int(await self._inner.__anext__())

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> IntValues:
        await self._inner.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self._inner.__aexit__(*exc_info)
