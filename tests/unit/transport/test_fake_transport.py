"""FakeTransport: every scripted behaviour, table-driven."""

from __future__ import annotations

import asyncio

import pytest

from pilothouse.errors import UpstreamError, UpstreamTimeout
from pilothouse.testing import Answer, Fail, FakeTransport, Hang, SentRequest, Step
from pilothouse.transport import UpstreamRequest

REQ = UpstreamRequest("/v1/chat/completions", b"{}")
EVENTS = (b"data: 1\n\n", b"data: 2\n\n", b"data: [DONE]\n\n")


async def _consume(fake: FakeTransport, address: str) -> tuple[int, list[bytes], str | None]:
    """Status, chunks read, and the error class name if sending or reading failed."""
    try:
        resp = await fake.send(address, REQ)
    except (UpstreamError, UpstreamTimeout) as exc:
        return 0, [], type(exc).__name__
    got: list[bytes] = []
    try:
        async for chunk in resp.chunks():
            got.append(chunk)
    except UpstreamError as exc:
        return resp.status, got, type(exc).__name__
    finally:
        await resp.aclose()
    return resp.status, got, None


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (Answer.json({"ok": True}), (200, [b'{"ok":true}'], None)),
        (Answer.json({"error": "x"}, status=503), (503, [b'{"error":"x"}'], None)),
        (Answer.sse(EVENTS), (200, list(EVENTS), None)),
        (Answer.sse(EVENTS, break_after=2), (200, list(EVENTS[:2]), "UpstreamError")),
        (Answer.sse(EVENTS, break_after=3), (200, list(EVENTS), "UpstreamError")),
        (Answer.sse(EVENTS, break_after=0), (200, [], "UpstreamError")),
        (Fail(), (0, [], "UpstreamError")),
        (Fail(timeout=True), (0, [], "UpstreamTimeout")),
    ],
)
async def test_each_step_answers_as_scripted(
    step: Step, expected: tuple[int, list[bytes], str | None]
) -> None:
    fake = FakeTransport().add("a:1", step)
    assert await _consume(fake, "a:1") == expected
    assert fake.sent == [SentRequest("a:1", REQ)]


@pytest.mark.parametrize(
    ("read_chunks", "aborted"),
    [(0, True), (1, True), (3, False)],
)
async def test_a_response_closed_before_its_end_is_recorded_as_aborted(
    read_chunks: int, aborted: bool
) -> None:
    fake = FakeTransport().add("a:1", Answer.sse(EVENTS))
    resp = await fake.send("a:1", REQ)
    stream = resp.chunks()
    for _ in range(read_chunks):
        await anext(stream)
    if read_chunks == len(EVENTS):
        assert [c async for c in stream] == []
    await resp.aclose()
    assert (resp.closed, resp.aborted) == (True, aborted)
    assert fake.responses == [resp]


async def test_queued_steps_are_used_once_then_the_always_step_then_refusal() -> None:
    fake = FakeTransport({"a:1": Answer.json("default")})
    fake.add("a:1", Fail(message="first"), Answer.json("second"))
    results = [await _consume(fake, "a:1") for _ in range(3)]
    assert results == [
        (0, [], "UpstreamError"),
        (200, [b'"second"'], None),
        (200, [b'"default"'], None),
    ]
    assert await _consume(fake, "b:2") == (0, [], "UpstreamError")  # nothing scripted
    assert [s.address for s in fake.sent] == ["a:1", "a:1", "a:1", "b:2"]


async def test_hang_never_answers_and_hang_after_stalls_the_stream() -> None:
    fake = FakeTransport().add("a:1", Hang(), Answer.sse(EVENTS, hang_after=1))
    pending = asyncio.ensure_future(fake.send("a:1", REQ))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not pending.done()
    pending.cancel()
    resp = await fake.send("a:1", REQ)
    stream = resp.chunks()
    assert await anext(stream) == EVENTS[0]
    stalled = asyncio.ensure_future(anext(stream))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not stalled.done()
    stalled.cancel()
    await resp.aclose()
    assert resp.aborted
