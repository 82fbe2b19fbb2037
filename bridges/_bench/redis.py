"""Redis Streams rows: the spoke against redis-py driven by hand with the same window.

A ``redis-server`` from the ``redis`` extra's wheel is started on a free 127.0.0.1
port on first use and stopped at exit.  Each case times the entries' passage
only (connecting, and adding the entries a consumer reads, are set-up).
Under trio the spoke runs the client on its helper asyncio loop; the
hand-written peer runs on asyncio, as it must (redis.asyncio is asyncio only).
Under uvloop both run on uvloop.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis

from bridges import redis

from ._servers import Row, broker_scenarios

WINDOW = 64
FIELDS = {"data": b"x" * 64}
_ids = itertools.count()


def _fresh() -> str:
    return f"bench.{os.getpid()}.{next(_ids)}"


async def _values(n: int) -> AsyncIterator[dict[str, bytes]]:
    for _ in range(n):
        yield FIELDS


async def _preload(r: aioredis.Redis, n: int) -> str:
    """A fresh stream with ``n`` entries in it, added by hand (set-up, not timed)."""
    stream = _fresh()
    for start in range(0, n, 1024):
        pipe = r.pipeline(transaction=False)
        for _ in range(min(1024, n - start)):
            pipe.xadd(stream, FIELDS)  # type: ignore[arg-type]
        await pipe.execute()
    return stream


@contextlib.asynccontextmanager
async def _by_hand(url: str) -> AsyncIterator[Any]:
    r = aioredis.Redis.from_url(url)
    try:
        yield r
    finally:
        await r.aclose()


# ---------------------------------------------------------------- adding


async def _spoke_add(client: redis.Client, n: int) -> float:
    stream = _fresh()
    t0 = time.perf_counter()
    await redis.from_aiter(_values(n), client, stream, in_flight=WINDOW)
    return time.perf_counter() - t0


async def _hand_add(r: aioredis.Redis, n: int) -> float:
    stream = _fresh()
    t0 = time.perf_counter()
    values = _values(n)
    batch: list[dict[str, bytes]] = []
    async for fields in values:
        batch.append(fields)
        if len(batch) == WINDOW:
            pipe = r.pipeline(transaction=False)
            for f in batch:
                pipe.xadd(stream, f)  # type: ignore[arg-type]
            await pipe.execute()
            batch = []
    if batch:
        pipe = r.pipeline(transaction=False)
        for f in batch:
            pipe.xadd(stream, f)  # type: ignore[arg-type]
        await pipe.execute()
    return time.perf_counter() - t0


# ---------------------------------------------------------------- consuming


async def _spoke_consume(client: redis.Client, n: int) -> float:
    stream = await client.call(lambda r: _preload(r, n))
    t0 = time.perf_counter()
    got = 0
    async with redis.to_aiter(
        client, stream, group="bench", consumer="c", buffer=WINDOW
    ) as entries:
        async for _ in entries:
            got += 1
            if got == n:
                break
    return time.perf_counter() - t0


async def _hand_consume(r: aioredis.Redis, n: int) -> float:
    stream = await _preload(r, n)
    t0 = time.perf_counter()
    await r.xgroup_create(stream, "bench", id="0", mkstream=True)
    got = 0
    while got < n:
        reply: Any = await r.xreadgroup("bench", "c", {stream: ">"}, count=WINDOW, block=1000)
        for _, entries in reply:
            ids = [entry_id for entry_id, _ in entries]
            got += len(ids)
            await r.xack(stream, "bench", *ids)
    return time.perf_counter() - t0


async def _hand_consume_piped(r: aioredis.Redis, n: int) -> float:
    """The loop above with each read's XACK sent in the next read's round trip (a
    pipeline), as the spoke sends them: the same wire traffic, none of its guarantees."""
    stream = await _preload(r, n)
    t0 = time.perf_counter()
    await r.xgroup_create(stream, "bench", id="0", mkstream=True)
    got = 0
    ids: list[Any] = []
    while got < n:
        pipe = r.pipeline(transaction=False)
        if ids:
            pipe.xack(stream, "bench", *ids)
        pipe.xreadgroup("bench", "c", {stream: ">"}, count=WINDOW, block=1000)
        *_, reply = await pipe.execute()
        ids = [entry_id for _, entries in reply for entry_id, _ in entries]
        got += len(ids)
    if ids:
        await r.xack(stream, "bench", *ids)
    return time.perf_counter() - t0


SCENARIOS = broker_scenarios(
    redis,
    _by_hand,
    [
        Row(
            "redis: from_aiter (XADD)",
            _spoke_add,
            "redis-py pipelined XADD loop",
            _hand_add,
            f"n 64-byte entries, pipelined {WINDOW} at a time at most",
        ),
        Row(
            "redis: to_aiter (consumer group)",
            _spoke_consume,
            "redis-py XREADGROUP/XACK loop",
            _hand_consume,
            f"n stored entries, read {WINDOW} at a time, each acked",
            also=(
                (
                    "redis-py, XACK with next read",
                    _hand_consume_piped,
                    "reported (same wire traffic)",
                ),
            ),
        ),
    ],
)
