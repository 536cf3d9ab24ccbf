"""The ``tracing:`` section: OpenTelemetry traces of the request path, exported over OTLP.

``tracing:`` at the top of a fleet file (or of an endpoint picker's ``--config``)::

    tracing:
      endpoint: http://localhost:4318/v1/traces   # OTLP/HTTP (Jaeger, Phoenix, a collector)
      protocol: http/protobuf                     # or grpc (then e.g. localhost:4317)
      service_name: pilothouse-gateway
      sample_ratio: 0.1                           # of new traces; a caller's decision is kept
      headers: {authorization: "Bearer abc123"}   # a collector's authentication
      decision_detail: true                       # each scorer's score in the span

Absent: no tracer exists and the request path does no OpenTelemetry work at all
(docs/observability.md).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Protocol = Literal["http/protobuf", "grpc"]


class TracingSpec(BaseModel):
    """Where and how spans are exported; see the module docstring."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoint: str
    """OTLP URL: ``http(s)://host:4318/v1/traces`` for ``http/protobuf``, ``http(s)://host:4317``
    (or ``host:4317``) for ``grpc``."""
    protocol: Protocol = "http/protobuf"
    service_name: str = Field(default="pilothouse", min_length=1)
    """``service.name`` of the spans; each process adds ``pilothouse.component``
    (``gateway``, ``epp``, ``toolgateway``) as a resource attribute."""
    sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0)
    """Share of new traces recorded; a request that arrives with a ``traceparent`` follows
    its caller's sampling decision (parent-based)."""
    headers: dict[str, str] = Field(default_factory=dict)
    """Sent with every export (a collector's authentication)."""
    decision_detail: bool = False
    """Each scorer's score for the picked and the runner-up replica, on sampled requests
    only (the scorers run a second time for them)."""

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError(
                "an OTLP endpoint URL is required, e.g. http://localhost:4318/v1/traces"
            )
        if " " in value:
            raise ValueError(f"'{value}' is not a URL")
        return value
