"""Everything one gateway instance needs, built once by the app factory and passed around.

The request path itself is the routing layer's :class:`RoutingPipeline` (shared with the
endpoint picker and the simulator); the context adds what only an HTTP front door has:
the upstream transport, the adapter loader, metrics, the access log and the API key.
"""

from __future__ import annotations

import hmac
import itertools
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import aiohttp

from pilothouse.clock import Clock
from pilothouse.config.fleet import FleetSpec, GatewaySpec
from pilothouse.config.tracing import TracingSpec
from pilothouse.endpoints.pool import EndpointPool
from pilothouse.engines.kinds.vllm import serves_priority
from pilothouse.errors import Unauthorized
from pilothouse.gateway.adapters import AdapterLoader
from pilothouse.gateway.metrics import GatewayMetrics
from pilothouse.governance.service import Governance
from pilothouse.routing import AdapterRegistry, RequestPreparer, RoutingPipeline, TrafficSplitter
from pilothouse.scheduling.scheduler import Scheduler
from pilothouse.transport import Transport
from pilothouse.ui.decisions import DecisionLog

if TYPE_CHECKING:  # the OpenTelemetry SDK is imported only when tracing is configured
    from pilothouse.telemetry.provider import Tracing


@dataclass(slots=True)
class GatewayContext:
    settings: GatewaySpec
    pool: EndpointPool
    scheduler: Scheduler
    metrics: GatewayMetrics
    clock: Clock
    access_log: logging.Logger = field(
        default_factory=lambda: logging.getLogger("pilothouse.access")
    )
    session: aiohttp.ClientSession | None = None
    """For the adapter loader and watcher (off the request path)."""
    transport: Transport | None = None
    """The upstream leg of the request path (started with the app)."""
    adapters: AdapterRegistry = field(default_factory=AdapterRegistry)
    """LoRA adapters served as models (declared in the spec, or found on replicas)."""
    traffic: TrafficSplitter = field(default_factory=TrafficSplitter)
    """Public model names split across versions (canary)."""
    preparer: RequestPreparer | None = None
    """Tokenizes prompts before scheduling, in a worker (precise-prefix with KV events)."""
    governance: Governance | None = None
    """Identities, limits, budgets and the ledger (``gateway.governance``), while running."""
    priority_models: frozenset[str] = frozenset()
    """Models whose replicas honour vLLM's ``priority`` request field (vLLM with
    ``args: {scheduling-policy: priority}``): the request's priority is forwarded to them."""
    tracing_spec: TracingSpec | None = None
    """``tracing:`` of the fleet: spans are exported while the app runs."""
    tracing: Tracing | None = None
    """The tracer while running with ``tracing_spec``; None: no OpenTelemetry work at all."""
    decisions: DecisionLog | None = None
    """Recent routing decisions for the web console (None: the console is not served)."""
    control_status: Callable[[], Mapping[str, object]] | None = None
    """The control plane's status under ``pilothouse up`` (replicas, autoscaler)."""
    pipeline: RoutingPipeline = field(init=False)
    loader: AdapterLoader = field(init=False)
    _id_prefix: str = field(init=False, default_factory=lambda: os.urandom(6).hex())
    _ids: Iterator[int] = field(init=False, default_factory=itertools.count)

    def __post_init__(self) -> None:
        self.pipeline = RoutingPipeline(
            self.pool,
            self.scheduler,
            self.clock,
            flow=self.settings.flow_control,
            hold=self.settings.hold,
            adapters=self.adapters,
            traffic=self.traffic,
            on_decision=self.metrics.decision.observe,
            preparer=self.preparer,
            trust_priority_header=self.settings.trust_priority_header,
        )
        self.loader = AdapterLoader(self.adapters)

    def serves(self, model: str) -> bool:
        """True for a model with replicas (or that can be started), an adapter or a split."""
        return self.pipeline.serves(model)

    def adopt(self, spec: FleetSpec) -> None:
        """Follow a newly applied spec: its adapters, traffic splits (weights) and the models
        that take a priority."""
        self.adapters.update(spec)
        self.traffic.set_splits(spec.traffic)
        self.priority_models = priority_models(spec)

    def new_request_id(self) -> str:
        """A process-unique id: a random prefix per gateway and a counter (cheap, sortable)."""
        return f"{self._id_prefix}-{next(self._ids):x}"

    def upstream(self) -> aiohttp.ClientSession:
        if self.session is None:
            raise RuntimeError("the gateway's upstream session is not started")
        return self.session

    def upstream_transport(self) -> Transport:
        if self.transport is None:
            raise RuntimeError("the gateway's upstream transport is not started")
        return self.transport

    def check_api_key(self, authorization: bytes | None, x_api_key: bool = False) -> None:
        """Require ``Authorization: Bearer <key>`` when a key is configured (constant time);
        ``x_api_key``: the route also takes the key as ``x-api-key`` (Anthropic's clients),
        and the refusal says so."""
        expected = self.settings.api_key
        if expected is None or self.pipeline.governor is not None:
            return  # governed: the bearer is a key or a token the governor checks
        supplied = b""
        if authorization and authorization[:7].lower() == b"bearer ":
            supplied = authorization[7:].strip()
        if not hmac.compare_digest(supplied, expected.encode()):
            also = " or 'x-api-key: <key>'" if x_api_key else ""
            raise Unauthorized(
                f"missing or invalid API key: send 'Authorization: Bearer <key>'{also}",
                code="invalid_api_key",
            )


def priority_models(spec: FleetSpec | None) -> frozenset[str]:
    """The models of ``spec`` whose engines act on a request's ``priority`` field."""
    if spec is None:
        return frozenset()
    return frozenset(model.name for model in spec.models if serves_priority(model))
