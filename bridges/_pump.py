"""What every loop that pulls an async source needs at its edges, written once.

A pump (``channels.from_aiter``, ``rx.from_aiter``, ``streams``' feeders,
``callbacks.from_aiter``, the pipeline helpers) ends in one of a few ways:
the source finished, the source failed, the consumer stopped it, or closing
the source failed.  Two questions decide which, and they are answered here:

* `close_source`: close the source, shielded, so that a cleanup that awaits
  (closing a connection) runs to its end even while the pump is being
  cancelled (R11); when another exception is already on its way, that one
  wins and a cleanup error is logged, never lost and never wrapped.
* `cancelled_now`: is the calling task being cancelled right now (its
  effective deadline has passed for good)?  A pump that catches an error
  from its source asks this to tell "the source failed" from "the block
  around me is exiting and the source's cleanup failed".
"""

from __future__ import annotations

import asyncio
import math

import anyio

from ._iterator import log_cleanup_error

__all__ = ["aclose_shielded", "cancelled_now", "close_source", "is_cancellation"]


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
