"""bridges.nats: an async iterable -> JetStream (from_aiter), read back through to_aiter.

The receiving side is a JetStream stream read by a durable consumer; the
server is a real ``nats-server -js`` on 127.0.0.1, one per test process,
started on first use.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterable

import anyio
import anyio.lowlevel

import bridges
from bridges import nats, testing
from bridges._bench._natsserver import shared_url
from bridges.testing import ConsumerError, Outcome, Plan

_ids = itertools.count()


class FromAiterHarness(testing.PullHarness):
    """nats.from_aiter(): each value published (in order, acked), read back by a consumer."""

    name = "nats.from_aiter"
    in_flight = 4
    claims = testing.claim_pull(
        na={
            "R10": "a broker decouples the two sides: the publisher's window is the server's "
            "publish acks (at most in_flight unacknowledged; tests/test_nats.py), not a "
            "reader's pace, and the stream stores what no one has read yet",
            "R13": "from_aiter is a call that iterates its source once; there is no "
            "subscription to repeat",
        }
    )

    async def drive(self, source: AsyncIterable[int], plan: Plan) -> Outcome:
        n = next(_ids)
        subject = f"conformance.{n}"
        outcome = Outcome()
        published: list[int] = []
        result: list[BaseException | None] = []
        reading = anyio.CancelScope()

        def encode(v: int) -> bytes:
            published.append(v)
            return str(v).encode()

        def all_read() -> bool:
            return bool(result) and len(outcome.values) == len(published)

        async with nats.connect(shared_url()) as client:
            await client.call(lambda js: js.add_stream(name=f"C{n}", subjects=[subject]))

            async def publish() -> None:
                try:
                    await nats.from_aiter(
                        bridges.iterate(source).map(encode),
                        client,
                        subject,
                        in_flight=self.in_flight,
                    )
                except Exception as exc:
                    result.append(exc)
                else:
                    result.append(None)
                if all_read():
                    reading.cancel()  # the reader waits for a value that will not come

            async with anyio.create_task_group() as tg:
                tg.start_soon(publish)
                try:
                    async with nats.to_aiter(client, subject, durable="reader", buffer=4) as it:
                        with reading:
                            while not all_read():
                                if plan.take is not None and len(outcome.values) >= plan.take:
                                    break
                                if plan.fail_after is not None and (
                                    len(outcome.values) >= plan.fail_after
                                ):
                                    raise ConsumerError
                                v = int((await it.__anext__()).data)
                                plan.seen(v)
                                outcome.values.append(v)
                                for _ in range(plan.slow):
                                    await anyio.lowlevel.checkpoint()
                except ConsumerError as exc:
                    outcome.error = exc
                    outcome.errors_seen += 1
                # the reader left: the publisher stops (and closes the source)
                tg.cancel_scope.cancel()
        if result and result[0] is not None:
            outcome.error = result[0]
            outcome.errors_seen += 1
        return outcome

    async def drive_bad(self) -> object:
        return await nats.from_aiter(42, None, "x")  # type: ignore[arg-type]


HARNESSES: list[testing.PushHarness | testing.PullHarness | testing.CallHarness] = [
    FromAiterHarness(),
]
