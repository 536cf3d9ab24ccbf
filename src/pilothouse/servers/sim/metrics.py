"""``/metrics`` in vLLM's names, labels and help texts, on a registry of its own.

Gauges and counters are read from the engine model at scrape time (a custom collector);
latency histograms are observed as steps complete. Labels are ``model_name`` and ``engine``
(``"0"``), as vLLM v1 exports them (``vllm/v1/metrics/loggers.py``); counters are exposed
with the ``_total`` suffix. Times are the model's (virtual) seconds, equal to wall seconds
at ``--time-scale 1``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pilothouse.sim.config import EngineConfig
from pilothouse.sim.engine_model import EngineModel
from pilothouse.sim.types import FinishedRequest

LABELS = ("model_name", "engine")
FINISH_REASONS = ("stop", "length", "abort")
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5,
                5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)  # fmt: skip
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0,
               7.5, 10.0, 20.0, 40.0, 80.0)  # fmt: skip
REQUEST_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0,
                   60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)  # fmt: skip


class _EngineCollector(Collector):
    """Scheduler gauges, cache info and token counters, read from the model when scraped."""

    def __init__(self, model: EngineModel, model_name: str) -> None:
        self._model = model
        self._values = [model_name, "0"]

    def collect(self) -> Iterator[Metric]:
        model, values = self._model, self._values
        yield self._gauge(
            "vllm:num_requests_running",
            "Number of requests in model execution batches.",
            model.num_running,
        )
        yield self._gauge(
            "vllm:num_requests_waiting",
            "Number of requests waiting to be processed.",
            model.num_waiting,
        )
        yield self._gauge(
            "vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", model.kv_usage
        )
        yield _cache_info(model.config)
        stats = model.stats
        for name, help_text, value in (
            ("vllm:prefix_cache_queries", "Prefix cache queries, in terms of number of queried "
             "tokens.", stats.prefix_cache_queries),
            ("vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens.",
             stats.prefix_cache_hits),
            ("vllm:num_preemptions", "Cumulative number of preemption from the engine.",
             stats.num_preemptions),
            ("vllm:prompt_tokens", "Number of prefill tokens processed.", stats.prompt_tokens),
            ("vllm:generation_tokens", "Number of generation tokens processed.",
             stats.generation_tokens),
        ):  # fmt: skip
            counter = CounterMetricFamily(name, help_text, labels=LABELS)
            counter.add_metric(values, value)
            yield counter
        success = CounterMetricFamily(
            "vllm:request_success",
            "Count of successfully processed requests.",
            labels=(*LABELS, "finished_reason"),
        )
        for reason in FINISH_REASONS:
            success.add_metric([*values, reason], stats.finished.get(reason, 0))
        yield success

    def _gauge(self, name: str, help_text: str, value: float) -> GaugeMetricFamily:
        gauge = GaugeMetricFamily(name, help_text, labels=LABELS)
        gauge.add_metric(self._values, value)
        return gauge


def _cache_info(config: EngineConfig) -> GaugeMetricFamily:
    info = {
        "block_size": str(config.block_size),
        "cache_dtype": "auto",
        "enable_prefix_caching": str(config.enable_prefix_caching),
        "gpu_memory_utilization": "0.9",
        "num_gpu_blocks": str(config.num_gpu_blocks),
        "engine": "0",
    }
    gauge = GaugeMetricFamily(
        "vllm:cache_config_info", "Information of the LLMEngine CacheConfig", labels=list(info)
    )
    gauge.add_metric(list(info.values()), 1.0)
    return gauge


class SimMetrics:
    """The simulator's Prometheus registry (one per server, never the global one)."""

    def __init__(self, model: EngineModel, model_name: str) -> None:
        self.registry = CollectorRegistry()
        self._model = model
        self.registry.register(_EngineCollector(model, model_name))
        values = (model_name, "0")

        def histogram(name: str, help_text: str, buckets: tuple[float, ...]) -> Histogram:
            metric = Histogram(name, help_text, LABELS, buckets=buckets, registry=self.registry)
            return metric.labels(*values)

        self.ttft = histogram(
            "vllm:time_to_first_token_seconds",
            "Histogram of time to first token in seconds.",
            TTFT_BUCKETS,
        )
        self.itl = histogram(
            "vllm:inter_token_latency_seconds",
            "Histogram of inter-token latency in seconds.",
            ITL_BUCKETS,
        )
        self.e2e = histogram(
            "vllm:e2e_request_latency_seconds",
            "Histogram of e2e request latency in seconds.",
            REQUEST_BUCKETS,
        )
        self.queue = histogram(
            "vllm:request_queue_time_seconds",
            "Histogram of time spent in WAITING phase for request.",
            REQUEST_BUCKETS,
        )
        self._lora: Gauge | None = None
        if model.config.max_loras > 0:
            self._lora = Gauge(
                "vllm:lora_requests_info",
                "Running stats on lora requests.",
                ("max_lora", "waiting_lora_adapters", "running_lora_adapters"),
                registry=self.registry,
            )

    def observe_finished(self, finished: FinishedRequest) -> None:
        self.e2e.observe(finished.e2e_latency)
        if finished.queue_time is not None:
            self.queue.observe(finished.queue_time)

    def update_lora_info(self) -> None:
        """Stamp the current adapter sets with the time (the newest series wins)."""
        if self._lora is None:
            return
        model = self._model
        self._lora.labels(
            str(model.config.max_loras),
            ",".join(sorted(model.waiting_loras)),
            ",".join(sorted(model.running_loras)),
        ).set(time.time())

    def render(self) -> bytes:
        self.update_lora_info()
        return generate_latest(self.registry)
