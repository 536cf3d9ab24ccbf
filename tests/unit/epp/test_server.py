"""The picker's servers on loopback: ext_proc over real gRPC, health service, /metrics."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

pytest.importorskip("grpc")
pytest.importorskip("envoy.service.ext_proc.v3.external_processor_pb2")

import aiohttp
import grpc
from aiohttp import web
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pilothouse.clock import ManualClock
from pilothouse.endpoints.discovery import EndpointSink, StaticSource
from pilothouse.endpoints.file_source import FileSource
from pilothouse.epp.server import EppServer, EppSettings
from pilothouse.scheduling.config import builtin_config
from pilothouse.scheduling.scheduler import build_scheduler
from pilothouse.scheduling.types import Endpoint
from pilothouse.testing.fake_engine import create_fake_engine
from tests.unit.epp import messages as m

SETTINGS = EppSettings(
    port=0, health_port=0, metrics_port=0, probe_interval_s=0.05, grace_s=0.5, secure_serving=False
)
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class _Silent:
    """A discovery source that never reports (a pool that has not synced)."""

    async def run(self, sink: EndpointSink) -> None:
        await asyncio.Event().wait()


@contextlib.asynccontextmanager
async def _engines(count: int) -> AsyncIterator[list[Endpoint]]:
    """Fake OpenAI engines on loopback, as endpoints named f0, f1, ..."""
    runners: list[web.AppRunner] = []
    found: list[Endpoint] = []
    try:
        for i in range(count):
            runner = web.AppRunner(create_fake_engine("m"))
            runners.append(runner)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            address = f"127.0.0.1:{runner.addresses[0][1]}"
            found.append(Endpoint(f"f{i}", address, "m", engine="openai"))
        yield found
    finally:
        for runner in runners:
            await runner.cleanup()


def _server(source: object) -> EppServer:
    scheduler = build_scheduler(builtin_config("round-robin"), ManualClock(), seed=1)
    return EppServer(SETTINGS, source, scheduler)  # type: ignore[arg-type]


async def _health(port: int, service: str) -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service))
        return int(reply.status)


async def test_readiness_waits_for_discovery_and_liveness_does_not() -> None:
    async with _server(_Silent()) as epp:
        await asyncio.sleep(0.1)
        assert await _health(epp.health_port, "liveness") == SERVING
        assert await _health(epp.health_port, "readiness") == NOT_SERVING
        ext_proc = "envoy.service.ext_proc.v3.ExternalProcessor"
        assert await _health(epp.health_port, ext_proc) == NOT_SERVING


async def test_readiness_once_the_pool_is_probed() -> None:
    async with _engines(1) as endpoints, _server(StaticSource(endpoints)) as epp:
        await epp.wait_ready()
        for service in ("liveness", "readiness", "envoy.service.ext_proc.v3.ExternalProcessor"):
            assert await _health(epp.health_port, service) == SERVING
        assert [e.ready for e in epp.pool.endpoints()] == [True]
        assert {e.model for e in epp.pool.endpoints()} == {"pool"}


async def test_a_request_over_grpc_and_the_metrics_it_leaves() -> None:
    async with _engines(2) as endpoints, _server(StaticSource(endpoints)) as epp:
        await epp.wait_ready()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{epp.port}") as channel:
            call = pb_grpc.ExternalProcessorStub(channel).Process()
            await call.write(m.request_headers())
            await call.write(m.request_body(m.CHAT))
            routed = await call.read()
            body = await call.read()
            assert body.request_body.response.body_mutation.streamed_response.end_of_stream
            destination = m.set_headers(routed)["x-gateway-destination-endpoint"]
            assert destination in {e.address for e in endpoints}
            assert sum(e.in_flight for e in epp.pool.endpoints()) == 1
            await call.write(m.response_headers())
            await call.read()
            await call.write(m.response_body(b'{"usage":{"prompt_tokens":2}}'))
            await call.read()
            await call.done_writing()
            assert await call.code() == grpc.StatusCode.OK
        assert sum(e.in_flight for e in epp.pool.endpoints()) == 0
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{epp.metrics_port}/metrics") as reply,
        ):
            text = await reply.text()
        assert 'pilothouse_epp_requests_total{result="routed"} 1.0' in text
        assert "pilothouse_epp_decision_seconds_count 1.0" in text
        assert 'pilothouse_epp_tokens_total{kind="prompt"} 2.0' in text
        assert "pilothouse_epp_endpoint_in_flight_requests{" in text


async def test_a_cancelled_stream_releases_its_endpoint() -> None:
    async with _engines(1) as endpoints, _server(StaticSource(endpoints)) as epp:
        await epp.wait_ready()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{epp.port}") as channel:
            call = pb_grpc.ExternalProcessorStub(channel).Process()
            await call.write(m.request_headers())
            await call.write(m.request_body(m.CHAT))
            await call.read()
            await call.read()
            assert epp.pool.in_flight("f0") == 1
            call.cancel()
            async with asyncio.timeout(5):
                while epp.pool.in_flight("f0") != 0:  # noqa: ASYNC110 - server side settles
                    await asyncio.sleep(0.01)
        gauge = epp.metrics.registry.get_sample_value("pilothouse_epp_active_streams")
        assert gauge == 0


async def test_an_out_of_order_message_fails_the_stream() -> None:
    async with _engines(1) as endpoints, _server(StaticSource(endpoints)) as epp:
        await epp.wait_ready()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{epp.port}") as channel:
            call = pb_grpc.ExternalProcessorStub(channel).Process()
            await call.write(m.response_body(b"x"))
            assert await call.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_the_pool_follows_the_endpoints_file(tmp_path: Path) -> None:
    async with _engines(2) as endpoints:
        path = tmp_path / "endpoints.yaml"
        path.write_text(f"- {{name: a, address: '{endpoints[0].address}', engine: openai}}\n")
        source = FileSource(path, poll_interval_s=0.02)
        async with _server(source) as epp:
            await epp.wait_ready()
            assert [e.name for e in epp.pool.endpoints()] == ["a"]
            path.write_text(
                f"- {{name: a, address: '{endpoints[0].address}', engine: openai}}\n"
                f"- {{name: b, address: '{endpoints[1].address}', engine: openai}}\n"
            )
            async with asyncio.timeout(5):
                while sorted(e.name for e in epp.pool.endpoints() if e.ready) != ["a", "b"]:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
