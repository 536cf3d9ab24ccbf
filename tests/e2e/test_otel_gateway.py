"""Traces of the gateway's request path, exported over OTLP to an in-process receiver.

One chat request through a real gateway to a fake engine gives one ``chat {model}`` span
with the GenAI attributes and the routing decision, and the engine receives a
``traceparent`` in that span's trace; with no ``tracing:`` nothing is exported and no
``traceparent`` is added.
"""

from __future__ import annotations

import httpx
import pytest

from pilothouse.config.fleet import GatewaySpec
from pilothouse.config.tracing import TracingSpec
from pilothouse.testing.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.e2e.gateway_harness import running_gateway

pytestmark = pytest.mark.e2e

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 5}
LONG = {**CHAT, "messages": [{"role": "user", "content": "the same long prompt " * 100}]}
CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN = "b7ad6b7169203331"
SPEC = GatewaySpec(port=0, probe_interval_s=0.1, read_timeout_s=5)


def _chat_span(span: ReceivedSpan) -> bool:
    return span.name == "chat m"


def _traceparent(headers: dict[str, str]) -> tuple[str, str, str]:
    version, trace_id, span_id, flags = headers["traceparent"].split("-")
    assert version == "00"
    return trace_id, span_id, flags


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
async def test_otel_chat_request_gives_one_span_with_genai_attributes_and_decision(
    protocol: str,
) -> None:
    with OtlpReceiver(protocol) as receiver:  # type: ignore[arg-type]
        tracing = TracingSpec(
            endpoint=receiver.endpoint,
            protocol=protocol,  # type: ignore[arg-type]
            service_name="gw-test",
            decision_detail=True,
        )
        async with running_gateway(["r0", "r1"], SPEC, scheduler="default", tracing=tracing) as h:
            async with httpx.AsyncClient(base_url=h.url, timeout=10) as client:
                response = await client.post("/v1/chat/completions", json=LONG)
                again = await client.post("/v1/chat/completions", json=LONG)
            assert response.status_code == again.status_code == 200
            served = response.headers["x-pilothouse-endpoint"]
            assert again.headers["x-pilothouse-endpoint"] == served  # its prefix is cached there
            seen = h.engines[served].seen_headers
        # The app's shutdown flushed the exporter: both spans are in.
        assert [s.name for s in receiver.spans] == ["chat m", "chat m"]
        span, second = receiver.spans
    a = span.attributes
    assert span.kind == 3  # CLIENT: the gateway calls the model for its client
    assert span.resource["service.name"] == "gw-test"
    assert span.resource["pilothouse.component"] == "gateway"
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.request.model"] == "m"
    assert a["gen_ai.response.model"] == "m"
    assert a["gen_ai.request.max_tokens"] == 5
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (7, 2)
    assert a["gen_ai.response.finish_reasons"] == ["stop"]
    assert a["server.address"] == "127.0.0.1"
    port = h.app.ctx.pool.get(served).address.rsplit(":", 1)[1] if h.app else None
    assert a["server.port"] == int(port or 0)
    assert a["http.response.status_code"] == 200
    assert "error.type" not in a
    # The decision: profile, pick and runner-up with their totals and each scorer's value.
    assert a["pilothouse.profile"] == "default"
    assert a["pilothouse.endpoint"] == served
    assert a["pilothouse.candidates"] == 2
    assert a["pilothouse.runner_up"] == ({"r0", "r1"} - {served}).pop()
    assert isinstance(a["pilothouse.endpoint.score"], float)
    assert isinstance(a["pilothouse.runner_up.score"], float)
    for prefix in ("pilothouse.endpoint.scorer.", "pilothouse.runner_up.scorer."):
        assert {k.removeprefix(prefix) for k in a if k.startswith(prefix)} == {
            "approx-prefix",
            "sticky-prefix",
        }
    # The cache-hit estimate, from the decision itself (not after it recorded the prompt).
    assert a["pilothouse.prefix_match"] == 0.0
    assert second.attributes["pilothouse.prefix_match"] == 1.0
    assert a["pilothouse.cached_tokens"] == 0
    assert int(second.attributes["pilothouse.cached_tokens"]) > 0  # type: ignore[arg-type]
    assert second.trace_id != span.trace_id  # one trace per request
    # The engine joined the trace: its parent is the gateway's span.
    assert len(seen) == 2
    trace_id, parent, flags = _traceparent(seen[0])
    assert (trace_id, parent) == (span.trace_id, span.span_id)
    assert int(flags, 16) & 1 == 1  # sampled
    assert span.parent_span_id == ""


async def test_otel_keeps_the_clients_traceparent_as_parent() -> None:
    with OtlpReceiver("http/protobuf") as receiver:
        tracing = TracingSpec(endpoint=receiver.endpoint, sample_ratio=0.0)
        incoming = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"  # sampled by the caller: kept
        async with running_gateway(["r0"], SPEC, tracing=tracing) as h:
            async with httpx.AsyncClient(base_url=h.url, timeout=10) as client:
                response = await client.post(
                    "/v1/chat/completions", json=CHAT, headers={"traceparent": incoming}
                )
            assert response.status_code == 200
        span = receiver.wait_for(_chat_span)
    assert (span.trace_id, span.parent_span_id) == (CLIENT_TRACE, CLIENT_SPAN)
    trace_id, parent, _ = _traceparent(h.engines["r0"].seen_headers[0])
    assert (trace_id, parent) == (CLIENT_TRACE, span.span_id)
    assert "pilothouse.queue_wait_ms" not in span.attributes  # it never waited


async def test_otel_unsampled_request_exports_nothing_but_still_propagates() -> None:
    with OtlpReceiver("grpc") as receiver:
        tracing = TracingSpec(endpoint=receiver.endpoint, protocol="grpc", sample_ratio=0.0)
        async with running_gateway(["r0"], SPEC, tracing=tracing) as h:
            async with httpx.AsyncClient(base_url=h.url, timeout=10) as client:
                response = await client.post("/v1/chat/completions", json=CHAT)
            assert response.status_code == 200
        assert receiver.spans == []
    _, _, flags = _traceparent(h.engines["r0"].seen_headers[0])
    assert int(flags, 16) & 1 == 0  # not sampled: the engine is told so


async def test_otel_failed_request_records_error_type() -> None:
    with OtlpReceiver("grpc") as receiver:
        tracing = TracingSpec(endpoint=receiver.endpoint, protocol="grpc")
        async with running_gateway(["r0"], SPEC, tracing=tracing) as h:
            h.engines["r0"].status = 400  # the engine refuses it: no retry, passed through
            async with httpx.AsyncClient(base_url=h.url, timeout=10) as client:
                response = await client.post("/v1/completions", json={"model": "m", "prompt": "x"})
            assert response.status_code == 400
        span = receiver.wait_for(lambda s: s.name == "text_completion m")
    assert span.attributes["gen_ai.operation.name"] == "text_completion"
    assert span.attributes["error.type"] == "400"
    assert "gen_ai.response.model" not in span.attributes  # nothing answered
    assert span.status_code == 2  # ERROR


async def test_otel_tracing_off_exports_nothing_and_adds_no_traceparent() -> None:
    with OtlpReceiver("grpc") as receiver:
        async with running_gateway(["r0"], SPEC) as h:
            assert h.app is not None
            assert h.app.ctx.tracing is None
            async with httpx.AsyncClient(base_url=h.url, timeout=10) as client:
                incoming = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"
                response = await client.post(
                    "/v1/chat/completions", json=CHAT, headers={"traceparent": incoming}
                )
            assert response.status_code == 200
        assert receiver.spans == []
    assert "traceparent" not in h.engines["r0"].seen_headers[0]
