"""Checked by mypy only (nox -s typecheck): inference through the public API."""

from __future__ import annotations

from typing_extensions import assert_type

import bridges


async def channel_types() -> None:
    send, receive = bridges.open_channel[int](8)
    assert_type(send, bridges.ChannelSender[int])
    assert_type(receive, bridges.ChannelReceiver[int])
    await send.send(1)
    assert_type(await receive.receive(), int)
    async for x in receive:
        assert_type(x, int)
    async with receive as r:
        assert_type(r, bridges.ChannelReceiver[int])
    assert_type(receive.stats, bridges.Stats)
    assert_type(receive.stats.high_water, int)


async def iterate_types(source: bridges.ChannelReceiver[str]) -> None:
    it = bridges.iterate(source)
    assert_type(it, bridges.BridgeIterator[str])
