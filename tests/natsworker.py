"""A consumer process for the crash tests.

``python -m tests.natsworker URL STREAM DURABLE BACKEND``

It consumes ``STREAM`` through the durable pull consumer ``DURABLE`` with
``ack="on_next"`` and prints ``<stream sequence> <delivery count>`` for each
message it processed, flushed at once, until it is killed.  ``BACKEND`` is
asyncio, uvloop or trio.
"""

from __future__ import annotations

import sys

import anyio

from bridges import nats


async def consume(url: str, stream: str, durable: str) -> None:
    async with (
        nats.connect(url) as client,
        nats.to_aiter(client, stream, durable=durable, buffer=16, heartbeat=0.5) as messages,
    ):
        async for msg in messages:
            # processing: the line is out before the message is acked (at the next one)
            sys.stdout.write(f"{msg.sequence} {msg.num_delivered}\n")
            sys.stdout.flush()


def main() -> None:
    url, stream, durable, backend = sys.argv[1:5]
    if backend == "trio":
        anyio.run(consume, url, stream, durable, backend="trio")
    else:
        options = {"use_uvloop": backend == "uvloop"}
        anyio.run(consume, url, stream, durable, backend="asyncio", backend_options=options)


if __name__ == "__main__":
    main()
