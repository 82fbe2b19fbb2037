"""bridges.nats: JetStream -> async iterator (to_aiter), and an async iterable ->
JetStream (from_aiter), read back through to_aiter.

The other side of either adapter is a JetStream stream on a real
``nats-server -js`` on 127.0.0.1, one per test process, started on first use.
"""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import itertools
import threading
from collections.abc import AsyncIterable, AsyncIterator, Coroutine
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
import nats as natspy
from nats.aio.msg import Msg

from bridges import nats, testing
from bridges._bench._servers import shared_url
from bridges.testing import End, Probe, Script

from ..broker_values import END, FAIL, BrokerFromAiterHarness, BrokerValues

_ids = itertools.count()
R = TypeVar("R")
#: the end of a script, in the stream: a JetStream stream has no end of its own
_END = {End.COMPLETE: END, End.FAIL: FAIL}
_MARKERS = frozenset(_END.values())


class _Broker:
    """The checks' side of the server: one connection on an asyncio loop in a thread of
    its own, which creates the streams, publishes the scripts and watches the server.

    The thread starts with this module (before any check counts threads); it
    connects on first use.  The iterators under test use the same connection
    through a [`nats.Client`][bridges.nats.Client] on this loop, on every
    backend: under asyncio and uvloop as under trio, the pull loop runs on a
    loop of its own and values cross over ``open_channel``.  (The same-loop
    path on asyncio is tests/test_nats.py's.)
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(
            target=self.loop.run_forever, name="bridges-test-nats-broker", daemon=True
        ).start()
        self._lock = threading.Lock()
        self._nc: Any = None
        self._client: nats.Client | None = None

    def run(self, coro: Coroutine[Any, Any, R]) -> R:
        """Run ``coro`` on the broker's loop and wait for it (a plain call, from any thread)."""
        # in a context of its own: a trio caller's says "trio" to sniffio
        future = contextvars.Context().run(asyncio.run_coroutine_threadsafe, coro, self.loop)
        return future.result(timeout=10)

    def connection(self) -> tuple[Any, nats.Client]:
        with self._lock:
            if self._client is None:
                self._nc = self.run(natspy.connect(shared_url(nats.LocalServer)))
                self._client = nats.Client(self._nc.jetstream(), self.loop)
                # before the server stops (registered after it: runs first)
                atexit.register(self.run, self._nc.close())
            return self._nc, self._client


_BROKER = _Broker()


class _Stream:
    """One script as a fresh stream and a fresh durable, and what the server shows of them.

    The probe learns from the server, on the connection the adapter uses, in the
    order the server sent things: ``start`` at the adapter's first JetStream API
    call about the stream (before it, nothing of it reached the server: R1);
    ``hand_over`` at each message the server delivers to the adapter (R3's
    independent count); ``release`` once every message seen delivered was acked
    or nak'ed (the adapter nak's what it held) and the server shows no pull
    request of the durable's waiting: the subscription is gone and nothing is
    held.  After ``aclose()`` returned that must be so at once (a second at
    most for the copies to arrive); an iterator collected unclosed gets 5 s
    (its pull loop ends on its own, after its ``__del__``).
    """

    def __init__(self, script: Script, probe: Probe) -> None:
        n = next(_ids)
        self.name = f"CT{n}"
        self.subject = f"ct.{n}"
        self.durable = "reader"
        self.script = script
        self.probe = probe
        self.nc, self.client = _BROKER.connection()
        self.spies: list[Any] = []
        self.released = False
        gate = len(script.values) if script.gate is None else script.gate
        self.rest = [str(v).encode() for v in script.values[gate:]]
        _BROKER.run(self._open([str(v).encode() for v in script.values[:gate]]))

    async def _open(self, first: list[bytes]) -> None:
        await self.client.js.add_stream(name=self.name, subjects=[self.subject])
        await self._publish(first)

        async def api(msg: Msg) -> None:
            if not self.probe.started:
                self.probe.start()

        self.settled = asyncio.Event()
        self.settled.set()
        unsettled: dict[str, int] = {}

        def count(subject: str, n: int) -> None:
            left = unsettled[subject] = unsettled.get(subject, 0) + n
            if left == 0:
                del unsettled[subject]
            if unsettled:
                self.settled.clear()
            else:
                self.settled.set()

        async def delivery(msg: Msg) -> None:
            if msg.reply.startswith(f"$JS.ACK.{self.name}."):
                count(msg.reply, 1)
                if msg.data not in _MARKERS:
                    self.probe.hand_over()

        async def settle(msg: Msg) -> None:  # the adapter's acks, on this same connection
            # in_progress() settles nothing; a message delivered after the copies
            # stopped (closing) is not counted either way
            if msg.subject in unsettled and not msg.data.startswith(b"+WPI"):
                count(msg.subject, -1)

        for subject, cb in (
            ("_INBOX.>", delivery),  # pull requests' replies go to an inbox (first: see closing)
            (f"$JS.API.STREAM.INFO.{self.name}", api),
            (f"$JS.API.CONSUMER.*.{self.name}.>", api),
            (f"$JS.API.CONSUMER.MSG.NEXT.{self.name}.>", api),
            (f"$JS.ACK.{self.name}.>", settle),
        ):
            self.spies.append(await self.nc.subscribe(subject, cb=cb))
        await self.nc.flush()

    async def _publish(self, values: list[bytes]) -> None:
        if not self.rest and self.script.end in _END:
            values = [*values, _END[self.script.end]]

        async def each() -> AsyncIterator[bytes]:
            for v in values:
                yield v

        await nats.from_aiter(each(), self.client, self.subject, in_flight=256)

    async def open_gate(self) -> None:
        """After ``probe.open_gate`` was set: the rest of the script (once)."""
        rest, self.rest = self.rest, []
        await self.client.call(lambda _: self._publish(rest))

    async def _release(self, deadline: float) -> None:
        """On the broker's loop: wait (up to ``deadline`` s) until every message seen
        delivered was acked or nak'ed, then see that no pull request of the durable
        waits: record the release, and remove the stream."""
        if self.released:
            return
        js = self.client.js
        await self.nc.flush()  # what the adapter sent before this reached the spies
        with anyio.move_on_after(deadline):
            await self.settled.wait()
            info = await js.consumer_info(self.name, self.durable)
            if info.num_waiting == 0:
                self.released = True
                self.probe.release()
        await self._unwatch_deliveries()
        for spy in self.spies[1:]:
            await spy.unsubscribe()
        await js.delete_stream(self.name)

    async def _unwatch_deliveries(self) -> None:
        if self.spies[0] is not None:
            await self.spies[0].unsubscribe()
            self.spies[0] = None

    async def closing(self) -> None:
        """Before the adapter closes: stop copying its deliveries.  The copy is interest in
        its inbox: the server would keep its pull requests and redeliver nak'ed messages
        to them, to no one."""
        await self.client.call(lambda _: self._unwatch_deliveries())

    async def released_now(self) -> None:
        """After the adapter's aclose() returned: it released, or it never will."""
        await self.client.call(lambda _: self._release(1.0))

    def forget(self) -> None:
        """The iterator was dropped before it started: remove the stream, record nothing."""

        async def forget() -> None:
            await self._unwatch_deliveries()
            for spy in self.spies[1:]:
                await spy.unsubscribe()
            await self.client.js.delete_stream(self.name)

        contextvars.Context().run(asyncio.run_coroutine_threadsafe, forget(), _BROKER.loop)

    def released_later(self) -> None:
        """After the adapter was collected: it releases by itself (its pull loop ends)."""

        async def release() -> None:
            await self._unwatch_deliveries()
            await self._release(5.0)  # the adapter's pull loop ends by itself

        contextvars.Context().run(asyncio.run_coroutine_threadsafe, release(), _BROKER.loop)

    def payload(self, item: nats.Message) -> bytes:
        return item.data

    def asking(self) -> None:
        pass

    def taken(self, item: nats.Message) -> None:
        pass


class ToAiterHarness(testing.PushHarness):
    """nats.to_aiter(): the script's values published to a fresh stream (ints as text),
    consumed through a fresh durable pull consumer with ``ack="on_next"``.

    A JetStream stream has no end: the script's end is a last message
    (``end``/``fail``) that the harness's iterator turns into the end of the
    iteration or the script's error, after closing the adapter.  A gated script
    publishes the values before the gate, and the rest once the gate is open
    (seen at the next ``__anext__``).
    """

    name = "nats.to_aiter"
    overflows = ("block",)
    claims = testing.claim_push(
        na={
            "R4": "a JetStream stream never completes: the iterator ends only when the "
            "consumer leaves or on an error; what the check would see is the harness's "
            "own end marker",
            "R5": "a stream carries bytes, not exception objects: the script's error cannot "
            "cross the server. The adapter's own errors (server statuses, a lost "
            "connection, a missing stream) arrive once, as themselves: tests/test_nats.py",
            "R7": "no producer calls into the adapter: the server delivers what the adapter "
            "asked for, and a publisher is decoupled by the stream (its window is the "
            "publish acks: nats.from_aiter)",
            "R8": "no producer runs on the event-loop thread: messages arrive only as pull "
            "requests for free room ask for them, so there is no overflow to refuse",
            "R9": "no overflow policies: demand is the backpressure, the server holds what "
            "the buffer has no room for, and nothing is dropped (stats.dropped stays 0)",
            "R16": "no producer end: publishers are other clients of the server, whose "
            "stream outlives them",
            "R17": "no producer end to drop: the server holds the stream, and the "
            "subscription lives as long as the iterator",
            "R18": "takes no hooks: pull requests with an expiry and a heartbeat are the "
            "flow control, and acks go through Message's own methods",
            "R20": "one consumer per iterator; several consumers sharing a durable are the "
            "server's to serve (each gets other messages), and no producer waits on the "
            "adapter",
        }
    )

    def open(
        self, script: Script, probe: Probe, *, buffer: int | None, overflow: str
    ) -> AsyncIterator[int]:
        if overflow != "block":
            raise ValueError(f"nats.to_aiter has no overflow={overflow!r}")
        stream = _Stream(script, probe)
        it = nats.to_aiter(stream.client, stream.name, durable=stream.durable, buffer=buffer)  # type: ignore[arg-type]
        return BrokerValues(it, stream, "nats.to_aiter()")

    def open_bad(self, **kwargs: Any) -> object:
        # to_aiter checks its arguments before it looks at the client; its mode string
        # is ack= (there is no overflow=)
        return nats.to_aiter(
            None,  # type: ignore[arg-type]
            "S",
            durable="d",
            buffer=kwargs.get("buffer", 4),
            ack=kwargs.get("overflow", "on_next"),
        )


class FromAiterHarness(BrokerFromAiterHarness):
    """nats.from_aiter(): each value published (in order, acked), read back by a consumer."""

    name = "nats.from_aiter"
    claims = testing.claim_pull(
        na={
            "R10": "a broker decouples the two sides: the publisher's window is the server's "
            "publish acks (at most in_flight unacknowledged; tests/test_nats.py), not a "
            "reader's pace, and the stream stores what no one has read yet",
            "R13": "from_aiter is a call that iterates its source once; there is no "
            "subscription to repeat",
        }
    )

    def connect(self) -> AbstractAsyncContextManager[Any]:
        return nats.connect(shared_url(nats.LocalServer))

    async def target(self, client: Any) -> str:
        n = next(_ids)
        subject = f"conformance.{n}"
        await client.call(lambda js: js.add_stream(name=f"C{n}", subjects=[subject]))
        return subject

    def encode(self, value: int) -> bytes:
        return str(value).encode()

    async def send(self, values: AsyncIterable[Any], client: Any, target: str) -> object:
        return await nats.from_aiter(values, client, target, in_flight=self.in_flight)

    def reader(self, client: Any, target: str) -> AbstractAsyncContextManager[Any]:
        return nats.to_aiter(client, target, durable="reader", buffer=4)

    def decode(self, item: Any) -> int:
        return int(item.data)

    async def drive_bad(self) -> object:
        return await nats.from_aiter(42, None, "x")  # type: ignore[arg-type]


HARNESSES: list[testing.PushHarness | testing.PullHarness | testing.CallHarness] = [
    ToAiterHarness(),
    FromAiterHarness(),
]
