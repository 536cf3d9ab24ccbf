"""SGLang: scraped and routed like vLLM, not launched or rendered by pilothouse.

A Fleet lists SGLang servers under ``endpoints``; its own metric names carry the load.
"""

from __future__ import annotations

from pilothouse.engines.kind import EngineKind, MetricNames

SGLANG_METRICS = MetricNames(
    waiting="sglang:num_queue_reqs",
    running="sglang:num_running_reqs",
    kv_cache_usage="sglang:token_usage",
    cache_config="sglang:cache_config_info",
    block_size_label="page_size",
    num_blocks_label="num_pages",
)

SGLANG = EngineKind(
    name="sglang",
    health_path="/health",
    metrics_path="/metrics",
    metric_names=SGLANG_METRICS,
    serves_concurrently=True,
)
