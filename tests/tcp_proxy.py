"""A TCP proxy on loopback that a test can take down and bring back, to cut a server off.

    async with TcpProxy("127.0.0.1", 6379) as proxy:
        url = f"redis://127.0.0.1:{proxy.port}/0"
        ...
        await proxy.down()   # live connections close; new ones are closed at once
        ...
        await proxy.up()     # new connections reach the server again

While down, the proxy keeps its port and accepts connections only to close them,
so a client sees its server go away and come back at the same address, as when
the server restarts. While stalled, connections stay open but nothing passes
either way, as when the network between two hosts drops packets.
"""

from __future__ import annotations

import asyncio
import contextlib

from leadsq_async._closing import AsyncClosing


class TcpProxy(AsyncClosing):
    """Forward each connection made to ``127.0.0.1:port`` to ``host:target_port``."""

    def __init__(self, host: str, target_port: int) -> None:
        self._host = host
        self._target_port = target_port
        self._server: asyncio.Server | None = None
        self._state = "up"
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self.accepted = 0
        """How many connections the proxy accepted, whatever became of them."""
        self.dropped = 0
        """How many bytes were dropped while the proxy was stalled."""

    @property
    def port(self) -> int:
        """The proxy's own port on 127.0.0.1."""
        assert self._server is not None, "the proxy is not started"
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def down(self) -> None:
        """Close every live connection, and close new ones as soon as they are made."""
        self._state = "down"
        await self._close_all()

    def stall(self) -> None:
        """Keep connections open, old and new, but pass nothing either way."""
        self._state = "stalled"

    async def up(self) -> None:
        """Forward new connections again; stalled ones are closed, as a peer would time out."""
        stalled = self._state == "stalled"
        self._state = "up"
        if stalled:
            await self._close_all()

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
        # Before wait_closed, which waits for the connections from Python 3.12 on.
        await self._close_all()
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> TcpProxy:
        await self.start()
        return self

    async def _close_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        handlers = list(self._handlers)
        for handler in handlers:
            handler.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        self._writers.add(writer)
        try:
            if self._state == "down":
                return
            upstream_reader, upstream_writer = await asyncio.open_connection(
                self._host, self._target_port
            )
            self._writers.add(upstream_writer)
            try:
                await asyncio.gather(
                    self._pump(reader, upstream_writer), self._pump(upstream_reader, writer)
                )
            finally:
                self._writers.discard(upstream_writer)
                await _close(upstream_writer)
        except (asyncio.CancelledError, OSError):
            pass  # cut by down() or aclose(), or the other end went away
        finally:
            self._handlers.discard(handler)
            self._writers.discard(writer)
            await _close(writer)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            if self._state == "stalled":
                self.dropped += len(data)
                continue  # dropped, as by a network that lost the peer
            writer.write(data)
            await writer.drain()
        # One side closed: close the other, so the client sees the server leave.
        writer.transport.abort()


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.transport.abort()
    with contextlib.suppress(OSError, asyncio.CancelledError):
        await writer.wait_closed()
