"""The harnesses' iterator over a broker spoke's ``to_aiter``: the script's values, with
the script's end carried as a last item (a broker's stream has no end of its own); and
the drive of a broker spoke's ``from_aiter``, read back by its ``to_aiter``."""

from __future__ import annotations

import warnings
from abc import abstractmethod
from collections.abc import AsyncIterable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import anyio
import anyio.lowlevel

import bridges
from bridges import testing
from bridges.testing import ConsumerError, Outcome, Plan, Probe, Script

__all__ = ["BrokerFromAiterHarness", "BrokerStream", "BrokerValues"]

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


class BrokerFromAiterHarness(testing.PullHarness):
    """A broker spoke's ``from_aiter`` driven by the pull rules: each value the source
    gives is sent (counted by `encode`) and read back by the spoke's own ``to_aiter``
    until every sent value was read, the plan stops the reader, or the writer ended.
    A spoke's harness says how to connect, send and read."""

    in_flight = 4

    @abstractmethod
    def connect(self) -> AbstractAsyncContextManager[Any]:
        """The spoke's ``connect()`` to the shared server."""

    @abstractmethod
    async def target(self, client: Any) -> str:
        """A fresh place to send to (a subject or a stream), ready on the server."""

    @abstractmethod
    def encode(self, value: int) -> Any:
        """What the spoke sends for ``value``."""

    @abstractmethod
    async def send(self, values: AsyncIterable[Any], client: Any, target: str) -> object:
        """The spoke's ``from_aiter`` over ``values``, with the harness's window."""

    @abstractmethod
    def reader(self, client: Any, target: str) -> AbstractAsyncContextManager[Any]:
        """The spoke's ``to_aiter`` over ``target``."""

    @abstractmethod
    def decode(self, item: Any) -> int:
        """The value an item of the reader carries."""

    async def drive(self, source: AsyncIterable[int], plan: Plan) -> Outcome:
        outcome = Outcome()
        sent: list[int] = []
        result: list[BaseException | None] = []
        reading = anyio.CancelScope()

        def encode(v: int) -> Any:
            sent.append(v)
            return self.encode(v)

        def all_read() -> bool:
            return bool(result) and len(outcome.values) == len(sent)

        async with self.connect() as client:
            target = await self.target(client)

            async def send() -> None:
                try:
                    await self.send(bridges.iterate(source).map(encode), client, target)
                except Exception as exc:
                    result.append(exc)
                else:
                    result.append(None)
                if all_read():
                    reading.cancel()  # the reader waits for a value that will not come

            async with anyio.create_task_group() as tg:
                tg.start_soon(send)
                try:
                    async with self.reader(client, target) as it:
                        with reading:
                            while not all_read():
                                if plan.take is not None and len(outcome.values) >= plan.take:
                                    break
                                if plan.fail_after is not None and (
                                    len(outcome.values) >= plan.fail_after
                                ):
                                    raise ConsumerError
                                v = self.decode(await it.__anext__())
                                plan.seen(v)
                                outcome.values.append(v)
                                for _ in range(plan.slow):
                                    await anyio.lowlevel.checkpoint()
                except ConsumerError as exc:
                    outcome.error = exc
                    outcome.errors_seen += 1
                # the reader left: the writer stops (and closes the source)
                tg.cancel_scope.cancel()
        if result and result[0] is not None:
            outcome.error = result[0]
            outcome.errors_seen += 1
        return outcome
