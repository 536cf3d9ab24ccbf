"""Governance on ``/v1/messages`` and ``/v1/responses``: the same identities, budgets and
ledger as chat. Anthropic clients send their key as ``x-api-key``; what is charged is the
usage of the translated answer."""

from __future__ import annotations

from pathlib import Path

import pytest

from pilothouse.config.fleet import FleetSpec, parse_fleet
from pilothouse.governance.records import Quota
from pilothouse.servers.sim import SimSettings
from tests.e2e.governance.stores import sqlite_store
from tests.e2e.sim_gateway import SimGateway, sim_gateway

anthropic = pytest.importorskip("anthropic")
openai = pytest.importorskip("openai")

pytestmark = pytest.mark.e2e

MODEL = "sim-model"
REPLICAS = [("r0", SimSettings(port=0, model=MODEL, time_scale=50.0))]
QUESTION = [{"role": "user", "content": "hello there"}]


def _fleet(state_dir: Path) -> FleetSpec:
    return parse_fleet(
        {
            "models": [{"name": MODEL, "engine": "sim", "endpoints": ["127.0.0.1:1"]}],
            "gateway": {
                "port": 0,
                "probe_interval_s": 30,
                "governance": {
                    "state_dir": str(state_dir),
                    "sync_interval_s": 0.1,
                    "ledger": {"flush_interval_s": 0.05},
                },
            },
        }
    )


def _key(state_dir: Path, team: Quota | None = None) -> str:
    state_dir.mkdir(parents=True, exist_ok=True)
    with sqlite_store(state_dir) as store:
        store.create_org("acme")
        store.create_team("acme", "research", team or Quota())
        plaintext, _ = store.create_key("research", "laptop", quota=Quota())
    return plaintext


async def _ledger(gw: SimGateway, state_dir: Path) -> tuple[int, int]:
    governance = gw.app.ctx.governance
    assert governance is not None
    assert await governance.ledger.flush(timeout_s=10)
    with sqlite_store(state_dir) as store:
        [row] = store.usage([])
    return row.requests, row.prompt_tokens + row.completion_tokens


async def test_messages_and_responses_are_governed_and_charged(tmp_path: Path) -> None:
    key = _key(tmp_path)
    async with (
        sim_gateway(_fleet(tmp_path), REPLICAS) as gw,
        anthropic.AsyncAnthropic(base_url=gw.url, api_key=key, max_retries=0) as claude,
        anthropic.AsyncAnthropic(base_url=gw.url, api_key="pk-wrong", max_retries=0) as wrong,
        openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0) as codex,
    ):
        message = await claude.messages.create(model=MODEL, max_tokens=8, messages=QUESTION)
        async with claude.messages.stream(model=MODEL, max_tokens=8, messages=QUESTION) as stream:
            streamed = await stream.get_final_message()
        response = await codex.responses.create(model=MODEL, input="hello", max_output_tokens=8)
        with pytest.raises(anthropic.AuthenticationError) as refused:
            await wrong.messages.create(model=MODEL, max_tokens=8, messages=QUESTION)
        requests, tokens = await _ledger(gw, tmp_path)
    assert refused.value.body["error"]["type"] == "authentication_error"
    assert response.usage is not None
    served = [
        message.usage.input_tokens + message.usage.output_tokens,
        streamed.usage.input_tokens + streamed.usage.output_tokens,
        response.usage.total_tokens,
    ]
    assert (requests, tokens) == (3, sum(served))


async def test_messages_over_budget_get_anthropics_rate_limit_error(tmp_path: Path) -> None:
    key = _key(tmp_path, team=Quota(budget_tokens=10))  # less than one request reserves
    async with (
        sim_gateway(_fleet(tmp_path), REPLICAS) as gw,
        anthropic.AsyncAnthropic(base_url=gw.url, api_key=key, max_retries=0) as claude,
    ):
        with pytest.raises(anthropic.RateLimitError) as refused:
            await claude.messages.create(model=MODEL, max_tokens=8, messages=QUESTION)
    assert refused.value.body["type"] == "error"
    assert refused.value.body["error"]["type"] == "rate_limit_error"
