"""The gateway's request/response cycle: uvicorn's contract and checks, one write for a
fixed-length answer; alone on a fake transport, and on loopback behind the gateway's protocol
(bodies in parts, 100-continue, pipelining, connection: close, app errors)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from starlette.responses import FileResponse
from uvicorn.protocols.http.flow_control import FlowControl

from pilothouse.gateway.http_cycle import Cycle
from tests.unit.gateway.loopback import RecordingTransport, connect, read_until, serve

_FILES: dict[str, Path] = {}
"""``/file`` serves ``_FILES["file"]``."""


def _cycle(transport: RecordingTransport, *, expect_100: bool = False) -> tuple[Cycle, list[str]]:
    done: list[str] = []
    scope: dict[str, Any] = {"type": "http", "method": "POST", "path": "/"}
    flow = FlowControl(transport)  # type: ignore[arg-type]
    cycle = Cycle(scope, transport, flow, [], expect_100, lambda: done.append("done"))  # type: ignore[arg-type]
    return cycle, done


def _start(*headers: tuple[bytes, bytes]) -> dict[str, Any]:
    return {"type": "http.response.start", "status": 200, "headers": list(headers)}


def _body(body: bytes, more: bool = False) -> dict[str, Any]:
    return {"type": "http.response.body", "body": body, "more_body": more}


async def test_a_fixed_length_answer_is_one_write() -> None:
    transport = RecordingTransport()
    cycle, done = _cycle(transport)
    await cycle.send(_start((b"Content-Length", b"2"), (b"x-a", b"b")))
    assert transport.writes == []  # held for its body
    await cycle.send(_body(b"ok"))
    assert transport.writes == [
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-a: b\r\n\r\nok",
    ]
    assert cycle.response_complete
    assert done == ["done"]
    assert not transport.closed  # kept alive


async def test_an_answer_without_a_length_is_chunked_and_its_head_goes_at_once() -> None:
    transport = RecordingTransport()
    cycle, done = _cycle(transport)
    await cycle.send(_start((b"content-type", b"text/event-stream")))
    assert transport.writes == [
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    ]
    await cycle.send(_body(b"ab", more=True))
    await cycle.send(_body(b"", more=False))
    assert transport.writes[1:] == [b"2\r\nab\r\n", b"0\r\n\r\n"]
    assert done == ["done"]


async def test_a_last_chunk_with_data_ends_the_stream_in_the_same_write() -> None:
    transport = RecordingTransport()
    cycle, _ = _cycle(transport)
    await cycle.send(_start((b"transfer-encoding", b"chunked")))
    await cycle.send(_body(b"xyz"))
    assert transport.writes[1:] == [b"3\r\nxyz\r\n0\r\n\r\n"]


@pytest.mark.parametrize(
    ("header", "error"),
    [
        ((b"x-bad", b"a\r\nset-cookie: b"), "Invalid HTTP header value."),
        ((b"x bad", b"a"), "Invalid HTTP header name."),
    ],
)
async def test_an_invalid_header_is_refused(header: tuple[bytes, bytes], error: str) -> None:
    cycle, _ = _cycle(RecordingTransport())
    with pytest.raises(RuntimeError, match=error):
        await cycle.send(_start((b"content-length", b"0"), header))


async def test_a_body_must_match_its_length() -> None:
    cycle, _ = _cycle(RecordingTransport())
    await cycle.send(_start((b"content-length", b"3")))
    with pytest.raises(RuntimeError, match="shorter"):
        await cycle.send(_body(b"ab"))
    cycle, _ = _cycle(RecordingTransport())
    await cycle.send(_start((b"content-length", b"1")))
    with pytest.raises(RuntimeError, match="longer"):
        await cycle.send(_body(b"ab"))


async def test_a_response_close_closes_the_connection() -> None:
    transport = RecordingTransport()
    cycle, _ = _cycle(transport)
    await cycle.send(_start((b"content-length", b"0"), (b"connection", b"close")))
    await cycle.send(_body(b""))
    assert transport.closed


async def test_receive_waits_for_the_body_and_a_disconnect_wakes_it() -> None:
    transport = RecordingTransport()
    cycle, _ = _cycle(transport, expect_100=True)
    waiting = asyncio.create_task(cycle.receive())
    await asyncio.sleep(0)
    assert transport.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    assert not waiting.done()
    cycle.add_body(b"ab")
    cycle.add_body(b"cd")
    assert await waiting == {"type": "http.request", "body": b"abcd", "more_body": True}
    waiting = asyncio.create_task(cycle.receive())
    await asyncio.sleep(0)
    cycle.disconnected = True  # what uvicorn's connection_lost does
    cycle.message_event.set()
    assert await waiting == {"type": "http.disconnect"}


async def test_a_body_complete_before_receive_is_handed_over_at_once() -> None:
    cycle, _ = _cycle(RecordingTransport())
    cycle.add_body(b"whole")
    cycle.more_body = False
    assert await cycle.receive() == {"type": "http.request", "body": b"whole", "more_body": False}


async def test_after_the_whole_body_receive_waits_for_the_end_of_the_response() -> None:
    # Starlette's file and streaming responses call receive() again while they send, to
    # notice a disconnect: it must wait, not hand over the (empty) body again.
    cycle, _ = _cycle(RecordingTransport())
    cycle.more_body = False
    assert await cycle.receive() == {"type": "http.request", "body": b"", "more_body": False}
    waiting = asyncio.create_task(cycle.receive())
    await asyncio.sleep(0)
    assert not waiting.done()
    await cycle.send(_start((b"content-length", b"2")))
    await cycle.send(_body(b"ok"))
    assert await waiting == {"type": "http.disconnect"}


# --- on loopback, behind the gateway's protocol ------------------------------------------


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] == "/fail":
        raise ValueError("the app failed")
    if scope["path"] == "/file":
        await FileResponse(_FILES["file"])(scope, receive, send)
        return
    answer = b"%s %s %d" % (scope["method"].encode(), scope["raw_path"], len(body))
    headers = [(b"content-length", str(len(answer)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


async def test_a_body_in_parts_with_100_continue_is_read_whole() -> None:
    async with serve(_app) as port, connect(port) as (reader, writer):
        writer.write(
            b"POST /a%20b?q=1 HTTP/1.1\r\nhost: t\r\ncontent-length: 6\r\n"
            b"expect: 100-continue\r\n\r\n"
        )
        got = await read_until(reader, b"100 Continue\r\n\r\n")
        assert got.startswith(b"HTTP/1.1 100 Continue")
        writer.write(b"abc")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"def")
        got = await read_until(reader, b"POST /a%20b 6")
    assert b"HTTP/1.1 200 OK" in got


async def test_pipelined_requests_are_answered_in_order() -> None:
    async with serve(_app) as port, connect(port) as (reader, writer):
        writer.write(
            b"POST /one HTTP/1.1\r\nhost: t\r\ncontent-length: 1\r\n\r\nx"
            b"GET /two HTTP/1.1\r\nhost: t\r\n\r\n"
        )
        got = await read_until(reader, b"GET /two 0")
    assert got.index(b"POST /one 1") < got.index(b"GET /two 0")
    assert got.count(b"HTTP/1.1 200 OK") == 2


async def test_a_client_asking_to_close_is_answered_then_closed() -> None:
    async with serve(_app) as port, connect(port) as (reader, writer):
        writer.write(b"GET /x HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
        got = await asyncio.wait_for(reader.read(), 5)  # to EOF: the server closed
    assert got.startswith(b"HTTP/1.1 200 OK")
    assert b"connection: close" in got
    assert got.endswith(b"GET /x 0")


async def test_an_app_error_before_its_answer_is_a_500_and_a_closed_connection() -> None:
    async with serve(_app) as port, connect(port) as (reader, writer):
        writer.write(b"GET /fail HTTP/1.1\r\nhost: t\r\n\r\n")
        got = await asyncio.wait_for(reader.read(), 5)
    assert got.startswith(b"HTTP/1.1 500 Internal Server Error")
    assert got.endswith(b"Internal Server Error")


async def _read_bytes(reader: asyncio.StreamReader, size: int, got: bytes) -> bytes:
    while len(got) < size:
        piece = await asyncio.wait_for(reader.read(65536), 5)
        if not piece:
            break
        got += piece
    return got


async def test_a_file_response_listening_for_a_disconnect_is_served_whole(
    tmp_path: Path,
) -> None:
    # Starlette streams a file in 64 KiB chunks while it listens for a disconnect.
    data = bytes(range(256)) * 1200  # 300 KiB: several chunks, the socket's buffer filled
    path = _FILES["file"] = tmp_path / "served.bin"
    path.write_bytes(data)
    async with serve(_app) as port, connect(port) as (reader, writer):
        writer.write(b"GET /file HTTP/1.1\r\nhost: t\r\n\r\n")
        got = await read_until(reader, b"\r\n\r\n")
        head, _, body = got.partition(b"\r\n\r\n")
        body = await _read_bytes(reader, len(data), body)
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert body == data
