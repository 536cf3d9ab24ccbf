"""The per-stream state machine, message by message, as Envoy drives it in FULL_DUPLEX mode."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

pytest.importorskip("grpc")
pytest.importorskip("envoy.service.ext_proc.v3.external_processor_pb2")

import orjson

from pilothouse.epp.processor import EppProtocolError, Exchange, PickerContext
from tests.unit.epp import messages as m


async def _routed(
    ctx: PickerContext, body: object = m.CHAT, **headers: Any
) -> tuple[Exchange, list]:
    exchange = Exchange(ctx)
    assert await exchange.handle(m.request_headers(**headers)) == []
    return exchange, await exchange.handle(m.request_body(body))


def _in_flight(ctx: PickerContext) -> dict[str, int]:
    return {e.name: e.in_flight for e in ctx.pool.endpoints()}


def _count(ctx: PickerContext, name: str, labels: dict[str, str] | None = None) -> float:
    return ctx.metrics.registry.get_sample_value(name, labels or {}) or 0.0


async def test_a_request_is_answered_only_once_its_body_is_complete() -> None:
    ctx = m.context(m.endpoints(2))
    exchange = Exchange(ctx)
    raw = orjson.dumps(m.CHAT)
    assert await exchange.handle(m.request_headers()) == []
    assert await exchange.handle(m.request_body(raw[:10], eos=False)) == []
    out = await exchange.handle(m.request_body(raw[10:], eos=True))
    assert [r.WhichOneof("response") for r in out] == ["request_headers", "request_body"]
    common = out[0].request_headers.response
    assert common.clear_route_cache
    headers = m.set_headers(out[0])
    destination = headers["x-gateway-destination-endpoint"]
    assert destination in {"10.0.0.1:8000", "10.0.0.2:8000"}
    lb = out[0].dynamic_metadata.fields["envoy.lb"].struct_value
    assert lb.fields["x-gateway-destination-endpoint"].string_value == destination
    streamed = out[1].request_body.response.body_mutation.streamed_response
    assert (streamed.body, streamed.end_of_stream) == (raw, True)
    assert headers["content-length"] == str(len(raw))
    assert sum(_in_flight(ctx).values()) == 1


@pytest.mark.parametrize(
    ("size", "chunks"),
    [
        pytest.param(61_000, 1, id="one-chunk"),
        pytest.param(62_000, 1, id="exactly-the-limit"),
        pytest.param(62_001, 2, id="one-byte-over"),
        pytest.param(200_000, 4, id="four-chunks"),
    ],
)
async def test_the_body_goes_back_in_chunks_of_at_most_62000_bytes(size: int, chunks: int) -> None:
    ctx = m.context(m.endpoints(1))
    content = "x" * (
        size - len(orjson.dumps({**m.CHAT, "messages": [{"role": "user", "content": ""}]}))
    )
    body = orjson.dumps({**m.CHAT, "messages": [{"role": "user", "content": content}]})
    assert len(body) == size
    _, out = await _routed(ctx, body)
    pieces = [r.request_body.response.body_mutation.streamed_response for r in out[1:]]
    assert len(pieces) == chunks
    assert all(len(p.body) <= 62_000 for p in pieces)
    assert [p.end_of_stream for p in pieces] == [False] * (chunks - 1) + [True]
    assert b"".join(p.body for p in pieces) == body


async def test_a_streamed_request_asks_for_usage_and_content_length_follows_the_new_body() -> None:
    ctx = m.context(m.endpoints(1))
    _, out = await _routed(ctx, {**m.CHAT, "stream": True})
    forwarded = out[1].request_body.response.body_mutation.streamed_response.body
    assert orjson.loads(forwarded)["stream_options"] == {"include_usage": True}
    assert m.set_headers(out[0])["content-length"] == str(len(forwarded))


async def test_a_request_without_body_is_routed_at_its_headers() -> None:
    ctx = m.context(m.endpoints(1))
    out = await Exchange(ctx).handle(m.request_headers("/v1/models", method="GET", eos=True))
    assert [r.WhichOneof("response") for r in out] == ["request_headers"]
    headers = m.set_headers(out[0])
    assert headers["x-gateway-destination-endpoint"] == "10.0.0.1:8000"
    assert "content-length" not in headers


async def test_unknown_paths_are_routed_on_load_and_forwarded_untouched() -> None:
    ctx = m.context(m.endpoints(1))
    _, out = await _routed(ctx, b"not json at all", path="/tokenize")
    assert out[1].request_body.response.body_mutation.streamed_response.body == b"not json at all"


async def test_client_supplied_system_headers_are_stripped() -> None:
    ctx = m.context(m.endpoints(2))
    extra = {
        "x-gateway-destination-endpoint": "6.6.6.6:80",
        "x-gateway-inference-objective": "premium",
        "x-session-id": "s1",
    }
    _, out = await _routed(ctx, extra=extra)
    mutation = out[0].request_headers.response.header_mutation
    assert list(mutation.remove_headers) == ["x-gateway-inference-objective"]
    assert m.set_headers(out[0])["x-gateway-destination-endpoint"] != "6.6.6.6:80"


@pytest.mark.parametrize(
    ("subset", "allowed"),
    [
        pytest.param(["10.0.0.2:8000"], {"10.0.0.2:8000"}, id="one-listed"),
        pytest.param(["10.0.0.2:8000", "10.0.0.3:8000"], {"10.0.0.2:8000", "10.0.0.3:8000"}),
        pytest.param("10.0.0.3:8000", {"10.0.0.3:8000"}, id="plain-string"),
    ],
)
async def test_the_subset_hint_narrows_the_candidates(subset: object, allowed: set[str]) -> None:
    ctx = m.context(m.endpoints(3))
    for _ in range(6):
        exchange = Exchange(ctx)
        await exchange.handle(m.request_headers())
        out = await exchange.handle(m.request_body(m.CHAT, subset=subset))
        assert m.set_headers(out[0])["x-gateway-destination-endpoint"] in allowed
        exchange.close()


async def test_a_subset_hint_on_the_headers_message_counts_too() -> None:
    ctx = m.context(m.endpoints(3))
    for _ in range(4):
        exchange = Exchange(ctx)
        await exchange.handle(m.request_headers(subset=["10.0.0.3:8000"]))
        out = await exchange.handle(m.request_body(m.CHAT))
        assert m.set_headers(out[0])["x-gateway-destination-endpoint"] == "10.0.0.3:8000"
        exchange.close()


def _immediate(out: list) -> tuple[int, dict[str, str], dict[str, Any]]:
    assert [r.WhichOneof("response") for r in out] == ["immediate_response"]
    reply = out[0].immediate_response
    return reply.status.code, m.set_headers(out[0]), orjson.loads(reply.body)


@pytest.mark.parametrize(
    ("ctx_args", "body", "subset", "status", "error_type", "result"),
    [
        pytest.param(
            {}, b"{oops", None, 400, "invalid_request_error", "bad_request", id="bad-json"
        ),
        pytest.param({}, {"model": "m"}, None, 400, "invalid_request_error", "bad_request"),
        pytest.param(
            {"ready": False},
            m.CHAT,
            None,
            503,
            "service_unavailable",
            "no_endpoint",
            id="none-ready",
        ),
        pytest.param({}, m.CHAT, [], 503, "service_unavailable", "no_endpoint", id="empty-subset"),
        pytest.param(
            {}, m.CHAT, ["9.9.9.9:1"], 503, "service_unavailable", "no_endpoint", id="ineligible"
        ),
        pytest.param(
            {"scheduler": m.SHED_ALL}, m.CHAT, None, 429, "rate_limit_exceeded", "shed", id="shed"
        ),
        pytest.param(
            {"max_body_bytes": 10}, m.CHAT, None, 413, "invalid_request_error", "too_large"
        ),
    ],
)
async def test_immediate_responses(
    ctx_args: dict[str, Any],
    body: object,
    subset: object,
    status: int,
    error_type: str,
    result: str,
) -> None:
    ctx = m.context(m.endpoints(2), **ctx_args)
    exchange = Exchange(ctx)
    await exchange.handle(m.request_headers())
    code, headers, doc = _immediate(await exchange.handle(m.request_body(body, subset=subset)))
    assert (code, doc["error"]["type"]) == (status, error_type)
    assert headers["content-type"] == "application/json"
    assert exchange.done
    assert _count(ctx, "pilothouse_epp_requests_total", {"result": result}) == 1
    assert sum(_in_flight(ctx).values()) == 0
    if status == 429:
        assert headers["retry-after"] == "3"


async def test_in_flight_is_held_until_the_response_ends_and_usage_is_counted() -> None:
    ctx = m.context(m.endpoints(2))
    exchange, out = await _routed(ctx)
    picked = m.set_headers(out[0])["x-gateway-destination-endpoint"]
    reply = await exchange.handle(m.response_headers())
    assert m.set_headers(reply[0])["x-pilothouse-endpoint"] in {"e0", "e1"}
    assert sum(_in_flight(ctx).values()) == 1
    body = orjson.dumps({"usage": {"prompt_tokens": 7, "completion_tokens": 3}})
    first = await exchange.handle(m.response_body(body[:5], eos=False))
    assert first[0].response_body.response.body_mutation.streamed_response.body == body[:5]
    last = await exchange.handle(m.response_body(body[5:], eos=True))
    assert last[0].response_body.response.body_mutation.streamed_response.end_of_stream
    assert exchange.done
    assert sum(_in_flight(ctx).values()) == 0
    assert _count(ctx, "pilothouse_epp_tokens_total", {"kind": "prompt"}) == 7
    assert _count(ctx, "pilothouse_epp_tokens_total", {"kind": "completion"}) == 3
    assert picked


async def test_sse_usage_is_read_from_the_stream_tail() -> None:
    ctx = m.context(m.endpoints(1))
    exchange, _ = await _routed(ctx, {**m.CHAT, "stream": True})
    await exchange.handle(m.response_headers(content_type="text/event-stream"))
    events = [b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n'] * 50
    events.append(b'data: {"choices":[],"usage":{"prompt_tokens":11,"completion_tokens":50}}\n\n')
    events.append(b"data: [DONE]\n\n")
    for event in events:
        echoed = await exchange.handle(m.response_body(event, eos=False))
        assert echoed[0].response_body.response.body_mutation.streamed_response.body == event
    await exchange.handle(m.response_body(b"", eos=True))
    assert _count(ctx, "pilothouse_epp_tokens_total", {"kind": "completion"}) == 50


@pytest.mark.parametrize("report", ["metadata", "attribute"])
async def test_the_served_endpoint_takes_the_in_flight_count(report: str) -> None:
    ctx = m.context(m.endpoints(2))
    exchange, out = await _routed(ctx)
    picked = m.set_headers(out[0])["x-gateway-destination-endpoint"]
    other = next(e for e in ctx.pool.endpoints() if e.address != picked)
    served = {"served": other.address} if report == "metadata" else {"upstream": other.address}
    reply = await exchange.handle(m.response_headers(**served))
    assert m.set_headers(reply[0])["x-pilothouse-endpoint"] == other.name
    assert _in_flight(ctx)[other.name] == 1
    assert sum(_in_flight(ctx).values()) == 1
    assert _count(ctx, "pilothouse_epp_served_elsewhere_total") == 1
    exchange.close()
    assert sum(_in_flight(ctx).values()) == 0


async def test_closing_a_stream_midway_releases_the_endpoint_once() -> None:
    ctx = m.context(m.endpoints(1))
    exchange, _ = await _routed(ctx)
    await exchange.handle(m.response_headers(content_type="text/event-stream"))
    await exchange.handle(m.response_body(b"data: {}\n\n", eos=False))
    assert _in_flight(ctx) == {"e0": 1}
    exchange.close()
    exchange.close()
    assert _in_flight(ctx) == {"e0": 0}


async def test_a_response_without_body_ends_at_its_headers() -> None:
    ctx = m.context(m.endpoints(1))
    exchange, _ = await _routed(ctx)
    await exchange.handle(m.response_headers(status="204", eos=True))
    assert exchange.done
    assert _in_flight(ctx) == {"e0": 0}


async def test_request_trailers_end_the_body() -> None:
    from envoy.service.ext_proc.v3 import external_processor_pb2 as pb

    ctx = m.context(m.endpoints(1))
    exchange = Exchange(ctx)
    await exchange.handle(m.request_headers())
    assert await exchange.handle(m.request_body(m.CHAT, eos=False)) == []
    out = await exchange.handle(pb.ProcessingRequest(request_trailers=pb.HttpTrailers()))
    kinds = [r.WhichOneof("response") for r in out]
    assert kinds == ["request_headers", "request_body", "request_trailers"]
    assert not out[1].request_body.response.body_mutation.streamed_response.end_of_stream


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(m.response_headers(), id="response-before-routing"),
        pytest.param(m.response_body(b"x"), id="body-before-routing"),
    ],
)
async def test_messages_out_of_order_are_protocol_errors(message: Any) -> None:
    exchange = Exchange(m.context(m.endpoints(1)))
    await exchange.handle(m.request_headers())
    with pytest.raises(EppProtocolError):
        await exchange.handle(message)


async def test_the_fallback_list_is_answered_while_the_pool_knows_no_endpoint() -> None:
    empty = m.context([])
    ctx = dataclasses.replace(empty, fallback=("10.9.0.1:8000", "10.9.0.2:8000"))
    _, out = await _routed(ctx)
    assert m.set_headers(out[0])["x-gateway-destination-endpoint"] == (
        "10.9.0.1:8000,10.9.0.2:8000"
    )
    _, refused = await _routed(empty)  # without a fallback list: 503, as before
    assert refused[0].immediate_response.status.code == 503
    ctx.pool.add(m.endpoints(1)[0], ready=False)  # known but not ready: the pipeline decides
    _, out = await _routed(ctx)
    assert out[0].immediate_response.status.code == 503


@pytest.mark.parametrize(
    ("forward", "engine", "expected"),
    [
        pytest.param(True, "vllm", -7, id="vllm-forwards"),
        pytest.param(False, "vllm", None, id="off"),
        pytest.param(True, "sglang", None, id="not-vllm"),
    ],
)
async def test_the_priority_is_written_into_vllms_field_when_the_policy_says(
    forward: bool, engine: str, expected: int | None
) -> None:
    pool = [dataclasses.replace(e, engine=engine) for e in m.endpoints(1)]
    ctx = dataclasses.replace(m.context(pool), forward_priority=forward)
    ctx.pipeline.trust_priority_header = True
    _, out = await _routed(ctx, {**m.CHAT, "priority": 99}, extra={"x-pilothouse-priority": "7"})
    forwarded = orjson.loads(out[1].request_body.response.body_mutation.streamed_response.body)
    assert forwarded["priority"] == (99 if expected is None else expected)
    assert m.set_headers(out[0])["content-length"] == str(
        len(out[1].request_body.response.body_mutation.streamed_response.body)
    )
