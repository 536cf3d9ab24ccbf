"""A llama.cpp pod as `render k8s` labels it, discovered and routed by the picker: probed on
its health path, never asked for /metrics, never subscribed to KV events."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

pytest.importorskip("grpc")
pytest.importorskip("envoy.service.ext_proc.v3.external_processor_pb2")

import grpc
from aiohttp import web
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc

from pilothouse.clock import ManualClock
from pilothouse.config.fleet import load_fleet
from pilothouse.controlplane.render.bundle import render_fleet
from pilothouse.controlplane.render.options import RenderOptions
from pilothouse.endpoints.discovery import StaticSource
from pilothouse.endpoints.kube_pods import pool_endpoints
from pilothouse.endpoints.kv_transport import kv_event_address
from pilothouse.engines.registry import engine_kind as adapter_for
from pilothouse.epp.server import EppServer, EppSettings
from pilothouse.scheduling.config import builtin_config
from pilothouse.scheduling.scheduler import build_scheduler
from pilothouse.scheduling.types import Endpoint
from pilothouse.testing.fake_engine import create_fake_engine
from tests.unit.controlplane.render.conftest import EMBEDDED_EXAMPLE
from tests.unit.epp import messages as m

SETTINGS = EppSettings(
    port=0, health_port=0, metrics_port=0, probe_interval_s=0.02, grace_s=0.5, secure_serving=False
)
NAME = "smollm2-135m-instruct"
Manifest = dict[str, Any]


def _rendered() -> tuple[Manifest, Manifest]:
    """The embedded example's model-server Deployment and InferencePool."""
    manifests = render_fleet(load_fleet(EMBEDDED_EXAMPLE), RenderOptions()).manifests
    deployment = next(
        x for x in manifests if x["kind"] == "Deployment" and x["metadata"]["name"] == NAME
    )
    pool = next(x for x in manifests if x["kind"] == "InferencePool")
    return deployment, pool


def _pod(deployment: Manifest, ip: str) -> Manifest:
    """A Ready pod of the Deployment, as the API server would list it."""
    template = deployment["spec"]["template"]
    return {
        "metadata": {"name": f"{NAME}-abc12", **template["metadata"]},
        "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]},
    }


def _discovered(port: int) -> Endpoint:
    deployment, pool = _rendered()
    pool["spec"]["targetPorts"] = [{"number": port}]  # the loopback stand-in's port
    (endpoint,) = pool_endpoints(pool, [_pod(deployment, "127.0.0.1")])
    return endpoint


def test_the_rendered_pod_is_a_llamacpp_endpoint_without_metrics_or_kv_events() -> None:
    endpoint = _discovered(8000)
    assert (endpoint.name, endpoint.address, endpoint.model) == (
        f"{NAME}-abc12-rank-0",
        "127.0.0.1:8000",
        NAME,
    )
    assert endpoint.engine == "llamacpp"
    adapter = adapter_for(endpoint.engine)
    assert adapter.metrics_path is None
    assert adapter.metric_names is None
    assert kv_event_address(endpoint) is None  # no pilothouse.dev/kv-events label


@pytest.fixture
async def llama_stand_in() -> AsyncIterator[tuple[int, list[str]]]:
    """An OpenAI server on loopback with no /metrics, recording every path asked for."""
    paths: list[str] = []

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        paths.append(request.path)
        return await handler(request)

    app = create_fake_engine(NAME)
    app.middlewares.append(record)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield int(runner.addresses[0][1]), paths
    finally:
        await runner.cleanup()


async def test_the_picker_routes_to_it_without_scraping_metrics(
    llama_stand_in: tuple[int, list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    port, paths = llama_stand_in
    endpoint = _discovered(port)
    scheduler = build_scheduler(builtin_config("default"), ManualClock(), seed=1)
    caplog.set_level(logging.INFO)
    async with EppServer(SETTINGS, StaticSource([endpoint]), scheduler) as epp:
        await epp.wait_ready()
        assert [(e.name, e.ready) for e in epp.pool.endpoints()] == [(endpoint.name, True)]
        async with grpc.aio.insecure_channel(f"127.0.0.1:{epp.port}") as channel:
            call = pb_grpc.ExternalProcessorStub(channel).Process()
            await call.write(m.request_headers())
            await call.write(m.request_body(m.CHAT))
            routed = await call.read()
            await call.read()
            assert m.set_headers(routed)["x-gateway-destination-endpoint"] == endpoint.address
            call.cancel()
        await asyncio.sleep(0.1)  # a few more probe rounds
        assert epp.pool.endpoints()[0].ready
    assert "/v1/models" in paths  # the llama.cpp adapter's health path
    assert "/metrics" not in paths
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert noisy == [], [r.getMessage() for r in noisy]


@pytest.mark.parametrize(("label", "engine"), [("sglang", "sglang"), ("llama.cpp", "openai")])
def test_an_engine_label_without_an_adapter_is_probed_as_openai(label: str, engine: str) -> None:
    deployment, pool = _rendered()
    pod = _pod(deployment, "10.0.0.7")
    pod["metadata"]["labels"] = {**pod["metadata"]["labels"], "llm-d.ai/engine-type": label}
    (endpoint,) = pool_endpoints(pool, [pod])
    assert endpoint.engine == engine
    adapter_for(endpoint.engine)  # the prober's lookup does not fail
    assert endpoint.labels["llm-d.ai/engine-type"] == label  # the pod's labels are kept as-is
