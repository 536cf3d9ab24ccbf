"""ext_proc over TLS on loopback: a TLS client that trusts the picker's certificate is served,
a plaintext client or one trusting another certificate is refused; health stays plaintext."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("grpc")
pytest.importorskip("cryptography")
pytest.importorskip("envoy.service.ext_proc.v3.external_processor_pb2")

import grpc
from aiohttp import web
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pilothouse.clock import ManualClock
from pilothouse.endpoints.discovery import StaticSource
from pilothouse.epp.server import EppServer, EppSettings
from pilothouse.epp.tls import CERT_FILE, KEY_FILE, self_signed
from pilothouse.scheduling.config import builtin_config
from pilothouse.scheduling.scheduler import build_scheduler
from pilothouse.scheduling.types import Endpoint
from pilothouse.testing.fake_engine import create_fake_engine
from tests.unit.epp import messages as m

BASE = EppSettings(port=0, health_port=0, metrics_port=0, probe_interval_s=0.05, grace_s=0.5)
CALL_TIMEOUT_S = 30.0  # a safety net against a hang, never what a test asserts on


@contextlib.asynccontextmanager
async def _picker(settings: EppSettings) -> AsyncIterator[EppServer]:
    """A ready picker in front of one fake OpenAI engine on loopback."""
    runner = web.AppRunner(create_fake_engine("m"))
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        address = f"127.0.0.1:{runner.addresses[0][1]}"
        source = StaticSource([Endpoint("f0", address, "m", engine="openai")])
        scheduler = build_scheduler(builtin_config("round-robin"), ManualClock(), seed=1)
        async with EppServer(settings, source, scheduler) as epp:
            await epp.wait_ready()
            yield epp
    finally:
        await runner.cleanup()


async def _exchange(channel: grpc.aio.Channel) -> str:
    """One request through ext_proc: which ProcessingResponse field came back first."""
    call = pb_grpc.ExternalProcessorStub(channel).Process(timeout=CALL_TIMEOUT_S)
    await call.write(m.request_headers())
    await call.write(m.request_body(m.CHAT))
    reply = await call.read()
    call.cancel()
    return str(reply.WhichOneof("response"))


def _trusting(cert_pem: bytes, port: int) -> grpc.aio.Channel:
    credentials = grpc.ssl_channel_credentials(root_certificates=cert_pem)
    return grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials)


async def test_a_client_trusting_the_generated_certificate_is_served() -> None:
    async with _picker(BASE) as epp:
        assert epp.certificate is not None
        assert epp.certificate.generated
        async with _trusting(epp.certificate.cert_pem, epp.port) as channel:
            assert await _exchange(channel) == "request_headers"


async def test_a_plaintext_client_is_refused() -> None:
    async with _picker(BASE) as epp, grpc.aio.insecure_channel(f"127.0.0.1:{epp.port}") as ch:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _exchange(ch)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_client_trusting_another_certificate_is_refused() -> None:
    stranger = self_signed().cert_pem
    async with _picker(BASE) as epp, _trusting(stranger, epp.port) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _exchange(channel)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_the_certificate_in_cert_path_is_the_one_served(tmp_path: Path) -> None:
    pair = self_signed()
    (tmp_path / CERT_FILE).write_bytes(pair.cert_pem)
    (tmp_path / KEY_FILE).write_bytes(pair.key_pem)
    settings = replace(BASE, cert_path=tmp_path)
    async with _picker(settings) as epp:
        assert epp.certificate is not None
        assert not epp.certificate.generated
        async with _trusting(pair.cert_pem, epp.port) as channel:
            assert await _exchange(channel) == "request_headers"


async def test_health_stays_plaintext_beside_a_tls_ext_proc() -> None:
    async with _picker(BASE) as epp:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{epp.health_port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            reply = await stub.Check(
                health_pb2.HealthCheckRequest(service="liveness"), timeout=CALL_TIMEOUT_S
            )
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_plaintext_when_secure_serving_is_off() -> None:
    settings = replace(BASE, secure_serving=False)
    async with _picker(settings) as epp:
        assert epp.certificate is None
        async with grpc.aio.insecure_channel(f"127.0.0.1:{epp.port}") as channel:
            assert await _exchange(channel) == "request_headers"
