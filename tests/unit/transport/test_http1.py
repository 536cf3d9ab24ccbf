"""Http1Transport against a real tiny HTTP server on 127.0.0.1 (no wall-clock limits)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from pilothouse.errors import UpstreamError, UpstreamTimeout
from pilothouse.transport import (
    TRANSPORT_KINDS,
    ClosableTransport,
    TransportSettings,
    UpstreamRequest,
    create_transport,
)
from pilothouse.transport.http1 import Http1Transport
from tests.unit.transport.tiny_server import (
    CHUNKED_HEAD,
    LAST_CHUNK,
    Received,
    Respond,
    TinyServer,
    chunk,
    plain,
)

REQUEST = UpstreamRequest("/v1/chat/completions", b'{"model":"m"}', (("x-request-id", "r1"),))
HANG_GUARD_S = 10.0  # only keeps a broken test from hanging; never a threshold on speed


@pytest.fixture(params=sorted(TRANSPORT_KINDS))
async def any_transport(request: pytest.FixtureRequest) -> AsyncIterator[ClosableTransport]:
    """Each production transport: what they share is tested on both."""
    settings = TransportSettings(headers_timeout_s=HANG_GUARD_S, read_timeout_s=HANG_GUARD_S)
    client = create_transport(request.param, settings)
    yield client
    await client.aclose()


@pytest.fixture
async def transport() -> AsyncIterator[Http1Transport]:
    client = Http1Transport(headers_timeout_s=HANG_GUARD_S, read_timeout_s=HANG_GUARD_S)
    yield client
    await client.aclose()


async def serve(respond: Respond) -> TinyServer:
    return await TinyServer(respond).start()


async def test_keep_alive_reuses_one_connection_and_sends_the_request_as_given(
    any_transport: ClosableTransport,
) -> None:
    async def respond(req: Received, writer: asyncio.StreamWriter) -> bool:
        writer.write(plain(b'{"n":%d}' % len(server.received)))
        return True

    server = await serve(respond)
    bodies = []
    for _ in range(3):
        resp = await any_transport.send(server.address, REQUEST)
        bodies.append((resp.status, resp.headers["content-type"], await resp.read()))
        await resp.aclose()
    await server.stop()

    assert bodies == [(200, "application/json", b'{"n":%d}' % n) for n in (1, 2, 3)]
    assert server.connections == 1
    first = server.received[0]
    assert first.request_line == "POST /v1/chat/completions HTTP/1.1"
    assert (first.header("host"), first.header("x-request-id")) == (server.address, "r1")
    assert (first.header("content-type"), first.body) == ("application/json", REQUEST.body)


async def test_chunked_body_arrives_in_order_and_repeated_headers_are_joined(
    any_transport: ClosableTransport,
) -> None:
    async def respond(req: Received, writer: asyncio.StreamWriter) -> bool:
        writer.write(CHUNKED_HEAD.replace(b"\r\n\r\n", b"\r\nX-A: 1\r\nx-a: 2\r\n\r\n"))
        for n in range(5):
            writer.write(chunk(b"data: %d\n\n" % n))
            await writer.drain()
        writer.write(LAST_CHUNK)
        return True

    server = await serve(respond)
    resp = await any_transport.send(server.address, REQUEST)
    body = b"".join([c async for c in resp.chunks()])
    await resp.aclose()
    again = await any_transport.send(server.address, REQUEST)
    await again.read()
    await again.aclose()
    await server.stop()

    assert body == b"".join(b"data: %d\n\n" % n for n in range(5))
    assert resp.headers["x-a"] == "1, 2"
    assert server.connections == 1  # a chunked response, read to its end, keeps it alive


async def test_streamed_chunks_are_delivered_before_the_next_one_is_sent(
    any_transport: ClosableTransport,
) -> None:
    got_first = asyncio.Event()

    async def respond(req: Received, writer: asyncio.StreamWriter) -> bool:
        writer.write(CHUNKED_HEAD + chunk(b"first"))
        await writer.drain()
        await got_first.wait()  # the client must see "first" while the stream is open
        writer.write(chunk(b"second") + LAST_CHUNK)
        return True

    server = await serve(respond)
    resp = await any_transport.send(server.address, REQUEST)
    seen = []
    async for piece in resp.chunks():
        seen.append(piece)
        got_first.set()
    await resp.aclose()
    await server.stop()
    assert seen == [b"first", b"second"]


async def test_reset_mid_stream_is_an_upstream_error_and_the_connection_is_dropped(
    any_transport: ClosableTransport,
) -> None:
    async def respond(req: Received, writer: asyncio.StreamWriter) -> bool:
        if len(server.received) == 1:
            writer.write(CHUNKED_HEAD + chunk(b"partial"))
            await writer.drain()
            writer.transport.abort()
            return False
        writer.write(plain(b"ok"))
        return True

    server = await serve(respond)
    resp = await any_transport.send(server.address, REQUEST)
    stream = resp.chunks()
    assert await anext(stream) == b"partial"
    with pytest.raises(UpstreamError):
        await anext(stream)
    await resp.aclose()
    after = await any_transport.send(server.address, REQUEST)
    assert await after.read() == b"ok"
    await after.aclose()
    await server.stop()
    assert server.connections == 2


async def test_an_engine_that_never_answers_is_an_upstream_timeout(
    any_transport: ClosableTransport,
) -> None:
    async def respond(req: Received, writer: asyncio.StreamWriter) -> bool:
        return True  # no answer; reads on, so it sees the client leave

    server = await serve(respond)
    quick = UpstreamRequest("/v1/completions", b"{}", timeout_s=0.05)
    with pytest.raises(UpstreamTimeout, match="no response headers"):
        await any_transport.send(server.address, quick)
    await asyncio.wait_for(server.closed_by_client.wait(), HANG_GUARD_S)
    await server.stop()


async def test_a_stream_that_stalls_is_an_upstream_timeout() -> None:
    async def respond(req: Received, writer: asyncio.StreamWriter) -> bool:
        writer.write(CHUNKED_HEAD + chunk(b"one"))
        await asyncio.Event().wait()
        return False

    server = await serve(respond)
    client = Http1Transport(read_timeout_s=0.05)
    resp = await client.send(server.address, REQUEST)
    with pytest.raises(UpstreamTimeout, match="sent nothing"):
        await resp.read()
    await resp.aclose()
    await client.aclose()
    await server.stop()


async def test_closing_an_unread_stream_closes_the_socket_the_engine_sees_it(
    any_transport: ClosableTransport,
) -> None:
    async def respond(req: Received, writer: asyncio.StreamWriter) -> bool:
        writer.write(CHUNKED_HEAD + chunk(b"token"))
        await writer.drain()
        return True  # keeps reading: the next read ends when the client leaves

    server = await serve(respond)
    resp = await any_transport.send(server.address, REQUEST)
    async for _ in resp.chunks():
        break
    await resp.aclose()
    await asyncio.wait_for(server.closed_by_client.wait(), HANG_GUARD_S)
    again = await any_transport.send(server.address, REQUEST)
    await again.aclose()
    await server.stop()
    assert server.connections == 2  # never reused after an unread body


async def test_connection_close_and_close_delimited_bodies_are_not_reused(
    any_transport: ClosableTransport,
) -> None:
    async def respond(req: Received, writer: asyncio.StreamWriter) -> bool:
        if len(server.received) == 1:
            writer.write(plain(b"closing", "Connection: close\r\n"))
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil-eof")
        return False

    server = await serve(respond)
    bodies = []
    for _ in range(2):
        resp = await any_transport.send(server.address, REQUEST)
        bodies.append(await resp.read())
        await resp.aclose()
    await server.stop()
    assert bodies == [b"closing", b"until-eof"]
    assert server.connections == 2


async def test_a_reused_connection_the_engine_dropped_is_retried_once_on_a_new_one(
    transport: Http1Transport,
) -> None:
    async def respond(req: Received, writer: asyncio.StreamWriter) -> bool:
        if len(server.received) == 2:  # the keep-alive race: closed as the request came
            return False
        writer.write(plain(b"ok"))
        return True

    server = await serve(respond)
    statuses = []
    for _ in range(2):
        resp = await transport.send(server.address, REQUEST)
        statuses.append((resp.status, await resp.read()))
        await resp.aclose()
    await server.stop()
    assert statuses == [(200, b"ok"), (200, b"ok")]
    assert (server.connections, len(server.received)) == (2, 3)


async def test_reading_pauses_while_the_consumer_lags(transport: Http1Transport) -> None:
    payload = b"x" * (1024 * 1024)

    async def respond(req: Received, writer: asyncio.StreamWriter) -> bool:
        writer.write(plain(payload))
        await writer.drain()
        return True

    server = await serve(respond)
    client = Http1Transport(high_water_bytes=16 * 1024)
    resp = await client.send(server.address, REQUEST)
    conn = resp._conn
    assert conn is not None
    assert conn.transport is not None
    while conn.buffered <= 16 * 1024:
        await conn.wait()
    assert not conn.transport.is_reading()
    assert await resp.read() == payload
    assert conn.transport.is_reading()
    await resp.aclose()
    await client.aclose()
    await server.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("address", "request_", "match"),
    [
        (f"127.0.0.1:{_free_port()}", REQUEST, "could not connect"),
        ("no-port", REQUEST, "bad endpoint address"),
        ("127.0.0.1:1", UpstreamRequest("/x", headers=(("x-bad", "a\r\nb: c"),)), "CR, LF"),
    ],
)
async def test_unusable_endpoints_and_requests_are_upstream_errors(
    transport: Http1Transport, address: str, request_: UpstreamRequest, match: str
) -> None:
    with pytest.raises(UpstreamError, match=match):
        await transport.send(address, request_)
