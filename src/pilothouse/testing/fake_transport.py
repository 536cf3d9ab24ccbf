"""A scriptable :class:`~pilothouse.transport.Transport`: engines without processes.

Script what each address does, request by request, then run retries, failover and
mid-stream failures in a unit test::

    fake = FakeTransport()
    fake.add("a:1", Fail())                                   # refused before the first byte
    fake.add("b:1", Answer.sse([b"data: 1\\n\\n"], break_after=1))  # one event, then it breaks
    fake.always("c:1", Answer.json({"ok": True}))             # every later request to c:1

    ... exercise the code under test ...
    assert [s.address for s in fake.sent] == ["a:1", "b:1"]
    assert fake.responses[0].aborted                          # closed before the end

Steps queued with :meth:`~FakeTransport.add` are used once each, in order; then the
address's :meth:`~FakeTransport.always` step, if any; an address with neither refuses the
connection (``UpstreamError``), as a port nobody listens on would.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass

import orjson

from pilothouse.errors import UpstreamError, UpstreamTimeout
from pilothouse.transport import UpstreamRequest

_JSON = (("content-type", "application/json"),)
_SSE = (("content-type", "text/event-stream"),)


@dataclass(frozen=True, slots=True)
class Answer:
    """Answer with ``status``, ``headers`` and the body in ``chunks``.

    ``break_after=N``: after N chunks the stream breaks (``UpstreamError``).
    ``hang_after=N``: after N chunks nothing more ever comes (the stream stalls).
    ``timeout_after=N``: after N chunks the transport's read timeout fires (``UpstreamTimeout``).
    """

    status: int = 200
    chunks: tuple[bytes, ...] = ()
    headers: tuple[tuple[str, str], ...] = _JSON
    break_after: int | None = None
    hang_after: int | None = None
    timeout_after: int | None = None

    @classmethod
    def json(cls, doc: object, status: int = 200) -> Answer:
        return cls(status=status, chunks=(orjson.dumps(doc),))

    @classmethod
    def sse(
        cls,
        events: Iterable[bytes],
        *,
        break_after: int | None = None,
        hang_after: int | None = None,
    ) -> Answer:
        return cls(
            chunks=tuple(events), headers=_SSE, break_after=break_after, hang_after=hang_after
        )


@dataclass(frozen=True, slots=True)
class Fail:
    """Fail before the first byte: ``UpstreamError`` or, with ``timeout``, ``UpstreamTimeout``."""

    timeout: bool = False
    message: str = "scripted failure"

    def error(self) -> UpstreamError | UpstreamTimeout:
        return UpstreamTimeout(self.message) if self.timeout else UpstreamError(self.message)


@dataclass(frozen=True, slots=True)
class Hang:
    """Never answer: ``send`` waits until the caller cancels it."""


Step = Answer | Fail | Hang
"""One scripted behaviour of an address for one request."""


@dataclass(frozen=True, slots=True)
class SentRequest:
    address: str
    request: UpstreamRequest


class FakeResponse:
    """What :class:`FakeTransport` answered; ``aborted`` if closed before the body's end."""

    def __init__(self, address: str, answer: Answer) -> None:
        self.address = address
        self.status = answer.status
        self.headers: Mapping[str, str] = {k.lower(): v for k, v in answer.headers}
        self.closed = False
        self.aborted = False
        self._answer = answer
        self._finished = False

    async def chunks(self) -> AsyncIterator[bytes]:
        answer = self._answer
        for sent, chunk in enumerate(answer.chunks):
            if self.closed:
                raise UpstreamError("the response was already closed")
            if sent == answer.break_after:
                raise UpstreamError(f"scripted break after {sent} chunks")
            if sent == answer.hang_after:
                await asyncio.get_running_loop().create_future()
            if sent == answer.timeout_after:
                raise UpstreamTimeout(f"scripted read timeout after {sent} chunks")
            await asyncio.sleep(0)  # one loop pass per chunk, as bytes from a socket
            yield chunk
        if answer.break_after is not None and answer.break_after >= len(answer.chunks):
            raise UpstreamError("scripted break at the end of the body")
        self._finished = True

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.chunks()])

    async def aclose(self) -> None:
        if not self.closed:
            self.closed = True
            self.aborted = not self._finished


class FakeTransport:
    """Answers from a script per address and records everything sent (module docstring)."""

    def __init__(self, script: Mapping[str, Step] | None = None) -> None:
        self.sent: list[SentRequest] = []
        self.responses: list[FakeResponse] = []
        self.closed = False
        self._queued: dict[str, deque[Step]] = {}
        self._always: dict[str, Step] = dict(script or {})

    def add(self, address: str, *steps: Step) -> FakeTransport:
        """Queue ``steps`` for the next requests to ``address``, one step per request."""
        self._queued.setdefault(address, deque()).extend(steps)
        return self

    def always(self, address: str, step: Step) -> FakeTransport:
        """What ``address`` does once its queued steps are used up."""
        self._always[address] = step
        return self

    async def send(self, address: str, request: UpstreamRequest) -> FakeResponse:
        self.sent.append(SentRequest(address, request))
        step = self._next(address)
        if isinstance(step, Fail):
            raise step.error()
        if isinstance(step, Hang):
            await asyncio.get_running_loop().create_future()
        assert isinstance(step, Answer)
        response = FakeResponse(address, step)
        self.responses.append(response)
        return response

    def _next(self, address: str) -> Step:
        queued = self._queued.get(address)
        if queued:
            return queued.popleft()
        step = self._always.get(address)
        if step is None:
            return Fail(message=f"connection refused: nothing scripted for {address}")
        return step

    async def aclose(self) -> None:
        self.closed = True
