"""Builders of the ext_proc messages Envoy sends, and a picker context over a static pool.

Import only after ``pytest.importorskip`` of the gRPC packages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from google.protobuf import struct_pb2

from pilothouse.clock import ManualClock
from pilothouse.endpoints.pool import EndpointPool
from pilothouse.epp.metrics import EppMetrics
from pilothouse.epp.processor import PickerContext
from pilothouse.routing import RoutingPipeline
from pilothouse.scheduling.config import builtin_config, load_scheduler_config
from pilothouse.scheduling.scheduler import build_scheduler
from pilothouse.scheduling.types import Endpoint

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}
POOL_KEY = "pool"


def _header_map(headers: Mapping[str, str]) -> Any:
    return base_pb2.HeaderMap(
        headers=[base_pb2.HeaderValue(key=k, raw_value=v.encode()) for k, v in headers.items()]
    )


def _metadata(namespaces: Mapping[str, Mapping[str, object]]) -> Any:
    metadata = base_pb2.Metadata()
    for name, fields in namespaces.items():
        struct = struct_pb2.Struct()
        struct.update(dict(fields))
        metadata.filter_metadata[name].CopyFrom(struct)
    return metadata


def request_headers(
    path: str = "/v1/chat/completions",
    *,
    method: str = "POST",
    eos: bool = False,
    extra: Mapping[str, str] | None = None,
    subset: object = None,
) -> Any:
    headers = {":method": method, ":path": path, ":authority": "gw", **(extra or {})}
    message = pb.ProcessingRequest(
        request_headers=pb.HttpHeaders(headers=_header_map(headers), end_of_stream=eos)
    )
    if subset is not None:
        message.metadata_context.CopyFrom(
            _metadata({"envoy.lb.subset_hint": {"x-gateway-destination-endpoint-subset": subset}})
        )
    return message


def request_body(data: bytes | object, *, eos: bool = True, subset: object = None) -> Any:
    raw = data if isinstance(data, bytes) else orjson.dumps(data)
    message = pb.ProcessingRequest(request_body=pb.HttpBody(body=raw, end_of_stream=eos))
    if subset is not None:
        message.metadata_context.CopyFrom(
            _metadata({"envoy.lb.subset_hint": {"x-gateway-destination-endpoint-subset": subset}})
        )
    return message


def response_headers(
    *,
    status: str = "200",
    content_type: str = "application/json",
    served: str | None = None,
    upstream: str | None = None,
    eos: bool = False,
) -> Any:
    headers = {":status": status, "content-type": content_type}
    message = pb.ProcessingRequest(
        response_headers=pb.HttpHeaders(headers=_header_map(headers), end_of_stream=eos)
    )
    if served is not None:
        message.metadata_context.CopyFrom(
            _metadata({"envoy.lb": {"x-gateway-destination-endpoint-served": served}})
        )
    if upstream is not None:
        struct = struct_pb2.Struct()
        struct.update({"upstream.address": upstream})
        message.attributes["envoy.filters.http.ext_proc"].CopyFrom(struct)
    return message


def response_body(data: bytes, *, eos: bool = True) -> Any:
    return pb.ProcessingRequest(response_body=pb.HttpBody(body=data, end_of_stream=eos))


def set_headers(response: Any) -> dict[str, str]:
    """The headers a HeadersResponse / ImmediateResponse sets, by name."""
    which = response.WhichOneof("response")
    if which == "immediate_response":
        mutation = response.immediate_response.headers
    else:
        mutation = getattr(response, which).response.header_mutation
    return {o.header.key: o.header.raw_value.decode() for o in mutation.set_headers}


def endpoints(count: int, *, port: int = 8000) -> list[Endpoint]:
    return [
        Endpoint(name=f"e{i}", address=f"10.0.0.{i + 1}:{port}", model=POOL_KEY)
        for i in range(count)
    ]


def context(
    pool_endpoints: Sequence[Endpoint],
    *,
    scheduler: str | Mapping[str, object] = "round-robin",
    ready: bool = True,
    max_body_bytes: int = 1 << 20,
) -> PickerContext:
    """A picker context over a static pool, the way the EPP server builds one."""
    pool = EndpointPool()
    for endpoint in pool_endpoints:
        pool.add(endpoint, ready=ready)
    config = (
        builtin_config(scheduler)
        if isinstance(scheduler, str)
        else load_scheduler_config(scheduler)
    )
    metrics = EppMetrics(pool)
    clock = ManualClock()
    pipeline = RoutingPipeline(
        pool,
        build_scheduler(config, clock, seed=3),
        clock,
        pool_key=POOL_KEY,
        on_decision=metrics.scheduling.observe,
    )
    return PickerContext(pipeline, pool, metrics, POOL_KEY, max_body_bytes)


SHED_ALL: dict[str, object] = {
    "plugins": [
        {"type": "max-in-flight", "parameters": {"max_in_flight": 0, "retry_after_s": 3}},
        {"type": "random"},
    ],
    "profiles": [{"name": "default", "plugins": [{"ref": "max-in-flight"}, {"ref": "random"}]}],
}
