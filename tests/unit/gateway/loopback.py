"""Helpers for the gateway's HTTP/1.1 server tests: a transport that records what is written,
the gateway's server (uvicorn with the gateway's protocol) on a free loopback port, and a
client connection to it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from pilothouse.gateway.http_server import GatewayHttpProtocol, server_config


class RecordingTransport:
    """What a response cycle writes, and whether it closed the connection."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


@contextlib.asynccontextmanager
async def serve(app: Any) -> AsyncIterator[int]:
    """``app`` behind the gateway's server on 127.0.0.1; yields its port, stops it after."""
    import uvicorn

    class Quiet(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):  # type: ignore[no-untyped-def]
            yield

    server = Quiet(server_config(app, "127.0.0.1", 0, lifespan="off"))
    assert server.config.http.func is GatewayHttpProtocol  # type: ignore[union-attr]
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:  # noqa: ASYNC110 - uvicorn exposes only a flag
            await asyncio.sleep(0.01)
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await task


@contextlib.asynccontextmanager
async def connect(port: int) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()


async def read_until(reader: asyncio.StreamReader, marker: bytes, got: bytes = b"") -> bytes:
    """Read until ``marker`` is in what was read (or the server closed); 5 s per read."""
    while marker not in got:
        piece = await asyncio.wait_for(reader.read(65536), 5)
        if not piece:
            break
        got += piece
    return got
