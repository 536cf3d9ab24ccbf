"""The overhead benchmark's results: per target and level, pooled over rounds, and as JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from pilothouse.bench.loadgen import LoadResult, summarize
from pilothouse.bench.overhead.verdicts import Verdict

if TYPE_CHECKING:
    from pilothouse.bench.overhead.run import OverheadConfig

SCHEMA = "pilothouse.bench.overhead/v1"
OURS = (
    "gateway", "peer", "governed", "governed-redis", "redis", "traced", "otlp", "baseline",
    "upstream", "client"
)  # fmt: skip
"""The meters of the processes a run starts; the rest of the machine's CPU is other load."""


@dataclass(frozen=True, slots=True)
class TargetStats:
    """One target (direct or gateway) at one level, pooled over rounds."""

    requests: int
    errors: int
    window_s: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    cpu_ms_per_request: dict[str, float]
    other_load_cores: float
    first_error: str | None


@dataclass(frozen=True, slots=True)
class LevelResult:
    stream: bool
    concurrency: int
    direct: TargetStats
    gateway: TargetStats
    peer: TargetStats | None = None
    """The peer router (``--peer``) against the same mock, when one was measured."""
    governed: TargetStats | None = None
    """The gateway with governance in process (``--governance``), when measured."""
    governed_redis: TargetStats | None = None
    """The gateway with governance in Redis (``--governance --redis``), when measured."""
    traced: TargetStats | None = None
    """The gateway with OTLP tracing on (``--tracing``), when measured."""
    baseline: TargetStats | None = None
    """The gateway's code at ``--baseline-rev``, when measured."""

    @property
    def added_p50_ms(self) -> float:
        return self.gateway.p50_ms - self.direct.p50_ms

    @property
    def added_p99_ms(self) -> float:
        return self.gateway.p99_ms - self.direct.p99_ms

    @property
    def gateway_cpu_ms(self) -> float:
        """The gateway's CPU per request it served (the figure the targets are about)."""
        return self.gateway.cpu_ms_per_request["gateway"]

    @property
    def peer_added_p99_ms(self) -> float:
        return self.peer.p99_ms - self.direct.p99_ms if self.peer else float("nan")

    @property
    def peer_cpu_ms(self) -> float:
        """The peer router's CPU per request it served."""
        return self.peer.cpu_ms_per_request["peer"] if self.peer else float("nan")

    @property
    def governed_cpu_ms(self) -> float:
        """The governed gateway's CPU per request it served."""
        return self.governed.cpu_ms_per_request["governed"] if self.governed else float("nan")

    @property
    def governed_redis_cpu_ms(self) -> float:
        """The Redis-governed gateway's CPU per request (the redis-server's not included)."""
        if self.governed_redis is None:
            return float("nan")
        return self.governed_redis.cpu_ms_per_request["governed-redis"]

    @property
    def redis_cpu_ms(self) -> float:
        """The redis-server's CPU per request while the Redis-governed gateway was measured."""
        if self.governed_redis is None:
            return float("nan")
        return self.governed_redis.cpu_ms_per_request.get("redis", float("nan"))

    @property
    def governance_cpu_ms(self) -> float:
        """What governance adds per request: governed CPU minus the plain gateway's, in the
        same run (an absolute figure, beside the ratio, which moves with the gateway's cost)."""
        return self.governed_cpu_ms - self.gateway_cpu_ms

    @property
    def governed_ratio(self) -> float:
        """Governed CPU per request over the plain gateway's (the issue's ≤ 1.25)."""
        return _ratio(self.governed_cpu_ms, self.gateway_cpu_ms)

    @property
    def governed_redis_ratio(self) -> float:
        return _ratio(self.governed_redis_cpu_ms, self.gateway_cpu_ms)

    @property
    def traced_cpu_ms(self) -> float:
        """The traced gateway's CPU per request it served (its exporter thread included)."""
        return self.traced.cpu_ms_per_request["traced"] if self.traced else float("nan")

    @property
    def baseline_cpu_ms(self) -> float:
        """The ``--baseline-rev`` gateway's CPU per request it served."""
        return self.baseline.cpu_ms_per_request["baseline"] if self.baseline else float("nan")

    def to_json(self) -> dict[str, object]:
        doc: dict[str, object] = {
            "stream": self.stream,
            "concurrency": self.concurrency,
            "direct": asdict(self.direct),
            "gateway": asdict(self.gateway),
            "added_p50_ms": self.added_p50_ms,
            "added_p99_ms": self.added_p99_ms,
            "gateway_cpu_ms_per_request": self.gateway_cpu_ms,
        }
        if self.peer is not None:
            doc["peer"] = asdict(self.peer)
            doc["peer_added_p50_ms"] = self.peer.p50_ms - self.direct.p50_ms
            doc["peer_added_p99_ms"] = self.peer_added_p99_ms
            doc["peer_cpu_ms_per_request"] = self.peer_cpu_ms
        if self.governed is not None:
            doc["governed"] = asdict(self.governed)
            doc["governed_cpu_ms_per_request"] = self.governed_cpu_ms
            doc["governance_cpu_ms_per_request"] = self.governance_cpu_ms
            doc["governed_ratio"] = self.governed_ratio
        if self.governed_redis is not None:
            doc["governed_redis"] = asdict(self.governed_redis)
            doc["governed_redis_cpu_ms_per_request"] = self.governed_redis_cpu_ms
            doc["governed_redis_ratio"] = self.governed_redis_ratio
            doc["redis_server_cpu_ms_per_request"] = self.redis_cpu_ms
        if self.traced is not None:
            doc["traced"] = asdict(self.traced)
            doc["traced_cpu_ms_per_request"] = self.traced_cpu_ms
            doc["traced_added_cpu_ms_per_request"] = self.traced_cpu_ms - self.gateway_cpu_ms
        if self.baseline is not None:
            doc["baseline"] = asdict(self.baseline)
            doc["baseline_cpu_ms_per_request"] = self.baseline_cpu_ms
            doc["added_over_baseline_cpu_ms_per_request"] = (
                self.gateway_cpu_ms - self.baseline_cpu_ms
            )
        return doc

    @property
    def targets(self) -> tuple[TargetStats, ...]:
        """Every target measured at this level."""
        extra = (self.peer, self.governed, self.governed_redis, self.traced, self.baseline)
        return (self.direct, self.gateway, *(t for t in extra if t is not None))


@dataclass(frozen=True, slots=True)
class OverheadReport:
    config: OverheadConfig
    machine: dict[str, object]
    levels: list[LevelResult]
    verdicts: list[Verdict]
    repeated_pairs: int = 0
    ledger_requests: dict[str, int] = field(default_factory=dict)
    """With ``--governance``: requests each governed gateway's ledger holds at the end
    (warm-ups and startup checks included: at least every governed request counted)."""
    traced_spans: int | None = None
    """With ``--tracing``: spans the OTLP receiver got from the traced gateway."""

    @property
    def other_load_cores(self) -> float:
        """The most cores anything else kept busy during one target's windows at one level."""
        loads = [t.other_load_cores for lv in self.levels for t in lv.targets]
        return max(loads, default=0.0)

    @property
    def passed(self) -> bool:
        return all(v.passed for v in self.verdicts)

    def to_json(self) -> dict[str, object]:
        levels = [lv.to_json() for lv in self.levels]
        doc: dict[str, object] = {
            "schema": SCHEMA,
            "machine": self.machine,
            "config": asdict(self.config),
            "peer": self.config.peer,
            "levels": levels,
            "verdicts": [asdict(v) for v in self.verdicts],
            "other_load_cores_max": self.other_load_cores,
            "repeated_pairs": self.repeated_pairs,
            "passed": self.passed,
        }
        if self.ledger_requests:
            doc["ledger_requests"] = self.ledger_requests
        if self.traced_spans is not None:
            doc["traced_spans"] = self.traced_spans
        return doc


def _pool(results: list[LoadResult]) -> TargetStats:
    latencies = [x for r in results for x in r.latencies_s]
    completed = sum(r.completed for r in results)
    window = sum(r.window_s for r in results)
    cpu: dict[str, float] = {}
    for r in results:
        for name, seconds in r.cpu_s.items():
            cpu[name] = cpu.get(name, 0.0) + seconds
    per_request = {
        name: (s * 1e3 / completed if completed else float("nan")) for name, s in cpu.items()
    }
    summary = summarize(latencies)
    return TargetStats(
        requests=completed,
        errors=sum(r.errors for r in results),
        window_s=window,
        rps=completed / window if window > 0 else 0.0,
        p50_ms=summary.p50_ms,
        p90_ms=summary.p90_ms,
        p99_ms=summary.p99_ms,
        mean_ms=summary.mean_ms,
        max_ms=summary.max_ms,
        cpu_ms_per_request=per_request,
        other_load_cores=_other_load(cpu, window),
        first_error=next((r.first_error for r in results if r.first_error), None),
    )


def _ratio(value: float, base: float) -> float:
    return value / base if base > 0 else float("inf")


def _other_load(cpu: dict[str, float], window_s: float) -> float:
    """Cores busy with anything but the gateway, the mock and the load generator."""
    if window_s <= 0 or "machine" not in cpu:
        return 0.0
    ours = sum(cpu.get(name, 0.0) for name in OURS)
    return max(0.0, (cpu["machine"] - ours) / window_s)
