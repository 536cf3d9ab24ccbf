"""A ``bench sim`` run set as data: what to simulate (:class:`SimPlan`), how to run one
scheduler policy over it (:func:`run_policy`), and how to write it back as a command line.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pilothouse.bench.report import PolicyRun
from pilothouse.bench.sim.autoscale_policies import autoscale_label, resolve_autoscale
from pilothouse.bench.workload_options import arrival_args
from pilothouse.bench.workloads import ArrivalSpec, Workload, build_workload
from pilothouse.errors import ConfigError
from pilothouse.scheduling import builtin_config_names, resolve_config
from pilothouse.sim.autoscaling import ScalingConfig
from pilothouse.sim.capacity import default_qps_sweep
from pilothouse.sim.cluster import simulate
from pilothouse.sim.cluster_types import ClusterConfig
from pilothouse.sim.presets import get_preset

_QUEUE_SAMPLES = 1500  # queue samples per run (bounds memory and plot size)


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

    def build_workload(self) -> Workload:
        block_size = get_preset(self.preset).block_size
        return build_workload(
            self.workload, block_size=block_size, seed=self.seed, overrides=dict(self.overrides)
        )

    def cluster(
        self, qps: float | None, workload: Workload, replicas: int | None = None
    ) -> ClusterConfig:
        rate = qps or workload.native_qps() or 1.0
        sample = max(0.1, self.requests / rate / _QUEUE_SAMPLES)
        return ClusterConfig(
            get_preset(self.preset),
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
    progress: Callable[[int], None] | None = None,
) -> list[PolicyRun]:
    """Every QPS level of one policy (a fresh cluster and scheduler per level), once per
    autoscaling policy of the plan."""
    workload = workload or plan.build_workload()
    scheduler = resolve_config(policy)
    runs = []
    for label, scaling in plan.scalings():
        size = scaling.policy.max_replicas if scaling and scaling.policy else None
        for qps in plan.levels:
            requests = workload.requests(qps, plan.requests, plan.arrivals)
            config = plan.cluster(qps, workload, size)
            result = simulate(config, scheduler, requests, progress=progress, scaling=scaling)
            rate = qps if qps is not None else workload.native_qps() or 0.0
            runs.append(PolicyRun(label or policy_label(policy), rate, result))
    return runs


def levels_for(
    qps: str | None, workload: Workload, preset: str, replicas: int
) -> tuple[float | None, ...]:
    if qps:
        try:
            levels = tuple(float(x) for x in qps.split(",") if x.strip())
        except ValueError:
            raise ConfigError(
                f"--qps must be comma-separated numbers, got {qps!r}", "qps"
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
    args += ["--preset", plan.preset]
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
    return settings
