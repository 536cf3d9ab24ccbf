"""The endpoint picker's governance without Envoy: a real picker, driven over ext_proc.

The picker runs with a ``governance:`` block in its policy (SQLite store in the test's
state directory) in front of one fake engine (its health probes only: the test answers
for the engine, as Envoy relays it). A gRPC client plays Envoy: it sends the request's
headers (``Authorization: Bearer ph-…``) and body, reads the routing answer or the
picker's immediate reply (401, 429), then feeds the response the engine would have sent.
What is charged is read back from the store the ledger flushes to.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("grpc", reason="the epp extra (grpcio) is not installed")
pytest.importorskip(
    "envoy.service.ext_proc.v3.external_processor_pb2", reason="xds-protos is not installed"
)

import grpc
import orjson
from aiohttp import web
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc
from prometheus_client import generate_latest

from pilothouse.clock import SystemClock
from pilothouse.config.epp import EppPolicy
from pilothouse.config.governance import GovernanceSpec, LedgerSpec
from pilothouse.endpoints.discovery import StaticSource
from pilothouse.epp.server import EppServer, EppSettings
from pilothouse.governance.ledger import Ledger
from pilothouse.governance.limits import Limit
from pilothouse.governance.records import KeyRecord, Quota, UsageRow
from pilothouse.openai.requests import Route, parse_request
from pilothouse.scheduling.config import resolve_config
from pilothouse.scheduling.scheduler import build_scheduler
from pilothouse.scheduling.types import Endpoint
from pilothouse.testing.fake_engine import create_fake_engine
from tests.e2e.governance.stores import sqlite_store
from tests.unit.epp import messages as m

pytestmark = pytest.mark.e2e

MODEL = "m"
TEAM = "research"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8}


def _keys(state_dir: Path, **quotas: Quota) -> dict[str, tuple[str, KeyRecord]]:
    """An org, team ``research`` and one key per name (plaintext and record)."""
    with sqlite_store(state_dir) as store:
        store.create_org("acme")
        store.create_team("acme", TEAM)
        return {name: store.create_key(TEAM, name, quota=quota) for name, quota in quotas.items()}


@dataclass
class Reply:
    """The picker's answer to a request: routed (the call stays open), or refused."""

    status: int
    body: bytes
    headers: dict[str, str]
    call: Any

    def error(self) -> dict[str, Any]:
        error = orjson.loads(self.body)["error"]
        assert isinstance(error, dict)
        return error


@dataclass
class Picker:
    epp: EppServer
    stub: Any

    async def request(self, bearer: str | None, **body: Any) -> Reply:
        """Headers and body as Envoy sends them; the routing answer or the refusal."""
        extra = {"authorization": f"Bearer {bearer}"} if bearer is not None else {}
        call = self.stub.Process()
        await call.write(m.request_headers(extra=extra))
        chat = {**CHAT, **body}
        await call.write(m.request_body(chat))
        first = await call.read()
        if first.WhichOneof("response") == "immediate_response":
            immediate = first.immediate_response
            await call.done_writing()
            await call.code()
            status = int(immediate.status.code)
            return Reply(status, bytes(immediate.body), m.set_headers(first), call)
        await call.read()  # the body, forwarded
        return Reply(200, b"", m.set_headers(first), call)

    async def served(
        self, bearer: str, answer: Sequence[bytes], status: str = "200", **body: Any
    ) -> Reply:
        """A request the picker routes, answered by the "engine" in ``answer``'s chunks."""
        reply = await self.request(bearer, **body)
        assert reply.status == 200, reply.body
        streamed = body.get("stream", False)
        content_type = "text/event-stream" if streamed else "application/json"
        await reply.call.write(m.response_headers(status=status, content_type=content_type))
        await reply.call.read()
        for i, chunk in enumerate(answer):
            await reply.call.write(m.response_body(chunk, eos=i == len(answer) - 1))
            await reply.call.read()
        await reply.call.done_writing()
        assert await reply.call.code() == grpc.StatusCode.OK
        return reply

    async def ledger(self) -> list[UsageRow]:
        """Ledger totals by key, once what the picker charged is in the store."""
        await self.epp.pipeline.drain_settling()
        governor = self.epp.pipeline.governor
        assert governor is not None
        assert isinstance(governor.recorder, Ledger)
        assert await governor.recorder.flush(10)
        state_dir = governor.spec.state_dir
        assert state_dir is not None
        with sqlite_store(state_dir) as store:
            return store.usage(["key"])

    async def idle(self) -> None:
        """Until no request is in flight and every settlement ran."""
        async with asyncio.timeout(10):
            while any(e.in_flight for e in self.epp.pool.endpoints()):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        await self.epp.pipeline.drain_settling()


@contextlib.asynccontextmanager
async def _picker(state_dir: Path) -> AsyncIterator[Picker]:
    governance = GovernanceSpec(
        state_dir=state_dir, sync_interval_s=0.1, ledger=LedgerSpec(flush_interval_s=0.05)
    )
    settings = EppSettings(
        port=0,
        health_port=0,
        metrics_port=0,
        probe_interval_s=0.5,
        secure_serving=False,
        policy=EppPolicy(governance=governance),
    )
    runner = web.AppRunner(create_fake_engine(MODEL))  # answers the picker's probes
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        address = f"127.0.0.1:{runner.addresses[0][1]}"
        source = StaticSource([Endpoint("e0", address, MODEL, engine="openai")])
        scheduler = build_scheduler(resolve_config("default"), SystemClock(), seed=5)
        async with EppServer(settings, source, scheduler) as epp:
            await epp.wait_ready()
            async with grpc.aio.insecure_channel(f"127.0.0.1:{epp.port}") as channel:
                yield Picker(epp, pb_grpc.ExternalProcessorStub(channel))
    finally:
        await runner.cleanup()


def _json_answer(prompt: int, completion: int) -> list[bytes]:
    whole = orjson.dumps(
        {
            "id": "c1",
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        }
    )
    return [whole[:20], whole[20:]]  # split: the usage is read from the whole body


def _sse_answer(prompt: int, completion: int, pieces: int = 3) -> list[bytes]:
    events = [
        {"id": "c1", "choices": [{"index": 0, "delta": {"content": f"w{i} "}}]}
        for i in range(completion)
    ]
    events.append(
        {
            "id": "c1",
            "choices": [],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        }
    )
    raw = b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"
    # The usage chunk straddles two body messages, as Envoy may cut it anywhere.
    cut = raw.index(b'"usage"') + 5
    return [raw[: cut // 2], raw[cut // 2 : cut], raw[cut:]][:pieces]


def _row(rows: list[UsageRow], key: KeyRecord) -> tuple[int, int, int]:
    [row] = [r for r in rows if r.group == (key.id,)]
    return row.requests, row.prompt_tokens, row.completion_tokens


def _tenant_count(picker: Picker, outcome: str, team: str = TEAM, model: str = MODEL) -> float:
    labels = {"team": team, "model": model, "outcome": outcome}
    value = picker.epp.metrics.registry.get_sample_value("pilothouse_tenant_requests_total", labels)
    return value or 0.0


async def test_epp_api_key_is_admitted_and_charged_from_the_response_body(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    keys = _keys(tmp_path, ci=Quota())
    plaintext, record = keys["ci"]
    async with _picker(tmp_path) as picker:
        reply = await picker.served(plaintext, _json_answer(11, 5), max_tokens=8)
        assert reply.headers["x-gateway-destination-endpoint"].startswith("127.0.0.1:")
        # An engine's refusal did no work: released, never charged.
        await picker.served(plaintext, [b'{"error":{"message":"boom"}}'], "500", max_tokens=8)
        unknown = "ph-" + "x" * 43
        for bearer in (unknown, None, "not-a-key"):
            refused = await picker.request(bearer, max_tokens=8)
            assert refused.status == 401, (bearer, refused.body)
            assert refused.error()["code"] == "invalid_api_key"
        assert _row(await picker.ledger(), record) == (1, 11, 5)
        assert _tenant_count(picker, "admitted") == 2
        assert _tenant_count(picker, "unauthorized", team="", model="") == 3
        tokens = picker.epp.metrics.registry.get_sample_value(
            "pilothouse_tenant_tokens_total", {"team": TEAM, "model": MODEL, "kind": "completion"}
        )
        assert tokens == 5
        exposition = generate_latest(picker.epp.metrics.registry).decode()
    assert "pilothouse_tenant_requests_total" in exposition
    for secret in (plaintext, unknown, record.digest):
        assert secret not in caplog.text
        assert secret not in exposition


async def test_epp_stream_usage_is_charged_from_the_tail(tmp_path: Path) -> None:
    keys = _keys(tmp_path, ci=Quota())
    plaintext, record = keys["ci"]
    async with _picker(tmp_path) as picker:
        await picker.served(plaintext, _sse_answer(9, 4), max_tokens=8, stream=True)
        await picker.served(plaintext, _sse_answer(12, 6), max_tokens=8, stream=True)
        assert _row(await picker.ledger(), record) == (2, 21, 10)


async def test_epp_a_key_over_its_requests_per_min_gets_429(tmp_path: Path) -> None:
    keys = _keys(tmp_path, limited=Quota(Limit(requests_per_min=2)), other=Quota())
    limited, other = keys["limited"], keys["other"]
    async with _picker(tmp_path) as picker:
        for _ in range(2):
            await picker.served(limited[0], _json_answer(3, 1), max_tokens=4)
        refused = await picker.request(limited[0], max_tokens=4)
        assert refused.status == 429, refused.body
        assert refused.error()["code"] == "rate_limit_exceeded"
        assert int(refused.headers["retry-after"]) >= 1
        await picker.served(other[0], _json_answer(3, 1), max_tokens=4)  # its team is not
        rows = await picker.ledger()
        assert _row(rows, limited[1]) == (2, 6, 2)
        assert _row(rows, other[1]) == (1, 3, 1)
        assert _tenant_count(picker, "rate_limited") == 1


async def test_epp_concurrent_slot_is_released_when_the_client_resets_the_stream(
    tmp_path: Path,
) -> None:
    """Envoy resets the ext_proc stream when the client goes away: the picker gives the
    request's concurrent slot back, whether it was waiting for its answer or mid-stream."""
    keys = _keys(tmp_path, one=Quota(Limit(concurrent=1)))
    plaintext, record = keys["one"]
    async with _picker(tmp_path) as picker:
        for midstream in (False, True):
            held = await picker.request(plaintext, max_tokens=8, stream=True)
            assert held.status == 200, held.body
            if midstream:
                await held.call.write(m.response_headers(content_type="text/event-stream"))
                await held.call.read()
                await held.call.write(m.response_body(_sse_answer(9, 4)[0], eos=False))
                await held.call.read()
            second = await picker.request(plaintext, max_tokens=8)
            assert second.status == 429, second.body
            assert second.error()["code"] == "rate_limit_exceeded"
            held.call.cancel()  # the client left: Envoy resets the stream
            await picker.idle()
        await picker.served(plaintext, _sse_answer(9, 4), max_tokens=8, stream=True)
        rows = await picker.ledger()
    charged = _row(rows, record)
    print(f"charged after two resets and one served stream: {charged}")
    # Each reset request reached an engine: charged its prompt (the picker's estimate, as
    # the gateway charges a client that left), no output; the served one its usage.
    estimate = parse_request(Route.CHAT, orjson.dumps(CHAT)).prompt_tokens
    assert charged == (3, 2 * estimate + 9, 4)
