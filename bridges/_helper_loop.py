"""Running an asyncio-only client from any backend: a helper asyncio loop in its own thread.

The broker spokes (``bridges.nats``, ``bridges.redis``) wrap clients that run
only on asyncio.  On asyncio they run on the caller's loop; under trio on a
helper asyncio loop in a thread of its own, and values, commands and results
cross over [`open_channel`][bridges.open_channel].  These are the pieces both
use: run a call there and wait for it here, start a task there, wait for one
to end, start and stop the helper loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import anyio
import sniffio

from ._channel import open_channel

__all__ = ["on_loop", "run_on", "spawn", "start_loop", "stop_loop", "wait_done"]

R = TypeVar("R")


def on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether the caller runs on ``loop`` (asyncio, that very loop)."""
    try:
        if sniffio.current_async_library() != "asyncio":
            return False
    except sniffio.AsyncLibraryNotFoundError:
        return False
    return asyncio.get_running_loop() is loop


async def run_on(loop: asyncio.AbstractEventLoop, fn: Callable[[], Awaitable[R]]) -> R:
    """Run ``fn()`` on ``loop`` (maybe another thread's) and wait for its result here.

    Cancellation here cancels it there and waits until it ended.
    """
    if on_loop(loop):
        return await fn()
    send, receive = open_channel[tuple[bool, Any]](1)

    async def run() -> None:
        with send:
            try:
                result = await fn()
            except BaseException as exc:
                send.send_nowait((False, exc))
                if not isinstance(exc, Exception):
                    raise
            else:
                send.send_nowait((True, result))

    future = spawn(loop, run())
    async with receive:
        try:
            ok, value = await receive.receive()
        except BaseException:
            future.cancel()
            with anyio.CancelScope(shield=True):
                try:
                    async for _ in receive:
                        pass
                except Exception:
                    # how it ended there (cancelled by us) is not news: ours goes on
                    pass
            raise
    if ok:
        return value  # type: ignore[no-any-return]
    raise value


def spawn(
    loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, None]
) -> concurrent.futures.Future[None]:
    """Run ``coro`` as a task on ``loop`` (any thread's), in a context of its own.

    Not in a copy of the caller's: a trio caller's context says "trio" to
    sniffio, and the task on the asyncio loop must not believe it.
    """
    return contextvars.Context().run(asyncio.run_coroutine_threadsafe, coro, loop)


async def wait_done(loop: asyncio.AbstractEventLoop, future: Any, grace: float = 5.0) -> None:
    """Wait, shielded, until ``future`` (a concurrent future of a coroutine on ``loop``) ended.

    After ``grace`` seconds it is cancelled (a close stuck on a dead connection).
    """
    send, receive = open_channel[None](1)

    def done(_: object) -> None:
        send.close()

    future.add_done_callback(done)
    with anyio.CancelScope(shield=True):
        with anyio.move_on_after(grace):
            async with receive:
                async for _ in receive:
                    pass
            return
        future.cancel()


def start_loop(name: str) -> tuple[asyncio.AbstractEventLoop, threading.Thread]:
    """A new asyncio loop running forever in a daemon thread called ``name``."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name=name, daemon=True)
    thread.start()
    return loop, thread


async def stop_loop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    """Stop a loop from ``start_loop``, wait (shielded) until its thread ended, close it."""
    loop.call_soon_threadsafe(loop.stop)
    with anyio.CancelScope(shield=True):
        await anyio.to_thread.run_sync(thread.join)
    loop.close()
