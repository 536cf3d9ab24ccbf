"""A traffic split through the gateway: two simulator versions behind one public name."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pilothouse.config.fleet import FleetSpec, parse_fleet
from pilothouse.servers.sim import SimSettings
from tests.e2e.sim_gateway import SimGateway, sim_gateway

pytestmark = pytest.mark.e2e

V1 = SimSettings(port=0, model="chat-v1", time_scale=50.0)
V2 = SimSettings(port=0, model="chat-v2", time_scale=50.0)
REPLICAS = [("v1-0", V1), ("v2-0", V2)]


def fleet(weights: tuple[int, int] = (80, 20)) -> FleetSpec:
    return parse_fleet(
        {
            "models": [
                {"name": "chat-v1", "engine": "sim", "endpoints": ["127.0.0.1:1"]},
                {"name": "chat-v2", "engine": "sim", "endpoints": ["127.0.0.1:2"]},
            ],
            "traffic": [
                {
                    "name": "chat",
                    "versions": [
                        {"model": "chat-v1", "weight": weights[0]},
                        {"model": "chat-v2", "weight": weights[1]},
                    ],
                }
            ],
            "gateway": {"port": 0, "probe_interval_s": 0.05, "access_log": False},
        }
    )


async def chat(
    client: httpx.AsyncClient,
    gw: SimGateway,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    doc = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    return await client.post(
        gw.url + "/v1/chat/completions", json={**doc, **(body or {})}, headers=headers
    )


def split_counts(text: str) -> dict[str, float]:
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "pilothouse_traffic_split_requests":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    assert sample.labels["public_model"] == "chat"
                    counts[sample.labels["model"]] = sample.value
    return counts


async def test_split_by_weight_with_per_version_metrics() -> None:
    async with sim_gateway(fleet(), REPLICAS) as gw, httpx.AsyncClient(timeout=10) as client:
        models = {m["id"]: m for m in (await client.get(gw.url + "/v1/models")).json()["data"]}
        assert models["chat"]["versions"] == {"chat-v1": 0.8, "chat-v2": 0.2}

        answers = [await chat(client, gw) for _ in range(50)]
        assert {r.status_code for r in answers} == {200}
        versions = [r.headers["x-pilothouse-model"] for r in answers]
        # What the client sees: the version's name, from the engine that served it.
        assert [r.json()["model"] for r in answers] == versions
        ends = {v: {r.headers["x-pilothouse-endpoint"] for r in answers if v in r.json()["model"]}
                for v in ("chat-v1", "chat-v2")}  # fmt: skip
        assert ends == {"chat-v1": {"v1-0"}, "chat-v2": {"v2-0"}}
        assert versions.count("chat-v2") == 10  # smooth round-robin: exact per 5 requests
        for n in range(1, 51):  # and within one request of the share after any n
            assert abs(versions[:n].count("chat-v2") - 0.2 * n) <= 1

        metrics = (await client.get(gw.url + "/metrics")).text
        assert split_counts(metrics) == {"chat-v1": 40.0, "chat-v2": 10.0}
        assert 'pilothouse_e2e_request_latency_seconds_count{model="chat-v2"} 10.0' in metrics
        assert 'pilothouse_requests_total{model="chat-v1"' in metrics

        direct = await chat(client, gw, {"model": "chat-v2"})  # versions stay addressable
        assert direct.headers["x-pilothouse-endpoint"] == "v2-0"
        assert "x-pilothouse-model" not in direct.headers


async def test_sessions_stay_on_one_version() -> None:
    async with (
        sim_gateway(fleet((50, 50)), REPLICAS) as gw,
        httpx.AsyncClient(timeout=10) as client,
    ):
        seen: dict[str, set[str]] = {}
        for session in [f"s{i}" for i in range(12)]:
            replies = await asyncio.gather(
                *(chat(client, gw, headers={"x-session-id": session}) for _ in range(4))
            )
            seen[session] = {r.headers["x-pilothouse-model"] for r in replies}
        assert all(len(versions) == 1 for versions in seen.values())
        assert {v for versions in seen.values() for v in versions} == {"chat-v1", "chat-v2"}

        by_user = {
            (await chat(client, gw, {"user": "alice"})).headers["x-pilothouse-model"]
            for _ in range(5)
        }
        assert len(by_user) == 1


async def test_applied_weights_take_effect() -> None:
    async with sim_gateway(fleet(), REPLICAS) as gw, httpx.AsyncClient(timeout=10) as client:
        gw.app.ctx.adopt(fleet((0, 100)))  # what `pilothouse apply` does on a new spec
        replies = [await chat(client, gw) for _ in range(5)]
        assert {r.headers["x-pilothouse-model"] for r in replies} == {"chat-v2"}
        models = {m["id"]: m for m in (await client.get(gw.url + "/v1/models")).json()["data"]}
        assert models["chat"]["versions"] == {"chat-v1": 0.0, "chat-v2": 1.0}
