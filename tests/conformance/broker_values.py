"""The harnesses' iterator over a broker spoke's ``to_aiter``: the script's values, with
the script's end carried as a last item (a broker's stream has no end of its own)."""

from __future__ import annotations

import warnings
from typing import Any, Protocol

import anyio
import anyio.lowlevel

import bridges
from bridges.testing import Probe, Script

__all__ = ["BrokerStream", "BrokerValues"]

#: the end of a script, as the last item's payload
END = b"end"
FAIL = b"fail"


class BrokerStream(Protocol):
    """A harness's stream on the server, and what the server shows of the adapter."""

    script: Script
    probe: Probe
    #: the script's values after the gate, not yet on the server
    rest: list[bytes]

    async def open_gate(self) -> None: ...

    async def closing(self) -> None:
        """Before the adapter closes."""

    async def released_now(self) -> None:
        """After the adapter's aclose() returned: it released, or it never will."""

    def forget(self) -> None:
        """The iterator was dropped before it started: remove the stream, record nothing."""

    def released_later(self) -> None:
        """After the adapter was collected: it releases by itself."""

    def payload(self, item: Any) -> bytes:
        """An item of the adapter as the bytes the script put in it."""
        ...

    def asking(self) -> None:
        """The consumer asks for the next item (with ack="on_next" the adapter acks the
        one it got before)."""

    def taken(self, item: Any) -> None:
        """The consumer got ``item``."""


class BrokerValues(bridges.BridgeIterator[int]):
    """The adapter's items as the script's ints; the script's end marker ends it (after
    the adapter is closed), as the end of the iteration or the script's error."""

    def __init__(self, it: Any, stream: BrokerStream, what: str) -> None:
        self._it: Any = it
        self._stream = stream
        self._what = what
        self._ended = False
        self._closed = False

    @property
    def stats(self) -> bridges.Stats:
        """The adapter's stats."""
        assert self._it is not None
        stats: bridges.Stats = self._it.stats
        return stats

    async def __aenter__(self) -> BrokerValues:
        assert self._it is not None
        # The adapter's own enter, shielded: cancelled on the way in it closes itself,
        # before the stream's watch on what the server delivers stops (``closing()``).
        # A watch of NATS deliveries is interest in the adapter's inbox: the server
        # would keep its pull request and deliver to the watch alone, messages no one
        # settles.  A cancellation here closes it as aclose() does, the watch first.
        with anyio.CancelScope(shield=True):
            await self._it.__aenter__()
        try:
            await anyio.lowlevel.checkpoint()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __anext__(self) -> int:
        if self._ended or self._closed or self._it is None:
            raise StopAsyncIteration
        stream = self._stream
        if stream.rest and stream.probe.open_gate.is_set():
            await stream.open_gate()
        stream.asking()
        item = await self._it.__anext__()
        stream.taken(item)
        data = stream.payload(item)
        if data not in (END, FAIL):
            return int(data)
        # the end marker: the harness's stand-in for a source's end
        self._ended = True
        await self.aclose()
        if data == FAIL:
            assert stream.script.error is not None
            raise stream.script.error
        raise StopAsyncIteration

    async def aclose(self) -> None:
        """Close the adapter, then see the server show it released."""
        if self._closed or self._it is None:
            return
        self._closed = True
        with anyio.CancelScope(shield=True):  # as the adapter's own: a cancelled caller too
            await self._stream.closing()
            await self._it.aclose()
            await self._stream.released_now()

    def __del__(self) -> None:
        if self._closed or self._it is None:
            return
        if not self._stream.probe.started:  # never started: nothing to warn about
            self._stream.forget()
            return
        warnings.warn(
            f"a {self._what} harness iterator was dropped unclosed", ResourceWarning, stacklevel=2
        )
        self._it = None  # the adapter is collected unclosed too: it must release by itself
        self._stream.released_later()
