"""The endpoint picker's routing policy: what ``pilothouse epp --config FILE`` reads.

The same request-path features the standalone gateway has, for the pool behind Envoy::

    flow_control:            # priority and fair queueing while every endpoint is saturated
      enabled: true
      max_queue: 64
      objectives: {critical: 100, batch: -10}
    hold:                    # hold requests while the pool has no ready endpoint
      enabled: true
      timeout_s: 120
    traffic:                 # split a public model name across versions (body rewritten)
      - name: chat
        versions: [{model: chat-v1, weight: 90}, {model: chat-v2, weight: 10}]
    fallback_endpoints: ["10.0.0.7:8000"]   # answered while discovery knows no endpoint
    governance:              # identities, limits, budgets, ledger (docs/governance.md)
      store: postgresql+psycopg://pilothouse@db/pilothouse
      jwt: {envoy_payload_header: x-pilothouse-jwt-payload, team_claim: team}
    tracing:                 # OpenTelemetry spans over OTLP (docs/observability.md)
      endpoint: http://otel-collector:4318/v1/traces
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pilothouse.config.fleet import FlowControlSpec, HoldSpec
from pilothouse.config.governance import GovernanceSpec
from pilothouse.config.tracing import TracingSpec
from pilothouse.config.traffic import TrafficSplit
from pilothouse.errors import ConfigError


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EppHoldSpec(HoldSpec):
    """Holding in the picker: off unless enabled (the pool may scale from zero)."""

    enabled: bool = False
    """Hold requests while the pool has no ready endpoint, instead of answering 503."""


class EppPolicy(_Spec):
    """Flow control, holding, traffic splits and fallbacks of one endpoint picker."""

    flow_control: FlowControlSpec = Field(default_factory=FlowControlSpec)
    hold: EppHoldSpec = Field(default_factory=EppHoldSpec)
    traffic: list[TrafficSplit] = Field(default_factory=list)
    trust_priority_header: bool = False
    """Honour a numeric ``x-pilothouse-priority`` from the data plane; off: only objective
    names (configured or InferenceObjectives) set a priority."""
    forward_priority: bool = False
    """Write each request's priority into vLLM's ``priority`` body field (negated: vLLM
    serves the lowest value first) when it goes to a vLLM endpoint. Turn on when the pool's
    vLLM runs ``--scheduling-policy priority``; vLLM rejects a non-zero priority otherwise."""
    fallback_endpoints: list[str] = Field(default_factory=list)
    """``ip:port`` list sent, in order, while the picker knows no endpoint at all (its
    discovery has not reported one yet, or failed)."""
    governance: GovernanceSpec | None = None
    """Identities (API keys, JWTs or Envoy's verified ``jwt_authn`` payload), rate limits,
    budgets and the ledger, as in the gateway (docs/governance.md)."""
    tracing: TracingSpec | None = None
    """OpenTelemetry spans of the picker's decisions, exported over OTLP; the picker also
    sets ``traceparent`` on the request it forwards (docs/observability.md)."""


def load_epp_policy(path: Path) -> EppPolicy:
    """Read and validate an EPP policy file; every problem is a :class:`ConfigError`."""
    try:
        document = yaml.safe_load(path.read_bytes()) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    try:
        return EppPolicy.model_validate(document)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in error['loc']) or '(top)'}: {error['msg']}"
            for error in exc.errors()
        ]
        raise ConfigError(problems[0], problems=problems) from exc
