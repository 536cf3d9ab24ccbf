"""A bounded load of chat completions that knows which answers were really served.

Each request carries its own ``x-request-id`` (the ledger's key). A request counts as
**served** only when its HTTP response completed: a non-streamed 200 whose whole body (with
``usage``) arrived, or a streamed 200 whose usage chunk, ``[DONE]`` and the end of the
chunked body arrived (h11 raises if the connection closes before the terminating chunk).
Everything else is classified, never dropped: refused (a whole non-200 answer), unreached
(the TCP connection was refused: the gateway was down) or **cut** (the connection broke
during the exchange: the request may have reached the gateway and an engine), or broken (a
stream that ended properly but without its usage chunk or ``[DONE]``).

Each result keeps the ``phase`` the load was in when the request started, so a test can
tell the requests in flight when it killed a gateway from the others.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from dataclasses import dataclass, field
from typing import Literal

import httpx
import orjson

_MAX_FAILED = 50
"""Refused or broken answers that stop the load: something is misconfigured."""

Kind = Literal["served", "refused", "unreached", "cut", "broken"]


@dataclass(slots=True)
class Result:
    request_id: str
    kind: Kind
    phase: str
    stream: bool
    status: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    saw_usage: bool = False
    """A cut stream: whether its usage chunk had arrived before the cut."""
    error: str = ""

    @property
    def tokens(self) -> tuple[int, int]:
        return self.prompt_tokens, self.completion_tokens


@dataclass
class Load:
    """``workers`` loops posting chat completions to ``url`` with ``key`` until stopped."""

    url: str
    key: str
    model: str
    workers: int
    prefix: str = "req"
    stream_share: float = 0.5
    seed: int = 0
    pause_s: float = 0.0
    """Wait between one worker's requests (0: back to back)."""
    phase: str = "start"
    results: dict[str, Result] = field(default_factory=dict)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def start(self) -> None:
        limits = httpx.Limits(max_connections=self.workers, max_keepalive_connections=self.workers)
        self._client = httpx.AsyncClient(timeout=60, limits=limits)
        self._tasks = [
            asyncio.create_task(self._worker(random.Random(self.seed * 1000 + n)), name=f"w{n}")
            for n in range(self.workers)
        ]

    async def stop(self) -> None:
        """Let every worker finish the request it is in, then close the client."""
        self._stop.set()
        try:
            await asyncio.gather(*self._tasks)
        finally:
            await self._client.aclose()

    def of(self, kind: Kind, phase: str | None = None) -> list[Result]:
        return [r for r in self.results.values() if r.kind == kind and phase in (None, r.phase)]

    def served(self) -> dict[str, tuple[int, int]]:
        """Request id → (prompt, completion) tokens of every served request."""
        return {r.request_id: r.tokens for r in self.of("served")}

    def summary(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.results.values():
            name = f"{r.phase}/{r.kind}"
            counts[name] = counts.get(name, 0) + 1
        return dict(sorted(counts.items()))

    async def wait_served(self, count: int, timeout_s: float = 120.0) -> None:
        """Until ``count`` more requests were served from now on (fails fast on refusals:
        this load expects none)."""
        target = len(self.of("served")) + count
        try:
            async with asyncio.timeout(timeout_s):
                while len(self.of("served")) < target:
                    self._check()
                    await asyncio.sleep(0.02)
        except TimeoutError:
            raise AssertionError(f"{count} served not reached: {self.summary()}") from None

    def _check(self) -> None:
        for task in self._tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise AssertionError("a load worker failed") from task.exception()
        failed = self.of("refused") + self.of("broken")
        if len(failed) > _MAX_FAILED:
            raise AssertionError(f"{len(failed)} refused or broken, e.g. {failed[:3]}")

    async def _worker(self, rng: random.Random) -> None:
        while not self._stop.is_set():
            request_id = f"{self.prefix}-{next(self._ids)}"
            result = await self._one(rng, request_id)
            self.results[request_id] = result
            if result.kind == "unreached":
                await asyncio.sleep(0.05)  # the gateway is down: do not spin
            elif self.pause_s:
                await asyncio.sleep(self.pause_s)

    async def _one(self, rng: random.Random, request_id: str) -> Result:
        stream = rng.random() < self.stream_share
        words = " ".join(f"w{rng.randrange(1000)}" for _ in range(rng.randrange(1, 40)))
        body: dict[str, object] = {
            "model": self.model,
            "messages": [{"role": "user", "content": f"{request_id}: {words}"}],
            "max_tokens": rng.randrange(1, 24),
            "stream": stream,
        }
        if stream:
            body["stream_options"] = {"include_usage": True}
        headers = {"authorization": f"Bearer {self.key}", "x-request-id": request_id}
        result = Result(request_id, "cut", self.phase, stream)
        try:
            if stream:
                await self._stream(body, headers, result)
            else:
                await self._whole(body, headers, result)
        except httpx.ConnectError as exc:
            result.kind, result.error = "unreached", repr(exc)
        except httpx.TransportError as exc:
            result.kind, result.error = "cut", repr(exc)
        return result

    async def _whole(self, body: object, headers: dict[str, str], result: Result) -> None:
        response = await self._client.post(self.url, json=body, headers=headers)
        result.status = response.status_code  # the whole body was read (or this raised)
        if response.status_code != 200:
            result.kind, result.error = "refused", response.text[:200]
            return
        usage = response.json()["usage"]
        result.kind = "served"
        result.prompt_tokens = int(usage["prompt_tokens"])
        result.completion_tokens = int(usage["completion_tokens"])

    async def _stream(self, body: object, headers: dict[str, str], result: Result) -> None:
        async with self._client.stream("POST", self.url, json=body, headers=headers) as response:
            result.status = response.status_code
            if response.status_code != 200:
                result.kind, result.error = "refused", (await response.aread())[:200].decode()
                return
            done = False
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line.removeprefix("data: ")
                if data == "[DONE]":
                    done = True
                    continue
                usage = orjson.loads(data).get("usage")
                if usage:
                    result.saw_usage = True
                    result.prompt_tokens = int(usage["prompt_tokens"])
                    result.completion_tokens = int(usage["completion_tokens"])
        # Here the chunked body ended properly: h11 raises on a connection closed before.
        if not (done and result.saw_usage):
            result.error = f"a complete stream without usage or [DONE] (done={done})"
            result.kind = "broken"
            return
        result.kind = "served"
