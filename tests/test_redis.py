"""bridges.redis: Redis Streams <-> async iterables against a real redis-server, on every
backend."""

from __future__ import annotations

import gc
import itertools
import os
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import pytest
import redis.exceptions as redis_errors
from redis.asyncio.retry import Retry
from redis.backoff import ConstantBackoff, NoBackoff

import bridges
from bridges import redis as bredis

from . import brokers, commands
from .proxy import Proxy
from .servers import RedisServer

pytestmark = pytest.mark.anyio

_ids = itertools.count()


def fresh(prefix: str = "s") -> str:
    """A stream / group / consumer name no other test uses on the shared server."""
    return f"{prefix}{os.getpid()}.{next(_ids)}"


async def numbers(n: int, start: int = 0) -> AsyncIterator[dict[str, int]]:
    for i in range(start, start + n):
        yield {"n": i}


def n_of(entry: bredis.Entry) -> int:
    return int(entry.fields[b"n"])


@asynccontextmanager
async def a_client_and_a_stream_of(
    server: RedisServer, n: int, **add: Any
) -> AsyncIterator[tuple[bredis.Client, str]]:
    """A client of ``server`` and a stream no other test uses, which ``from_aiter`` (with
    the options ``add``) gave the entries 0 to ``n - 1``: ``(client, stream)``."""
    stream = fresh()
    async with bredis.connect(server.url) as client:
        assert await bredis.from_aiter(numbers(n), client, stream, **add) == n
        yield client, stream


async def pending(client: bredis.Client, stream: str, group: str) -> int:
    info: Any = await client.call(lambda r: r.xpending(stream, group))
    return int(info["pending"])


async def raw_read(
    client: bredis.Client, stream: str, group: str, consumer: str, count: int
) -> list[Any]:
    """An XREADGROUP whose reply the application never sees (as a cancelled read's)."""
    reply: Any = await client.call(
        lambda r: r.xreadgroup(group, consumer, {stream: ">"}, count=count)
    )
    return [e for _, entries in reply for e in entries]


async def test_round_trip(redis_server: RedisServer) -> None:
    async with a_client_and_a_stream_of(redis_server, 200) as (client, stream):
        got = []
        async with bredis.to_aiter(client, stream, group="g", consumer="c", buffer=16) as it:
            async for entry in it:
                assert entry.delivery_count == 1
                assert entry.stream == stream
                got.append(n_of(entry))
                if len(got) == 200:
                    break
        assert got == list(range(200))
        # the last one was in hand at the break: not acked, pending
        assert await pending(client, stream, "g") == 1


#: the issue's 100,000 in the stress session (nox -s stress), a twentieth of it by default
MANY = 100_000 if os.environ.get("BRIDGES_STRESS") else 5_000


async def test_a_slow_consumer_of_many_entries_holds_at_most_the_buffer_in_order(
    redis_server: RedisServer,
) -> None:
    n, buffer = MANY, 32
    async with a_client_and_a_stream_of(redis_server, n, in_flight=256) as (client, stream):

        async def look(taken: int) -> None:
            # read by us and not acked (the one in hand included)
            assert await pending(client, stream, "g") <= buffer

        it = bredis.to_aiter(client, stream, group="g", consumer="c", buffer=buffer)
        await brokers.consume_slowly_in_order(it, n, buffer, n_of, look)
        assert await pending(client, stream, "g") == 1  # the last one, in hand at the break


async def test_stats_count_the_entry_in_hand_until_it_is_acked(
    redis_server: RedisServer,
) -> None:
    async with a_client_and_a_stream_of(redis_server, 3) as (client, stream):
        it = bredis.to_aiter(client, stream, group="g", consumer="c", buffer=1)

        async def look() -> None:
            assert await pending(client, stream, "g") == 1  # the one in hand, nothing more

        await brokers.take_two_through_a_buffer_of_one(it, look)  # the one in hand: pending


async def test_an_iterator_never_started_holds_nothing_and_warns_nothing(
    redis_server: RedisServer,
) -> None:
    async with bredis.connect(redis_server.url) as client:
        stream = fresh()
        it = bredis.to_aiter(client, stream, group="g", consumer="c")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            del it
            gc.collect()
        assert [str(w.message) for w in caught] == []
        closed = bredis.to_aiter(client, stream, group="g", consumer="c")
        await closed.aclose()
        with pytest.raises(StopAsyncIteration):
            await closed.__anext__()
        assert closed.stats == bridges.Stats(
            0, 0, 0, 0, capacity=64, open_senders=0, open_receivers=0
        )
        # nothing was asked of the server: not even the group was created
        assert await client.call(lambda r: r.exists(stream)) == 0


async def test_an_empty_stream_waits_past_the_socket_timeout(redis_server: RedisServer) -> None:
    # redis-py #3138: a BLOCK longer than socket_timeout raises TimeoutError
    stream = fresh()
    async with (
        bredis.connect(redis_server.url, socket_timeout=0.5) as client,
        bredis.to_aiter(client, stream, group="g", consumer="c") as it,
        # the entry comes from a client of its own: a short socket timeout is this test's
        # subject, not the adding's (on a loaded machine a connect can outlast it)
        bredis.connect(redis_server.url) as producer,
    ):
        with anyio.move_on_after(2.5) as scope:  # five socket timeouts: nothing raised
            await it.__anext__()
        assert scope.cancelled_caught
        await bredis.from_aiter(numbers(1, 7), producer, stream)
        with anyio.fail_after(10):
            entry = await it.__anext__()
        assert n_of(entry) == 7


async def test_a_cancelled_next_loses_nothing(redis_server: RedisServer) -> None:
    stream = fresh()
    async with (
        bredis.connect(redis_server.url) as client,
        bredis.to_aiter(client, stream, group="g", consumer="c") as it,
    ):
        got = await brokers.next_after_cancelled_nexts(
            it, lambda round_: bredis.from_aiter(numbers(1, round_), client, stream)
        )
    assert [(n_of(entry), entry.delivery_count) for entry in got] == [(0, 1), (1, 1), (2, 1)]


class HoldingProxy(Proxy):
    """A proxy to the server that holds back the end of each connection the client
    closes: the server sees it only once ``let_through`` is set.  The server's own close
    of a connection is passed on to the client at once.  Once ``muted``, nothing the
    server sends reaches the client: a server that stopped answering."""

    def __init__(self, port: int) -> None:
        super().__init__(port, "redis")
        self.let_through = anyio.Event()
        self.muted = False

    async def up_ended(self, server: anyio.abc.SocketStream) -> None:
        await self.let_through.wait()
        await super().up_ended(server)

    async def down(self, chunk: bytes, client: anyio.abc.SocketStream) -> None:
        if not self.muted:
            await super().down(chunk, client)


async def test_adding_to_a_server_that_stopped_answering_times_out(
    redis_server: RedisServer,
) -> None:
    # the adds of a round trip are read back under the socket timeout: a server that
    # stops answering fails from_aiter with redis-py's TimeoutError, it does not hang
    proxy = HoldingProxy(redis_server.port)
    proxy.let_through.set()
    async with anyio.create_task_group() as tg:
        await tg.start(proxy.serve)
        no_retries = Retry(NoBackoff(), 0)
        async with bredis.connect(proxy.url, socket_timeout=0.5, retry=no_retries) as client:
            stream = fresh()
            assert await bredis.from_aiter(numbers(10), client, stream) == 10
            proxy.muted = True
            with anyio.fail_after(10), pytest.raises(redis_errors.TimeoutError):
                await bredis.from_aiter(numbers(100, 10), client, stream)
            proxy.muted = False
        tg.cancel_scope.cancel()


async def blocked_in_a_read(admin: bredis.Client, name: str) -> bool:
    """Whether the server shows a connection called ``name`` waiting in a blocking read."""
    clients: Any = await admin.call(lambda r: r.client_list())
    return any(c["name"] == name and "b" in c["flags"] for c in clients)


async def test_a_read_waiting_on_the_server_has_ended_there_when_aclose_returns(
    redis_server: RedisServer,
) -> None:
    # a closed connection is dropped by the server at a later turn of its loop: when
    # aclose() returns, the server must already have let go of the read that waited there
    stream, name = fresh(), fresh("reader-")
    proxy = HoldingProxy(redis_server.port)
    async with anyio.create_task_group() as tg:
        await tg.start(proxy.serve)
        async with (
            bredis.connect(redis_server.url) as admin,
            bredis.connect(proxy.url, client_name=name) as client,
        ):
            it = bredis.to_aiter(client, stream, group="g", consumer="c")
            await it.__aenter__()
            with anyio.fail_after(10):
                while not await blocked_in_a_read(admin, name):
                    await anyio.sleep(0.01)  # the server's state, looked at again
            at_return: list[bool] = []
            closed = anyio.Event()

            async def close() -> None:
                await it.aclose()
                at_return.append(await blocked_in_a_read(admin, name))
                closed.set()

            tg.start_soon(close)
            # the proxy holds the connection's end back: an aclose() that does not wait
            # for the server returns meanwhile; one that waits gets the end through after
            # this pause (its length only bounds how long an early return is waited for)
            with anyio.move_on_after(1):
                await closed.wait()
            proxy.let_through.set()
            with anyio.fail_after(10):
                await closed.wait()
            assert at_return == [False], "aclose() returned while the server still held its read"
        tg.cancel_scope.cancel()


async def test_acks_given_while_a_read_waits_on_the_server_do_not_wait_for_it(
    redis_server: RedisServer,
) -> None:
    # with the stream drained the read loop blocks on the server (up to a second a
    # read); acks given meanwhile go out at once, not with the read after that one
    stream, name = fresh(), fresh("reader-")
    async with (
        bredis.connect(redis_server.url) as admin,
        bredis.connect(redis_server.url, client_name=name) as client,
    ):
        assert await bredis.from_aiter(numbers(3), client, stream) == 3
        async with bredis.to_aiter(client, stream, group="g", consumer="c", ack="manual") as it:
            entries = [await it.__anext__() for _ in range(3)]
            got: list[int] = []

            async def next_one() -> None:
                got.append(n_of(await it.__anext__()))  # waits: the stream is drained

            async with anyio.create_task_group() as tg:
                tg.start_soon(next_one)
                with anyio.fail_after(10):
                    while not await blocked_in_a_read(admin, name):
                        await anyio.sleep(0.01)  # the server's state, looked at again
                for entry in entries:
                    await entry.ack()
                # a read blocks for 1 s: acks held back for it would mostly arrive later
                with anyio.fail_after(0.5):
                    while await pending(admin, stream, "g"):
                        await anyio.sleep(0.01)
                await bredis.from_aiter(numbers(1, 3), admin, stream)
            assert got == [3]


async def test_entries_of_a_read_whose_reply_was_lost_are_read_again(
    redis_server: RedisServer,
) -> None:
    # a cancelled or interrupted XREADGROUP leaves what the server sent pending, unseen:
    # at the start, and while the iterator runs (it looks whenever a read comes back empty)
    async with a_client_and_a_stream_of(redis_server, 3) as (client, stream):
        await client.call(lambda r: r.xgroup_create(stream, "g", id="0"))
        assert len(await raw_read(client, stream, "g", "c", 2)) == 2  # 0, 1: lost
        async with bredis.to_aiter(client, stream, group="g", consumer="c") as it:
            with anyio.fail_after(10):
                first = [await it.__anext__() for _ in range(3)]
            assert [(n_of(e), e.delivery_count) for e in first] == [(0, 2), (1, 2), (2, 1)]
            await bredis.from_aiter(numbers(2, 3), client, stream)
            # the iterator may have read one of them first; the rest goes to the "lost" read
            late = await raw_read(client, stream, "g", "c", 2)
            with anyio.fail_after(10):
                got = [n_of(await it.__anext__()) for _ in range(2)]
            assert sorted(got) == [3, 4]
            assert len(late) <= 2
        assert await pending(client, stream, "g") == 1  # the last in hand


async def test_acks_reach_the_server_while_the_consumer_still_holds_a_reads_entries(
    redis_server: RedisServer,
) -> None:
    # the iterator's takes are told a read at a time, but not its acks: an entry the
    # consumer moved past is acknowledged while it works on the next one of the same read
    async with a_client_and_a_stream_of(redis_server, 8) as (client, stream):
        it = bredis.to_aiter(client, stream, group="g", consumer="c", buffer=8)
        async with it:
            for moved_past in range(3):
                assert n_of(await it.__anext__()) == moved_past  # acks the one before
                # all 8 were read at once; the ones moved past leave the pending list
                # with no further __anext__ (the server's state, looked at again)
                with anyio.fail_after(5):
                    while await pending(client, stream, "g") != 8 - moved_past:
                        await anyio.sleep(0.01)


async def test_early_exit_leaves_unacked_entries_pending_for_the_next_start(
    redis_server: RedisServer,
) -> None:
    async with a_client_and_a_stream_of(redis_server, 100) as (client, stream):
        async with bredis.to_aiter(client, stream, group="g", consumer="c", buffer=16) as it:
            async for entry in it:
                if n_of(entry) == 9:
                    break  # 0..8 acked; 9 in hand and up to 15 more read: pending
        assert 1 <= await pending(client, stream, "g") <= 16
        got = []
        with anyio.fail_after(10):
            async with bredis.to_aiter(client, stream, group="g", consumer="c") as it:
                async for entry in it:
                    got.append((n_of(entry), entry.delivery_count))
                    if len(got) == 91:
                        break
        assert [n for n, _ in got] == list(range(9, 100))  # the pending ones first, in order
        assert got[0][1] == 2


async def test_manual_and_on_receive_acks(redis_server: RedisServer) -> None:
    async with a_client_and_a_stream_of(redis_server, 4) as (client, stream):
        async with bredis.to_aiter(client, stream, group="g", consumer="c", ack="manual") as it:
            entries = [await it.__anext__() for _ in range(4)]
            await entries[0].ack()
            with pytest.raises(RuntimeError, match="already"):
                await entries[0].ack()
            await entries[2].ack()
        with pytest.raises(anyio.ClosedResourceError, match="pending"):
            await entries[1].ack()
        assert await pending(client, stream, "g") == 2
        async with bredis.to_aiter(
            client, stream, group="g2", consumer="c", ack="on_receive"
        ) as it:
            entry = await it.__anext__()
            with pytest.raises(RuntimeError, match="already"):
                await entry.ack()  # acked when it was received
            await it.__anext__()
        # the two handed over were acked (the acks are out when the block is left); the two
        # read into the buffer were not
        assert await pending(client, stream, "g2") == 2


async def test_claim_idle_takes_over_a_dead_consumers_entries(redis_server: RedisServer) -> None:
    async with a_client_and_a_stream_of(redis_server, 6) as (client, stream):
        await client.call(lambda r: r.xgroup_create(stream, "g", id="0"))
        assert len(await raw_read(client, stream, "g", "dead", 4)) == 4  # then it crashed
        got = []
        with anyio.fail_after(10):
            async with bredis.to_aiter(
                client, stream, group="g", consumer="alive", claim_idle=0.2
            ) as it:
                async for entry in it:
                    got.append(n_of(entry))
                    if len(got) == 6:
                        break
        assert sorted(got) == list(range(6))


async def test_deleted_pending_entries_are_acked_and_skipped(redis_server: RedisServer) -> None:
    async with a_client_and_a_stream_of(redis_server, 4) as (client, stream):
        await client.call(lambda r: r.xgroup_create(stream, "g", id="0"))
        lost = await raw_read(client, stream, "g", "c", 4)
        await client.call(lambda r: r.xdel(stream, lost[1][0], lost[2][0]))
        async with bredis.to_aiter(client, stream, group="g", consumer="c") as it:
            with anyio.fail_after(10):
                got = [n_of(await it.__anext__()) for _ in range(2)]
            assert got == [0, 3]
            await bredis.from_aiter(numbers(1, 4), client, stream)
            with anyio.fail_after(10):
                assert n_of(await it.__anext__()) == 4
        assert await pending(client, stream, "g") == 1  # the last in hand; the deleted acked


async def test_two_consumers_of_one_group_share_the_work(redis_server: RedisServer) -> None:
    n = 400
    stream = fresh()
    async with bredis.connect(redis_server.url) as client:
        got: dict[str, list[int]] = {"a": [], "b": []}
        done = anyio.Event()

        async def consume(name: str) -> None:
            async with bredis.to_aiter(client, stream, group="g", consumer=name, buffer=8) as it:
                async for entry in it:
                    got[name].append(n_of(entry))
                    await anyio.lowlevel.checkpoint()
                    if len(got["a"]) + len(got["b"]) == n:
                        done.set()

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(consume, "a")
                tg.start_soon(consume, "b")
                await bredis.from_aiter(numbers(n), client, stream, in_flight=16)
                await done.wait()
                tg.cancel_scope.cancel()
        assert sorted(got["a"] + got["b"]) == list(range(n))
        assert got["a"] and got["b"]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"group": "", "consumer": "c"}, ValueError, "empty"),
        ({"group": 3, "consumer": "c"}, TypeError, "str"),
        ({"group": "g", "consumer": None}, TypeError, "str"),
        ({"group": "g", "consumer": "c", "buffer": 0}, ValueError, "at least 1"),
        ({"group": "g", "consumer": "c", "buffer": 1.5}, TypeError, "int"),
        ({"group": "g", "consumer": "c", "ack": "later"}, ValueError, "on_next"),
        ({"group": "g", "consumer": "c", "claim_idle": 0}, ValueError, "seconds"),
    ],
)
async def test_bad_arguments_fail_at_the_call(
    redis_server: RedisServer, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    async with bredis.connect(redis_server.url) as client:
        with pytest.raises(error, match=match):
            bredis.to_aiter(client, "s", **kwargs)


async def strings() -> AsyncIterator[dict[str, int]]:
    yield "text"  # type: ignore[misc]


async def test_bad_clients_streams_and_sources_fail_clearly(
    redis_server: RedisServer, backend_name: str
) -> None:
    with pytest.raises(TypeError, match=r"bridges.redis.connect"):
        bredis.to_aiter(object(), "s", group="g", consumer="c")  # type: ignore[arg-type]
    async with bredis.connect(redis_server.url) as client:
        with pytest.raises(TypeError, match="async iterable"):
            await bredis.from_aiter([{"a": 1}], client, "x")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="in_flight"):
            await bredis.from_aiter(numbers(1), client, "x", in_flight=0)
        with pytest.raises(ValueError, match="None for no trimming"):
            await bredis.from_aiter(numbers(1), client, "x", maxlen=0)
        with pytest.raises(TypeError, match="wrap them"):
            await bredis.from_aiter(strings(), client, fresh())
        key = fresh()
        await client.call(lambda r: r.set(key, "not a stream"))
        async with bredis.to_aiter(client, key, group="g", consumer="c") as it:
            with pytest.raises(TypeError, match="other than a stream"):
                await it.__anext__()
            with pytest.raises(StopAsyncIteration):
                await it.__anext__()
        with pytest.raises(redis_errors.ResponseError, match="WRONGTYPE"):
            await bredis.from_aiter(numbers(3), client, key)
        if backend_name == "trio":
            with pytest.raises(RuntimeError, match="runs only on asyncio"):
                bredis.to_aiter(client.redis, "s", group="g", consumer="c")
    with pytest.raises(redis_errors.ConnectionError):
        async with bredis.connect(f"redis://127.0.0.1:{redis_server.port + 1}"):
            pass


async def test_a_lost_group_is_created_again_after_a_restart_without_persistence(
    private_redis_server: RedisServer,
) -> None:
    # a restart without persistence loses the stream and the group: NOGROUP, never a spin
    server = private_redis_server
    retry = Retry(ConstantBackoff(0.05), 100)
    async with bredis.connect(server.url, retry=retry) as client:
        await bredis.from_aiter(numbers(5), client, "r")
        async with bredis.to_aiter(client, "r", group="g", consumer="c") as it:
            got = [n_of(await it.__anext__()) for _ in range(5)]
            await anyio.to_thread.run_sync(server.restart)
            with anyio.fail_after(20):
                await bredis.from_aiter(numbers(5, 5), client, "r")
                while len(got) < 10:
                    got.append(n_of(await it.__anext__()))
        assert got == list(range(10))
        # the group destroyed while the consumer waits: created again too
        async with bredis.to_aiter(client, "r", group="g", consumer="c2") as it:
            with anyio.move_on_after(0.2):
                await it.__anext__()
            await client.call(lambda r: r.xgroup_destroy("r", "g"))
            await bredis.from_aiter(numbers(1, 10), client, "r")
            with anyio.fail_after(10):
                entries = [n_of(await it.__anext__()) for _ in range(6)]
            # a new group reads the stream from its start (0..4 went with the restart)
            assert entries == list(range(5, 11))


async def test_a_lost_connection_ends_the_stream_with_its_error_once(
    private_redis_server: RedisServer,
) -> None:
    server = private_redis_server
    async with bredis.connect(server.url, retry=Retry(NoBackoff(), 1)) as client:
        await bredis.from_aiter(numbers(3), client, "lost")
        async with bredis.to_aiter(client, "lost", group="g", consumer="c") as it:
            assert [n_of(await it.__anext__()) for _ in range(3)] == [0, 1, 2]
            await brokers.kill_the_server_under(it, server, redis_errors.ConnectionError)


async def test_from_aiter_pulls_the_source_only_when_the_window_has_room(
    redis_server: RedisServer,
) -> None:
    stream = fresh()
    in_flight = 8
    async with bredis.connect(redis_server.url) as client:
        ahead: list[int] = []

        async def source() -> AsyncIterator[dict[str, int]]:
            for i in range(300):
                if i % 10 == 0:  # nine values at once in between: room for windows
                    stored: Any = await client.call(lambda r: r.xlen(stream))
                    ahead.append(i - int(stored))  # taken from the source and not yet added
                yield {"n": i}

        assert await bredis.from_aiter(source(), client, stream, in_flight=in_flight) == 300
        assert max(ahead) <= in_flight + 1
        assert max(ahead) > 1  # the window was used, not one XADD at a time


async def test_maxlen_trims_the_stream(redis_server: RedisServer) -> None:
    stream = fresh()
    async with bredis.connect(redis_server.url) as client:
        await bredis.from_aiter(numbers(500), client, stream, maxlen=50, approximate=False)
        assert await client.call(lambda r: r.xlen(stream)) == 50
        async with bredis.to_aiter(client, stream, group="g", consumer="c") as it:
            assert n_of(await it.__anext__()) == 450  # the older ones are gone


async def test_a_failed_add_stops_the_pump_and_closes_the_source(
    redis_server: RedisServer, backend_name: str
) -> None:
    key = fresh()
    async with bredis.connect(redis_server.url) as client:
        await client.call(lambda r: r.set(key, "not a stream"))
        pulled = []
        closed = []

        async def source() -> AsyncIterator[dict[str, int]]:
            try:
                for i in range(100):
                    pulled.append(i)
                    yield {"n": i}
            finally:
                closed.append(True)

        with pytest.raises(redis_errors.ResponseError, match="WRONGTYPE"):
            await bredis.from_aiter(source(), client, key, in_flight=2)
        assert closed == [True]
        assert len(pulled) <= 2 + 2  # the first window, what waits in the crossing and send


async def test_a_source_error_comes_out_as_itself_after_what_was_added(
    redis_server: RedisServer,
) -> None:
    stream = fresh()
    async with bredis.connect(redis_server.url) as client:
        boom = RuntimeError("boom")

        async def source() -> AsyncIterator[dict[str, int]]:
            yield {"n": 0}
            yield {"n": 1}
            raise boom

        with pytest.raises(RuntimeError) as caught:
            await bredis.from_aiter(source(), client, stream)
        assert caught.value is boom
        assert await client.call(lambda r: r.xlen(stream)) == 2


async def test_a_value_that_is_not_a_field_map_fails_after_the_values_before_it(
    redis_server: RedisServer,
) -> None:
    async def source() -> AsyncIterator[Any]:
        yield {"n": 0}
        yield {"n": 1}
        yield "two"
        yield {"n": 3}

    async with bredis.connect(redis_server.url) as client:
        stream = fresh()
        with pytest.raises(TypeError, match="wrap them"):
            await bredis.from_aiter(source(), client, stream)
        assert await client.call(lambda r: r.xlen(stream)) == 2


async def test_cancelling_from_aiter_raises_the_cancellation(redis_server: RedisServer) -> None:
    stream = fresh()
    async with bredis.connect(redis_server.url) as client:
        await brokers.cancel_from_aiter_as_its_source_ends(
            lambda source: bredis.from_aiter(source, client, stream),
            lambda i: {"n": i},
            rounds=3,
        )


async def run_worker(
    url: str, stream: str, backend: str, lines: list[tuple[str, int]], until: Any
) -> None:
    """Run tests/redisworker.py until ``until(lines)``, SIGKILL it, collect all it printed."""
    await commands.run_worker(
        "tests.redisworker",
        [url, stream, "g", "w", backend],
        lines,
        lambda entry_id, delivered: (entry_id.decode(), int(delivered)),
        until,
    )


async def test_at_least_once_across_a_killed_consumer_process(
    redis_server: RedisServer, backend_name: str
) -> None:
    total, buffer = 1_000, 16
    async with a_client_and_a_stream_of(redis_server, total, in_flight=256) as (client, stream):
        ids: Any = await client.call(lambda r: r.xrange(stream))
        every = [i.decode() for i, _ in ids]
        first: list[tuple[str, int]] = []
        await run_worker(redis_server.url, stream, backend_name, first, lambda got: len(got) >= 300)
        left = await pending(client, stream, "g")
        second: list[tuple[str, int]] = []

        def complete(got: list[tuple[str, int]]) -> bool:
            return {s for s, _ in first} | {s for s, _ in got} == set(every)

        await run_worker(redis_server.url, stream, backend_name, second, complete)
    assert [s for s, _ in first] == every[: len(first)]  # in order
    # pending at the kill: at most the worker's buffer (the one in hand included)
    assert left <= buffer
    again = {s for s, _ in first} & {s for s, _ in second}
    assert len(again) <= buffer
    # the restarted worker reads its pending ones first, each delivered once more
    redelivered = [s for s, d in second if d > 1]
    assert redelivered == [s for s, _ in second[: len(redelivered)]]
    assert len(redelivered) == left
