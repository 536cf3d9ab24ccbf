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
so ``kept`` compares a measurement to an estimate.

**Measured leftover** (``bench sim --scheduling-policy fcfs,priority``): the run without
priorities measures what the fleet serves at that load, as utilisation ``U = sum_c
served_c / C_c`` (past capacity: the fleet's real capacity in units of the estimate; below
it: the load itself). The leftover of the least important class in the run *with*
priorities is then ``(U - sum_{c != b} served_c / C_c) x C_b``, the others' use taken from
that run, and ``kept_measured`` is its served rate over that: how much of what the fleet can
do the priority run still gives the batch class, independent of the estimate's error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

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
    measured_leftover_qps: float | None = None  # see the module docstring

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

    @property
    def kept_measured(self) -> float | None:
        """Share of the measured leftover served (``None`` without one)."""
        leftover = self.measured_leftover_qps
        if leftover is None:
            return None
        return self.steady_qps / leftover if leftover > 0 else float("inf")

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
            out["kept"] = _finite(kept, decimals)
        if self.measured_leftover_qps is not None:
            out["measured_leftover_qps"] = round(self.measured_leftover_qps, decimals)
            out["kept_measured"] = _finite(self.kept_measured, decimals)
        return out


def _finite(value: float | None, decimals: int) -> float | None:
    return None if value is None or value == float("inf") else round(value, decimals)


def utilisation(metrics: Sequence[ClassMetrics]) -> float:
    """What a run served, in units of the fleet's capacity estimate: ``sum served / C``."""
    return sum(m.steady_qps / m.capacity_qps for m in metrics if m.capacity_qps > 0)


def measured_leftover(
    without: Sequence[ClassMetrics], with_priorities: Sequence[ClassMetrics]
) -> tuple[ClassMetrics, ...]:
    """``with_priorities`` with its least important class's measured leftover set, the
    fleet's capacity measured by the run ``without`` priorities (module docstring)."""
    served = utilisation(without)
    out = []
    for m in with_priorities:
        if m.leftover_qps is not None:  # the least important class
            others = utilisation([o for o in with_priorities if o is not m])
            m = replace(m, measured_leftover_qps=max(0.0, served - others) * m.capacity_qps)
        out.append(m)
    return tuple(out)


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
        "met | offered QPS | steady QPS | capacity alone | leftover QPS | kept | "
        "measured leftover | kept (measured) |",
        "| --- | ---: | --- |" + " ---: |" * 13,
    ]
    for policy, qps, metrics in runs:
        for m in metrics:
            target = "-" if m.ttft_slo_s is None else f"{m.ttft_slo_s:g}"
            met = "-" if m.slo_met is None else ("yes" if m.slo_met else "**no**")
            leftover = "-" if m.leftover_qps is None else f"{m.leftover_qps:.2f}"
            measured = m.measured_leftover_qps
            measured_text = "-" if measured is None else f"{measured:.2f}"
            lines.append(
                f"| {policy} | {qps:g} | {m.name} | {m.priority} | {m.completed} | "
                f"{m.ttft_p50_s:.3f} | {m.ttft_p90_s:.3f} | {target} | {met} | "
                f"{m.offered_qps:.2f} | {m.steady_qps:.2f} | {m.capacity_qps:.2f} | "
                f"{leftover} | {_share(m.kept)} | {measured_text} | {_share(m.kept_measured)} |"
            )
    return lines


def _share(value: float | None) -> str:
    if value is None:
        return "-"
    return "all" if value == float("inf") else f"{value:.0%}"
