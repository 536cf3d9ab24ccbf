"""The endpoint picker's spans: the same ``chat {model}`` span as the gateway's, ended by
the response, a refusal or a reset, and ``traceparent`` set on the forwarded request."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import orjson
import pytest

pytest.importorskip("grpc")
pytest.importorskip("envoy.service.ext_proc.v3.external_processor_pb2")
pytest.importorskip("opentelemetry.sdk")

import grpc
from aiohttp import web
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pilothouse.clock import ManualClock
from pilothouse.config.epp import load_epp_policy
from pilothouse.config.tracing import TracingSpec
from pilothouse.endpoints.discovery import StaticSource
from pilothouse.epp.processor import Exchange, PickerContext
from pilothouse.epp.server import EppServer, EppSettings
from pilothouse.scheduling.config import builtin_config
from pilothouse.scheduling.scheduler import build_scheduler
from pilothouse.scheduling.types import Endpoint
from pilothouse.telemetry.provider import start_tracing
from pilothouse.testing.fake_engine import create_fake_engine
from pilothouse.testing.otlp_receiver import OtlpReceiver
from tests.unit.epp import messages as m

SETTINGS = EppSettings(
    port=0, health_port=0, metrics_port=0, probe_interval_s=0.05, grace_s=0.5, secure_serving=False
)

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"


def _traced(ctx: PickerContext, **spec: object) -> tuple[PickerContext, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing = start_tracing(
        TracingSpec(endpoint="http://unused:4318/v1/traces", **spec),  # type: ignore[arg-type]
        "epp",
        exporter=exporter,
    )
    return dataclasses.replace(ctx, tracing=tracing), exporter


def _only(exporter: InMemorySpanExporter) -> ReadableSpan:
    spans = exporter.get_finished_spans()
    assert len(spans) == 1
    return spans[0]


async def test_otel_picker_span_carries_the_decision_usage_and_sets_traceparent() -> None:
    ctx, exporter = _traced(m.context(m.endpoints(2), scheduler="least-requests"))
    exchange = Exchange(ctx)
    incoming = {"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"}
    await exchange.handle(m.request_headers(extra=incoming))
    out = await exchange.handle(m.request_body(m.CHAT))
    headers = m.set_headers(out[0])
    destination = headers["x-gateway-destination-endpoint"]
    assert exporter.get_finished_spans() == ()  # open until the response ends
    await exchange.handle(m.response_headers())
    body = orjson.dumps(
        {
            "model": "m",
            "choices": [{"index": 0, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3},
        }
    )
    await exchange.handle(m.response_body(body))
    span = _only(exporter)
    a = dict(span.attributes or {})
    assert span.name == "chat m"
    assert a["gen_ai.operation.name"] == "chat"
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (7, 3)
    assert list(a["gen_ai.response.finish_reasons"]) == ["length"]  # type: ignore[arg-type]
    assert a["gen_ai.request.max_tokens"] == 4
    assert f"{a['server.address']}:{a['server.port']}" == destination
    assert a["pilothouse.profile"] == "default"
    assert a["pilothouse.candidates"] == 2
    assert a["pilothouse.runner_up"] in {"e0", "e1"} - {a["pilothouse.endpoint"]}
    assert "error.type" not in a
    context = span.get_span_context()
    assert f"{context.trace_id:032x}" == CLIENT_TRACE  # the client's trace, continued
    assert span.parent is not None
    assert f"{span.parent.span_id:016x}" == CLIENT_SPAN
    version, trace_id, parent, _ = headers["traceparent"].split("-")
    assert (version, trace_id, parent) == ("00", CLIENT_TRACE, f"{context.span_id:016x}")
    exchange.close()  # the stream ends: nothing more is recorded
    assert len(exporter.get_finished_spans()) == 1


async def test_otel_picker_refusal_and_reset_end_the_span_with_an_error_type() -> None:
    ctx, exporter = _traced(m.context(m.endpoints(1), scheduler=m.SHED_ALL))
    exchange = Exchange(ctx)
    await exchange.handle(m.request_headers())
    out = await exchange.handle(m.request_body(m.CHAT))
    assert out[0].WhichOneof("response") == "immediate_response"
    shed = _only(exporter)
    assert shed.attributes is not None
    assert shed.attributes["error.type"] == "429_shed"
    exporter.clear()

    ctx, exporter = _traced(m.context(m.endpoints(1)))
    exchange = Exchange(ctx)
    await exchange.handle(m.request_headers())
    await exchange.handle(m.request_body(m.CHAT))
    exchange.close()  # Envoy reset the stream before any response
    reset = _only(exporter)
    assert reset.attributes is not None
    assert reset.attributes["error.type"] == "cancelled"
    assert reset.attributes["http.response.status_code"] == 499


async def test_otel_unsampled_picker_request_records_nothing_but_propagates() -> None:
    ctx, exporter = _traced(m.context(m.endpoints(1)), sample_ratio=0.0)
    exchange = Exchange(ctx)
    await exchange.handle(m.request_headers())
    out = await exchange.handle(m.request_body(m.CHAT))
    flags = m.set_headers(out[0])["traceparent"].rsplit("-", 1)[1]
    assert int(flags, 16) & 1 == 0
    exchange.close()
    assert exporter.get_finished_spans() == ()


async def test_otel_picker_without_tracing_sets_no_traceparent() -> None:
    ctx = m.context(m.endpoints(1))
    assert ctx.tracing is None
    exchange = Exchange(ctx)
    await exchange.handle(m.request_headers())
    out = await exchange.handle(m.request_body(m.CHAT))
    assert "traceparent" not in m.set_headers(out[0])
    assert exchange.ticket is not None
    assert exchange.ticket.trace is None


async def test_otel_picker_server_exports_over_otlp_from_its_policy(tmp_path: Path) -> None:
    """``tracing:`` in the ``--config`` file reaches the server; spans go out over OTLP."""
    with OtlpReceiver("grpc") as receiver:
        path = tmp_path / "policy.yaml"
        path.write_text(
            f"tracing: {{endpoint: '{receiver.endpoint}', protocol: grpc, service_name: epp}}\n"
        )
        settings = dataclasses.replace(SETTINGS, policy=load_epp_policy(path))
        engine = web.AppRunner(create_fake_engine("m"))
        await engine.setup()
        await web.TCPSite(engine, "127.0.0.1", 0).start()
        endpoints = [Endpoint("f0", f"127.0.0.1:{engine.addresses[0][1]}", "m", engine="openai")]
        scheduler = build_scheduler(builtin_config("round-robin"), ManualClock(), seed=1)
        epp = EppServer(settings, StaticSource(endpoints), scheduler)
        async with epp:
            await epp.wait_ready()
            async with grpc.aio.insecure_channel(f"127.0.0.1:{epp.port}") as channel:
                call = pb_grpc.ExternalProcessorStub(channel).Process()
                await call.write(m.request_headers())
                await call.write(m.request_body(m.CHAT))
                routed = await call.read()
                await call.read()
                await call.write(m.response_headers())
                await call.read()
                await call.write(m.response_body(b'{"usage":{"prompt_tokens":2}}'))
                await call.read()
                await call.done_writing()
                assert await call.code() == grpc.StatusCode.OK
        await engine.cleanup()
        span = receiver.wait_for(lambda s: s.name == "chat m")  # stop() flushed it
    assert span.resource["service.name"] == "epp"
    assert span.resource["pilothouse.component"] == "epp"
    assert span.attributes["gen_ai.usage.input_tokens"] == 2
    trace_id = m.set_headers(routed)["traceparent"].split("-")[1]
    assert trace_id == span.trace_id
