"""OpenTelemetry traces of pilothouse: GenAI spans for the request path, tools and agents.

Everything here is used only where a ``tracing:`` section is configured: the front doors
build a :class:`~pilothouse.telemetry.provider.Tracing` from the spec when they start, and
with none configured they hold ``None`` and do no OpenTelemetry work per request. The
modules import the OpenTelemetry SDK (the ``otel`` extra), so code that must run without it
imports them only once tracing is on (or under ``TYPE_CHECKING``).

- :mod:`~pilothouse.telemetry.provider`: the tracer provider, sampler and OTLP exporter
  from a :class:`~pilothouse.config.tracing.TracingSpec`; flushed and shut down on stop.
- :mod:`~pilothouse.telemetry.request`: the one span of a model request (``chat {model}``),
  its scheduling decision and the ``traceparent`` sent to the engine.
- :mod:`~pilothouse.telemetry.spans`: ``execute_tool`` and ``invoke_agent`` spans.
- :mod:`~pilothouse.telemetry.names`: attribute names (GenAI semantic conventions and ours).
"""

from __future__ import annotations

import importlib.util

from pilothouse.errors import ConfigError


def require_sdk() -> None:
    """Raise a :class:`ConfigError` naming the extra to install when ``tracing:`` is set
    but the OpenTelemetry SDK is not (checked at startup, before anything listens)."""
    for module in ("opentelemetry.sdk", "opentelemetry.exporter.otlp"):
        if importlib.util.find_spec(module) is None:
            raise ConfigError(
                "tracing: needs OpenTelemetry: pip install 'pilothouse[otel]'", path="tracing"
            )
    _require_current_protos()


def _require_current_protos() -> None:
    """Fail with the fix when ``opentelemetry/proto`` holds xds-protos' stale copy.

    ``xds-protos`` (the ``epp`` extra) ships its own, years-old ``opentelemetry/proto/**``
    modules (grpc/grpc#42926); installed after ``opentelemetry-proto`` they replace its
    files and every OTLP exporter fails to import (no ``InstrumentationScope``).
    """
    try:
        from opentelemetry.proto.common.v1 import common_pb2
    except ImportError:  # the exporter's own import then names what is missing
        return
    if not hasattr(common_pb2, "InstrumentationScope"):
        raise ConfigError(
            "tracing: the installed opentelemetry/proto modules are xds-protos' stale copy "
            "(it overwrites opentelemetry-proto's files); restore them with: pip install "
            "--no-deps --force-reinstall opentelemetry-proto",
            path="tracing",
        )
