"""Render-only settings (images, resources, autoscaling, gateway) and the per-model plan.

These are command-line options of ``pilothouse render`` until the Fleet spec grows the
matching fields; :func:`plan_models` merges them with the Fleet spec into one frozen
:class:`ModelPlan` per rendered model.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Literal

from pilothouse.config.fleet import ArgValue, FleetSpec, ModelSpec
from pilothouse.errors import ConfigError

AutoscalerKind = Literal["hpa", "keda", "none"]
FailureMode = Literal["FailOpen", "FailClose"]
RENDERED_ENGINES = ("vllm", "sim")
MODEL_PORT = 8000
KV_EVENTS_PORT = 5557
KV_REPLAY_PORT = 5558
_SLUG_MAX = 50  # leaves room for "-epp" within a 63-character Service name


@dataclass(frozen=True, slots=True)
class Images:
    vllm: str = "vllm/vllm-openai:latest"
    pilothouse: str = "ghcr.io/pilothouse/pilothouse:latest"
    pull_policy: str = "IfNotPresent"


@dataclass(frozen=True, slots=True)
class Autoscaling:
    kind: AutoscalerKind = "hpa"
    min_replicas: int | None = None  # default: the model's replicas (at least 1)
    max_replicas: int | None = None  # default: twice the minimum
    target_waiting: int = 2  # vllm:num_requests_waiting per replica before scaling out
    hpa_metric: str = "vllm_num_requests_waiting"  # as a metrics adapter exposes it
    prometheus_url: str = "http://prometheus-operated.monitoring.svc:9090"


@dataclass(frozen=True, slots=True)
class Resources:
    gpus: int | None = None  # default: tensor-parallel-size x pipeline-parallel-size, or 1
    cpu: str | None = None  # default per engine (vllm 4, sim 250m)
    memory: str | None = None  # default per engine (vllm 16Gi, sim 256Mi)


@dataclass(frozen=True, slots=True)
class RenderOptions:
    namespace: str = "default"
    gateway_name: str = "inference-gateway"
    with_gateway: bool = False
    gateway_class: str = "istio"
    epp_replicas: int = 1
    failure_mode: FailureMode = "FailClose"
    images: Images = field(default_factory=Images)
    autoscaling: Autoscaling = field(default_factory=Autoscaling)
    resources: Resources = field(default_factory=Resources)


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

    @property
    def engine(self) -> str:
        return self.spec.engine

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
    """Plans for the models rendered (vllm, sim), and the names of the models skipped."""
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
    minimum = auto.min_replicas if auto.min_replicas is not None else max(1, model.replicas)
    if auto.kind == "hpa" and minimum < 1:
        raise ConfigError("an HPA needs at least 1 replica; use --autoscaling keda for 0")
    maximum = auto.max_replicas if auto.max_replicas is not None else max(1, 2 * minimum)
    if maximum < minimum:
        raise ConfigError(f"--max-replicas {maximum} is below the minimum {minimum}")
    vllm = model.engine == "vllm"
    return ModelPlan(
        index=index,
        spec=model,
        slug=slug(model.name),
        replicas=model.replicas,
        min_replicas=minimum,
        max_replicas=maximum,
        gpus=(res.gpus if res.gpus is not None else _parallel_size(model)) if vllm else 0,
        cpu=res.cpu or ("4" if vllm else "250m"),
        memory=res.memory or ("16Gi" if vllm else "256Mi"),
    )


def _parallel_size(model: ModelSpec) -> int:
    size = 1
    for key in ("tensor-parallel-size", "pipeline-parallel-size"):
        value = model.args.get(key, model.args.get(key.replace("-", "_"), 1))
        size *= int(value)
    return size
