"""Stream rows: bytes per second through the stream adapters, against the kernel's pipes.

Each row moves ``n`` bytes in 64 KiB chunks from a producer to a consumer
that reads 64 KiB at a time, with the same flow control on both sides
(``write`` + ``drain``), so the rows compare the transports: an in-memory
reader or pipe against a loopback TCP socket or an ``os.pipe``.  Rows are
reported per second in bytes.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio

from bridges import streams

from . import Baseline, Case, Scenario, run_loop

CHUNK = 64 * 1024
PAYLOAD = b"\xab" * CHUNK


def _chunks(n: int) -> AsyncIterator[bytes]:
    async def gen() -> AsyncIterator[bytes]:
        for _ in range(n // CHUNK):
            yield PAYLOAD

    return gen()


def _timed_after_setup(backend: str, fn: Callable[[], Awaitable[float]]) -> float:
    """Run ``fn`` on a fresh loop; it returns its own elapsed time (setup excluded)."""

    async def main() -> float:
        return await fn()

    return run_loop(backend, main)


async def _read_all(reader: asyncio.StreamReader) -> int:
    total = 0
    read = reader.read
    while chunk := await read(CHUNK):
        total += len(chunk)
    return total


async def _write_all(writer: asyncio.StreamWriter, n: int) -> None:
    for _ in range(n // CHUNK):
        writer.write(PAYLOAD)
        await writer.drain()
    writer.close()


# ---------------------------------------------------------------- from_aiter


def from_aiter_reader(backend: str) -> Case:
    def case(n: int) -> float:
        async def go() -> float:
            t0 = time.perf_counter()
            async with streams.from_aiter(_chunks(n)) as reader:
                total = await _read_all(reader)
            assert total == n // CHUNK * CHUNK
            return time.perf_counter() - t0

        return _timed_after_setup(backend, go)

    return case


def loopback_socket(backend: str) -> Case:
    def case(n: int) -> float:
        async def go() -> float:
            async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                await _write_all(writer, n)

            server = await asyncio.start_server(handle, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            t0 = time.perf_counter()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            total = await _read_all(reader)
            elapsed = time.perf_counter() - t0
            assert total == n // CHUNK * CHUNK
            writer.close()
            server.close()
            await server.wait_closed()
            return elapsed

        return _timed_after_setup(backend, go)

    return case


# ---------------------------------------------------------------- pipes


def _pipe_case(backend: str, open_pair: Callable[[], Awaitable[tuple[Any, Any]]]) -> Case:
    """A writer task writes n bytes into the pair's writer; the reader reads them all."""

    def case(n: int) -> float:
        async def go() -> float:
            reader, writer = await open_pair()
            t0 = time.perf_counter()
            task = asyncio.ensure_future(_write_all(writer, n))
            total = await _read_all(reader)
            await task
            assert total == n // CHUNK * CHUNK
            return time.perf_counter() - t0

        return _timed_after_setup(backend, go)

    return case


async def _bridges_pipe() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return streams.open_pipe()


async def _os_pipe() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    loop = asyncio.get_running_loop()
    rfd, wfd = os.pipe()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(rfd, "rb", 0)
    )
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, os.fdopen(wfd, "wb", 0)
    )
    return reader, asyncio.StreamWriter(transport, protocol, None, loop)


def open_pipe_case(backend: str) -> Case:
    return _pipe_case(backend, _bridges_pipe)


def os_pipe_case(backend: str) -> Case:
    return _pipe_case(backend, _os_pipe)


# ---------------------------------------------------------------- anyio byte streams


def _send_stream_case(
    backend: str,
    open_pair: Callable[[], tuple[Any, Any]],
    chunks: Callable[[Any], AsyncIterator[bytes]] | None = None,
) -> Case:
    """A producer task sends n bytes in chunks; the consumer iterates the receive side
    (through ``chunks(receive)`` when given)."""

    def case(n: int) -> float:
        async def go() -> float:
            send, receive = open_pair()
            t0 = time.perf_counter()
            async with anyio.create_task_group() as tg:

                async def produce() -> None:
                    async with send:
                        for _ in range(n // CHUNK):
                            await send.send(PAYLOAD)

                tg.start_soon(produce)
                total = 0
                async with receive:
                    async for chunk in receive if chunks is None else chunks(receive):
                        total += len(chunk)
            assert total == n // CHUNK * CHUNK
            return time.perf_counter() - t0

        return _timed_after_setup(backend, go)

    return case


def byte_stream_pipe_case(backend: str) -> Case:
    return _send_stream_case(backend, streams.open_byte_stream_pipe, streams.byte_stream_to_aiter)


def memory_object_stream_case(backend: str) -> Case:
    return _send_stream_case(backend, lambda: anyio.create_memory_object_stream[bytes](1))


def _scenarios() -> list[Scenario]:
    out: list[Scenario] = []
    for backend in ("asyncio", "uvloop"):
        out.append(
            Scenario(
                "bytes: from_aiter -> StreamReader",
                backend,
                512 * 2**20,
                from_aiter_reader(backend),
                [
                    Baseline(
                        "loopback TCP socket",
                        loopback_socket(backend),
                        0.5,
                        "<= 0.5x (no kernel copy)",
                    )
                ],
                note="n bytes in 64 KiB chunks, read 64 KiB at a time",
            )
        )
        out.append(
            Scenario(
                "bytes: open_pipe",
                backend,
                512 * 2**20,
                open_pipe_case(backend),
                [
                    Baseline(
                        "os.pipe + asyncio", os_pipe_case(backend), 0.5, "<= 0.5x (no kernel copy)"
                    )
                ],
                note="n bytes in 64 KiB chunks, write + drain, read 64 KiB at a time",
            )
        )
    for backend in ("asyncio", "trio"):
        out.append(
            Scenario(
                "bytes: open_byte_stream_pipe",
                backend,
                512 * 2**20,
                byte_stream_pipe_case(backend),
                [
                    Baseline(
                        "anyio memory object stream",
                        memory_object_stream_case(backend),
                        None,
                        "reported",
                    )
                ],
                note="n bytes in 64 KiB chunks; the peer carries the same chunks, capacity 1",
            )
        )
    return out


SCENARIOS = _scenarios()
