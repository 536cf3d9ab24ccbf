"""Engine errors through a real gateway are OpenAI errors (issue #11): a prompt over the
model's context comes back as vLLM's 400 with OpenAI's ``context_length_exceeded`` code,
not a 502."""

from __future__ import annotations

import aiohttp
import pytest

from pilothouse.config.fleet import FleetSpec, GatewaySpec, ModelSpec
from pilothouse.servers.sim import SimSettings
from pilothouse.sim.config import EngineOverrides
from tests.e2e.sim_gateway import sim_gateway

pytestmark = pytest.mark.e2e


async def test_a_prompt_over_the_context_is_400_context_length_exceeded() -> None:
    fleet = FleetSpec(
        models=[ModelSpec(name="sim-model", engine="sim", endpoints=["127.0.0.1:1"])],
        gateway=GatewaySpec(port=0, probe_interval_s=0.1),
    )
    settings = SimSettings(port=0, model="sim-model", overrides=EngineOverrides(max_model_len=64))
    async with sim_gateway(fleet, [("r0", settings)]) as gw, aiohttp.ClientSession() as http:
        body = {"model": "sim-model", "prompt": "word " * 400, "max_tokens": 8}
        async with http.post(gw.url + "/v1/completions", json=body) as reply:
            status, doc = reply.status, await reply.json()
    assert status == 400
    assert doc["error"]["code"] == "context_length_exceeded"
    assert "maximum context length is 64" in doc["error"]["message"]
