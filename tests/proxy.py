"""A TCP proxy on 127.0.0.1 between a client and a broker server, for the tests that
need to hold back, drop or order what passes between them."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.abc


class Proxy:
    """Passes each connection's bytes both ways, through ``up`` (client to server)
    and ``down`` (server to client), which subclasses override to hold, drop or
    watch them.  ``url`` (``<scheme>://127.0.0.1:<port>``) is set once ``serve``
    has started."""

    def __init__(self, port: int, scheme: str) -> None:
        self.port = port
        self.scheme = scheme
        self.url = ""

    async def serve(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        self.url = f"{self.scheme}://127.0.0.1:{port}"
        async with listener:
            task_status.started()
            await listener.serve(self._pair)

    async def up(self, chunk: bytes, server: anyio.abc.SocketStream) -> None:
        """Pass ``chunk``, which the client sent, on to the server."""
        await server.send(chunk)

    async def up_ended(self, server: anyio.abc.SocketStream) -> None:
        """The client closed (or reset) its connection: tell the server."""
        await server.send_eof()

    async def down(self, chunk: bytes, client: anyio.abc.SocketStream) -> None:
        """Pass ``chunk``, which the server sent, on to the client."""
        await client.send(chunk)

    async def _pair(self, client: anyio.abc.SocketStream) -> None:
        async with client, await anyio.connect_tcp("127.0.0.1", self.port) as server:

            async def up() -> None:
                try:
                    async for chunk in client:
                        await self.up(chunk, server)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    pass  # the client reset it: an end too
                await self.up_ended(server)

            async def down() -> None:
                try:
                    async for chunk in server:
                        await self.down(chunk, client)
                    await client.send_eof()
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    pass

            async with anyio.create_task_group() as tg:
                tg.start_soon(up)
                tg.start_soon(down)
