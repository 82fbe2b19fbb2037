"""The cancel point a spoke's ``__anext__`` takes before it moves a value (R19).

A spoke that can hand over a value without waiting (a memory channel's
``receive_nowait()``, a ``StreamReader`` that holds a whole record, an
``asyncio.Queue`` with an item) would otherwise never reach a cancel point:
a call made in an already-cancelled scope would take the value and return
it, and the caller's scope would drop it.  Such a spoke keeps one
`CancelProbe` per iterator and asks it first:

    if self._probe.cancelled():
        await cancel_point(self._probe)

The probe is a few attribute reads; the checkpoint is paid only when the
scope is cancelled.
"""

from __future__ import annotations

from anyio.lowlevel import checkpoint

from ._backend import CancelProbe

__all__ = ["CancelProbe", "cancel_point", "raise_if_cancelled"]


async def cancel_point(probe: CancelProbe) -> None:
    """Raise the cancellation ``probe`` saw, before anything is moved.

    anyio on asyncio delivers a cancel scope's cancellation at a later
    checkpoint than the first one after ``cancel()`` in some cases, so this
    checkpoints until the probe no longer sees one (it raises long before:
    the loop ends only if the scope stopped being cancelled, e.g. a shield).
    """
    await checkpoint()
    while probe.cancelled():
        await checkpoint()


async def raise_if_cancelled() -> None:
    """Raise the calling task's cancellation if its scope is cancelled already, else
    return at once (no scheduling).

    For a call that may end without waiting again after its scope was
    cancelled (a ``from_aiter`` whose last sends were answered before its
    source's end cancelled the caller): it then ends as cancelled, as it would
    at any wait, rather than return as if it had not been.
    """
    probe = CancelProbe()
    if probe.cancelled():
        await cancel_point(probe)
