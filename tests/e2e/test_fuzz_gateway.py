"""A live gateway fuzzed with generated OpenAI requests (``pytest -k fuzz``; issue #11).

2,100 requests generated over the OpenAI request shapes — valid bodies with one field
mutated to a wrong type, range or value, random JSON, broken bytes, odd headers (a
non-UTF-8 ``x-request-id``, deep nesting) — against a real gateway on loopback with fake
engines. No answer may be a 5xx or a reset connection, and every 4xx is an OpenAI error
body. The generator is seeded: a failure is reproducible.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Iterator
from typing import Any

import aiohttp
import orjson
import pytest

from tests.e2e.gateway_harness import running_gateway

pytestmark = pytest.mark.e2e

REQUESTS = 2_100
ROUTES = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
VALID: dict[str, dict[str, Any]] = {
    ROUTES[0]: {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
    ROUTES[1]: {"model": "m", "prompt": "hi", "max_tokens": 4},
    ROUTES[2]: {"model": "m", "input": "hi"},
}
FIELDS = [
    "model", "messages", "prompt", "input", "stream", "stream_options", "max_tokens",
    "max_completion_tokens", "temperature", "top_p", "n", "stop", "seed", "tools",
    "tool_choice", "logprobs", "top_logprobs", "response_format", "user", "logit_bias",
    "presence_penalty", "frequency_penalty", "encoding_format", "dimensions", "echo",
]  # fmt: skip


def _value(rng: random.Random, depth: int = 0) -> Any:
    kinds = ["int", "float", "str", "bool", "null", "neg", "big"]
    if depth < 3:
        kinds += ["list", "dict", "message", "part"]
    kind = rng.choice(kinds)
    simple: dict[str, Any] = {
        "int": rng.randint(-5, 300),
        "float": rng.uniform(-3, 3),
        "str": rng.choice(["", "x", "auto", "none", "user", "robot", "é" * 3, "\x00"]),
        "bool": rng.random() < 0.5,
        "null": None,
        "neg": -rng.randint(1, 10**6),
        "big": 2**63 - 1,
    }
    if kind in simple:
        return simple[kind]
    if kind == "list":
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if kind == "message":
        return {"role": _value(rng, depth + 1), "content": _value(rng, depth + 1)}
    if kind == "part":
        return {"type": rng.choice(["text", "image_url", "video"]), "text": _value(rng, 3)}
    return {rng.choice(FIELDS): _value(rng, depth + 1) for _ in range(rng.randint(0, 3))}


def _bodies(rng: random.Random) -> Iterator[tuple[str, bytes, dict[str, str]]]:
    for i in range(REQUESTS):
        route = rng.choice(ROUTES)
        headers = {"content-type": "application/json"}
        kind = i % 7
        if kind <= 3:  # a valid body, one or two fields mutated
            doc = dict(VALID[route])
            for _ in range(rng.randint(1, 2)):
                doc[rng.choice(FIELDS)] = _value(rng)
            body = orjson.dumps(doc)
        elif kind == 4:
            body = orjson.dumps(_value(rng))
        elif kind == 5:
            body = bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
        else:
            doc = {**VALID[route], "stream": True, "deep": None}
            body = orjson.dumps(doc).replace(b"null", b"[" * 300 + b"]" * 300)
        yield route, body, headers


async def test_fuzz_live_gateway_never_5xx_never_resets() -> None:
    rng = random.Random(20261207)
    statuses: Counter[int] = Counter()
    bad: list[str] = []
    async with running_gateway(["r0", "r1"]) as gw, aiohttp.ClientSession() as session:
        semaphore = asyncio.Semaphore(16)

        async def one(route: str, body: bytes, headers: dict[str, str]) -> None:
            async with semaphore, session.post(gw.url + route, data=body, headers=headers) as r:
                raw = await r.read()
                statuses[r.status] += 1
                if r.status >= 500:
                    bad.append(f"{r.status} {route} {body[:120]!r}: {raw[:200]!r}")
                elif r.status >= 400:
                    error = orjson.loads(raw).get("error", {})
                    if not {"message", "type", "param", "code"} <= set(error):
                        bad.append(f"not an OpenAI error body: {raw[:200]!r}")

        await asyncio.gather(*(one(*request) for request in _bodies(rng)))
        # An x-request-id that is not UTF-8 is replaced, not a 500.
        odd = {"x-request-id": "\udcff".encode("utf-8", "surrogateescape").decode("latin-1")}
        async with session.post(gw.url + ROUTES[0], json=VALID[ROUTES[0]], headers=odd) as r:
            assert r.status == 200
            assert r.headers["x-request-id"] != odd["x-request-id"]
    assert bad == []
    assert sum(statuses.values()) == REQUESTS
    assert statuses[200] > 0  # the generator also sends requests that are served
    assert sum(n for s, n in statuses.items() if 400 <= s < 500) > REQUESTS // 2
