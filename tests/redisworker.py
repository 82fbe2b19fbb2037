"""A consumer process for the crash tests.

``python -m tests.redisworker URL STREAM GROUP CONSUMER BACKEND``

It consumes ``STREAM`` as ``CONSUMER`` of ``GROUP`` with ``ack="on_next"`` and
prints ``<entry id> <delivery count>`` for each entry it processed, flushed at
once, until it is killed.  ``BACKEND`` is asyncio, uvloop or trio.
"""

from __future__ import annotations

import sys

import anyio

from bridges import redis


async def consume(url: str, stream: str, group: str, consumer: str) -> None:
    async with (
        redis.connect(url) as client,
        redis.to_aiter(client, stream, group=group, consumer=consumer, buffer=16) as entries,
    ):
        async for entry in entries:
            # processing: the line is out before the entry is acked (at the next one)
            sys.stdout.write(f"{entry.id} {entry.delivery_count}\n")
            sys.stdout.flush()


def main() -> None:
    url, stream, group, consumer, backend = sys.argv[1:6]
    if backend == "trio":
        anyio.run(consume, url, stream, group, consumer, backend="trio")
    else:
        options = {"use_uvloop": backend == "uvloop"}
        anyio.run(consume, url, stream, group, consumer, backend="asyncio", backend_options=options)


if __name__ == "__main__":
    main()
