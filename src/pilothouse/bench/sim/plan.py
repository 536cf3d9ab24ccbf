"""A ``bench sim`` run set as data: what to simulate (:class:`SimPlan`), how to run one
scheduler policy over it (:func:`run_policy`; with SLOs, :func:`run_policy_search` also
bisects for its goodput), and how to write it back as a command line.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

from pilothouse.bench.report import PolicyRun
from pilothouse.bench.sim.autoscale_policies import autoscale_label, resolve_autoscale
from pilothouse.bench.sim.classes import class_metrics, mix_capacity, workload_classes
from pilothouse.bench.sim.goodput import GoodputEntry, search_goodput
from pilothouse.bench.sim.slo import Slo
from pilothouse.bench.sim.steady import (
    DEFAULT_WARMUP_FRACTION,
    ArrivalWindow,
    steady_queue_ratio,
)
from pilothouse.bench.sim.tier_aware import scheduler_for
from pilothouse.bench.workload_options import arrival_args
from pilothouse.bench.workloads import ArrivalSpec, Workload, build_workload
from pilothouse.errors import ConfigError
from pilothouse.scheduling import SchedulerConfig, builtin_config_names
from pilothouse.sim.autoscaling import ScalingConfig
from pilothouse.sim.capacity import default_qps_sweep, replica_capacity_qps
from pilothouse.sim.cluster import simulate
from pilothouse.sim.cluster_types import ClusterConfig, RunMetrics
from pilothouse.sim.config import FCFS, EngineConfig, EngineOverrides, apply_overrides
from pilothouse.sim.presets import get_preset

_QUEUE_SAMPLES = 1500  # queue samples per run (bounds memory and plot size)
DEFAULT_GOODPUT_STEPS = 4

Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class SimPlan:
    """Everything a run set needs; picklable, so policies can run in worker processes."""

    workload: str
    overrides: tuple[tuple[str, str], ...]
    arrivals: ArrivalSpec
    preset: str
    replicas: int
    requests: int
    seed: int
    scrape_interval_s: float
    levels: tuple[float | None, ...]
    autoscale: tuple[str, ...] = ()
    startup_delay_s: float = 30.0
    ttft_slo_s: float | None = None
    slos: tuple[Slo, ...] = ()
    goodput_steps: int = DEFAULT_GOODPUT_STEPS
    warmup_s: float | None = None
    scheduling_policies: tuple[str, ...] = (FCFS,)
    """The engines' ``--scheduling-policy`` values compared (each policy runs under each)."""
    cpu_kv_gib: float | None = None
    """``--cpu-kv-gib``: the CPU tier's size per replica (``None``: the preset's)."""

    def engine(self, scheduling_policy: str = FCFS) -> EngineConfig:
        """The preset (with ``--cpu-kv-gib`` applied), under vLLM's ``scheduling_policy``."""
        preset = get_preset(self.preset)
        if self.cpu_kv_gib is not None:
            preset = apply_overrides(preset, EngineOverrides(cpu_kv_gib=self.cpu_kv_gib))
        if scheduling_policy == preset.scheduling_policy:
            return preset
        return replace(preset, scheduling_policy=scheduling_policy)

    def build_workload(self) -> Workload:
        block_size = get_preset(self.preset).block_size
        return build_workload(
            self.workload, block_size=block_size, seed=self.seed, overrides=dict(self.overrides)
        )

    def cluster(
        self,
        qps: float | None,
        workload: Workload,
        replicas: int | None = None,
        scheduling_policy: str = FCFS,
    ) -> ClusterConfig:
        rate = qps or workload.native_qps() or 1.0
        sample = max(0.1, self.requests / rate / _QUEUE_SAMPLES)
        return ClusterConfig(
            self.engine(scheduling_policy),
            replicas or self.replicas,
            seed=self.seed,
            scrape_interval_s=self.scrape_interval_s,
            queue_sample_s=sample,
        )

    def scalings(self) -> list[tuple[str, ScalingConfig | None]]:
        """(label, hook config) per autoscaling policy; one unscaled run without any."""
        if not self.autoscale:
            return [("", None)]
        return [
            (
                autoscale_label(name),
                ScalingConfig(
                    resolve_autoscale(name, self.replicas, self.ttft_slo_s),
                    self.startup_delay_s,
                    self.ttft_slo_s,
                ),
            )
            for name in self.autoscale
        ]


def policy_label(policy: str) -> str:
    return policy if policy in builtin_config_names() else Path(policy).stem


def run_policy(
    plan: SimPlan,
    policy: str,
    workload: Workload | None = None,
    progress: Progress | None = None,
) -> list[PolicyRun]:
    """Every QPS level of one policy (a fresh cluster and scheduler per level), once per
    autoscaling policy of the plan."""
    return run_policy_search(plan, policy, workload, progress)[0]


def run_policy_search(
    plan: SimPlan,
    policy: str,
    workload: Workload | None = None,
    progress: Progress | None = None,
    search_progress: Progress | None = None,
) -> tuple[list[PolicyRun], list[GoodputEntry]]:
    """:func:`run_policy`, then for each SLO of the plan the policy's goodput: the levels'
    runs first, then up to ``plan.goodput_steps`` more runs per SLO between them (shared
    between SLOs that probe the same QPS). ``search_progress`` counts the search's requests
    and is advanced by the runs a search did not need, so a bar sized for the most ends full.
    """
    workload = workload or plan.build_workload()
    scheduler = scheduler_for(policy, plan.engine())
    runs: list[PolicyRun] = []
    entries: list[GoodputEntry] = []
    for label, scaling in plan.scalings():
        size = scaling.policy.max_replicas if scaling and scaling.policy else None
        for engine_policy in plan.scheduling_policies:
            name = engine_label(plan, label or policy_label(policy), engine_policy)
            run_at = partial(
                _simulate, plan, scheduler, workload, scaling, size, name, engine_policy
            )
            level_runs = [run_at(qps, progress) for qps in plan.levels]
            runs += level_runs
            if plan.slos:
                measured = {run.qps: run.result.metrics for run in level_runs}
                fresh = partial(_metrics_at, run_at, search_progress)
                entries += _search(plan, name, measured, fresh, search_progress)
    return runs, entries


def engine_label(plan: SimPlan, label: str, scheduling_policy: str) -> str:
    """A run's policy label: with several engine scheduling policies compared, the engine's
    is appended (``default+priority``); with one, the label is unchanged."""
    if len(plan.scheduling_policies) < 2:
        return label
    return f"{label}+{scheduling_policy}"


def _metrics_at(
    run_at: Callable[[float | None, Progress | None], PolicyRun],
    progress: Progress | None,
    qps: float,
) -> RunMetrics:
    return run_at(qps, progress).result.metrics


def _simulate(
    plan: SimPlan,
    scheduler: SchedulerConfig,
    workload: Workload,
    scaling: ScalingConfig | None,
    size: int | None,
    label: str,
    scheduling_policy: str,
    qps: float | None,
    progress: Progress | None,
) -> PolicyRun:
    """One run at one level, with its steady-state queue ratio and per-class metrics."""
    window = ArrivalWindow()
    requests = window.watch(workload.requests(qps, plan.requests, plan.arrivals))
    config = plan.cluster(qps, workload, size, scheduling_policy)
    result = simulate(config, scheduler, requests, progress=progress, scaling=scaling)
    rate = qps if qps is not None else workload.native_qps() or 0.0
    start, end = window.steady(plan.warmup_s)
    classes = class_metrics(
        result, workload_classes(workload), config.engine, config.replicas, rate, (start, end)
    )
    steady = steady_queue_ratio(result.queue_trace, start, end)
    return PolicyRun(label, rate, result, steady, classes)


def _search(
    plan: SimPlan,
    label: str,
    measured: dict[float, RunMetrics],
    fresh: Callable[[float], RunMetrics],
    progress: Progress | None,
) -> list[GoodputEntry]:
    """Each SLO's goodput search over ``measured`` levels, simulating the probes between."""
    levels = sorted(measured)
    entries = []
    for slo in plan.slos:
        before = len(measured)

        def holds(qps: float, slo: Slo = slo) -> bool:
            if qps not in measured:
                measured[qps] = fresh(qps)
            return slo.holds(measured[qps])

        search = search_goodput(levels, holds, plan.goodput_steps)
        entries.append(GoodputEntry(label, slo.text, search))
        skipped = plan.goodput_steps - (len(measured) - before)
        if progress is not None and skipped > 0:
            progress(skipped * plan.requests)
    return entries


def capacity_qps(workload: Workload, preset: str, replicas: int) -> float:
    """The fleet's capacity estimate for the workload (what ``--qps 1.3x`` multiplies): the
    mix capacity of its priority classes (:mod:`pilothouse.bench.sim.classes`), or else the
    capacity at its mean lengths with every reusable prompt token cached."""
    config = get_preset(preset)
    classes = workload_classes(workload)
    if classes:
        return mix_capacity(config, replicas, classes)
    shape = workload.shape()
    return replicas * replica_capacity_qps(
        config, shape.mean_prompt_tokens, shape.mean_output_tokens, shape.reusable_fraction
    )


def _level(text: str, capacity: Callable[[], float]) -> float:
    """``12.5`` (QPS) or ``1.3x`` (times the capacity estimate, two significant digits)."""
    if text.endswith("x"):
        return float(f"{float(text[:-1]) * capacity():.2g}")
    return float(text)


def levels_for(
    qps: str | None, workload: Workload, preset: str, replicas: int
) -> tuple[float | None, ...]:
    if qps:
        capacity = partial(capacity_qps, workload, preset, replicas)
        try:
            levels = tuple(_level(x.strip(), capacity) for x in qps.split(",") if x.strip())
        except ValueError:
            raise ConfigError(
                f"--qps must be comma-separated numbers (QPS) or multiples of the capacity "
                f"estimate (1.3x), got {qps!r}",
                "qps",
            ) from None
        if not levels or min(levels) <= 0:
            raise ConfigError("--qps levels must be > 0", "qps")
        return levels
    if workload.native_qps() is not None:
        return (None,)  # a trace replays at its own rate
    shape = workload.shape()
    return default_qps_sweep(
        get_preset(preset),
        replicas,
        shape.mean_prompt_tokens,
        shape.mean_output_tokens,
        shape.reusable_fraction,
    )


def command_line(plan: SimPlan, policies: Sequence[str], out: Path) -> str:
    args = ["pilothouse", "bench", "sim", "--workload", plan.workload]
    for name, value in plan.overrides:
        args += ["--set", f"{name}={value}"]
    args += arrival_args(plan.arrivals)
    args += ["--policies", ",".join(policies), "--replicas", str(plan.replicas)]
    if plan.autoscale:
        args += ["--autoscale", ",".join(plan.autoscale)]
        args += ["--startup-delay", f"{plan.startup_delay_s:g}"]
    if plan.ttft_slo_s is not None:
        args += ["--ttft-slo", f"{plan.ttft_slo_s:g}"]
    for slo in plan.slos:
        args += ["--slo", slo.text]
    if plan.slos and plan.goodput_steps != DEFAULT_GOODPUT_STEPS:
        args += ["--goodput-steps", str(plan.goodput_steps)]
    if plan.warmup_s is not None:
        args += ["--warmup-s", f"{plan.warmup_s:g}"]
    if plan.scheduling_policies != (FCFS,):
        args += ["--scheduling-policy", ",".join(plan.scheduling_policies)]
    args += ["--preset", plan.preset]
    if plan.cpu_kv_gib is not None:
        args += ["--cpu-kv-gib", f"{plan.cpu_kv_gib:g}"]
    if plan.levels != (None,):
        args += ["--qps", ",".join(f"{q:g}" for q in plan.levels if q is not None)]
    args += ["--requests", str(plan.requests), "--seed", str(plan.seed)]
    if plan.scrape_interval_s != 0.05:
        args += ["--scrape-interval", f"{plan.scrape_interval_s:g}"]
    return shlex.join([*args, "--out", str(out)])


def report_settings(plan: SimPlan, schedulers: Sequence[str]) -> dict[str, object]:
    settings: dict[str, object] = {
        "requests_per_level": plan.requests,
        "arrival": plan.arrivals.kind,
        "scrape_interval_s": plan.scrape_interval_s,
    }
    if plan.arrivals.kind == "diurnal":
        settings["period_s"] = plan.arrivals.period_s
        settings["amplitude"] = plan.arrivals.amplitude
    if plan.autoscale:
        settings["scheduler"] = schedulers[0]
        settings["startup_delay_s"] = plan.startup_delay_s
    if plan.ttft_slo_s is not None:
        settings["ttft_slo_s"] = plan.ttft_slo_s
    default_warmup = f"{DEFAULT_WARMUP_FRACTION:.0%} of the arrival window"
    settings["warmup_s"] = default_warmup if plan.warmup_s is None else plan.warmup_s
    if plan.slos:
        settings["goodput_steps"] = plan.goodput_steps
    if plan.cpu_kv_gib is not None:
        settings["cpu_kv_gib"] = plan.cpu_kv_gib
    if plan.scheduling_policies != (FCFS,):
        settings["scheduling_policies"] = ",".join(plan.scheduling_policies)
    return settings
