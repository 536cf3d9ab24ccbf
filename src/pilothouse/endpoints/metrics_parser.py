"""Turn an engine's Prometheus text into an :class:`EndpointMetrics` snapshot.

Only the few series routing needs are kept: lines are pre-filtered by name before the
official ``prometheus_client`` parser sees them, so scraping a large vLLM exposition stays
cheap.
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from pilothouse.engines.kind import MetricNames
from pilothouse.scheduling.types import EndpointMetrics


def parse_engine_metrics(text: str, names: MetricNames, now: float) -> EndpointMetrics:
    wanted = tuple(n for n in _names(names) if n)
    kept = "\n".join(line for line in text.splitlines() if line.startswith(wanted))
    values: dict[str, float] = {}
    cache_labels: dict[str, str] = {}
    lora_labels: dict[str, str] = {}
    lora_stamp = float("-inf")
    for family in text_string_to_metric_families(kept + "\n"):
        for sample in family.samples:
            if sample.name == names.cache_config:
                cache_labels = dict(sample.labels)
            elif sample.name == names.lora_info:
                # vLLM emits one series per adapter state; the newest timestamp wins.
                if sample.value >= lora_stamp:
                    lora_stamp, lora_labels = sample.value, dict(sample.labels)
            else:
                # Several engines (data-parallel ranks) may report; sum them.
                values[sample.name] = values.get(sample.name, 0.0) + sample.value
    return EndpointMetrics(
        waiting=int(values.get(names.waiting, 0.0)),
        running=int(values.get(names.running, 0.0)),
        kv_cache_usage=min(1.0, max(0.0, values.get(names.kv_cache_usage, 0.0))),
        block_size=_int_label(cache_labels, names.block_size_label),
        num_gpu_blocks=_int_label(cache_labels, names.num_blocks_label),
        max_loras=_int_label(lora_labels, "max_lora"),
        running_loras=_csv_label(lora_labels, "running_lora_adapters"),
        waiting_loras=_csv_label(lora_labels, "waiting_lora_adapters"),
        updated_at=now,
    )


def _names(names: MetricNames) -> tuple[str | None, ...]:
    return (names.waiting, names.running, names.kv_cache_usage, names.cache_config, names.lora_info)


def _int_label(labels: dict[str, str], key: str) -> int | None:
    raw = labels.get(key)
    if raw is None or raw in ("", "None"):
        return None
    try:
        return int(float(raw))
    except ValueError:
        return None


def _csv_label(labels: dict[str, str], key: str) -> frozenset[str]:
    raw = labels.get(key, "")
    return frozenset(part for part in raw.split(",") if part)
