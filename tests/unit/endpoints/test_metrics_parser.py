"""Mapping engine metrics to endpoint snapshots, per engine kind."""

from __future__ import annotations

import pytest

from pilothouse.endpoints.metrics_parser import parse_engine_metrics
from pilothouse.engines.kinds.sglang import SGLANG_METRICS
from pilothouse.engines.kinds.vllm import VLLM_METRICS
from pilothouse.engines.registry import engine_kind as adapter_for
from pilothouse.errors import ConfigError

VLLM_TEXT = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 3.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} 5.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.42
# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig
# TYPE vllm:cache_config_info gauge
vllm:cache_config_info{block_size="16",enable_prefix_caching="True",engine="0",num_gpu_blocks="27000"} 1.0
# HELP vllm:lora_requests_info Running stats on lora requests.
# TYPE vllm:lora_requests_info gauge
vllm:lora_requests_info{max_lora="4",running_lora_adapters="",waiting_lora_adapters=""} 1.7e9
vllm:lora_requests_info{max_lora="4",running_lora_adapters="sql,chat",waiting_lora_adapters="x"} 1.8e9
# HELP vllm:prompt_tokens_total Number of prefill tokens processed.
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{engine="0",model_name="m"} 1234.0
"""


def test_vllm_exposition_maps_to_a_snapshot() -> None:
    m = parse_engine_metrics(VLLM_TEXT, VLLM_METRICS, now=12.5)
    assert (m.running, m.waiting) == (3, 5)
    assert m.kv_cache_usage == pytest.approx(0.42)
    assert (m.block_size, m.num_gpu_blocks) == (16, 27000)
    assert m.max_loras == 4
    assert m.running_loras == frozenset({"sql", "chat"})  # the newest lora series wins
    assert m.waiting_loras == frozenset({"x"})
    assert m.updated_at == 12.5


def test_data_parallel_ranks_are_summed() -> None:
    text = 'vllm:num_requests_waiting{engine="0"} 2\nvllm:num_requests_waiting{engine="1"} 3\n'
    assert parse_engine_metrics(text, VLLM_METRICS, now=0).waiting == 5


def test_sglang_names_and_labels() -> None:
    text = (
        "sglang:num_queue_reqs 7\nsglang:num_running_reqs 2\nsglang:token_usage 0.5\n"
        'sglang:cache_config_info{page_size="32",num_pages="100"} 1\n'
    )
    m = parse_engine_metrics(text, SGLANG_METRICS, now=0)
    assert (m.waiting, m.running, m.kv_cache_usage) == (7, 2, 0.5)
    assert (m.block_size, m.num_gpu_blocks) == (32, 100)


def test_missing_series_default_to_idle() -> None:
    m = parse_engine_metrics("", VLLM_METRICS, now=1)
    assert (m.waiting, m.running, m.kv_cache_usage, m.block_size) == (0, 0, 0.0, None)


@pytest.mark.parametrize(
    ("kind", "health", "scraped"),
    [
        ("vllm", "/health", True),
        ("sim", "/health", True),
        ("sglang", "/health", True),
        ("llamacpp", "/v1/models", False),
        ("openai", "/v1/models", False),
    ],
)
def test_engine_adapters(kind: str, health: str, scraped: bool) -> None:
    adapter = adapter_for(kind)
    assert adapter.health_path == health
    assert (adapter.metrics_path is not None) is scraped


def test_unknown_engine_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="known: "):
        adapter_for("tgi")
