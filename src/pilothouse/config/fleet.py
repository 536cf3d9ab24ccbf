"""The Fleet spec: which models to serve, on which engine, and how the gateway behaves.

A minimal example (``examples/fleet-embedded.yaml``)::

    apiVersion: pilothouse.dev/v1alpha1
    kind: Fleet
    models:
      - name: smollm2-135m-instruct
        engine: llamacpp
        replicas: 2
    gateway:
      port: 8000
      scheduler: default

An autoscaled model that scales to zero (``examples/fleet-sim-autoscale.yaml``)::

    models:
      - name: chat
        engine: sim
        autoscaling: {min_replicas: 0, max_replicas: 4, metric: queue_depth, target: 8,
                      idle_timeout_s: 120}

Every field is documented in ``docs/configuration.md``. One file drives ``pilothouse up`` (local
processes, or Ray actors with ``--executor ray``), ``pilothouse render k8s`` and
``pilothouse apply``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pilothouse.config.agents import AgentSpec, check_agents
from pilothouse.config.autoscaling import AutoscalingSpec
from pilothouse.config.deploy import K8S_NAME, KubernetesSpec, LocalSpec, ResourcesSpec
from pilothouse.config.governance import GovernanceSpec
from pilothouse.config.loader import SpecProblems, read_yaml, validate_model
from pilothouse.config.ray import RaySpec
from pilothouse.config.sources import ModelSource, parse_source
from pilothouse.config.tools import ToolsSpec
from pilothouse.config.tracing import TracingSpec
from pilothouse.config.traffic import MODEL_NAME, AdapterSpec, TrafficSplit

EMBEDDED_MODEL_NAME = "smollm2-135m-instruct"
DEFAULT_REPLICAS = 2
_ADDRESS = re.compile(r"^(https?://)?[A-Za-z0-9_.\-\[\]:]+:\d{1,5}/?$")

#: The engine kinds a Fleet may name. What each kind does lives in its adapter
#: (``pilothouse.engines.registry``, a layer above); the schema keeps only the names, and
#: the kinds that take LoRA adapters, which the registry's tests hold equal to the adapters.
EngineName = Literal["llamacpp", "vllm", "sim", "sglang", "openai"]
LORA_ENGINES = ("vllm", "sim")
ArgValue = str | int | float | bool


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSpec(_Spec):
    """One served model: launched replicas, or addresses of servers already running."""

    name: str = Field(min_length=1, max_length=128, pattern=MODEL_NAME)
    engine: EngineName = "llamacpp"
    source: str = "embedded"
    replicas: int | None = Field(default=None, ge=0, le=64)
    """A fixed count; with ``autoscaling``, the count to start with (within its bounds)."""
    autoscaling: AutoscalingSpec | None = None
    args: dict[str, ArgValue] = Field(default_factory=dict)
    endpoints: list[str] = Field(default_factory=list)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    image: str | None = Field(default=None, min_length=1)
    """Container image on Kubernetes (default: ``kubernetes.vllm_image`` or
    ``kubernetes.pilothouse_image`` by engine)."""
    kubernetes_name: str | None = Field(default=None, pattern=K8S_NAME)
    """Name of this model's Kubernetes objects (default: derived from ``name``)."""
    adapters: list[AdapterSpec] = Field(default_factory=list)

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        parse_source(value)
        return value

    @field_validator("endpoints")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for i, address in enumerate(value):
            if not _ADDRESS.match(address):
                raise ValueError(f"endpoints[{i}] '{address}' is not host:port or http://host:port")
        return [a.removeprefix("http://").removeprefix("https://").rstrip("/") for a in value]

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        problems = SpecProblems()
        auto = self.autoscaling
        if auto is not None and self.endpoints:
            problems.add(("autoscaling",), "applies to launched replicas, not to 'endpoints'")
        replicas = self.replicas
        if (
            auto is not None
            and replicas is not None
            and not auto.min_replicas <= replicas <= auto.max_replicas
        ):
            problems.add(
                ("replicas",),
                f"{replicas} is outside autoscaling's [{auto.min_replicas}, {auto.max_replicas}]",
            )
        kind = self.source_info.kind
        if self.engine == "llamacpp" and kind in ("hf", "s3") and self.launched:
            problems.add(("source",), "llama.cpp runs 'embedded' or a local GGUF path")
        if self.adapters and self.engine not in LORA_ENGINES:
            problems.add(("adapters",), "LoRA adapters need engine vllm or sim")
        seen: set[str] = set()
        for i, adapter in enumerate(self.adapters):
            if adapter.name in seen or adapter.name == self.name:
                problems.add(("adapters", i, "name"), f"'{adapter.name}' is already a name here")
            seen.add(adapter.name)
        problems.raise_if_any()
        return self

    @property
    def launched(self) -> bool:
        """True when pilothouse starts this model's replicas itself."""
        return not self.endpoints

    @property
    def source_info(self) -> ModelSource:
        return parse_source(self.source)

    @property
    def initial_replicas(self) -> int:
        """Replicas to start with: ``replicas``, else the autoscaling minimum, else 2."""
        if self.replicas is not None:
            return self.replicas
        if self.autoscaling is not None:
            return self.autoscaling.min_replicas
        return DEFAULT_REPLICAS

    @property
    def bounds(self) -> tuple[int, int]:
        """(min, max) replicas: the autoscaling bounds, or the fixed count twice."""
        if self.autoscaling is not None:
            return self.autoscaling.min_replicas, self.autoscaling.max_replicas
        return self.initial_replicas, self.initial_replicas


class SaturationSpec(_Spec):
    """When a replica is saturated; flow control queues only when every replica is."""

    max_in_flight_per_replica: int = Field(default=32, gt=0)
    """Requests the gateway has in flight on a replica (its own count, never stale)."""
    max_waiting: int | None = Field(default=None, gt=0)
    """Engine-reported queue (``vllm:num_requests_waiting``) at which a replica is full."""
    max_kv_cache_usage: float | None = Field(default=None, gt=0, le=1)
    """Engine-reported KV-cache usage (0..1] at which a replica is full."""


class SloGateSpec(_Spec):
    """What flow control does with a request predicted to miss its time-to-first-token target.

    The prediction is an ``slo-aware`` scorer's (the scheduler must have one; without it the
    gate never fires): the lowest TTFT it predicts on any replica, against the request's
    target. ``defer`` keeps the request waiting and decides again each time a request of
    its model finishes, shedding it after ``queue_timeout_s``; ``shed`` answers 429 at once.
    """

    action: Literal["off", "defer", "shed"] = "off"
    """``off``: route every request whatever its prediction."""
    margin: float = Field(default=0.0, ge=0)
    """How far over its target (a fraction of it) the best prediction may be: 0.5 acts only
    on requests predicted at more than 1.5 x their target."""


class FlowControlSpec(_Spec):
    """Priority and per-tenant fair queueing in the gateway while every replica is saturated.

    Requests wait in a bounded queue per model, dispatched by priority, then round-robin
    across tenants. The lowest priority is shed first (429 with ``retry-after``) when the
    queue is full, and any request that waits longer than ``queue_timeout_s`` is shed.
    """

    enabled: bool = False
    """Off: requests go straight to the scheduler, as without flow control."""
    max_queue: int = Field(default=256, ge=0)
    """Requests that may wait per model; 0 sheds at once whenever the pool is saturated."""
    queue_timeout_s: float = Field(default=30.0, gt=0)
    """Longest wait in the queue before the request is shed."""
    retry_after_s: float = Field(default=1.0, gt=0)
    """The ``retry-after`` a shed request is told (whole seconds, at least 1)."""
    saturation: SaturationSpec = Field(default_factory=SaturationSpec)
    objectives: dict[str, int] = Field(default_factory=dict)
    """Priority of each named objective (``x-gateway-inference-objective: batch``)."""
    slo: SloGateSpec = Field(default_factory=SloGateSpec)
    """Shed or defer requests predicted to miss their TTFT target (off by default)."""


class HoldSpec(_Spec):
    """Requests held while a model has no ready replica and one is starting (scale from zero)."""

    max_queue: int = Field(default=256, ge=0)
    """Requests held per model; one more gets 503 at once."""
    timeout_s: float = Field(default=120.0, gt=0)
    """A request still held after this long gets 503."""


class HttpSpec(_Spec):
    """What one client may make the gateway hold (see docs/reliability.md)."""

    max_header_bytes: int = Field(default=32 * 1024, ge=1024)
    """A request head (request line and headers) longer than this: 431, connection closed."""
    max_headers: int = Field(default=100, ge=8)
    """More header fields than this: 431."""
    header_timeout_s: float = Field(default=10.0, gt=0)
    """A request head not complete this long after its first byte (or the connection
    opening): 408, connection closed."""
    body_timeout_s: float = Field(default=30.0, gt=0)
    """Longest pause while a request body is read: 408."""
    keep_alive_s: float = Field(default=5.0, gt=0)
    """An idle keep-alive connection is closed after this long."""
    max_connections: int | None = Field(default=None, ge=1)
    """Connections (and requests) served at once; beyond: 503. None: no limit."""


class AdminSpec(_Spec):
    """Who may use the admin API (``/admin/*``): see docs/configuration.md."""

    api_key: str | None = Field(default=None, min_length=1)
    """The admin credential (``Authorization: Bearer``); default: ``gateway.api_key``.
    Required when the gateway listens beyond loopback."""
    allowed_hosts: list[str] = Field(default_factory=list)
    """``Host`` names accepted besides localhost, loopback addresses and the bind address."""
    allowed_origins: list[str] = Field(default_factory=list)
    """Browser origins (``https://console.example``) allowed to call the admin API."""


class UiSpec(_Spec):
    """The web console at ``/ui`` (docs/console.md): served behind the admin credential."""

    enabled: bool = True
    """Serve the console. It also needs an admin credential (``admin.api_key`` or
    ``api_key``): without one ``/ui`` only says how to set it, and nothing is recorded."""
    decisions: int = Field(default=200, ge=1, le=100_000)
    """How many recent routing decisions the live routing page keeps (a preallocated ring)."""
    session_ttl_s: float = Field(default=8 * 3600.0, gt=0)
    """How long a console login lasts."""
    reports_dir: str | None = None
    """A directory of ``pilothouse bench`` reports (each a folder with ``results.json`` and
    its PNG plots) shown on the reports page."""


class GatewaySpec(_Spec):
    """How the gateway listens, authenticates, schedules and forwards."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    api_key: str | None = Field(default=None, min_length=1)
    scheduler: str = "default"
    max_body_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    read_timeout_s: float = Field(default=600.0, gt=0)
    trust_priority_header: bool = False
    """Honour a numeric priority header (``x-pilothouse-priority: 7``). Off: only objective
    names (``flow_control.objectives``) set a priority, so a client cannot outrank them; turn
    it on only behind a proxy that sets or strips the header."""
    upstream_client: Literal["http1", "aiohttp"] = "http1"
    """The client of the upstream leg: ``http1``, a lean keep-alive HTTP/1.1 client on
    asyncio and httptools (the default), or ``aiohttp`` (see docs/transport.md)."""
    probe_interval_s: float = Field(default=0.5, gt=0)
    drain_timeout_s: float = Field(default=30.0, gt=0)
    """On shutdown, longest wait for requests in flight; streams still open then get an
    SSE error event, requests not yet answered a 503."""
    access_log: bool = True
    log_prompts: bool = False
    flow_control: FlowControlSpec = Field(default_factory=FlowControlSpec)
    kv_events: bool = False
    """Follow the endpoints' KV-cache events for the scheduler's ``precise-prefix`` plugin."""
    tokenizers: dict[str, str] = Field(default_factory=dict)
    """Model name → local Hugging Face tokenizer directory, to match prompts against a real
    engine's KV events (``precise-prefix``; needs the ``hf`` extra). ``sim`` endpoints use the
    simulator's tokenizer; a model without one is matched by routing history only."""
    tokenize: Literal["process", "before", "inline"] = "process"
    """Where ``precise-prefix`` prompts are tokenized (read only with ``kv_events``):
    ``process`` (the default), before the decision in a tokenizer process of its own, spoken
    to from the event loop (no GIL shared with it; the segment cache lives there); ``before``,
    the same in a worker thread of the gateway (no extra process; its Python parts hold the
    GIL the loop needs); or ``inline`` in the decision, on the event loop (the old path, kept
    to measure against)."""
    loop_lag_probe_s: float = Field(default=0.0, ge=0.0)
    """Interval of the event-loop lag probe (0: off): ``/metrics`` then exports
    ``pilothouse_event_loop_lag_seconds``, how late the loop ran a timer."""
    hold: HoldSpec = Field(default_factory=HoldSpec)
    admin: AdminSpec = Field(default_factory=AdminSpec)
    ui: UiSpec = Field(default_factory=UiSpec)
    http: HttpSpec = Field(default_factory=HttpSpec)
    governance: GovernanceSpec | None = None
    """Identities, token rate limits, budgets and the usage ledger (docs/governance.md).
    Absent: no identities (``api_key`` alone guards the gateway)."""


class FleetSpec(_Spec):
    """The whole fleet: models, traffic splits, the gateway, and executor settings."""

    api_version: Literal["pilothouse.dev/v1alpha1"] = Field(
        default="pilothouse.dev/v1alpha1", alias="apiVersion"
    )
    kind: Literal["Fleet"] = "Fleet"
    models: list[ModelSpec] = Field(min_length=1)
    traffic: list[TrafficSplit] = Field(default_factory=list)
    gateway: GatewaySpec = Field(default_factory=GatewaySpec)
    kubernetes: KubernetesSpec = Field(default_factory=KubernetesSpec)
    local: LocalSpec = Field(default_factory=LocalSpec)
    ray: RaySpec = Field(default_factory=RaySpec)
    """Read by ``pilothouse up --executor ray`` only (``docs/ray.md``)."""
    tools: ToolsSpec | None = None
    """The MCP tool gateway (``pilothouse toolgateway``, docs/toolgateway.md): its upstream
    servers and the rules every tool call passes. Absent: no tool gateway."""
    agents: list[AgentSpec] = Field(default_factory=list)
    """Governed agents (docs/agents.md): each calls this fleet's models through the gateway
    and its tools through the tool gateway, with its own identity and budgets."""
    tracing: TracingSpec | None = None
    """OpenTelemetry traces of the gateway and the tool gateway, exported over OTLP
    (docs/observability.md). Absent: no tracing, at no cost."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _names(self) -> FleetSpec:
        """Model, adapter and public traffic names are unique; splits name real models."""
        problems = SpecProblems()
        owner: dict[str, str] = {}

        def claim(name: str, loc: tuple[int | str, ...], what: str) -> None:
            if name in owner:
                problems.add(loc, f"'{name}' is already declared as {owner[name]}")
            else:
                owner[name] = what

        for i, model in enumerate(self.models):
            claim(model.name, ("models", i, "name"), "a model")
        for i, model in enumerate(self.models):
            for j, adapter in enumerate(model.adapters):
                claim(adapter.name, ("models", i, "adapters", j, "name"), "an adapter")
        models = {m.name for m in self.models}
        for i, split in enumerate(self.traffic):
            claim(split.name, ("traffic", i, "name"), "a traffic split")
            for j, version in enumerate(split.versions):
                if version.model not in models:
                    problems.add(
                        ("traffic", i, "versions", j, "model"), f"no model named '{version.model}'"
                    )
        if self.agents:
            servers = {s.name for s in self.tools.servers} if self.tools is not None else None
            problems.problems.extend(check_agents(self.agents, set(owner), servers).problems)
        problems.raise_if_any()
        return self

    def model(self, name: str) -> ModelSpec | None:
        return next((m for m in self.models if m.name == name), None)


def load_fleet(path: str | Path) -> FleetSpec:
    return validate_model(FleetSpec, read_yaml(path), source=str(path))


def parse_fleet(data: object, source: str = "") -> FleetSpec:
    """A fleet from already-parsed YAML or JSON (``pilothouse apply`` sends it so)."""
    return validate_model(FleetSpec, data, source=source)


def embedded_fleet(replicas: int = 2, port: int = 8000) -> FleetSpec:
    """The fleet ``pilothouse up`` runs without a file: the bundled SmolLM2 on llama.cpp."""
    return FleetSpec(
        models=[ModelSpec(name=EMBEDDED_MODEL_NAME, engine="llamacpp", replicas=replicas)],
        gateway=GatewaySpec(port=port),
    )
