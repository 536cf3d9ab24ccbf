"""Value types at the cluster simulator's boundary: requests in, run results out."""

from __future__ import annotations

from dataclasses import dataclass, field

from pilothouse.scheduling.latency import PredictionError
from pilothouse.sim.config import EngineConfig


@dataclass(frozen=True, slots=True)
class SimRequest:
    """One client request of a simulated workload.

    ``prompt`` is the text the gateway's scheduler sees; ``block_hashes`` are the chained
    hashes of the same prompt's full token blocks (what the engine's prefix cache keys on):
    a workload keeps the two consistent. The model generates ``output_tokens`` (at most
    ``max_tokens``, which the client asked for).

    A request with ``after`` set is a follow-up (the next turn of a chat, the next step of an
    agent): it is sent ``arrival_s`` seconds after the request ``after`` completes, so its
    arrival depends on the simulated latency. Otherwise ``arrival_s`` is absolute.

    ``output_block_hashes`` (optional) continue ``block_hashes`` over the answer's tokens
    (:attr:`~pilothouse.sim.types.EngineRequest.output_block_hashes`): with the engine's
    ``cache_generated_blocks``, the next turn that repeats the answer hits those blocks.

    ``priority`` is the gateway's (higher is more important, as in flow control and
    ``InferenceObjective``): the scheduler sees it as ``SchedulingRequest.priority``, and the
    engine gets it as vLLM's ``priority`` field (mapped by
    :func:`~pilothouse.engines.kinds.vllm.vllm_priority`), which only an engine with
    ``scheduling_policy="priority"`` acts on.
    """

    request_id: str
    arrival_s: float
    prompt: str
    prompt_tokens: int
    block_hashes: tuple[int, ...]
    output_tokens: int
    max_tokens: int
    session_id: str | None = None
    tenant: str | None = None
    after: str | None = None
    output_block_hashes: tuple[int, ...] = ()
    priority: int = 0

    def __post_init__(self) -> None:
        if self.prompt_tokens < 1 or self.output_tokens < 1:
            raise ValueError("SimRequest needs prompt_tokens >= 1 and output_tokens >= 1")
        if self.max_tokens < self.output_tokens:
            raise ValueError("SimRequest.max_tokens must be >= output_tokens")
        if self.arrival_s < 0:
            raise ValueError("SimRequest.arrival_s must be >= 0")


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """N identical replicas behind one scheduler.

    ``scrape_interval_s`` is how stale the engine-reported metrics (waiting, running, KV
    usage) are: they are refreshed every that many seconds of virtual time, as a metrics
    scraper would (0 = always current). The gateway's own in-flight counts never lag.
    ``queue_sample_s`` is the period at which per-replica queues are sampled for
    ``max_queue_ratio`` and the queue plots.

    Prefill/decode disaggregation (:mod:`pilothouse.sim.pd`): the first
    ``prefill_replicas`` replicas are labelled ``llm-d.ai/role: prefill`` and the others
    ``decode`` (0: no role labels); a request prefilled on another replica reaches its
    decode replica ``kv_transfer_overhead_s + kv_transfer_s_per_token x prompt tokens``
    after its prefill ends.
    """

    engine: EngineConfig
    replicas: int
    seed: int = 0
    scrape_interval_s: float = 0.05
    queue_sample_s: float = 0.5
    max_fused_iterations: int = 1024
    model: str = "sim-model"
    prefill_replicas: int = 0
    kv_transfer_s_per_token: float = 0.0
    kv_transfer_overhead_s: float = 0.0

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise ValueError("ClusterConfig.replicas must be >= 1")
        if not 0 <= self.prefill_replicas < self.replicas:
            raise ValueError("ClusterConfig.prefill_replicas must be >= 0 and < replicas")
        if self.kv_transfer_s_per_token < 0 or self.kv_transfer_overhead_s < 0:
            raise ValueError("ClusterConfig KV transfer latencies must be >= 0")
        if self.scrape_interval_s < 0:
            raise ValueError("ClusterConfig.scrape_interval_s must be >= 0")
        if self.queue_sample_s <= 0:
            raise ValueError("ClusterConfig.queue_sample_s must be > 0")


@dataclass(frozen=True, slots=True)
class RunMetrics:
    """The headline numbers of one run (the ``runs`` entries of results.json)."""

    completed: int
    failed: int
    ttft_p50_s: float
    ttft_p90_s: float
    ttft_p99_s: float
    itl_p50_s: float
    e2e_p90_s: float
    output_tok_s: float
    cache_hit_rate: float
    max_queue_ratio: float
    itl_p90_s: float  # added after the first fields, so results.json keeps their order
    itl_p99_s: float
    e2e_p50_s: float
    e2e_p99_s: float


@dataclass(frozen=True, slots=True)
class ClassTrace:
    """The completed requests of one priority (``SimRequest.priority``), for per-class
    metrics: TTFTs ascending; finish times and output tokens in completion order."""

    priority: int
    ttft_s: tuple[float, ...]
    finish_s: tuple[float, ...]
    output_tokens: tuple[int, ...]
    failed: int = 0


@dataclass(frozen=True, slots=True)
class QueueTrace:
    """Engine wait-queue length of every replica, sampled over virtual time."""

    times: tuple[float, ...] = ()
    queues: tuple[tuple[int, ...], ...] = ()  # one tuple per replica, aligned with times


@dataclass(frozen=True, slots=True)
class ScalingRun:
    """What an autoscaled run cost and delivered (:mod:`pilothouse.sim.autoscaling`)."""

    replica_seconds: float
    mean_replicas: float
    peak_replicas: int
    ttft_slo_s: float | None
    slo_attainment: float | None
    timeline: tuple[tuple[float, int, int], ...] = ()
    """(time, replicas existing, replicas ready) at every change."""


@dataclass(frozen=True, slots=True)
class RunResult:
    """One simulated run: headline metrics plus what the plots need."""

    metrics: RunMetrics
    queue_trace: QueueTrace = field(default_factory=QueueTrace)
    duration_s: float = 0.0
    events: int = 0
    scaling: ScalingRun | None = None
    classes: tuple[ClassTrace, ...] = ()
    """Per priority, highest first; empty unless the run mixed priorities."""
    ttft_prediction: PredictionError | None = None
    """The error of a shadow TTFT predictor that observed every request
    (:class:`~pilothouse.scheduling.latency.LatencyPredictor`; placements are unaffected)."""
    itl_prediction: PredictionError | None = None
    """The same for a shadow predictor of each request's mean inter-token latency."""
