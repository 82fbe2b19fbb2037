"""bridges.redis: a Redis stream -> async iterator (to_aiter), and an async iterable -> a
Redis stream (from_aiter), read back through to_aiter.

The other side of either adapter is a Redis stream read by a consumer group;
the server is a real ``redis-server`` on 127.0.0.1 (from the ``redis``
extra's wheel), one per test process, started on first use.
"""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import itertools
import os
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

import redis.asyncio as aioredis

from bridges import redis, testing
from bridges._bench._servers import shared_url
from bridges.testing import End, Probe, Script

from ..broker_values import END, FAIL, BrokerFromAiterHarness, BrokerValues

_ids = itertools.count()
R = TypeVar("R")
#: the end of a script, in the stream: a Redis stream has no end of its own
_END = {End.COMPLETE: END, End.FAIL: FAIL}
_MARKERS = frozenset(_END.values())
#: the replies that carry entries to the adapter (its reads, and its claims of its own
#: pending entries), and the other commands it sends
_READS = ("XREADGROUP", "XCLAIM", "XAUTOCLAIM")
_OTHERS = ("XGROUP CREATE", "XPENDING", "XACK")


class _Broker:
    """The checks' side of the server: an asyncio loop in a thread of its own, with a
    connection of its own, which adds the scripts and looks at the server.

    The thread starts with this module (before any check counts threads).  Each
    iterator under test gets a client of its own on this loop, under asyncio
    and uvloop as under trio: its read loop runs here and entries cross over
    ``open_channel`` (the same-loop path on asyncio is tests/test_redis.py's).
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(
            target=self.loop.run_forever, name="bridges-test-redis-broker", daemon=True
        ).start()
        self._lock = threading.Lock()
        self._admin: aioredis.Redis | None = None

    def run(self, coro: Coroutine[Any, Any, R]) -> R:
        """Run ``coro`` on the broker's loop and wait for it (a plain call, from any thread)."""
        # in a context of its own: a trio caller's says "trio" to sniffio
        future = contextvars.Context().run(asyncio.run_coroutine_threadsafe, coro, self.loop)
        return future.result(timeout=10)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        contextvars.Context().run(asyncio.run_coroutine_threadsafe, coro, self.loop)

    def admin(self) -> aioredis.Redis:
        with self._lock:
            if self._admin is None:
                url = shared_url(redis.LocalServer)
                self._admin = aioredis.Redis.from_url(url)
                # before the server stops (registered after it: runs first)
                atexit.register(self.run, self._admin.aclose())
            return self._admin


_BROKER = _Broker()


def _entries(command: str, reply: Any) -> list[Any]:
    """The entries in a parsed reply of one of ``_READS``: [(id, fields), ...]."""
    if command == "XAUTOCLAIM":
        return list(reply[1])
    if command == "XCLAIM":
        return list(reply)
    if isinstance(reply, dict):  # RESP3: {stream: [entries]}
        return [e for entries in reply.values() for e in entries]
    return [e for _, entries in reply or () for e in entries]  # RESP2: [[stream, [entries]]]


class _Stream:
    """One script as a fresh stream, and what the server shows of the adapter.

    The adapter gets a client of its own whose replies the probe reads, as
    they come from the server: ``start`` at the first reply to anything the
    adapter asked (before it, nothing reached the server: R1); ``hand_over``
    at each entry a read brought it (R3's independent count).  ``release``
    once the server shows the adapter gone: none of its connections waits in a
    read, and every entry the consumer moved past (its ack given, with
    ``ack="on_next"``) is acknowledged; the entries it did not move past stay
    pending, as Redis keeps them for this consumer's next start.  After
    ``aclose()`` returned that must be so at once; an iterator collected
    unclosed gets 5 s (its read loop ends on its own, after its ``__del__``).
    """

    def __init__(self, script: Script, probe: Probe) -> None:
        n = next(_ids)
        self.name = f"ct.{os.getpid()}.{n}"
        self.client_name = f"ct-{os.getpid()}-{n}"
        self.group = "g"
        self.consumer = "reader"
        self.script = script
        self.probe = probe
        self.moved_past: set[str] = set()  # ids of entries the consumer asked past
        self.last: str | None = None  # the entry in the consumer's hands
        self.released = False
        gate = len(script.values) if script.gate is None else script.gate
        self.rest = [str(v).encode() for v in script.values[gate:]]
        self.client = _BROKER.run(self._open([str(v).encode() for v in script.values[:gate]]))

    async def _open(self, first: list[bytes]) -> redis.Client:
        r = aioredis.Redis.from_url(shared_url(redis.LocalServer), client_name=self.client_name)
        probe = self.probe

        def spy(command: str, parse: Callable[..., Any] | None) -> Callable[..., Any]:
            def reply(response: Any, **options: Any) -> Any:
                parsed = response if parse is None else parse(response, **options)
                if not probe.started:
                    probe.start()
                if command in _READS:
                    for _, fields in _entries(command, parsed):
                        if fields and fields.get(b"v") not in _MARKERS:
                            probe.hand_over()
                return parsed

            return reply

        for command in (*_READS, *_OTHERS):
            r.set_response_callback(command, spy(command, r.response_callbacks.get(command)))
        await self._add(first)
        return redis.Client(r, asyncio.get_running_loop())

    async def _add(self, values: list[bytes]) -> None:
        if not self.rest and self.script.end in _END:
            values = [*values, _END[self.script.end]]
        if values:
            pipe = _BROKER.admin().pipeline(transaction=False)
            for v in values:
                pipe.xadd(self.name, {"v": v})
            await pipe.execute()

    async def open_gate(self) -> None:
        """After ``probe.open_gate`` was set: the rest of the script (once)."""
        rest, self.rest = self.rest, []
        await self.client.call(lambda _: self._add(rest))

    async def _gone(self) -> bool:
        """Whether the server shows the adapter gone (see the class)."""
        admin = _BROKER.admin()
        clients: Any = await admin.client_list()
        if any(c.get("name") == self.client_name and "b" in c.get("flags", "") for c in clients):
            return False  # a read waits on the server
        if not self.moved_past:
            return True
        try:
            rows: Any = await admin.xpending_range(
                self.name, self.group, min="-", max="+", count=10_000, consumername=self.consumer
            )
        except aioredis.ResponseError:  # no group: nothing was read
            return True
        return not any(r["message_id"].decode() in self.moved_past for r in rows)

    async def _release(self, deadline: float) -> None:
        """On the broker's loop: see (up to ``deadline`` s) the server show the adapter gone,
        record the release, and remove the stream and the adapter's client."""
        if not self.released:
            until = time.monotonic() + deadline
            while True:
                if await self._gone():
                    self.released = True
                    self.probe.release()
                    break
                if time.monotonic() >= until:
                    break
                await asyncio.sleep(0.02)  # the server's state, looked at again
        await self._remove()

    async def _remove(self) -> None:
        await _BROKER.admin().delete(self.name)
        await self.client.redis.aclose()

    async def released_now(self) -> None:
        """After the adapter's aclose() returned: it released, or it never will."""
        await self.client.call(lambda _: self._release(0.0))

    def forget(self) -> None:
        """The iterator was dropped before it started: remove the stream, record nothing."""
        _BROKER.spawn(self._remove())

    def released_later(self) -> None:
        """After the adapter was collected: it releases by itself (its read loop ends)."""
        _BROKER.spawn(self._release(5.0))

    async def closing(self) -> None:
        pass

    def payload(self, item: redis.Entry) -> bytes:
        data: bytes = item.fields[b"v"]
        return data

    def asking(self) -> None:
        # asking for the next one acks the one before (ack="on_next")
        if self.last is not None:
            self.moved_past.add(self.last)
            self.last = None

    def taken(self, item: redis.Entry) -> None:
        self.last = item.id


class ToAiterHarness(testing.PushHarness):
    """redis.to_aiter(): the script's values added to a fresh stream (ints as text, field
    ``v``), consumed by a fresh consumer group with ``ack="on_next"``.

    A Redis stream has no end: the script's end is a last entry (``end``/``fail``)
    that the harness's iterator turns into the end of the iteration or the
    script's error, after closing the adapter.  A gated script adds the values
    before the gate, and the rest once the gate is open (seen at the next
    ``__anext__``).
    """

    name = "redis.to_aiter"
    overflows = ("block",)
    claims = testing.claim_push(
        na={
            "R4": "a Redis stream never completes: the iterator ends only when the consumer "
            "leaves or on an error; what the check would see is the harness's own end marker",
            "R5": "a stream carries field maps, not exception objects: the script's error "
            "cannot cross the server. The adapter's own errors (a lost connection, a key "
            "that is not a stream, a group lost twice) arrive once, as themselves: "
            "tests/test_redis.py",
            "R7": "no producer calls into the adapter: it reads what it has room for, and a "
            "writer is decoupled by the stream (its window is the XADD replies: "
            "redis.from_aiter)",
            "R8": "no producer runs on the event-loop thread: entries arrive only as reads "
            "for free room ask for them, so there is no overflow to refuse",
            "R9": "no overflow policies: demand is the backpressure, the server holds what "
            "the buffer has no room for, and nothing is dropped (stats.dropped stays 0); "
            "trimming (maxlen) is the writer's policy, on the server",
            "R16": "no producer end: writers are other clients of the server, whose stream "
            "outlives them",
            "R17": "no producer end to drop: the server holds the stream, and the group "
            "outlives the iterator",
            "R18": "takes no hooks: reads for free room are the flow control, and acks go "
            "through Entry.ack()",
            "R20": "one consumer per iterator; several consumers of one group are the "
            "server's to serve (each gets other entries), and no producer waits on the "
            "adapter",
        }
    )

    def open(
        self, script: Script, probe: Probe, *, buffer: int | None, overflow: str
    ) -> AsyncIterator[int]:
        if overflow != "block":
            raise ValueError(f"redis.to_aiter has no overflow={overflow!r}")
        stream = _Stream(script, probe)
        it = redis.to_aiter(
            stream.client,
            stream.name,
            group=stream.group,
            consumer=stream.consumer,
            buffer=buffer,  # type: ignore[arg-type]
        )
        return BrokerValues(it, stream, "redis.to_aiter()")

    def open_bad(self, **kwargs: Any) -> object:
        # to_aiter checks its arguments before it looks at the client; its mode string
        # is ack= (there is no overflow=)
        return redis.to_aiter(
            None,  # type: ignore[arg-type]
            "s",
            group="g",
            consumer="c",
            buffer=kwargs.get("buffer", 4),
            ack=kwargs.get("overflow", "on_next"),
        )


class FromAiterHarness(BrokerFromAiterHarness):
    """redis.from_aiter(): each value added (in order, pipelined), read back by a group."""

    name = "redis.from_aiter"
    claims = testing.claim_pull(
        na={
            "R10": "a broker decouples the two sides: the writer's window is the server's "
            "XADD replies (at most in_flight unanswered; tests/test_redis.py), not a "
            "reader's pace, and the stream stores what no one has read yet",
            "R13": "from_aiter is a call that iterates its source once; there is no "
            "subscription to repeat",
        }
    )

    def connect(self) -> AbstractAsyncContextManager[Any]:
        return redis.connect(shared_url(redis.LocalServer))

    async def target(self, client: Any) -> str:
        return f"conformance.{os.getpid()}.{next(_ids)}"

    def encode(self, value: int) -> dict[str, int]:
        return {"v": value}

    async def send(self, values: AsyncIterable[Any], client: Any, target: str) -> object:
        return await redis.from_aiter(values, client, target, in_flight=self.in_flight)

    def reader(self, client: Any, target: str) -> AbstractAsyncContextManager[Any]:
        return redis.to_aiter(client, target, group="reader", consumer="r", buffer=4)

    def decode(self, item: Any) -> int:
        return int(item.fields[b"v"])

    async def drive_bad(self) -> object:
        return await redis.from_aiter(42, None, "x")  # type: ignore[arg-type]


HARNESSES: list[testing.PushHarness | testing.PullHarness | testing.CallHarness] = [
    ToAiterHarness(),
    FromAiterHarness(),
]
