"""LoRA adapters through the gateway, over a pair of simulator replicas on loopback."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from pilothouse.config.fleet import parse_fleet
from pilothouse.servers.sim import SimSettings
from tests.e2e.sim_gateway import SimGateway, sim_gateway

pytestmark = pytest.mark.e2e

BASE = SimSettings(port=0, model="base", time_scale=50.0, runtime_lora_updating=True)
PAIR = [("r0", BASE), ("r1", BASE)]


def fleet(adapters: list[dict[str, str]] | None = None) -> Any:
    return parse_fleet(
        {
            "models": [
                {
                    "name": "base",
                    "engine": "sim",
                    "endpoints": ["127.0.0.1:1"],  # the harness supplies the real ones
                    "adapters": adapters or [],
                }
            ],
            "gateway": {"port": 0, "probe_interval_s": 0.05, "access_log": False},
        }
    )


async def chat(client: httpx.AsyncClient, gw: SimGateway, model: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    return await client.post(gw.url + "/v1/chat/completions", json=body)


async def listed(client: httpx.AsyncClient, gw: SimGateway) -> dict[str, Any]:
    models = (await client.get(gw.url + "/v1/models")).json()["data"]
    return {m["id"]: m for m in models}


async def until(predicate: Any, timeout_s: float = 5.0) -> None:
    for _ in range(int(timeout_s / 0.05)):
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


def finished(gw: SimGateway, name: str) -> int:
    return sum(gw.replicas[name].state.model.stats.finished.values())


async def test_adapter_loaded_on_one_replica_is_routed_there_then_unloaded() -> None:
    async with sim_gateway(fleet(), PAIR) as gw, httpx.AsyncClient(timeout=10) as client:
        assert (await chat(client, gw, "sql")).status_code == 404  # unknown anywhere

        r1 = gw.replicas["r1"].base_url
        loaded = await client.post(
            r1 + "/v1/load_lora_adapter", json={"lora_name": "sql", "lora_path": "/a/sql"}
        )
        assert loaded.status_code == 200

        async def seen() -> bool:
            return "sql" in await listed(client, gw)

        await until(seen)
        assert (await listed(client, gw))["sql"]["parent"] == "base"
        for _ in range(6):
            response = await chat(client, gw, "sql")
            assert response.status_code == 200
            assert response.headers["x-pilothouse-endpoint"] == "r1"
            assert response.json()["model"] == "sql"
        assert (finished(gw, "r0"), finished(gw, "r1")) == (0, 6)
        metrics = (await client.get(gw.url + "/metrics")).text
        assert 'pilothouse_requests_total{model="sql",route="/v1/chat/completions"' in metrics

        unloaded = await client.post(r1 + "/v1/unload_lora_adapter", json={"lora_name": "sql"})
        assert unloaded.status_code == 200

        async def gone() -> bool:
            return "sql" not in await listed(client, gw)

        await until(gone)
        response = await chat(client, gw, "sql")
        assert response.status_code == 404
        assert response.json()["error"]["param"] == "model"
        base = await chat(client, gw, "base")  # the base model is untouched
        assert base.status_code == 200


async def test_declared_adapter_is_loaded_on_demand_and_stays_put() -> None:
    spec = fleet([{"name": "support", "source": "hf://org/support-lora"}])
    async with sim_gateway(spec, PAIR) as gw, httpx.AsyncClient(timeout=10) as client:
        assert (await listed(client, gw))["support"]["parent"] == "base"
        first = await chat(client, gw, "support")
        assert first.status_code == 200
        holder = first.headers["x-pilothouse-endpoint"]
        other = "r1" if holder == "r0" else "r0"
        assert gw.replicas[holder].state.adapters == {"support": "org/support-lora"}
        assert gw.replicas[other].state.adapters == {}
        for _ in range(5):
            response = await chat(client, gw, "support")
            assert response.headers["x-pilothouse-endpoint"] == holder

        # Unloaded behind the gateway's back: the next request loads it again somewhere.
        gw.replicas[holder].state.unload_adapter("support")
        gw.app.ctx.adapters.discard(gw.app.ctx.pool.get(holder), "support")
        again = await chat(client, gw, "support")
        assert again.status_code == 200
        served = again.headers["x-pilothouse-endpoint"]
        assert "support" in gw.replicas[served].state.adapters


async def test_concurrent_first_requests_share_one_load() -> None:
    spec = fleet([{"name": "support", "source": "/adapters/support"}])
    one = [("r0", BASE)]
    async with sim_gateway(spec, one) as gw, httpx.AsyncClient(timeout=10) as client:
        responses = await asyncio.gather(*(chat(client, gw, "support") for _ in range(5)))
        assert [r.status_code for r in responses] == [200] * 5
        assert gw.replicas["r0"].state.adapters == {"support": "/adapters/support"}


async def test_admin_endpoint_loads_lists_and_unloads() -> None:
    async with sim_gateway(fleet(), PAIR) as gw, httpx.AsyncClient(timeout=10) as client:
        admin = gw.url + "/admin/adapters"
        load = {
            "action": "load",
            "lora_name": "sql",
            "lora_path": "/a/sql",
            "model": "base",
            "replicas": ["r0"],
        }
        answer = await client.post(admin, json=load)
        assert answer.status_code == 200, answer.text
        assert answer.json()["results"][0]["replica"] == "r0"
        listing = (await client.get(admin)).json()["adapters"]
        assert listing == {"sql": {"model": "base", "source": None, "replicas": ["r0"]}}
        response = await chat(client, gw, "sql")  # known at once, no scrape needed
        assert response.headers["x-pilothouse-endpoint"] == "r0"

        again = await client.post(admin, json=load)
        assert again.status_code == 502  # vLLM answers 400: already loaded
        assert again.json()["results"][0]["status"] == 400

        answer = await client.post(admin, json={"action": "unload", "lora_name": "sql"})
        assert answer.status_code == 200
        assert gw.replicas["r0"].state.adapters == {}
        assert (await chat(client, gw, "sql")).status_code == 404

        bad = await client.post(admin, json={"action": "pause", "lora_name": "sql"})
        assert bad.status_code == 400
