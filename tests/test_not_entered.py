"""Every object that must be entered says so, in one form, when used without ``async with``."""

from __future__ import annotations

import importlib.metadata
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import reactivex
from reactivex import operators as rx_ops

from bridges import channels, ops, rx, streams

pytestmark = pytest.mark.anyio

_REACTIVEX_MAJOR = int(importlib.metadata.version("reactivex").split(".")[0])

MESSAGE = "must be entered with 'async with' first"


async def _numbers() -> AsyncIterator[int]:
    for i in range(3):
        yield i


async def _chunks() -> AsyncIterator[bytes]:
    yield b"a\n"


async def _async_for(thing: Any) -> None:
    async for _ in thing:
        pass


def _uses() -> list[Any]:
    cases: list[tuple[str, Callable[[], Awaitable[object]]]] = [
        ("channels.from_aiter async for", lambda: _async_for(channels.from_aiter(_numbers()))),
        ("channels.from_aiter receive", lambda: channels.from_aiter(_numbers()).receive()),
        ("streams.from_aiter readline", lambda: streams.from_aiter(_chunks()).readline()),
        ("streams.from_aiter async for", lambda: _async_for(streams.from_aiter(_chunks()))),
        (
            "streams.byte_stream_from_aiter receive",
            lambda: streams.byte_stream_from_aiter(_chunks()).receive(),
        ),
        ("ops.merge async for", lambda: _async_for(ops.merge(_numbers(), _numbers()))),
        ("ops.batch within async for", lambda: _async_for(ops.batch(_numbers(), 2, within=1.0))),
        (
            "ops.map concurrency async for",
            lambda: _async_for(ops.map(_numbers(), str, concurrency=2)),
        ),
    ]
    return [pytest.param(use, id=name) for name, use in cases]


@pytest.mark.parametrize("use", _uses())
async def test_used_without_async_with(
    use: Callable[[], Awaitable[object]], backend_name: str, request: pytest.FixtureRequest
) -> None:
    if backend_name == "trio" and "streams.from_aiter" in request.node.callspec.id:
        # an asyncio StreamReader: on trio the backend is what is wrong, and that is said first
        with pytest.raises(RuntimeError, match="needs asyncio"):
            await use()
        return
    with pytest.raises(RuntimeError, match=MESSAGE) as info:
        await use()
    assert "async with" in str(info.value).split(MESSAGE, 1)[1], "the message shows the fix"


async def test_share_subscribed_without_async_with() -> None:
    shared = ops.share(_numbers())
    with pytest.raises(RuntimeError, match=MESSAGE):
        await _async_for(shared.subscribe())


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_trio_scheduler_used_without_async_with() -> None:
    scheduler: Any = rx.open_trio_scheduler()
    errors: list[Exception] = []
    # reactivex reports what goes wrong while subscribing to on_error, or raises it
    reactivex.timer(0.0, scheduler=scheduler).subscribe(on_error=errors.append)
    assert len(errors) == 1
    assert MESSAGE in str(errors[0])
    if _REACTIVEX_MAJOR >= 6:  # reactivex 5 (Python 3.10) loses what observe_on's schedule raises
        with pytest.raises(RuntimeError, match=MESSAGE):
            reactivex.of(1).pipe(rx_ops.observe_on(scheduler)).subscribe()
    with pytest.raises(RuntimeError, match=MESSAGE):
        reactivex.interval(1.0).subscribe(scheduler=scheduler)
    async with scheduler as entered:  # the same object, entered, works
        assert isinstance(entered, rx.TrioScheduler)


def test_other_attributes_stay_attribute_errors() -> None:
    cm = channels.from_aiter(_numbers())
    assert not hasattr(cm, "no_such_name")
    assert hasattr(cm, "__aenter__")
