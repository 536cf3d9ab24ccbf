"""The pilothouse simulator: vLLM's API, metric names, KV events and LoRA endpoints, no GPU.

It runs as ``pilothouse engine sim`` (locally with pilothouse's own interpreter, on
Kubernetes from the pilothouse image) and tokenizes prompts with the dummy tokenizer, so
the gateway can compute the same block hashes it publishes.
"""

from __future__ import annotations

import sys

from pilothouse.config.fleet import ModelSpec
from pilothouse.engines.args import engine_args
from pilothouse.engines.kind import EngineKind, LoraSupport, PodContext, PodHints, Resources
from pilothouse.engines.kinds.vllm import VLLM_METRICS


class SimLauncher:
    """``python -m pilothouse engine sim --model NAME``."""

    def command(self, model: ModelSpec, host: str, port: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "pilothouse",
            "engine",
            "sim",
            "--model",
            model.name,
            "--host",
            host,
            "--port",
            str(port),
        ]


class SimPodArgs:
    """The simulator on the pod's port, publishing KV events on the pod's KV ports."""

    def args(self, pod: PodContext) -> list[str]:
        return [
            "--model",
            pod.model.name,
            "--host",
            "0.0.0.0",
            "--port",
            str(pod.port),
            "--kv-events-port",
            str(pod.kv_events_port),
            "--kv-replay-port",
            str(pod.kv_replay_port),
            "--kv-topic",
            pod.kv_topic,
            *engine_args(pod.args),
        ]


SIM = EngineKind(
    name="sim",
    health_path="/health",
    metrics_path="/metrics",
    metric_names=VLLM_METRICS,  # the simulator speaks vLLM's metric names on purpose
    serves_concurrently=True,
    lora=LoraSupport(enable_flag="allow-runtime-lora-updating", repeat_modules=True),
    launcher=SimLauncher(),
    pod=PodHints(
        command=("python", "-m", "pilothouse", "engine", "sim"),
        args=SimPodArgs(),
        reserved_args=("model", "host", "port", "kv-events-port", "kv-replay-port", "kv-topic"),
        kv_events=True,
    ),
    resources=Resources(cpu="250m", memory="256Mi"),
    builtin_tokenizer=True,
)
