"""The gateway's uvicorn protocol on loopback: one write per fixed-length response, streams
and HEAD unchanged, and the disconnect signal in every request's scope."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pilothouse.gateway.asgi import DISCONNECT_EXTENSION, DisconnectSignal
from pilothouse.gateway.http_server import _HeadHolder
from tests.unit.gateway.loopback import RecordingTransport, connect, read_until, serve

HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\n"
CHUNKED = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n"


def test_a_fixed_length_head_goes_out_with_its_body() -> None:
    raw = RecordingTransport()
    holder = _HeadHolder(raw)  # type: ignore[arg-type]
    holder.write(HEAD)
    assert raw.writes == []
    holder.write(b"ok")
    assert raw.writes == [HEAD + b"ok"]


def test_a_chunked_head_goes_out_at_once() -> None:
    raw = RecordingTransport()
    holder = _HeadHolder(raw)  # type: ignore[arg-type]
    holder.write(CHUNKED)
    holder.write(b"2\r\nok\r\n")
    assert raw.writes == [CHUNKED, b"2\r\nok\r\n"]


def test_closing_sends_a_held_head_first() -> None:
    raw = RecordingTransport()
    holder = _HeadHolder(raw)  # type: ignore[arg-type]
    holder.write(HEAD)
    holder.close()
    assert raw.writes == [HEAD]
    assert raw.closed


class _App:
    """``/stream`` sends its headers, then its body only once ``release`` is set."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await receive()
        signal = scope["extensions"][DISCONNECT_EXTENSION]
        assert isinstance(signal, DisconnectSignal)
        if scope["path"] == "/stream":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await self.release.wait()
            await send({"type": "http.response.body", "body": b"late"})
            return
        headers = [(b"content-length", b"5")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"hello"})


async def _exchange(port: int, request: bytes, until: bytes) -> bytes:
    async with connect(port) as (reader, writer):
        writer.write(request)
        return await read_until(reader, until)


@pytest.mark.parametrize(
    ("method", "until", "body"),
    [("GET", b"hello", b"hello"), ("HEAD", b"\r\n\r\n", b"")],
)
async def test_fixed_length_answers_arrive_whole(method: str, until: bytes, body: bytes) -> None:
    async with serve(_App()) as port:
        request = f"{method} /x HTTP/1.1\r\nhost: t\r\n\r\n".encode()
        got = await _exchange(port, request, until)
    head, _, rest = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"content-length: 5" in head
    assert b"server:" not in head
    assert rest == body


async def test_a_streamed_answer_sends_its_headers_before_its_body() -> None:
    app = _App()
    async with serve(app) as port:
        # The body waits for the headers to arrive: held headers would never come.
        got = await _exchange(port, b"GET /stream HTTP/1.1\r\nhost: t\r\n\r\n", b"\r\n\r\n")
        app.release.set()
    assert got.startswith(b"HTTP/1.1 200 OK")
    assert b"transfer-encoding: chunked" in got
