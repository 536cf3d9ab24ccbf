"""What the gateway needs to know about each engine kind: health and metrics endpoints.

The mapping from engine-specific metric names to pilothouse's endpoint snapshot lives here,
so a vLLM fleet, a simulator fleet and a llama.cpp fleet are driven by the same gateway.
llama.cpp's server exposes no metrics (see docs/engines.md): the gateway's own in-flight
accounting carries it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from pilothouse.errors import ConfigError


@dataclass(frozen=True, slots=True)
class MetricNames:
    """Prometheus series an engine publishes for the signals routing uses."""

    waiting: str
    running: str
    kv_cache_usage: str
    cache_config: str | None = None
    lora_info: str | None = None
    block_size_label: str = "block_size"
    num_blocks_label: str = "num_gpu_blocks"


@dataclass(frozen=True, slots=True)
class EngineAdapter:
    """Static facts about one engine kind."""

    kind: str
    health_path: str
    metrics_path: str | None
    metric_names: MetricNames | None
    serves_concurrently: bool


VLLM_METRICS = MetricNames(
    waiting="vllm:num_requests_waiting",
    running="vllm:num_requests_running",
    kv_cache_usage="vllm:kv_cache_usage_perc",
    cache_config="vllm:cache_config_info",
    lora_info="vllm:lora_requests_info",
)

SGLANG_METRICS = MetricNames(
    waiting="sglang:num_queue_reqs",
    running="sglang:num_running_reqs",
    kv_cache_usage="sglang:token_usage",
    cache_config="sglang:cache_config_info",
    block_size_label="page_size",
    num_blocks_label="num_pages",
)

ADAPTERS: Mapping[str, EngineAdapter] = MappingProxyType(
    {
        "vllm": EngineAdapter("vllm", "/health", "/metrics", VLLM_METRICS, True),
        # The simulator speaks vLLM's metric names on purpose.
        "sim": EngineAdapter("sim", "/health", "/metrics", VLLM_METRICS, True),
        "sglang": EngineAdapter("sglang", "/health", "/metrics", SGLANG_METRICS, True),
        # llama-cpp-python's server has neither /health nor /metrics: probe /v1/models.
        "llamacpp": EngineAdapter("llamacpp", "/v1/models", None, None, False),
        # Any other OpenAI-compatible server: probe /v1/models, track load ourselves.
        "openai": EngineAdapter("openai", "/v1/models", None, None, True),
    }
)


def adapter_for(kind: str) -> EngineAdapter:
    try:
        return ADAPTERS[kind]
    except KeyError:
        known = ", ".join(sorted(ADAPTERS))
        raise ConfigError(f"unknown engine '{kind}' (known: {known})") from None
