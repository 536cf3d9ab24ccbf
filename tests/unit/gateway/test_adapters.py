"""Adapter bookkeeping: what replicas hold, where an adapter request may go."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from pilothouse.config.fleet import parse_fleet
from pilothouse.endpoints.pool import EndpointPool
from pilothouse.errors import NoEndpointAvailable
from pilothouse.gateway.adapters import (
    AdapterRegistry,
    AdapterWatcher,
    DeclaredAdapter,
    served_adapters,
)
from pilothouse.scheduling.types import Endpoint, EndpointMetrics

SPEC = parse_fleet(
    {
        "models": [
            {
                "name": "base",
                "engine": "vllm",
                "adapters": [{"name": "sql", "source": "hf://org/sql-lora"}],
            }
        ]
    }
)


def endpoint(name: str, engine: str = "vllm", running: frozenset[str] = frozenset()) -> Endpoint:
    return Endpoint(
        name=name,
        address=f"{name}:80",
        model="base",
        engine=engine,
        metrics=EndpointMetrics(running_loras=running),
    )


def test_served_adapters_reads_vllm_model_lists() -> None:
    document = {
        "object": "list",
        "data": [
            {"id": "base", "parent": None},
            {"id": "sql", "root": "/a/sql", "parent": "base"},
            {"id": "odd"},
            "junk",
        ],
    }
    assert served_adapters(document, "base") == {"sql"}
    with pytest.raises(ValueError, match="model list"):
        served_adapters({"data": None}, "base")


def test_declared_and_discovered_names() -> None:
    registry = AdapterRegistry(SPEC)
    assert registry.base_of("sql") == "base"
    assert registry.declared("sql") == DeclaredAdapter("sql", "base", "hf://org/sql-lora")
    assert registry.declared("sql").path == "org/sql-lora"  # type: ignore[union-attr]
    assert registry.base_of("chat") is None
    registry.set_held(endpoint("r0"), {"chat"})
    assert registry.names() == {"chat": "base", "sql": "base"}
    registry.discard(endpoint("r0"), "chat")
    assert registry.base_of("chat") is None
    registry.add(endpoint("r1"), "chat")
    registry.forget_missing(["r0"])
    assert registry.names() == {"sql": "base"}


@pytest.mark.parametrize(
    ("held", "running", "adapter", "only", "loads"),
    [
        ({"r1": {"sql"}}, {}, "sql", {"r1:80"}, False),  # held: only there
        ({}, {"r0": {"sql"}}, "sql", {"r0:80"}, False),  # running per the engine's metrics
        ({}, {}, "sql", {"r0:80", "r1:80", "r2:80"}, True),  # declared: anywhere, load first
        ({"r2": {"chat"}}, {}, "chat", {"r2:80"}, False),  # discovered, not declared
    ],
)
def test_plan(
    held: dict[str, set[str]],
    running: dict[str, set[str]],
    adapter: str,
    only: set[str],
    loads: bool,
) -> None:
    registry = AdapterRegistry(SPEC)
    candidates = [endpoint(n, running=frozenset(running.get(n, ()))) for n in ("r0", "r1", "r2")]
    for e in candidates:
        registry.set_held(e, held.get(e.name, ()))
    plan = registry.plan(adapter, candidates)
    assert plan.only == frozenset(only)
    assert (plan.load is not None) == loads


def test_plan_without_a_holder_or_declaration_is_unavailable() -> None:
    registry = AdapterRegistry(SPEC)
    with pytest.raises(NoEndpointAvailable, match="adapter 'chat'"):
        registry.plan("chat", [endpoint("r0")])
    with pytest.raises(NoEndpointAvailable):  # declared, but no engine that can load it
        registry.plan("sql", [endpoint("r0", engine="openai")])


def test_update_replaces_declarations_and_keeps_what_replicas_hold() -> None:
    registry = AdapterRegistry(SPEC)
    registry.set_held(endpoint("r0"), {"chat"})
    registry.update(parse_fleet({"models": [{"name": "base", "engine": "vllm"}]}))
    assert registry.names() == {"chat": "base"}


@pytest.fixture
async def models_server() -> AsyncIterator[tuple[str, list[str]]]:
    """A replica's ``/v1/models`` with one adapter: its address and the paths requested."""
    requested: list[str] = []

    async def models(request: web.Request) -> web.Response:
        requested.append(request.path)
        data = [{"id": "base", "parent": None}, {"id": "sql", "parent": "base"}]
        return web.json_response({"object": "list", "data": data})

    app = web.Application()
    app.router.add_get("/v1/models", models)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"127.0.0.1:{port}", requested
    finally:
        await runner.cleanup()


async def test_watcher_reads_replicas_that_have_reported_no_lora_metrics_yet(
    models_server: tuple[str, list[str]],
) -> None:
    # vLLM with LoRA enabled publishes no vllm:lora_requests_info sample until a request has
    # run (max_loras stays None): an adapter loaded on it before then must still be found.
    address, requested = models_server
    pool = EndpointPool()
    pool.add(Endpoint("v0", address, "base", engine="vllm"), ready=True)
    pool.add(Endpoint("o0", address, "base", engine="openai"), ready=True)  # no adapter API
    pool.add(Endpoint("v1", address, "base", engine="vllm"))  # not ready
    assert pool.get("v0").metrics.max_loras is None
    registry = AdapterRegistry()
    async with aiohttp.ClientSession() as session:
        await AdapterWatcher(registry, pool, session, interval_s=60).tick()
    assert registry.held() == {"v0": frozenset({"sql"})}
    assert registry.names() == {"sql": "base"}
    assert requested == ["/v1/models"]
