"""Our engine servers as real processes on loopback, and a client that can hang up.

:func:`open_request` writes an HTTP/1.1 request on a raw socket, so a test decides exactly
when the connection closes (a pooled HTTP client may keep it open or reuse it).
"""

from __future__ import annotations

import asyncio
import contextlib
import selectors
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import orjson

from pilothouse.servers.sim.runner import READY_PREFIX

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def engine_process(args: list[str], log: Path) -> Iterator[subprocess.Popen[str]]:
    """``python -m pilothouse engine ARGS``, stopped (and reaped) on exit."""
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pilothouse", "engine", *args],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def sim_url(proc: subprocess.Popen[str], timeout_s: float = 60.0) -> str:
    """The URL the simulator announces on stdout once it listens."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        assert selector.select(timeout=timeout_s), "the simulator did not start"
    line = proc.stdout.readline()
    assert line.startswith(READY_PREFIX), line
    return line.removeprefix(READY_PREFIX).strip()


async def eventually(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    what: str,
    timeout_s: float = 30.0,
) -> T:
    """Poll ``probe`` until ``done`` holds for its value; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still {value!r} after {timeout_s:.0f}s")
        await asyncio.sleep(0.05)


class RawRequest:
    """One POST on its own TCP connection; :meth:`hang_up` closes it mid-answer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def read_until(self, marker: bytes, timeout_s: float = 60.0) -> bytes:
        return await asyncio.wait_for(self.reader.readuntil(marker), timeout_s)

    async def hang_up(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


async def open_request(base_url: str, path: str, body: dict[str, Any]) -> RawRequest:
    url = urlsplit(base_url)
    assert url.hostname is not None
    assert url.port is not None
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    payload = orjson.dumps(body)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    )
    writer.write(head.encode() + payload)
    await writer.drain()
    return RawRequest(reader, writer)
