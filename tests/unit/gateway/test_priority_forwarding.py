"""The request's priority reaches vLLM's ``priority`` field, in vLLM's order, only where the
model's engine runs ``--scheduling-policy priority`` (the real ProxyEndpoint on a fake
transport)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from pilothouse.clock import ManualClock
from pilothouse.config.fleet import FleetSpec, GatewaySpec, ModelSpec
from pilothouse.endpoints.pool import EndpointPool
from pilothouse.engines.kinds.vllm import serves_priority, vllm_priority
from pilothouse.gateway.context import GatewayContext, priority_models
from pilothouse.gateway.metrics import GatewayMetrics
from pilothouse.gateway.proxy import ProxyEndpoint
from pilothouse.openai.requests import Route
from pilothouse.scheduling.config import builtin_config
from pilothouse.scheduling.scheduler import build_scheduler
from pilothouse.scheduling.types import Endpoint
from pilothouse.testing import Answer, FakeTransport

ADDRESS = "10.0.0.1:8000"
PRIORITY_ARGS = {"scheduling-policy": "priority"}


def _fleet(engine: str = "vllm", args: dict[str, Any] | None = None) -> FleetSpec:
    model = ModelSpec(name="m", engine=engine, source="hf://x/y", args=args or {})  # type: ignore[arg-type]
    return FleetSpec(models=[model])


def _proxy(fleet: FleetSpec, engine: str = "vllm") -> tuple[ProxyEndpoint, FakeTransport]:
    fake = FakeTransport().always(ADDRESS, Answer.json({"ok": True}))
    pool = EndpointPool()
    pool.add(Endpoint(name="a", address=ADDRESS, model="m", engine=engine), ready=True)
    clock = ManualClock()
    ctx = GatewayContext(
        settings=GatewaySpec(access_log=False, trust_priority_header=True),
        pool=pool,
        scheduler=build_scheduler(builtin_config("round-robin"), clock),
        metrics=GatewayMetrics(),
        clock=clock,
        transport=fake,
        priority_models=priority_models(fleet),
    )
    return ProxyEndpoint(Route.CHAT, ctx), fake


def _forwarded(
    proxy: ProxyEndpoint, fake: FakeTransport, body: dict[str, Any], priority: str | None
) -> dict[str, Any]:
    headers = [] if priority is None else [(b"x-pilothouse-priority", priority.encode())]
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": headers}
    incoming = asyncio.Queue[dict[str, Any]]()
    incoming.put_nowait({"type": "http.request", "body": orjson.dumps(body), "more_body": False})
    statuses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    asyncio.run(proxy(scope, incoming.get, send))
    assert statuses == [200]
    return orjson.loads(fake.sent[-1].request.body)


CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def test_vllm_order_is_the_gateways_reversed() -> None:
    gateway = [5, 1, 0, -3]  # most important first
    assert [vllm_priority(p) for p in gateway] == [-5, -1, 0, 3]  # vLLM: lowest first
    assert sorted(gateway, key=vllm_priority) == gateway


@pytest.mark.parametrize(
    ("engine", "args", "serves"),
    [
        ("vllm", PRIORITY_ARGS, True),
        ("vllm", {"scheduling_policy": "priority"}, True),
        ("vllm", {"scheduling-policy": "fcfs"}, False),
        ("vllm", {}, False),
        ("sglang", PRIORITY_ARGS, False),
    ],
)
def test_which_models_take_a_priority(engine: str, args: dict[str, Any], serves: bool) -> None:
    fleet = _fleet(engine, args)
    assert serves_priority(fleet.models[0]) is serves
    assert priority_models(fleet) == (frozenset({"m"}) if serves else frozenset())


def test_the_priority_is_written_in_vllms_order() -> None:
    proxy, fake = _proxy(_fleet(args=PRIORITY_ARGS))
    assert _forwarded(proxy, fake, CHAT, "7")["priority"] == -7
    assert _forwarded(proxy, fake, CHAT, "-2")["priority"] == 2


def test_a_default_priority_is_written_too_so_a_client_cannot_pick_its_own() -> None:
    proxy, fake = _proxy(_fleet(args=PRIORITY_ARGS))
    sent = _forwarded(proxy, fake, {**CHAT, "priority": -100}, None)
    assert sent["priority"] == 0
    assert sent["messages"] == CHAT["messages"]


@pytest.mark.parametrize(
    ("args", "engine"), [({}, "vllm"), (PRIORITY_ARGS, "llamacpp")], ids=["fcfs", "not-vllm"]
)
def test_other_models_get_the_body_unchanged(args: dict[str, Any], engine: str) -> None:
    proxy, fake = _proxy(_fleet(args=args), engine=engine)
    assert _forwarded(proxy, fake, CHAT, "7") == CHAT


def test_a_new_spec_updates_the_models_that_take_a_priority() -> None:
    proxy, fake = _proxy(_fleet())
    assert "priority" not in _forwarded(proxy, fake, CHAT, "3")
    proxy.ctx.adopt(_fleet(args=PRIORITY_ARGS))
    assert _forwarded(proxy, fake, CHAT, "3")["priority"] == -3
