"""The ``tracing:`` spec and the tracer built from it: validation, exporter per protocol,
a clear error without the otel extra."""

from __future__ import annotations

import importlib.util

import pytest
from pydantic import ValidationError

from pilothouse.config.fleet import FleetSpec
from pilothouse.config.tracing import TracingSpec
from pilothouse.errors import ConfigError
from pilothouse.telemetry import require_sdk

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as Grpc
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Http

from pilothouse.telemetry.provider import _otlp_exporter, start_tracing


def test_otel_spec_defaults_and_bounds() -> None:
    spec = TracingSpec(endpoint="http://collector:4318/v1/traces")
    assert (spec.protocol, spec.sample_ratio, spec.decision_detail) == ("http/protobuf", 1.0, False)
    for bad in ({"sample_ratio": 1.5}, {"sample_ratio": -0.1}, {"protocol": "thrift"}):
        with pytest.raises(ValidationError):
            TracingSpec.model_validate({"endpoint": "http://c:4318", **bad})
    with pytest.raises(ValidationError, match="OTLP endpoint"):
        TracingSpec(endpoint="  ")
    with pytest.raises(ValidationError):
        TracingSpec.model_validate({"endpoint": "http://c:4318", "sampler": "always"})


def test_otel_fleet_tracing_is_off_unless_given() -> None:
    models = [{"name": "m", "engine": "sim"}]
    assert FleetSpec.model_validate({"models": models}).tracing is None
    fleet = FleetSpec.model_validate(
        {"models": models, "tracing": {"endpoint": "http://c:4317", "protocol": "grpc"}}
    )
    assert fleet.tracing is not None
    assert fleet.tracing.protocol == "grpc"


def test_otel_exporter_follows_the_protocol() -> None:
    http = _otlp_exporter(
        TracingSpec(endpoint="http://c:4318/v1/traces", headers={"authorization": "Bearer x"})
    )
    grpc = _otlp_exporter(TracingSpec(endpoint="http://c:4317", protocol="grpc"))
    try:
        assert isinstance(http, Http)
        assert isinstance(grpc, Grpc)
    finally:
        http.shutdown()
        grpc.shutdown()


def test_otel_resource_names_the_service_and_component() -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    tracing = start_tracing(
        TracingSpec(endpoint="http://c:4318", service_name="edge"), "epp", exporter=exporter
    )
    tracing.request("/v1/embeddings", "e5", {}.get).end(200)
    tracing.shutdown()
    (span,) = exporter.get_finished_spans()
    assert span.name == "embeddings e5"
    assert span.resource.attributes["service.name"] == "edge"
    assert span.resource.attributes["pilothouse.component"] == "epp"


def test_otel_missing_sdk_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    require_sdk()  # installed here
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"pilothouse\[otel\]"):
        require_sdk()


def test_otel_stale_xds_protos_copy_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """xds-protos overwrites opentelemetry-proto's files with a copy lacking
    InstrumentationScope: tracing refuses to start and names the reinstall that fixes it."""
    import sys
    import types

    stale = types.ModuleType("opentelemetry.proto.common.v1.common_pb2")
    stale.InstrumentationLibrary = object  # type: ignore[attr-defined]
    import opentelemetry.proto.common.v1 as v1

    monkeypatch.setitem(sys.modules, "opentelemetry.proto.common.v1.common_pb2", stale)
    monkeypatch.setattr(v1, "common_pb2", stale, raising=False)
    with pytest.raises(ConfigError, match="force-reinstall opentelemetry-proto"):
        require_sdk()
