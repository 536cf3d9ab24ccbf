"""The model-server Deployment: vLLM on GPUs, the pilothouse simulator as a cheap stand-in, or
llama.cpp on CPU (``pilothouse engine llamacpp``, the embedded default model).

All serve the OpenAI API and ``/health`` on port 8000. vLLM and the simulator also publish
KV-cache events over ZMQ on 5557 (replay on 5558) with the llm-d topic
``kv@<pod IP>:8000@<model>`` (the pod IP comes from the downward API and is expanded by
Kubernetes in ``$(POD_IP)``), run with prefix caching and serve Prometheus ``/metrics``.
llama.cpp has none of these: its pod has the http port only, no scrape annotations, and the
engine label ``llamacpp`` tells the picker not to look for metrics
(:data:`pilothouse.engines.adapters.ADAPTERS`).
"""

from __future__ import annotations

import json
import math

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
from pilothouse.engines.launch import adapter_args, engine_args
from pilothouse.errors import ConfigError

COMPONENT = "model-server"
_RESERVED = {
    "vllm": ("model", "served-model-name", "host", "port", "kv-events-config"),
    "sim": ("model", "host", "port", "kv-events-port", "kv-replay-port", "kv-topic"),
    "llamacpp": ("source", "served-name", "host", "port"),
}
_COMMANDS = {
    "vllm": ["vllm", "serve"],
    "sim": ["python", "-m", "pilothouse", "engine", "sim"],
    "llamacpp": ["python", "-m", "pilothouse", "engine", "llamacpp"],
}


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
    if plan.engine == "llamacpp":  # no /metrics to scrape
        return {"labels": pod_labels}
    return {"labels": pod_labels, "annotations": _scrape_annotations()}


def _pod_spec(plan: ModelPlan, options: RenderOptions, bind: Binder) -> Manifest:
    vllm = plan.engine == "vllm"
    ports: list[Manifest] = [{"name": "http", "containerPort": MODEL_PORT, "protocol": "TCP"}]
    if plan.engine != "llamacpp":
        ports += [
            {"name": "kv-events", "containerPort": KV_EVENTS_PORT, "protocol": "TCP"},
            {"name": "kv-replay", "containerPort": KV_REPLAY_PORT, "protocol": "TCP"},
        ]
    container: Manifest = {
        "name": "server",
        "image": _image(plan, options, bind),
        "imagePullPolicy": bind(options.images.pull_policy, "images", "pullPolicy"),
        "command": list(_COMMANDS[plan.engine]),
        "args": _args(plan),
    }
    if plan.engine != "llamacpp":  # POD_IP: for the KV-event topic
        container["env"] = _env(vllm)
    container |= {
        "ports": ports,
        # Model loading can take many minutes; the startup probe covers it (up to 30 min).
        "startupProbe": http_probe("/health", "http", 10, 180 if vllm else 30),
        "readinessProbe": http_probe("/health", "http", 5, 3),
        "livenessProbe": http_probe("/health", "http", 10, 3),
        "resources": _resources(plan, bind),
    }
    spec: Manifest = {"containers": [container], "terminationGracePeriodSeconds": 130}
    if vllm:
        container["volumeMounts"] = [
            {"name": "shm", "mountPath": "/dev/shm"},
            {"name": "hf-cache", "mountPath": "/root/.cache/huggingface"},
        ]
        spec["volumes"] = [
            {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}},
            {"name": "hf-cache", "emptyDir": {}},
        ]
    return spec


def _image(plan: ModelPlan, options: RenderOptions, bind: Binder) -> str:
    """The model's own ``image``, else the fleet's image for its engine."""
    if plan.spec.image is not None:
        return bind(plan.spec.image, "models", plan.slug, "image")
    if plan.engine == "vllm":
        return bind(options.images.vllm, "images", "vllm")
    return bind(options.images.pilothouse, "images", "pilothouse")


def _args(plan: ModelPlan) -> list[str]:
    if plan.engine == "vllm":
        return _vllm_args(plan)
    if plan.engine == "llamacpp":
        return _llamacpp_args(plan)
    return _sim_args(plan)


def _vllm_args(plan: ModelPlan) -> list[str]:
    source = plan.spec.source.removeprefix("hf://")
    if source == "embedded":
        raise ConfigError(
            "vLLM on Kubernetes needs a hub id, a path in the image, or an s3:// URI",
            path=f"models[{plan.index}].source",
        )
    kv_events = {
        "enable_kv_cache_events": True,
        "publisher": "zmq",
        "endpoint": f"tcp://*:{KV_EVENTS_PORT}",
        "replay_endpoint": f"tcp://*:{KV_REPLAY_PORT}",
        "topic": kv_topic(plan),
    }
    extra = _user_args(plan)
    extra.pop("enable-prefix-caching", None)
    if plan.spec.source_info.kind == "s3":
        extra.setdefault("load-format", "runai_streamer")  # how vLLM streams from s3://
    return [
        source,
        "--served-model-name",
        plan.spec.name,
        "--host",
        "0.0.0.0",
        "--port",
        str(MODEL_PORT),
        "--enable-prefix-caching",
        "--kv-events-config",
        json.dumps(kv_events, separators=(",", ":")),
        *engine_args(extra),
        *adapter_args(plan.spec),
    ]


def _sim_args(plan: ModelPlan) -> list[str]:
    return [
        "--model",
        plan.spec.name,
        "--host",
        "0.0.0.0",
        "--port",
        str(MODEL_PORT),
        "--kv-events-port",
        str(KV_EVENTS_PORT),
        "--kv-replay-port",
        str(KV_REPLAY_PORT),
        "--kv-topic",
        kv_topic(plan),
        *engine_args(_user_args(plan)),
        *adapter_args(plan.spec),
    ]


def _llamacpp_args(plan: ModelPlan) -> list[str]:
    """``pilothouse engine llamacpp`` as ``up`` starts it, listening on the pod's port.

    Without a ``threads`` arg, llama.cpp would start one thread per core of the *node*; the
    pod gets as many as its CPU request (rounded up) instead.
    """
    extra = _user_args(plan)
    if "threads" not in extra:
        extra["threads"] = _cores(plan.cpu)
    return [
        "--source",
        llamacpp_source(plan),
        "--served-name",
        plan.spec.name,
        "--host",
        "0.0.0.0",
        "--port",
        str(MODEL_PORT),
        *engine_args(extra),
    ]


def llamacpp_source(plan: ModelPlan) -> str:
    """``embedded`` or an absolute GGUF path inside the image; anything else is refused."""
    info = plan.spec.source_info
    where = f"models[{plan.index}].source"
    if info.kind == "embedded":
        return "embedded"
    if info.kind in ("hf", "s3"):
        raise ConfigError(
            f"llama.cpp on Kubernetes does not download {plan.spec.source}: use 'embedded' "
            "(the image needs the 'embedded' extra) or the absolute path of a GGUF file in "
            "the image",
            path=where,
        )
    if not info.location.startswith("/"):
        raise ConfigError(
            f"'{plan.spec.source}' is relative to the machine that renders; on Kubernetes give "
            "the absolute path of the GGUF file inside the image (or 'embedded')",
            path=where,
        )
    return info.location


def _cores(cpu: str) -> int:
    """Whole cores of a CPU quantity (``500m`` → 1, ``2`` → 2, ``2.5`` → 3); 1 if unreadable."""
    try:
        cores = float(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
    except ValueError:
        return 1
    return max(1, math.ceil(cores)) if math.isfinite(cores) else 1


def _user_args(plan: ModelPlan) -> dict[str, ArgValue]:
    """The Fleet's engine args, refusing the ones the rendered pod must own."""
    args = {key.replace("_", "-"): value for key, value in plan.args.items()}
    for key in _RESERVED[plan.engine]:
        if key in args:
            raise ConfigError(
                "set by `pilothouse render` for Kubernetes; remove it",
                path=f"models[{plan.index}].args.{key}",
            )
    if plan.engine != "llamacpp" and args.get("enable-prefix-caching") is False:
        raise ConfigError(
            "prefix caching stays on: KV events and cache-aware routing need it",
            path=f"models[{plan.index}].args.enable-prefix-caching",
        )
    return args


def _env(vllm: bool) -> list[Manifest]:
    env = [env_from_field("POD_IP", "status.podIP")]
    if vllm:
        env.append({"name": "PYTHONHASHSEED", "value": "42"})  # same block hashes on every pod
        env.append(
            {
                "name": "HF_TOKEN",
                "valueFrom": {
                    "secretKeyRef": {"name": "hf-token", "key": "HF_TOKEN", "optional": True}
                },
            }
        )
    return env


def _resources(plan: ModelPlan, bind: Binder) -> Manifest:
    path = ("models", plan.slug, "resources")
    cpu = bind(plan.cpu, *path, "cpu")
    memory = bind(plan.memory, *path, "memory")
    limits: Manifest = {"memory": memory}
    if plan.gpus:
        limits["nvidia.com/gpu"] = bind(plan.gpus, *path, "gpus")
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": limits}


def _scrape_annotations() -> dict[str, str]:
    """For Prometheus setups that discover pods by annotation (KEDA and HPA adapters read it)."""
    return {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(MODEL_PORT),
        "prometheus.io/path": "/metrics",
    }
