"""bridges.redis: an async iterable -> a Redis stream (from_aiter), read back through to_aiter.

The receiving side is a Redis stream read by a consumer group; the server is a
real ``redis-server`` on 127.0.0.1 (from the ``redis`` extra's wheel), one per test
process, started on first use.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterable

import anyio
import anyio.lowlevel

import bridges
from bridges import redis, testing
from bridges._bench._redisserver import shared_url
from bridges.testing import ConsumerError, Outcome, Plan

_ids = itertools.count()


class FromAiterHarness(testing.PullHarness):
    """redis.from_aiter(): each value added (in order, pipelined), read back by a group."""

    name = "redis.from_aiter"
    in_flight = 4
    claims = testing.claim_pull(
        na={
            "R10": "a broker decouples the two sides: the writer's window is the server's "
            "XADD replies (at most in_flight unanswered; tests/test_redis.py), not a "
            "reader's pace, and the stream stores what no one has read yet",
            "R13": "from_aiter is a call that iterates its source once; there is no "
            "subscription to repeat",
        }
    )

    async def drive(self, source: AsyncIterable[int], plan: Plan) -> Outcome:
        stream = f"conformance.{os.getpid()}.{next(_ids)}"
        outcome = Outcome()
        added: list[int] = []
        result: list[BaseException | None] = []
        reading = anyio.CancelScope()

        def encode(v: int) -> dict[str, int]:
            added.append(v)
            return {"v": v}

        def all_read() -> bool:
            return bool(result) and len(outcome.values) == len(added)

        async with redis.connect(shared_url()) as client:

            async def add() -> None:
                try:
                    await redis.from_aiter(
                        bridges.iterate(source).map(encode),
                        client,
                        stream,
                        in_flight=self.in_flight,
                    )
                except Exception as exc:
                    result.append(exc)
                else:
                    result.append(None)
                if all_read():
                    reading.cancel()  # the reader waits for a value that will not come

            async with anyio.create_task_group() as tg:
                tg.start_soon(add)
                try:
                    async with redis.to_aiter(
                        client, stream, group="reader", consumer="r", buffer=4
                    ) as it:
                        with reading:
                            while not all_read():
                                if plan.take is not None and len(outcome.values) >= plan.take:
                                    break
                                if plan.fail_after is not None and (
                                    len(outcome.values) >= plan.fail_after
                                ):
                                    raise ConsumerError
                                v = int((await it.__anext__()).fields[b"v"])
                                plan.seen(v)
                                outcome.values.append(v)
                                for _ in range(plan.slow):
                                    await anyio.lowlevel.checkpoint()
                except ConsumerError as exc:
                    outcome.error = exc
                    outcome.errors_seen += 1
                # the reader left: the writer stops (and closes the source)
                tg.cancel_scope.cancel()
        if result and result[0] is not None:
            outcome.error = result[0]
            outcome.errors_seen += 1
        return outcome

    async def drive_bad(self) -> object:
        return await redis.from_aiter(42, None, "x")  # type: ignore[arg-type]


HARNESSES: list[testing.PushHarness | testing.PullHarness | testing.CallHarness] = [
    FromAiterHarness(),
]
