"""``bridges.iterate``: any supported thing -> an async iterator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar, overload

from anyio.abc import ByteReceiveStream
from anyio.streams.memory import MemoryObjectReceiveStream

from ._backend import loaded
from ._iterator import BridgeIterator, WrappedIterator

if TYPE_CHECKING:
    import reactivex

T = TypeVar("T")

_ACCEPTS = (
    "a trio ReceiveChannel, an anyio object or byte receive stream, an asyncio "
    "StreamReader or Queue, a reactivex Observable, an async iterable, or a blocking "
    "iterable (run in a worker thread)"
)


def _is_observable(source: object) -> bool:
    rx = loaded("reactivex")
    return rx is not None and isinstance(source, rx.Observable)


def _is_trio_receive_channel(source: object) -> bool:
    trio = loaded("trio")
    return trio is not None and isinstance(source, trio.abc.ReceiveChannel)


@overload
def iterate(source: reactivex.Observable[T]) -> BridgeIterator[T]: ...
@overload
def iterate(source: asyncio.StreamReader) -> BridgeIterator[bytes]: ...
@overload
def iterate(source: asyncio.Queue[T]) -> BridgeIterator[T]: ...
@overload
def iterate(source: AsyncIterable[T]) -> BridgeIterator[T]: ...
@overload
def iterate(source: Iterable[T]) -> BridgeIterator[T]: ...


def iterate(source: object) -> BridgeIterator[Any]:
    """Turn any supported source into an async iterator of this library.

    Dispatches by type, the most specific first:

    | source | handled by |
    | --- | --- |
    | an iterator of this library | returned as it is |
    | trio ``ReceiveChannel`` | [`channels.to_aiter`][bridges.channels.to_aiter] |
    | anyio memory object receive stream | [`channels.to_aiter`][bridges.channels.to_aiter] |
    | anyio ``ByteReceiveStream`` | [`byte_stream_to_aiter`][bridges.streams.byte_stream_to_aiter] |
    | ``asyncio.StreamReader`` | [`streams.to_aiter`][bridges.streams.to_aiter] (chunks) |
    | ``asyncio.Queue`` | [`streams.queue_to_aiter`][bridges.streams.queue_to_aiter] |
    | reactivex ``Observable`` | [`rx.to_aiter`][bridges.rx.to_aiter] (unbounded) |
    | any other async iterable | wrapped as it is |
    | a blocking iterable (not str / bytes) | [`threads.to_aiter`][bridges.threads.to_aiter] |

    Each spoke's own defaults apply; call the spoke's ``to_aiter`` to choose
    ``buffer=`` and ``overflow=``.  Plain async iterables are wrapped lazily
    (nothing starts before the first value is asked for; ``aclose()`` closes
    them).  The result is an async context manager, like every iterator this
    library returns, with the chainable helpers (``map``, ``filter``, ``take``...).

    :raises TypeError: ``source`` is of no supported kind (the message lists them)
    """
    if isinstance(source, BridgeIterator):
        return source
    if isinstance(source, MemoryObjectReceiveStream) or _is_trio_receive_channel(source):
        from . import channels

        return channels.to_aiter(source)  # type: ignore[call-overload,no-any-return]
    if isinstance(source, ByteReceiveStream):
        from . import streams

        return streams.byte_stream_to_aiter(source)
    if isinstance(source, asyncio.StreamReader):
        from . import streams

        return streams.to_aiter(source)
    if isinstance(source, asyncio.Queue):
        from . import streams

        return streams.queue_to_aiter(source)
    if _is_observable(source):
        from . import rx

        return rx.to_aiter(source)  # type: ignore[arg-type]
    if isinstance(source, AsyncIterable) or hasattr(source, "__aiter__"):
        return WrappedIterator(source)
    if isinstance(source, (str, bytes, bytearray, memoryview)):
        raise TypeError(
            f"bridges.iterate() does not iterate a {type(source).__name__} character by "
            "character; wrap it in a list ([text]) to stream it as one value"
        )
    if isinstance(source, Iterable):
        from . import threads

        return threads.to_aiter(source)
    raise TypeError(
        f"bridges.iterate() cannot iterate a {type(source).__name__}; it takes {_ACCEPTS}"
    )
