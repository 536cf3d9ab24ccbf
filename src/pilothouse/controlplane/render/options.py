"""Render settings (images, resources, autoscaling, gateway) and the per-model plan.

:class:`RenderOptions` holds the fleet-wide settings: the Fleet's ``kubernetes`` section,
with the ``pilothouse render`` flags given on the command line winning
(:func:`pilothouse.controlplane.render.spec_options.options_from_fleet`). Its
``autoscaling`` bounds and target and its ``resources`` are *overrides*: when unset, each
model's own ``autoscaling`` and ``resources`` apply. :func:`plan_models` merges them into
one frozen :class:`ModelPlan` per rendered model.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Literal

from pilothouse.config.autoscaling import AutoscalingSpec
from pilothouse.config.deploy import PILOTHOUSE_IMAGE
from pilothouse.config.fleet import ArgValue, FleetSpec, ModelSpec
from pilothouse.engines.registry import engine_kind, rendered_kinds
from pilothouse.errors import ConfigError

AutoscalerKind = Literal["hpa", "keda", "none"]
#: What a model without an ``autoscaling`` block is scaled on: the engine queue length.
LEGACY_METRIC = "waiting"
LEGACY_TARGET = 2.0
FailureMode = Literal["FailOpen", "FailClose"]
#: The engine kinds with pod hints (vllm, sim, llamacpp); the others are skipped.
RENDERED_ENGINES = rendered_kinds()
MODEL_PORT = 8000
KV_EVENTS_PORT = 5557
KV_REPLAY_PORT = 5558
_SLUG_MAX = 50  # leaves room for "-epp" within a 63-character Service name


@dataclass(frozen=True, slots=True)
class Images:
    vllm: str = "vllm/vllm-openai:latest"
    pilothouse: str = PILOTHOUSE_IMAGE
    pull_policy: str = "IfNotPresent"


@dataclass(frozen=True, slots=True)
class Autoscaling:
    kind: AutoscalerKind = "hpa"
    min_replicas: int | None = None  # default: the model's autoscaling, else its replicas (>= 1)
    max_replicas: int | None = None  # default: the model's autoscaling, else twice the minimum
    target_waiting: float | None = None  # default: the model's autoscaling target, else 2
    hpa_metric: str = "vllm_num_requests_waiting"  # as a metrics adapter exposes it
    prometheus_url: str = "http://prometheus-operated.monitoring.svc:9090"


@dataclass(frozen=True, slots=True)
class Resources:
    gpus: int | None = None  # default: tensor-parallel-size x pipeline-parallel-size, or 1
    cpu: str | None = None  # default per engine (vllm 4, sim 250m, llamacpp its threads or 1)
    memory: str | None = None  # default per engine (vllm 16Gi, sim 256Mi, llamacpp 1Gi)


@dataclass(frozen=True, slots=True)
class AgentTargets:
    """Where rendered agents reach the gateway and the tool gateway, and who they are.

    ``render k8s`` does not deploy either: the gateway is the fleet's Gateway (``gateway_name``,
    its pods carry the Gateway API label ``gateway.networking.k8s.io/gateway-name``) and the
    tool gateway a ``pilothouse toolgateway`` Deployment whose pods carry
    ``toolgateway_labels``; both are expected in the agents' namespace. ``None`` URLs and
    service accounts are derived from the gateway name and class
    (:func:`pilothouse.controlplane.render.agent.targets_for`).
    """

    gateway_url: str | None = None
    gateway_port: int = 80  # the port the gateway's pods listen on (NetworkPolicy)
    gateway_service_account: str | None = None  # default: <gateway>-istio (Istio), <gateway>
    toolgateway_url: str | None = None
    toolgateway_port: int = 8100
    toolgateway_labels: tuple[tuple[str, str], ...] = (
        ("app.kubernetes.io/name", "pilothouse-toolgateway"),
    )
    trust_domain: str = "cluster.local"


@dataclass(frozen=True, slots=True)
class RenderOptions:
    namespace: str = "default"
    gateway_name: str = "inference-gateway"
    with_gateway: bool = False
    with_dashboards: bool = False  # the Grafana dashboards ConfigMap
    gateway_class: str = "istio"
    epp_replicas: int = 1
    failure_mode: FailureMode = "FailClose"
    epp_tls: bool = True  # pickers serve ext_proc with TLS; False: --secure-serving=false
    images: Images = field(default_factory=Images)
    autoscaling: Autoscaling = field(default_factory=Autoscaling)
    resources: Resources = field(default_factory=Resources)
    agents: AgentTargets = field(default_factory=AgentTargets)


@dataclass(frozen=True, slots=True)
class ModelPlan:
    """Everything the builders need about one model, resolved."""

    index: int  # position in fleet.models, for error paths
    spec: ModelSpec
    slug: str  # DNS-1035 label used for object names and label values
    replicas: int
    min_replicas: int
    max_replicas: int
    gpus: int
    cpu: str
    memory: str
    metric: str = LEGACY_METRIC  # the model's autoscaling metric, or the engine queue
    target: float = LEGACY_TARGET
    autoscaled: bool = True  # False: fixed replicas whatever the autoscaler kind (llamacpp)

    @property
    def engine(self) -> str:
        return self.spec.engine

    @property
    def policy(self) -> AutoscalingSpec | None:
        return self.spec.autoscaling

    @property
    def args(self) -> dict[str, ArgValue]:
        return dict(self.spec.args)


def slug(name: str) -> str:
    """A DNS-1035 label for a model name (``Qwen/Qwen2.5-0.5B`` → ``qwen-qwen2-5-0-5b``)."""
    base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    if not base or not base[0].isalpha():
        base = "m-" + base
    if len(base) > _SLUG_MAX:
        digest = hashlib.sha256(name.encode()).hexdigest()[:6]
        base = base[: _SLUG_MAX - 7].rstrip("-") + "-" + digest
    return base


def plan_models(fleet: FleetSpec, options: RenderOptions) -> tuple[list[ModelPlan], list[str]]:
    """Plans for the models rendered (vllm, sim, llamacpp), and the names of those skipped."""
    plans: list[ModelPlan] = []
    skipped: list[str] = []
    seen: dict[str, str] = {}
    for index, model in enumerate(fleet.models):
        if model.engine not in RENDERED_ENGINES or not model.launched:
            skipped.append(model.name)
            continue
        plan = _plan(index, model, options)
        if plan.slug in seen:
            raise ConfigError(
                f"'{model.name}' and '{seen[plan.slug]}' map to the same Kubernetes name "
                f"'{plan.slug}'; rename one",
                path=f"models[{index}].name",
            )
        seen[plan.slug] = model.name
        plans.append(plan)
    return plans, skipped


def _plan(index: int, model: ModelSpec, options: RenderOptions) -> ModelPlan:
    auto, res = options.autoscaling, options.resources
    where = f"models[{index}]"
    kind = engine_kind(model.engine)
    if kind.metric_names is None:  # nothing to scale on
        return _fixed_plan(index, model, options)
    low, high, metric, target = _scaling(model)
    minimum = auto.min_replicas if auto.min_replicas is not None else low
    if auto.kind == "hpa" and minimum < 1:
        raise ConfigError(
            "an HPA needs at least 1 replica; set kubernetes.autoscaler: keda "
            "(or --autoscaling keda) to scale to 0",
            path=f"{where}.autoscaling.min_replicas",
        )
    maximum = auto.max_replicas if auto.max_replicas is not None else high or max(1, 2 * minimum)
    if maximum < minimum:
        raise ConfigError(f"--max-replicas {maximum} is below the minimum {minimum}")
    if auto.kind == "hpa" and metric == "ttft":
        raise ConfigError(
            "an HPA cannot follow TTFT (no per-pod gauge); set kubernetes.autoscaler: keda",
            path=f"{where}.autoscaling.metric",
        )
    spec_res = model.resources
    gpus = res.gpus if res.gpus is not None else spec_res.gpus
    cpu, memory = kind.resources.cpu, kind.resources.memory
    return ModelPlan(
        index=index,
        spec=model,
        slug=model.kubernetes_name or slug(model.name),
        replicas=model.initial_replicas,
        min_replicas=minimum,
        max_replicas=maximum,
        gpus=(gpus if gpus is not None else kind.gpus(model)) if kind.resources.gpus else 0,
        cpu=res.cpu or spec_res.cpu or cpu,
        memory=res.memory or spec_res.memory or memory,
        metric=metric,
        target=auto.target_waiting if auto.target_waiting is not None else target,
    )


def _fixed_plan(index: int, model: ModelSpec, options: RenderOptions) -> ModelPlan:
    """A model whose engine has no metrics to scale on: its ``replicas``, and no autoscaler.

    Every autoscaling signal the renderer knows (queue, KV-cache usage, TTFT) is read from
    the engine's Prometheus metrics, which llama.cpp does not publish; an ``autoscaling``
    block is refused rather than rendered into an autoscaler that never gets a value.
    """
    if model.autoscaling is not None and options.autoscaling.kind != "none":
        raise ConfigError(
            f"engine {model.engine} publishes no metrics, so Kubernetes cannot autoscale it "
            f"(the {options.autoscaling.kind} autoscaler reads the engine's queue, KV-cache "
            "or TTFT metrics); remove 'autoscaling' for fixed replicas, or render with "
            "kubernetes.autoscaler: none (--autoscaling none)",
            path=f"models[{index}].autoscaling",
        )
    res, spec_res = options.resources, model.resources
    defaults = engine_kind(model.engine).resources
    cpu, memory = defaults.cpu, defaults.memory
    cores = model.args.get(defaults.cpu_arg) if defaults.cpu_arg else None
    if isinstance(cores, int) and not isinstance(cores, bool) and cores > 0:
        cpu = str(cores)
    return ModelPlan(
        index=index,
        spec=model,
        slug=model.kubernetes_name or slug(model.name),
        replicas=model.initial_replicas,
        min_replicas=model.initial_replicas,
        max_replicas=model.initial_replicas,
        gpus=0,
        cpu=res.cpu or spec_res.cpu or cpu,
        memory=res.memory or spec_res.memory or memory,
        autoscaled=False,
    )


def _scaling(model: ModelSpec) -> tuple[int, int | None, str, float]:
    """(min, max or None, metric, target) from the model's own autoscaling, or the legacy."""
    policy = model.autoscaling
    if policy is None:
        return max(1, model.initial_replicas), None, LEGACY_METRIC, LEGACY_TARGET
    return policy.min_replicas, policy.max_replicas, policy.metric, policy.effective_target
