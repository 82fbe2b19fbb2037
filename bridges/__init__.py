"""bridges: connect stream ecosystems with backpressure and cancellation.

The hub is the async iterator; every ecosystem is a spoke module with
``to_aiter`` and ``from_aiter``.  The public names of the core live here.
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
