"""open_channel across threads and event loops: asyncio <-> trio <-> plain threads."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
import trio

import bridges

LOOPS = ["asyncio", "uvloop", "trio", "thread"]
N = 20_000
CAP = 8


def run_on(kind: str, fn: Callable[[], Awaitable[Any]] | Callable[[], Any]) -> threading.Thread:
    """Run ``fn`` (async for loops, sync for 'thread') in a new thread on the given loop kind."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            if kind == "thread":
                result["value"] = fn()
            elif kind == "trio":
                result["value"] = trio.run(fn)  # type: ignore[arg-type]
            elif kind == "uvloop":
                import uvloop

                result["value"] = uvloop.run(fn())  # type: ignore[arg-type]
            else:
                result["value"] = asyncio.run(fn())  # type: ignore[arg-type]
        except BaseException as exc:  # reported by join_checked
            result["error"] = exc

    t = threading.Thread(target=target, name=f"test-{kind}")
    t.result = result  # type: ignore[attr-defined]
    t.start()
    return t


def join_checked(t: threading.Thread, timeout: float = 30) -> Any:
    t.join(timeout)
    assert not t.is_alive(), "a loop thread hung"
    result = t.result  # type: ignore[attr-defined]
    if "error" in result:
        raise result["error"]
    return result.get("value")


def make_producer(
    kind: str, send: bridges.ChannelSender[int], n: int, fail: BaseException | None = None
) -> Any:
    if kind == "thread":

        def produce_sync() -> str:
            with send:
                for i in range(n):
                    send.send_blocking(i)
                if fail is not None:
                    send.fail(fail)
            return "ok"

        return produce_sync

    async def produce() -> str:
        async with send:
            for i in range(n):
                await send.send(i)
            if fail is not None:
                send.fail(fail)
        return "ok"

    return produce


def make_consumer(
    kind: str, receive: bridges.ChannelReceiver[int], limit: int | None = None
) -> Any:
    async def consume() -> tuple[list[int], BaseException | None, int | None]:
        got: list[int] = []
        error = None
        try:
            async with receive:
                async for x in receive:
                    got.append(x)
                    if limit is not None and len(got) == limit:
                        break
        except Exception as exc:
            error = exc
        return got, error, receive.stats.high_water

    if kind == "thread":
        return lambda: anyio.run(consume)
    return consume


@pytest.mark.parametrize("consumer", ["asyncio", "uvloop", "trio", "thread"])
@pytest.mark.parametrize("producer", LOOPS)
def test_values_complete_ordered_bounded(producer: str, consumer: str) -> None:
    send, receive = bridges.open_channel[int](CAP)
    c = run_on(consumer, make_consumer(consumer, receive))
    p = run_on(producer, make_producer(producer, send, N))
    assert join_checked(p) == "ok"
    got, error, high_water = join_checked(c)
    assert error is None
    assert got == list(range(N))
    assert high_water is not None and high_water <= CAP


@pytest.mark.parametrize(
    ("producer", "consumer"),
    [("asyncio", "trio"), ("trio", "asyncio"), ("thread", "trio"), ("thread", "asyncio")],
)
def test_in_band_error_crosses_loops(producer: str, consumer: str) -> None:
    send, receive = bridges.open_channel[int](CAP)
    boom = ValueError("from the other loop")
    c = run_on(consumer, make_consumer(consumer, receive))
    p = run_on(producer, make_producer(producer, send, 100, fail=boom))
    join_checked(p)
    got, error, _ = join_checked(c)
    assert got == list(range(100))
    assert error is boom


@pytest.mark.parametrize(
    ("producer", "consumer"),
    [
        ("asyncio", "trio"),
        ("trio", "asyncio"),
        ("thread", "trio"),
        ("thread", "asyncio"),
        ("uvloop", "trio"),
    ],
)
def test_receiver_leaving_releases_blocked_sender(producer: str, consumer: str) -> None:
    send, receive = bridges.open_channel[int](CAP)
    outcome: dict[str, BaseException] = {}

    if producer == "thread":

        def produce_forever() -> None:
            try:
                i = 0
                while True:
                    send.send_blocking(i)
                    i += 1
            except anyio.BrokenResourceError as exc:
                outcome["exc"] = exc

        p = run_on("thread", produce_forever)
    else:

        async def produce_forever_async() -> None:
            try:
                i = 0
                while True:
                    await send.send(i)
                    i += 1
            except anyio.BrokenResourceError as exc:
                outcome["exc"] = exc

        p = run_on(producer, produce_forever_async)
    c = run_on(consumer, make_consumer(consumer, receive, limit=500))
    got, error, _ = join_checked(c)
    assert error is None
    assert got == list(range(500))
    join_checked(p)
    assert isinstance(outcome["exc"], anyio.BrokenResourceError)
