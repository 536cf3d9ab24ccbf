"""The model-server Deployment of one model, written from its engine kind's pod hints.

vLLM runs on GPUs, the pilothouse simulator as a cheap stand-in, llama.cpp on CPU
(``pilothouse engine llamacpp``, the embedded default model); what differs between them
(command, args, image, KV events, env, volumes, default resources) is the kind's
:class:`~pilothouse.engines.kind.PodHints`, never a branch here.

All serve the OpenAI API and ``/health`` on port 8000. Kinds that publish KV events (vLLM
and the simulator) do so over ZMQ on 5557 (replay on 5558) with the llm-d topic
``kv@<pod IP>:8000@<model>`` (the pod IP comes from the downward API and is expanded by
Kubernetes in ``$(POD_IP)``) and run with prefix caching; kinds with metrics get Prometheus
scrape annotations. llama.cpp has neither: its pod has the http port only, and the engine
label ``llamacpp`` tells the picker not to look for metrics.
"""

from __future__ import annotations

from pilothouse.config.fleet import ArgValue
from pilothouse.controlplane.render.meta import (
    ENGINE_LABEL,
    POOL_LABEL,
    Manifest,
    env_from_field,
    http_probe,
    labels,
    metadata,
)
from pilothouse.controlplane.render.options import (
    KV_EVENTS_PORT,
    KV_REPLAY_PORT,
    MODEL_PORT,
    ModelPlan,
    RenderOptions,
)
from pilothouse.controlplane.render.params import Binder
from pilothouse.engines.kind import EngineKind, EnvVar, PodContext, PodHints, ScratchVolume
from pilothouse.engines.registry import engine_kind
from pilothouse.errors import ConfigError

COMPONENT = "model-server"


def kv_topic(plan: ModelPlan) -> str:
    return f"kv@$(POD_IP):{MODEL_PORT}@{plan.spec.name}"


def model_server(plan: ModelPlan, options: RenderOptions, bind: Binder) -> Manifest:
    """The Deployment of one model's replicas (no ``replicas`` when an autoscaler owns it)."""
    pod_labels = {
        **labels(COMPONENT, plan.slug),
        POOL_LABEL: plan.slug,
        ENGINE_LABEL: plan.engine,
    }
    spec: Manifest = {
        "selector": {"matchLabels": {POOL_LABEL: plan.slug}},
        "template": {
            "metadata": _pod_metadata(plan, pod_labels),
            "spec": _pod_spec(plan, options, bind),
        },
    }
    if options.autoscaling.kind == "none" or not plan.autoscaled:
        spec = {"replicas": bind(plan.replicas, "models", plan.slug, "replicas"), **spec}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(plan.slug, options.namespace, bind, COMPONENT, plan.slug),
        "spec": spec,
    }


def _pod_metadata(plan: ModelPlan, pod_labels: dict[str, str]) -> Manifest:
    kind = engine_kind(plan.engine)
    if kind.metrics_path is None:  # no /metrics to scrape
        return {"labels": pod_labels}
    return {"labels": pod_labels, "annotations": _scrape_annotations(kind.metrics_path)}


def _hints(plan: ModelPlan) -> tuple[EngineKind, PodHints]:
    kind = engine_kind(plan.engine)
    if kind.pod is None:
        raise ConfigError(
            f"engine '{plan.engine}' is not rendered for Kubernetes",
            path=f"models[{plan.index}].engine",
        )
    return kind, kind.pod


def _pod_spec(plan: ModelPlan, options: RenderOptions, bind: Binder) -> Manifest:
    kind, hints = _hints(plan)
    ports: list[Manifest] = [{"name": "http", "containerPort": MODEL_PORT, "protocol": "TCP"}]
    if hints.kv_events:
        ports += [
            {"name": "kv-events", "containerPort": KV_EVENTS_PORT, "protocol": "TCP"},
            {"name": "kv-replay", "containerPort": KV_REPLAY_PORT, "protocol": "TCP"},
        ]
    container: Manifest = {
        "name": "server",
        "image": _image(plan, hints, options, bind),
        "imagePullPolicy": bind(options.images.pull_policy, "images", "pullPolicy"),
        "command": list(hints.command),
        "args": kind.pod_args(_pod_context(plan, hints)),
    }
    env = _env(hints)
    if env:
        container["env"] = env
    probe = hints.probe_path
    container |= {
        "ports": ports,
        # Model loading can take many minutes; the startup probe covers it.
        "startupProbe": http_probe(probe, "http", 10, hints.startup_failures),
        "readinessProbe": http_probe(probe, "http", 5, 3),
        "livenessProbe": http_probe(probe, "http", 10, 3),
        "resources": _resources(plan, bind),
    }
    spec: Manifest = {"containers": [container], "terminationGracePeriodSeconds": 130}
    if hints.volumes:
        container["volumeMounts"] = [
            {"name": v.name, "mountPath": v.mount_path} for v in hints.volumes
        ]
        spec["volumes"] = [{"name": v.name, "emptyDir": _empty_dir(v)} for v in hints.volumes]
    return spec


def _image(plan: ModelPlan, hints: PodHints, options: RenderOptions, bind: Binder) -> str:
    """The model's own ``image``, else the fleet's image for its engine."""
    if plan.spec.image is not None:
        return bind(plan.spec.image, "models", plan.slug, "image")
    if hints.image == "vllm":
        return bind(options.images.vllm, "images", "vllm")
    return bind(options.images.pilothouse, "images", "pilothouse")


def _pod_context(plan: ModelPlan, hints: PodHints) -> PodContext:
    return PodContext(
        model=plan.spec,
        field=f"models[{plan.index}]",
        args=_user_args(plan, hints),
        port=MODEL_PORT,
        kv_events_port=KV_EVENTS_PORT,
        kv_replay_port=KV_REPLAY_PORT,
        kv_topic=kv_topic(plan),
        cpu=plan.cpu,
    )


def _user_args(plan: ModelPlan, hints: PodHints) -> dict[str, ArgValue]:
    """The Fleet's engine args, refusing the ones the rendered pod must own."""
    args = {key.replace("_", "-"): value for key, value in plan.args.items()}
    for key in hints.reserved_args:
        if key in args:
            raise ConfigError(
                "set by `pilothouse render` for Kubernetes; remove it",
                path=f"models[{plan.index}].args.{key}",
            )
    if hints.kv_events and args.get("enable-prefix-caching") is False:
        raise ConfigError(
            "prefix caching stays on: KV events and cache-aware routing need it",
            path=f"models[{plan.index}].args.enable-prefix-caching",
        )
    return args


def _env(hints: PodHints) -> list[Manifest]:
    env = [env_from_field("POD_IP", "status.podIP")] if hints.kv_events else []
    return env + [_env_var(var) for var in hints.env]


def _env_var(var: EnvVar) -> Manifest:
    if var.secret is None:
        return {"name": var.name, "value": var.value}
    name, key = var.secret
    return {
        "name": var.name,
        "valueFrom": {"secretKeyRef": {"name": name, "key": key, "optional": True}},
    }


def _empty_dir(volume: ScratchVolume) -> Manifest:
    if volume.memory_limit is None:
        return {}
    return {"medium": "Memory", "sizeLimit": volume.memory_limit}


def _resources(plan: ModelPlan, bind: Binder) -> Manifest:
    path = ("models", plan.slug, "resources")
    cpu = bind(plan.cpu, *path, "cpu")
    memory = bind(plan.memory, *path, "memory")
    limits: Manifest = {"memory": memory}
    if plan.gpus:
        limits["nvidia.com/gpu"] = bind(plan.gpus, *path, "gpus")
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": limits}


def _scrape_annotations(path: str) -> dict[str, str]:
    """For Prometheus setups that discover pods by annotation (KEDA and HPA adapters read it)."""
    return {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(MODEL_PORT),
        "prometheus.io/path": path,
    }
