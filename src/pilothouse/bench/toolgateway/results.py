"""The tool gateway benchmark's configuration, samples, pooled results and verdicts.

Pure: no I/O, no clock. A run collects one :class:`Sample` per (round, target); the report
pools each target's samples over rounds and judges the added p50 (gateway minus direct)
against :data:`ADDED_P50_TARGET_MS`. With the SDK-only pass-through measured too, the added
latency splits into the SDK's share (pass-through minus direct) and pilothouse's (gateway
minus pass-through).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

from pilothouse.bench.loadgen import summarize
from pilothouse.bench.overhead.verdicts import Verdict

SCHEMA = "pilothouse.bench.toolgateway/v1"
ADDED_P50_TARGET_MS = 1.0
"""Issue #13: a governed ``tools/call`` adds at most this much p50 latency."""
DIRECT, GATEWAY, PASSTHROUGH = "direct", "gateway", "passthrough"


@dataclass(frozen=True, slots=True)
class ToolGatewayBenchConfig:
    calls: int = 500
    """Measured ``tools/call`` per worker per round and target."""
    concurrency: int = 1
    """Workers, each with its own MCP session, calling back to back."""
    rounds: int = 5
    """Rounds of every target; the targets' order flips every round."""
    warmup_calls: int = 20
    """Unmeasured calls per worker before each measured window."""
    passthrough: bool = True
    """Also measure the SDK-only pass-through proxy (:mod:`.servers`)."""
    target_ms: float = ADDED_P50_TARGET_MS
    startup_timeout_s: float = 60.0

    def __post_init__(self) -> None:
        for name in ("calls", "concurrency", "rounds"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.warmup_calls < 0:
            raise ValueError("warmup_calls must not be negative")

    @property
    def targets(self) -> tuple[str, ...]:
        return (DIRECT, GATEWAY) + ((PASSTHROUGH,) if self.passthrough else ())


def schedule(config: ToolGatewayBenchConfig) -> list[tuple[int, str]]:
    """Every (round, target) window in run order: the order is reversed every other round,
    so no target always runs first (or last) after another one warmed the machine."""
    plan: list[tuple[int, str]] = []
    for round_no in range(config.rounds):
        order = config.targets if round_no % 2 == 0 else config.targets[::-1]
        plan += [(round_no, target) for target in order]
    return plan


@dataclass(frozen=True, slots=True)
class Sample:
    """One measured window of one target: every successful call's latency, the failures,
    and CPU seconds each metered process spent in the window."""

    target: str
    round: int
    latencies_s: Sequence[float]
    errors: int
    window_s: float
    cpu_s: Mapping[str, float] = field(default_factory=dict)
    first_error: str | None = None


@dataclass(frozen=True, slots=True)
class TargetStats:
    """One target pooled over rounds."""

    calls: int
    errors: int
    calls_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    cpu_ms_per_call: dict[str, float]
    """CPU milliseconds per successful call, by metered process (``upstream``, ``proxy``)."""
    round_p50_ms: list[float]
    first_error: str | None


def pool(samples: Sequence[Sample]) -> TargetStats:
    latencies = [x for s in samples for x in s.latencies_s]
    calls = len(latencies)
    window = sum(s.window_s for s in samples)
    cpu: dict[str, float] = {}
    for s in samples:
        for name, seconds in s.cpu_s.items():
            cpu[name] = cpu.get(name, 0.0) + seconds
    summary = summarize(latencies)
    return TargetStats(
        calls=calls,
        errors=sum(s.errors for s in samples),
        calls_per_s=calls / window if window > 0 else 0.0,
        p50_ms=summary.p50_ms,
        p90_ms=summary.p90_ms,
        p99_ms=summary.p99_ms,
        mean_ms=summary.mean_ms,
        max_ms=summary.max_ms,
        cpu_ms_per_call={k: v * 1e3 / calls if calls else math.nan for k, v in cpu.items()},
        round_p50_ms=[summarize(s.latencies_s).p50_ms for s in samples],
        first_error=next((s.first_error for s in samples if s.first_error), None),
    )


@dataclass(frozen=True, slots=True)
class Added:
    """What one target adds over another, p50 and p99, in milliseconds."""

    over: str
    p50_ms: float
    p99_ms: float


def added(stats: Mapping[str, TargetStats], target: str, base: str) -> Added | None:
    if target not in stats or base not in stats:
        return None
    a, b = stats[target], stats[base]
    return Added(base, a.p50_ms - b.p50_ms, a.p99_ms - b.p99_ms)


@dataclass(frozen=True, slots=True)
class ToolGatewayReport:
    config: ToolGatewayBenchConfig
    machine: Mapping[str, object]
    targets: dict[str, TargetStats]

    @property
    def added(self) -> Added:
        """The gateway over direct calls: the judged figure."""
        found = added(self.targets, GATEWAY, DIRECT)
        assert found is not None
        return found

    @property
    def sdk(self) -> Added | None:
        """The SDK-only pass-through over direct calls (None: not measured)."""
        return added(self.targets, PASSTHROUGH, DIRECT)

    @property
    def ours(self) -> Added | None:
        """The gateway over the SDK-only pass-through: pilothouse's own share."""
        return added(self.targets, GATEWAY, PASSTHROUGH)

    @property
    def verdicts(self) -> list[Verdict]:
        p50 = self.added.p50_ms
        failed = sum(t.errors for t in self.targets.values())
        c = self.config.concurrency
        return [
            Verdict(
                "added p50 latency per tools/call",
                p50,
                self.config.target_ms,
                "ms",
                not math.isnan(p50) and p50 <= self.config.target_ms,
                f"gateway vs direct, c={c}, policy + pinning + audit on",
            ),
            Verdict(
                "failed calls",
                failed,
                0,
                "calls",
                failed == 0,
                "every call must succeed for the numbers to count",
            ),
        ]

    @property
    def passed(self) -> bool:
        return all(v.passed for v in self.verdicts)

    def to_json(self) -> dict[str, object]:
        def split(a: Added | None) -> dict[str, float] | None:
            return None if a is None else {"p50_ms": a.p50_ms, "p99_ms": a.p99_ms}

        return {
            "schema": SCHEMA,
            "machine": dict(self.machine),
            "config": asdict(self.config),
            "targets": {name: asdict(t) for name, t in self.targets.items()},
            "added": split(self.added),
            "sdk_added": split(self.sdk),
            "pilothouse_added": split(self.ours),
            "verdicts": [asdict(v) for v in self.verdicts],
            "passed": self.passed,
        }


def build_report(
    config: ToolGatewayBenchConfig, machine: Mapping[str, object], samples: Sequence[Sample]
) -> ToolGatewayReport:
    """Pool ``samples`` per target, in the config's target order."""
    targets = {
        name: pool([s for s in samples if s.target == name])
        for name in config.targets
        if any(s.target == name for s in samples)
    }
    return ToolGatewayReport(config, machine, targets)
