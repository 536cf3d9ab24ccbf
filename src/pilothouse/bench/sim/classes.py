"""Per-priority-class metrics of a ``bench sim`` run, and the capacity they are measured against.

For a workload whose requests fall into priority classes (``mixed-priority``:
:class:`~pilothouse.bench.workloads.base.HasPriorityClasses`):

- **Capacity of a class** ``C_c``: the QPS the fleet sustains serving that class alone, from
  the capacity estimate of :mod:`pilothouse.sim.capacity` (the preset, the class's mean prompt
  and output lengths, its cacheable prompt share served from the prefix cache) x replicas.
- **Capacity of the mix** ``C``: the QPS at which the classes' utilisations ``lambda_c / C_c``
  add up to 1, i.e. ``1 / sum(share_c / C_c)``. ``--qps 1.3x`` runs at 1.3 x that.
- **Leftover for the least important class** ``b``: what the others leave of its own
  capacity, ``(1 - sum_{c != b} lambda_c / C_c) x C_b`` (0 when they take it all), and
  ``kept``: the share of what it could get that the run served, i.e. its completions per
  second over the steady window (first arrival + warm-up to last arrival, as
  ``max_queue_ratio_steady``) divided by the smaller of the leftover and its offered rate
  ``lambda_b`` (below capacity a class cannot be served faster than it arrives).

Per class the run reports TTFT percentiles, whether its TTFT target held at p90, and that
steady-state completion rate. Capacity is an estimate (no chunking, preemption or queueing),
so ``kept`` compares a measurement to an estimate: the report shows both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pilothouse.bench.workloads.base import HasPriorityClasses, PriorityClass, Workload
from pilothouse.sim.capacity import replica_capacity_qps
from pilothouse.sim.cluster_types import ClassTrace, RunResult
from pilothouse.sim.config import EngineConfig
from pilothouse.sim.recorder import percentile


@dataclass(frozen=True, slots=True)
class ClassMetrics:
    """One priority class in one run (see the module docstring)."""

    name: str
    priority: int
    completed: int
    ttft_p50_s: float
    ttft_p90_s: float
    ttft_p99_s: float
    ttft_slo_s: float | None
    steady_qps: float
    capacity_qps: float
    leftover_qps: float | None = None  # only for the least important class
    offered_qps: float = 0.0

    @property
    def slo_met(self) -> bool | None:
        """TTFT p90 within the class's target (``None``: it has none)."""
        return None if self.ttft_slo_s is None else self.ttft_p90_s <= self.ttft_slo_s

    @property
    def kept(self) -> float | None:
        """Share of the leftover capacity served (least important class only)."""
        if self.leftover_qps is None:
            return None
        could = min(self.leftover_qps, self.offered_qps)
        return self.steady_qps / could if could > 0 else float("inf")

    def record(self, decimals: int) -> dict[str, object]:
        out: dict[str, object] = {"class": self.name, "priority": self.priority}
        out["completed"] = self.completed
        names = ("ttft_p50_s", "ttft_p90_s", "ttft_p99_s", "offered_qps", "steady_qps")
        for name in (*names, "capacity_qps"):
            out[name] = round(getattr(self, name), decimals)
        out["ttft_slo_s"] = self.ttft_slo_s
        out["slo_met"] = self.slo_met
        if self.leftover_qps is not None:
            out["leftover_qps"] = round(self.leftover_qps, decimals)
            kept = self.kept
            out["kept"] = None if kept is None or kept == float("inf") else round(kept, decimals)
        return out


def workload_classes(workload: Workload) -> tuple[PriorityClass, ...]:
    """The workload's priority classes (none for a workload without)."""
    return workload.priority_classes() if isinstance(workload, HasPriorityClasses) else ()


def class_capacities(
    config: EngineConfig, replicas: int, classes: Sequence[PriorityClass]
) -> list[float]:
    """``C_c`` per class: the fleet's capacity estimate for that class alone (QPS)."""
    return [
        replicas * replica_capacity_qps(config, c.prompt_tokens, c.output_tokens, c.cached_fraction)
        for c in classes
    ]


def mix_capacity(config: EngineConfig, replicas: int, classes: Sequence[PriorityClass]) -> float:
    """``C``: the QPS at which the classes' utilisations add up to 1."""
    capacities = class_capacities(config, replicas, classes)
    return 1.0 / sum(c.share / cap for c, cap in zip(classes, capacities, strict=True))


def class_metrics(
    result: RunResult,
    classes: Sequence[PriorityClass],
    config: EngineConfig,
    replicas: int,
    qps: float,
    window: tuple[float, float],
) -> tuple[ClassMetrics, ...]:
    """Per-class metrics of one run at ``qps`` over the steady ``window`` (start, end)."""
    if not classes or not result.classes:
        return ()
    traces = {trace.priority: trace for trace in result.classes}
    capacities = class_capacities(config, replicas, classes)
    lowest = min(range(len(classes)), key=lambda i: classes[i].priority)
    others = sum(
        qps * c.share / cap
        for i, (c, cap) in enumerate(zip(classes, capacities, strict=True))
        if i != lowest
    )
    out = []
    for i, (cls, capacity) in enumerate(zip(classes, capacities, strict=True)):
        trace = traces.get(cls.priority, ClassTrace(cls.priority, (), (), ()))
        ttft = trace.ttft_s
        leftover = max(0.0, 1.0 - others) * capacity if i == lowest else None
        out.append(
            ClassMetrics(
                cls.name,
                cls.priority,
                len(ttft),
                percentile(ttft, 50),
                percentile(ttft, 90),
                percentile(ttft, 99),
                cls.ttft_slo_s,
                _steady_rate(trace, window),
                capacity,
                leftover,
                qps * cls.share,
            )
        )
    return tuple(out)


def _steady_rate(trace: ClassTrace, window: tuple[float, float]) -> float:
    start, end = window
    if end <= start:
        return 0.0
    done = sum(1 for at in trace.finish_s if start <= at <= end)
    return done / (end - start)


def classes_table(runs: Sequence[tuple[str, float, Sequence[ClassMetrics]]]) -> list[str]:
    """Markdown: one row per run and class."""
    lines = [
        "| policy | QPS | class | priority | done | TTFT p50 (s) | TTFT p90 (s) | target (s) | "
        "met | offered QPS | steady QPS | capacity alone | leftover QPS | kept |",
        "| --- | ---: | --- |" + " ---: |" * 11,
    ]
    for policy, qps, metrics in runs:
        for m in metrics:
            target = "-" if m.ttft_slo_s is None else f"{m.ttft_slo_s:g}"
            met = "-" if m.slo_met is None else ("yes" if m.slo_met else "**no**")
            leftover = "-" if m.leftover_qps is None else f"{m.leftover_qps:.2f}"
            kept = m.kept
            kept_text = "-" if kept is None else f"{kept:.0%}"
            lines.append(
                f"| {policy} | {qps:g} | {m.name} | {m.priority} | {m.completed} | "
                f"{m.ttft_p50_s:.3f} | {m.ttft_p90_s:.3f} | {target} | {met} | "
                f"{m.offered_qps:.2f} | {m.steady_qps:.2f} | {m.capacity_qps:.2f} | "
                f"{leftover} | {kept_text} |"
            )
    return lines
