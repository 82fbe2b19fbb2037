"""bridges: connect stream ecosystems with backpressure and cancellation.

The hub is the async iterator; every ecosystem is a spoke module with
``to_aiter`` and ``from_aiter``:

- [`bridges.callbacks`][bridges.callbacks]: callback APIs, fired from any thread
- [`bridges.rx`][bridges.rx]: reactivex Observables (and a reactivex scheduler for trio)
- [`bridges.channels`][bridges.channels]: trio memory channels and anyio memory object streams
- [`bridges.streams`][bridges.streams]: asyncio StreamReader / StreamWriter / Queue, anyio byte
  streams
- [`bridges.threads`][bridges.threads]: blocking iterables and sync consumers
- [`bridges.ops`][bridges.ops]: pipeline helpers (paginate, batch, merge, share, rate_limit,
  map with concurrency, chain, zip)
- [`bridges.nats`][bridges.nats]: NATS JetStream, at-least-once, across processes (extra ``nats``)
- [`bridges.testing`][bridges.testing]: the conformance kit (rules R1-R21) for your own adapters

The core's public names live here: [`open_channel`][bridges.open_channel] (any thread, any
event loop), [`iterate`][bridges.iterate] (anything supported -> an async iterator),
[`Overflow`][bridges.Overflow], [`Stats`][bridges.Stats],
[`BufferOverflowError`][bridges.BufferOverflowError].
"""

from __future__ import annotations

from ._buffer import BufferOverflowError as BufferOverflowError
from ._buffer import Overflow as Overflow
from ._buffer import Stats as Stats
from ._channel import ChannelReceiver as ChannelReceiver
from ._channel import ChannelSender as ChannelSender
from ._channel import open_channel as open_channel
from ._iterate import iterate as iterate
from ._iterator import BridgeIterator as BridgeIterator
from ._iterator import BufferedIterator as BufferedIterator

__version__ = "0.1.0"

__all__ = [
    "BridgeIterator",
    "BufferOverflowError",
    "BufferedIterator",
    "ChannelReceiver",
    "ChannelSender",
    "Overflow",
    "Stats",
    "iterate",
    "open_channel",
]

for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("bridges._"):
        _obj.__module__ = "bridges"
del _name, _obj
