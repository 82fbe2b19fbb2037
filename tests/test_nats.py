"""bridges.nats: JetStream <-> async iterables against a real nats-server, on every backend."""

from __future__ import annotations

import gc
import itertools
import logging
import os
import re
import shutil
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import nats.errors as nats_errors
import nats.js.errors as nats_js_errors
import pytest

import bridges
from bridges import nats as bnats

from . import brokers, commands
from .proxy import Proxy
from .servers import NatsServer

pytestmark = pytest.mark.anyio

_ids = itertools.count()


def fresh(prefix: str = "s") -> str:
    """A stream / subject / durable name no other test uses on the shared server."""
    return f"{prefix}{next(_ids)}"


async def add_stream(client: bnats.Client, subjects: list[str], **config: Any) -> str:
    name = fresh("S")
    await client.call(lambda js: js.add_stream(name=name, subjects=subjects, **config))
    return name


async def add_durable(client: bnats.Client, stream: str, *, ack_wait: float) -> str:
    durable = fresh("d")
    await client.call(
        lambda js: js.add_consumer(
            stream, durable_name=durable, ack_policy="explicit", ack_wait=ack_wait
        )
    )
    return durable


async def add_stream_and_durable(
    client: bnats.Client, subject: str, *, ack_wait: float
) -> tuple[str, str]:
    """A stream of ``subject`` and a durable consumer of it: their names."""
    stream = await add_stream(client, [subject])
    return stream, await add_durable(client, stream, ack_wait=ack_wait)


@asynccontextmanager
async def a_client_and_a_stream(
    server: NatsServer, prefix: str, **config: Any
) -> AsyncIterator[tuple[bnats.Client, str, str]]:
    """A client of ``server``, a subject no other test uses (``prefix`` and a number)
    and the stream made for it: ``(client, subject, stream)``."""
    subject = fresh(prefix)
    async with bnats.connect(server.url) as client:
        yield client, subject, await add_stream(client, [subject], **config)


async def stored(client: bnats.Client, stream: str) -> int:
    info = await client.call(lambda js: js.stream_info(stream))
    return int(info.state.messages)


async def values(items: list[bytes]) -> AsyncIterator[bytes]:
    for item in items:
        yield item


async def numbers(n: int, start: int = 0) -> AsyncIterator[bytes]:
    for i in range(start, start + n):
        yield str(i).encode()


async def test_round_trip(nats_server: NatsServer) -> None:
    async with a_client_and_a_stream(nats_server, "rt.") as (client, subject, _):
        assert await bnats.from_aiter(numbers(200), client, subject) == 200
        got = []
        async with bnats.to_aiter(client, subject, durable=fresh("d"), buffer=16) as it:
            async for msg in it:
                got.append(int(msg.data))
                if len(got) == 200:
                    break
        assert got == list(range(200))


async def consumer_info(client: bnats.Client, stream: str, durable: str) -> Any:
    return await client.call(lambda js: js.consumer_info(stream, durable))


#: the issue's 100,000 in the stress session (nox -s stress), a tenth of it by default
MANY = 100_000 if os.environ.get("BRIDGES_STRESS") else 10_000


async def test_a_slow_consumer_of_many_messages_holds_at_most_the_buffer_in_order(
    nats_server: NatsServer,
) -> None:
    n, buffer = MANY, 32
    async with a_client_and_a_stream(nats_server, "slow.") as (client, subject, stream):
        await bnats.from_aiter(numbers(n), client, subject, in_flight=256)
        durable = fresh("d")

        async def look(taken: int) -> None:
            # delivered by the server, not acked by us (the one in hand included):
            # requested, buffered or in hand, never above the buffer
            info = await consumer_info(client, stream, durable)
            assert info.delivered.consumer_seq - (taken - 1) <= buffer
            assert info.num_redelivered == 0

        it = bnats.to_aiter(client, subject, durable=durable, buffer=buffer)
        await brokers.consume_slowly_in_order(it, n, buffer, lambda msg: int(msg.data), look)
        info = await consumer_info(client, stream, durable)
        assert info.num_pending == 0


async def test_stats_count_the_message_in_hand_until_it_is_acked(
    nats_server: NatsServer,
) -> None:
    async with a_client_and_a_stream(nats_server, "stats.") as (client, subject, _):
        await bnats.from_aiter(numbers(3), client, subject)
        # the one in hand at the close: nak'ed
        it = bnats.to_aiter(client, subject, durable=fresh("d"), buffer=1)
        await brokers.take_two_through_a_buffer_of_one(it)


async def test_an_iterator_never_started_holds_nothing_and_warns_nothing(
    nats_server: NatsServer,
) -> None:
    async with bnats.connect(nats_server.url) as client:
        # no such stream: anything asked of the server would fail
        it = bnats.to_aiter(client, fresh("S"), durable="d")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            del it
            gc.collect()
        assert [str(w.message) for w in caught] == []
        closed = bnats.to_aiter(client, fresh("S"), durable="d")
        await closed.aclose()
        with pytest.raises(StopAsyncIteration):
            await closed.__anext__()
        assert closed.stats == bridges.Stats(
            0, 0, 0, 0, capacity=64, open_senders=0, open_receivers=0
        )


async def a_cancelled_connect_leaves_nothing(
    speak: Callable[[anyio.abc.SocketStream, anyio.CancelScope], Awaitable[None]],
) -> None:
    """Connect to a fake server whose side, ``speak``, cancels the caller when it chooses.

    The connect must then have stopped without trying again, closed its one
    socket by the time the cancellation came out, left nothing to the
    garbage collector, and logged no error.
    """
    accepted: list[anyio.abc.SocketStream] = []
    scope = anyio.CancelScope()

    async def serve(stream: anyio.abc.SocketStream) -> None:
        accepted.append(stream)
        await speak(stream, scope)
        await anyio.sleep_forever()

    errors: list[logging.LogRecord] = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = errors.append  # type: ignore[method-assign,assignment]
    logging.getLogger().addHandler(handler)
    try:
        async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
            url = f"nats://127.0.0.1:{listener.extra(anyio.abc.SocketAttribute.local_port)}"
            async with anyio.create_task_group() as tg:
                tg.start_soon(listener.serve, serve)
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    with scope:
                        # a connect that went on would retry soon, and only once: a second
                        # socket here, in seconds, rather than a test that hangs
                        async with bnats.connect(
                            url, connect_timeout=1, reconnect_time_wait=0, max_reconnect_attempts=1
                        ):
                            await anyio.sleep_forever()  # connected first: cancelled here
                    assert scope.cancelled_caught
                    # closed by the time the cancellation came out: its end is there to
                    # read (the bound only keeps a leak from hanging the test)
                    with anyio.fail_after(5), pytest.raises(anyio.EndOfStream):
                        while True:
                            await accepted[0].receive()
                    gc.collect()
                tg.cancel_scope.cancel()
            for stream in accepted:
                await stream.aclose()
    finally:
        logging.getLogger().removeHandler(handler)
    assert len(accepted) == 1, "the cancelled connect tried again"
    unclosed = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert unclosed == [], "the cancelled connect left a socket to the garbage collector"
    assert [(r.getMessage(), r.exc_info) for r in errors] == [], (
        "a connect cancelled on purpose logged errors"
    )


async def test_a_connect_cancelled_while_connecting_closes_its_socket_at_once_and_stops() -> None:
    async def say_nothing(stream: anyio.abc.SocketStream, caller: anyio.CancelScope) -> None:
        caller.cancel()  # the socket is open: connect() waits for the server's INFO

    await a_cancelled_connect_leaves_nothing(say_nothing)


async def speak_nats_until_ping(stream: anyio.abc.SocketStream) -> None:
    """The server's side of a NATS handshake up to the client's PING: INFO, then read."""
    info = b'INFO {"server_id":"fake","version":"2.10.0","proto":1,"max_payload":1048576}\r\n'
    await stream.send(info)
    heard = b""
    while b"PING\r\n" not in heard:
        heard += await stream.receive()


@pytest.mark.parametrize("pong", [False, True], ids=["before the PONG", "as the PONG is sent"])
async def test_a_connect_cancelled_as_it_completes_closes_its_connection(pong: bool) -> None:
    # Cancelled as the handshake ends, the connect may finish on the client's loop
    # after the caller stopped waiting for it (under trio, on the helper loop; on
    # Python 3.10 and 3.11 asyncio.wait_for lets it go on): it must be closed all the
    # same, never handed to no one, and not closed under its own read loop.
    async def handshake(stream: anyio.abc.SocketStream, caller: anyio.CancelScope) -> None:
        await speak_nats_until_ping(stream)
        if pong:
            await stream.send(b"PONG\r\n")
        caller.cancel()

    await a_cancelled_connect_leaves_nothing(handshake)


async def test_an_empty_stream_waits_instead_of_raising_a_timeout(nats_server: NatsServer) -> None:
    async with (
        a_client_and_a_stream(nats_server, "empty.") as (client, subject, _),
        bnats.to_aiter(client, subject, durable=fresh("d"), heartbeat=0.2) as it,
    ):
        with anyio.move_on_after(1.0) as scope:  # five heartbeats: nothing raised
            await it.__anext__()
        assert scope.cancelled_caught
        await bnats.from_aiter(numbers(1, 7), client, subject)
        with anyio.fail_after(10):
            msg = await it.__anext__()
        assert msg.data == b"7"


async def test_a_cancelled_next_loses_nothing_and_the_next_one_does_not_stall(
    nats_server: NatsServer,
) -> None:
    # nats.py #933/#986: a cancelled fetch strands its messages; here the pull
    # request belongs to the iterator, not to the cancelled call
    async with a_client_and_a_stream(nats_server, "cancel.") as (client, subject, _):
        async with bnats.to_aiter(client, subject, durable=fresh("d")) as it:
            got = await brokers.next_after_cancelled_nexts(
                it, lambda round_: bnats.from_aiter(numbers(1, round_), client, subject)
            )
        assert [(msg.data, msg.num_delivered) for msg in got] == [(b"0", 1), (b"1", 1), (b"2", 1)]


async def test_early_exit_gives_unacked_messages_back_at_once(nats_server: NatsServer) -> None:
    subject = fresh("exit.")
    async with bnats.connect(nats_server.url) as client:
        stream, durable = await add_stream_and_durable(client, subject, ack_wait=60)
        await bnats.from_aiter(numbers(100), client, subject)
        async with bnats.to_aiter(client, stream, durable=durable, buffer=16) as it:
            async for msg in it:
                if msg.data == b"9":
                    break  # 0..8 acked; 9 in hand and up to 15 more buffered: nak'ed
        # ack_wait is a minute: they come back at once because they were nak'ed
        got = []
        with anyio.fail_after(10):
            async with bnats.to_aiter(client, stream, durable=durable, buffer=16) as it:
                async for msg in it:
                    got.append(int(msg.data))
                    if len(got) == 91:
                        break
        # each once: the acked ones (0..8) never again; the server's redelivery order of
        # the nak'ed ones is its own
        assert sorted(got) == list(range(9, 100))


async def test_a_message_in_flight_at_exit_comes_back_at_once(nats_server: NatsServer) -> None:
    # The consumer leaves just after a message was stored while its pull request was
    # open: the server is sending it as the pull loop closes.  Whether it arrived
    # before the close, during it or not at all, it must come back at once (nak'ed
    # on the way out), not after ack_wait.  Each round walks that window again.
    subject = fresh("leaving.")
    async with bnats.connect(nats_server.url) as client:
        stream, durable = await add_stream_and_durable(client, subject, ack_wait=60)
        for round_ in range(10):
            first, second = f"{round_}a".encode(), f"{round_}b".encode()
            await bnats.from_aiter(values([first]), client, subject)
            async with bnats.to_aiter(client, stream, durable=durable, buffer=4) as it:
                async for msg in it:
                    assert msg.data == first
                    # stored once this returns: on its way to our open pull request
                    await bnats.from_aiter(values([second]), client, subject)
                    break
            got: set[bytes] = set()
            with anyio.fail_after(10):  # ack_wait is a minute
                async with bnats.to_aiter(client, stream, durable=durable, buffer=4) as it:
                    async for msg in it:
                        got.add(msg.data)
                        await msg.ack()
                        if got == {first, second}:
                            break
            assert await stored(client, stream) == 2 * (round_ + 1)


_PING = b"PING\r\n"


class HoldAfterPing(Proxy):
    """A proxy to the server that, once ``armed``, passes the client's next PING on
    and keeps back what the client sends after it (an UNSUB, say) until the server
    has sent the client a message of ``subject``: the server answers the PING, then
    sends that message, and only then takes in what came after the PING.

    ``holding`` is set when the client, having had the answer to that PING, sends
    another PING (its next round trip): the answer was taken in by then.
    ``let_through`` is set once the message went down to the client."""

    def __init__(self, port: int, subject: str) -> None:
        super().__init__(port, "nats")
        self.message = re.compile(rb"(?:^|\n)H?MSG " + re.escape(subject.encode()) + rb" ")
        self.armed = False
        self.kept: bytearray | None = None
        self.holding = anyio.Event()
        self.let_through = anyio.Event()

    async def up(self, chunk: bytes, server: anyio.abc.SocketStream) -> None:
        if self.kept is not None:
            self.kept += chunk
            if _PING in self.kept:
                self.holding.set()
                await self.let_through.wait()
                chunk, self.kept = bytes(self.kept), None
            else:
                return
        elif self.armed and _PING in chunk:
            self.armed = False
            end = chunk.index(_PING) + len(_PING)
            await server.send(chunk[:end])
            self.kept = bytearray(chunk[end:])
            return
        await server.send(chunk)

    async def down(self, chunk: bytes, client: anyio.abc.SocketStream) -> None:
        await client.send(chunk)
        if self.holding.is_set() and self.message.search(chunk):
            self.let_through.set()


async def test_a_message_sent_between_the_close_round_trip_and_the_unsubscribe_comes_back(
    nats_server: NatsServer,
) -> None:
    # nats-py's flush() writes its PING ahead of the commands it still has queued:
    # the server can answer the PING of a close's round trip before it takes in the
    # UNSUB queued just before it, and send a message in between.  The proxy makes
    # that happen each time; the message must still come back at once, not after
    # ack_wait (a minute).
    subject = fresh("late.")
    proxy = HoldAfterPing(nats_server.port, subject)
    async with anyio.create_task_group() as tg:
        await tg.start(proxy.serve)
        async with bnats.connect(nats_server.url) as admin, bnats.connect(proxy.url) as client:
            stream, durable = await add_stream_and_durable(admin, subject, ack_wait=60)
            await bnats.from_aiter(values([b"first"]), admin, subject)

            async def publish_while_held() -> None:
                await proxy.holding.wait()
                await bnats.from_aiter(values([b"second"]), admin, subject)

            tg.start_soon(publish_while_held)
            async with bnats.to_aiter(client, stream, durable=durable, buffer=4) as it:
                async for msg in it:
                    assert msg.data == b"first"
                    proxy.armed = True
                    break
            # the close's round trip went through first, then "second", then the rest
            assert proxy.let_through.is_set()
            got: set[bytes] = set()
            with anyio.fail_after(10):
                async with bnats.to_aiter(client, stream, durable=durable, buffer=4) as it:
                    async for msg in it:
                        got.add(msg.data)
                        await msg.ack()
                        if got == {b"first", b"second"}:
                            break
        tg.cancel_scope.cancel()


async def test_manual_and_on_receive_acks(nats_server: NatsServer) -> None:
    async with a_client_and_a_stream(nats_server, "manual.") as (client, subject, stream):
        await bnats.from_aiter(numbers(4), client, subject)
        durable = fresh("d")
        async with bnats.to_aiter(client, stream, durable=durable, ack="manual") as it:
            first = await it.__anext__()
            await first.term()
            second = await it.__anext__()
            await second.nak()
            with pytest.raises(nats_errors.MsgAlreadyAckdError):
                await second.ack()
            rest = [await it.__anext__() for _ in range(3)]
            assert [(m.sequence, m.num_delivered) for m in rest] == [(3, 1), (4, 1), (2, 2)]
            for m in rest[:2]:
                await m.ack()
        with pytest.raises(anyio.ClosedResourceError, match="redelivers"):
            await rest[2].ack()  # nak'ed when the block was left
        durable2 = fresh("d")
        async with bnats.to_aiter(client, stream, durable=durable2, ack="on_receive") as it:
            msg = await it.__anext__()
            with pytest.raises(nats_errors.MsgAlreadyAckdError):
                await msg.ack()  # already acked when it was received


async def test_buffered_messages_are_kept_alive_past_a_short_ack_wait(
    nats_server: NatsServer,
) -> None:
    subject = fresh("wait.")
    async with bnats.connect(nats_server.url) as client:
        stream, durable = await add_stream_and_durable(client, subject, ack_wait=1.0)
        await bnats.from_aiter(numbers(20), client, subject)
        async with bnats.to_aiter(client, stream, durable=durable, buffer=20) as it:
            first = await it.__anext__()
            # processing takes three ack_waits; the 19 others wait in the buffer
            for _ in range(6):
                await first.in_progress()
                await anyio.sleep(0.5)
            got = [first]
            async for msg in it:
                got.append(msg)
                if len(got) == 20:
                    break
        assert [int(m.data) for m in got] == list(range(20))
        assert all(m.num_delivered == 1 for m in got)


async def test_a_wrong_stream_or_subject_names_the_fix(nats_server: NatsServer) -> None:
    async with bnats.connect(nats_server.url) as client:
        for name in ("NoSuchStream", "no.such.subject"):
            async with bnats.to_aiter(client, name, durable="d") as it:
                with pytest.raises(LookupError, match=r"add_stream"):
                    await it.__anext__()
                with pytest.raises(StopAsyncIteration):
                    await it.__anext__()
        with pytest.raises(nats_js_errors.NoStreamResponseError):
            await bnats.from_aiter(numbers(3), client, fresh("nowhere."))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"durable": "a.b"}, ValueError, "plain name"),
        ({"durable": ""}, ValueError, "empty"),
        ({"durable": 3}, TypeError, "str"),
        ({"durable": "d", "buffer": 0}, ValueError, "at least 1"),
        ({"durable": "d", "buffer": 1.5}, TypeError, "int"),
        ({"durable": "d", "ack": "later"}, ValueError, "on_next"),
        ({"durable": "d", "heartbeat": 0}, ValueError, "seconds"),
    ],
)
async def test_bad_arguments_fail_at_the_call(
    nats_server: NatsServer, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    async with bnats.connect(nats_server.url) as client:
        with pytest.raises(error, match=match):
            bnats.to_aiter(client, "S", **kwargs)


async def test_bad_clients_and_sources_fail_at_the_call(
    nats_server: NatsServer, backend_name: str
) -> None:
    with pytest.raises(TypeError, match=r"bridges.nats.connect"):
        bnats.to_aiter(object(), "S", durable="d")  # type: ignore[arg-type]
    async with bnats.connect(nats_server.url) as client:
        with pytest.raises(TypeError, match="async iterable"):
            await bnats.from_aiter([b"x"], client, "x")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="in_flight"):
            await bnats.from_aiter(numbers(1), client, "x", in_flight=0)
        with pytest.raises(TypeError, match="encode"):
            await bnats.from_aiter(strings(), client, fresh("x."))
        if backend_name == "trio":
            with pytest.raises(RuntimeError, match="runs only on asyncio"):
                bnats.to_aiter(client.js, "S", durable="d")


async def strings() -> AsyncIterator[bytes]:
    yield "text"  # type: ignore[misc]


async def test_consuming_resumes_after_a_server_restart(private_nats_server: NatsServer) -> None:
    # nats.py #504/#544: pull requests die with the server; missed heartbeats re-send them
    server = private_nats_server
    async with bnats.connect(server.url, reconnect_time_wait=0.1) as client:
        await add_stream(client, ["restart.x"])
        await bnats.from_aiter(numbers(5), client, "restart.x")
        async with bnats.to_aiter(client, "restart.x", durable="d", heartbeat=0.2) as it:
            got = [int((await it.__anext__()).data) for _ in range(5)]
            await anyio.to_thread.run_sync(server.restart)
            with anyio.fail_after(20):
                await bnats.from_aiter(numbers(5, 5), client, "restart.x")
                while not set(range(10)) <= set(got):
                    got.append(int((await it.__anext__()).data))
        # at-least-once: 4 was in hand at the restart, and the acks of 0-3 may not have
        # reached the server before it stopped, so any of 0-4 may come again; 5-9 come once
        assert sorted(n for n in got if n >= 5) == list(range(5, 10)), got


async def test_a_lost_connection_ends_the_stream_with_its_error_once(
    private_nats_server: NatsServer,
) -> None:
    server = private_nats_server
    async with bnats.connect(
        server.url, max_reconnect_attempts=1, reconnect_time_wait=0.05
    ) as client:
        await add_stream(client, ["lost.x"])
        await bnats.from_aiter(numbers(3), client, "lost.x")
        async with bnats.to_aiter(client, "lost.x", durable="d", heartbeat=0.2) as it:
            assert [int((await it.__anext__()).data) for _ in range(3)] == [0, 1, 2]
            await brokers.kill_the_server_under(it, server, nats_errors.ConnectionClosedError)


async def test_from_aiter_pulls_the_source_only_when_the_window_has_room(
    nats_server: NatsServer,
) -> None:
    in_flight = 4
    async with a_client_and_a_stream(nats_server, "window.") as (client, subject, _):
        stats = client.js._nc.stats  # this connection's message counters (nats-py's)
        acks_before = stats["in_msgs"]  # publish acks are all this connection receives
        unacked: list[int] = []

        async def source() -> AsyncIterator[bytes]:
            for i in range(500):
                # taken from the source and not yet acknowledged, before this one is taken
                unacked.append(i - (stats["in_msgs"] - acks_before))
                yield str(i).encode()

        assert await bnats.from_aiter(source(), client, subject, in_flight=in_flight) == 500
        # never more than the window with this one, and the window was used, not one
        # publish at a time
        assert max(unacked) == in_flight - 1


async def test_a_value_is_published_while_the_source_waits_with_room_left(
    nats_server: NatsServer,
) -> None:
    # under trio the values cross to the client's loop in runs: a run must go over
    # when the source is about to wait, not only once the window's room is spent
    async with a_client_and_a_stream(nats_server, "eager.") as (client, subject, stream):

        async def source() -> AsyncIterator[bytes]:
            for i in range(3):
                yield str(i).encode()
                # wait until the server has this value: it cannot wait in a run
                async with bnats.to_aiter(client, stream, durable=fresh("d")) as it:
                    with anyio.fail_after(10):
                        async for msg in it:
                            if msg.data == str(i).encode():
                                break

        assert await bnats.from_aiter(source(), client, subject, in_flight=64) == 3
        assert await stored(client, stream) == 3


async def test_cancelling_from_aiter_while_the_source_waits_closes_the_source(
    nats_server: NatsServer,
) -> None:
    async with a_client_and_a_stream(nats_server, "cancelwait.") as (client, subject, stream):
        never = anyio.Event()
        closed = []

        async def source() -> AsyncIterator[bytes]:
            try:
                yield b"0"
                yield b"1"
                await never.wait()
                yield b"2"
            finally:
                closed.append(True)

        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(bnats.from_aiter, source(), client, subject)
                # both values reach the server while the source waits; then cancel
                async with bnats.to_aiter(client, stream, durable=fresh("d")) as it:
                    with anyio.fail_after(10):
                        assert [(await it.__anext__()).data for _ in range(2)] == [b"0", b"1"]
                scope.cancel()
        assert scope.cancelled_caught
        assert closed == [True]
        assert await stored(client, stream) == 2


async def test_a_failed_publish_stops_the_pump_and_closes_the_source(
    nats_server: NatsServer,
) -> None:
    full_at_five = a_client_and_a_stream(nats_server, "fail.", max_msgs=5, discard="new")
    async with full_at_five as (client, subject, stream):
        pulled = []
        closed = []

        async def source() -> AsyncIterator[bytes]:
            try:
                for i in range(100):
                    pulled.append(i)
                    yield str(i).encode()
            finally:
                closed.append(True)

        with pytest.raises(nats_js_errors.APIError, match="maximum messages"):
            await bnats.from_aiter(source(), client, subject, in_flight=1)
        assert closed == [True]
        # five stored, the sixth refused, nothing pulled after it (on trio too: the
        # refusal stops the puller on the caller's loop before its next pull)
        assert len(pulled) == 6
        assert await stored(client, stream) == 5


async def test_an_ack_missing_for_ack_timeout_fails_the_pump_with_room_in_the_window(
    nats_server: NatsServer,
) -> None:
    # the clock of a publish's ack runs from its publish, not from when the window
    # fills: the pump fails before its next publish, with the window far from full
    subject = fresh("mute.")
    async with bnats.connect(nats_server.url) as client:
        # a plain subscriber that never answers: the publishes are taken, never acked
        sub = await client.call(lambda js: js._nc.subscribe(subject))
        stats = client.js._nc.stats  # this connection's message counters (nats-py's)
        sent = stats["out_msgs"]
        pulled = []

        async def source() -> AsyncIterator[bytes]:
            for i in range(100):
                pulled.append(i)
                yield b"x"
                if i == 0:
                    await anyio.sleep(1.0)  # the first publish's ack_timeout runs out

        with anyio.fail_after(10), pytest.raises(nats_errors.TimeoutError):
            await bnats.from_aiter(source(), client, subject, in_flight=64, ack_timeout=0.1)
        assert pulled == [0, 1]
        assert stats["out_msgs"] - sent == 1  # nothing published after the failure
        await client.call(lambda _: sub.unsubscribe())


async def test_a_source_error_comes_out_as_itself_after_what_was_published(
    nats_server: NatsServer,
) -> None:
    async with a_client_and_a_stream(nats_server, "srcerr.") as (client, subject, stream):
        boom = RuntimeError("boom")

        async def source() -> AsyncIterator[bytes]:
            yield b"a"
            yield b"b"
            raise boom

        with pytest.raises(RuntimeError) as caught:
            await bnats.from_aiter(source(), client, subject)
        assert caught.value is boom
        assert await stored(client, stream) == 2


async def run_worker(
    url: str, stream: str, durable: str, backend: str, lines: list[tuple[int, int]], until: Any
) -> None:
    """Run tests/natsworker.py until ``until(lines)``, SIGKILL it, collect all it printed."""
    await commands.run_worker(
        "tests.natsworker",
        [url, stream, durable, backend],
        lines,
        lambda seq, delivered: (int(seq), int(delivered)),
        until,
    )


async def test_at_least_once_across_a_killed_consumer_process(
    nats_server: NatsServer, backend_name: str
) -> None:
    total, buffer = 1_000, 16
    subject = fresh("crash.")
    async with bnats.connect(nats_server.url) as client:
        stream, durable = await add_stream_and_durable(client, subject, ack_wait=1.0)
        await bnats.from_aiter(numbers(total), client, subject, in_flight=256)
        first: list[tuple[int, int]] = []
        await run_worker(
            nats_server.url, stream, durable, backend_name, first, lambda got: len(got) >= 300
        )
        info = await consumer_info(client, stream, durable)
        acked = info.ack_floor.stream_seq  # every message up to it was acked
        second: list[tuple[int, int]] = []

        def complete(got: list[tuple[int, int]]) -> bool:
            return {s for s, _ in first} | {s for s, _ in got} == set(range(1, total + 1))

        await run_worker(nats_server.url, stream, durable, backend_name, second, complete)
    assert [s for s, _ in first] == list(range(1, len(first) + 1))  # in order
    # processed twice: only messages whose ack had not reached the server
    again = sorted({s for s, _ in first} & {s for s, _ in second})
    # (acks not yet written out at the kill: fewer than the buffer, since the server
    # delivers only against pull requests written after the acks before them)
    assert len(again) <= buffer + 1
    assert all(s > acked for s in again)
    # redelivered: only what was not acked (the worker's buffer and the one in hand)
    redelivered = [s for s, d in second if d > 1]
    assert len(redelivered) <= buffer + 1
    assert all(s > acked for s in redelivered)
    assert acked >= len(first) - buffer - 1


async def test_cancelling_from_aiter_while_its_publishes_finish_raises_the_cancellation(
    nats_server: NatsServer,
) -> None:
    # regression: under trio the helper loop's cancelled publisher surfaced as
    # anyio.BrokenResourceError instead of the caller's cancellation
    async with a_client_and_a_stream(nats_server, "cancelpub.") as (client, subject, _):
        await brokers.cancel_from_aiter_as_its_source_ends(
            lambda source: bnats.from_aiter(source, client, subject),
            lambda i: str(i).encode(),
            rounds=5,
        )


async def test_a_server_restarted_without_its_store_fails_the_stream_naming_the_consumer(
    private_nats_server: NatsServer,
) -> None:
    # after a restart JetStream answers pull requests with 503 (no responders) until
    # it serves the consumer again; when the consumer is gone for good (the server
    # lost its store) the stream fails with an error that says so, once
    server = private_nats_server
    async with bnats.connect(server.url, reconnect_time_wait=0.1) as client:
        await add_stream(client, ["lost.store"])
        await bnats.from_aiter(numbers(2), client, "lost.store")
        async with bnats.to_aiter(client, "lost.store", durable="d", heartbeat=0.2) as it:
            assert (await it.__anext__()).data == b"0"
            await anyio.to_thread.run_sync(server.stop)
            shutil.rmtree(server.store / "js")
            await anyio.to_thread.run_sync(server.start)
            with anyio.fail_after(20), pytest.raises(LookupError, match=r"'d' .*no longer"):
                while True:
                    await it.__anext__()
