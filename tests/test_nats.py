"""bridges.nats: JetStream <-> async iterables against a real nats-server, on every backend."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bridges import nats as bnats

from .natsserver import NatsServer

pytestmark = pytest.mark.anyio

_ids = itertools.count()


def fresh(prefix: str = "s") -> str:
    """A stream / subject / durable name no other test uses on the shared server."""
    return f"{prefix}{next(_ids)}"


async def add_stream(client: bnats.Client, subjects: list[str], **config: Any) -> str:
    name = fresh("S")
    await client.call(lambda js: js.add_stream(name=name, subjects=subjects, **config))
    return name


async def numbers(n: int, start: int = 0) -> AsyncIterator[bytes]:
    for i in range(start, start + n):
        yield str(i).encode()


async def test_round_trip(nats_server: NatsServer) -> None:
    subject = fresh("rt.")
    async with bnats.connect(nats_server.url) as client:
        await add_stream(client, [subject])
        assert await bnats.from_aiter(numbers(200), client, subject) == 200
        got = []
        async with bnats.to_aiter(client, subject, durable=fresh("d"), buffer=16) as it:
            async for msg in it:
                got.append(int(msg.data))
                if len(got) == 200:
                    break
        assert got == list(range(200))
