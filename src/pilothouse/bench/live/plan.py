"""From ``bench live``'s options to a checked plan, and from its runs to a report.

Everything is validated before anything starts: the levels, every policy (a scheduler
config is resolved, a ``vllm-router:`` peer must be installed), the workload and its
parameters, and the choice between ``--url`` and ``--launch-sim``.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pilothouse.bench.live.fleet import SimFleetSpec
from pilothouse.bench.live.peers import check_peer, is_peer
from pilothouse.bench.live.report import LiveReport
from pilothouse.bench.live.run import Level, LiveRun, LiveSettings, LiveTarget
from pilothouse.bench.report import SweepReport
from pilothouse.bench.sim.cli import parse_settings as parse_pairs
from pilothouse.bench.workload_options import arrival_args
from pilothouse.bench.workloads import ArrivalSpec, Workload, build_workload
from pilothouse.errors import ConfigError
from pilothouse.scheduling import resolve_config
from pilothouse.sim.presets import DEFAULT_PRESET, PRESETS, get_preset

_DEFAULT_BLOCK = 16


@dataclass(frozen=True, slots=True)
class LiveOptions:
    """The command's options, as click passes them (see :mod:`.live_cli` for the help)."""

    url: str | None
    metrics_urls: tuple[str, ...]
    reset_prefix_cache: bool
    label: str
    launch_sim: int | None
    preset: str | None
    engine_args: tuple[str, ...]
    time_scale: float
    policies: str
    scrape_interval: float
    workload: str
    settings: tuple[str, ...]
    arrival: str
    burstiness: float
    period: float
    amplitude: float
    qps: str | None
    concurrency: str | None
    requests: int
    seed: int
    model: str | None
    api: str
    timeout: float
    sample_interval: float
    out: Path
    no_plots: bool


@dataclass(frozen=True, slots=True)
class LivePlan:
    """What one invocation measures; ``target`` None means a launched ``fleet``."""

    workload: Workload
    options: LiveOptions
    settings: LiveSettings
    levels: tuple[Level, ...]
    target: LiveTarget | None
    fleet: SimFleetSpec | None
    policies: tuple[str, ...]

    @property
    def preset(self) -> str:
        return self.options.preset or (DEFAULT_PRESET if self.fleet else "unknown")


def parse_levels(qps: str | None, concurrency: str | None) -> tuple[Level, ...]:
    """``--qps 3,10`` and ``--concurrency 8,32`` as levels (open loop first)."""
    levels: list[Level] = []
    for mode, raw in (("qps", qps), ("concurrency", concurrency)):
        for item in (raw or "").split(","):
            if not item.strip():
                continue
            try:
                levels.append(Level(mode, float(item) if mode == "qps" else int(item)))
            except ValueError:
                message = f"--{mode} expects positive numbers, got {item!r}"
                raise ConfigError(message, mode) from None
    if not levels:
        raise ConfigError("give --qps (open loop) and/or --concurrency (closed loop)", "qps")
    return tuple(levels)


def parse_policies(policies: str) -> tuple[str, ...]:
    """The policy list, every entry checked (config resolved, peer installed) up front."""
    names = tuple(p.strip() for p in policies.split(",") if p.strip())
    if not names:
        raise ConfigError("--policies names no policy", "policies")
    for name in names:
        if is_peer(name):
            check_peer(name)
        else:
            resolve_config(name)
    return names


def _fleet(o: LiveOptions) -> SimFleetSpec | None:
    if (o.launch_sim is None) == (o.url is None):
        raise ConfigError("give exactly one of --url and --launch-sim", "url")
    if o.launch_sim is None:
        if o.engine_args:
            raise ConfigError("--engine-arg needs --launch-sim", "engine_arg")
        return None
    pairs = tuple((name.removeprefix("--"), value) for name, value in parse_pairs(o.engine_args))
    return SimFleetSpec(o.launch_sim, o.preset or DEFAULT_PRESET, o.time_scale, engine_args=pairs)


def _target(o: LiveOptions) -> LiveTarget | None:
    if o.url is None:
        return None
    resets = tuple(u.rsplit("/metrics", 1)[0] + "/reset_prefix_cache" for u in o.metrics_urls)
    return LiveTarget(o.label, o.url, o.metrics_urls, resets if o.reset_prefix_cache else ())


def build_plan(o: LiveOptions) -> LivePlan:
    """Check every option; raises ConfigError (or ValueError) naming the bad one."""
    fleet = _fleet(o)
    preset = o.preset or (DEFAULT_PRESET if fleet else "")
    block = get_preset(preset).block_size if preset in PRESETS else _DEFAULT_BLOCK
    overrides = dict(parse_pairs(o.settings))
    workload = build_workload(o.workload, block_size=block, seed=o.seed, overrides=overrides)
    settings = LiveSettings(
        requests=o.requests,
        model=o.model,
        api=o.api,
        time_scale=o.time_scale,
        arrivals=ArrivalSpec(o.arrival, o.burstiness, o.period, o.amplitude),
        timeout_s=o.timeout,
        sample_interval_s=o.sample_interval,
    )
    policies = parse_policies(o.policies) if fleet else ()
    levels = parse_levels(o.qps, o.concurrency)
    return LivePlan(workload, o, settings, levels, _target(o), fleet, policies)


def command_line(plan: LivePlan) -> str:
    """The command that reruns ``plan`` (for the report)."""
    o = plan.options
    args = ["pilothouse", "bench", "live", "--workload", o.workload]
    args += [arg for pair in o.settings for arg in ("--set", pair)]
    args += arrival_args(plan.settings.arrivals)
    if plan.fleet is not None:
        args += ["--launch-sim", str(plan.fleet.replicas), "--preset", plan.fleet.preset]
        args += [arg for pair in o.engine_args for arg in ("--engine-arg", pair)]
        args += ["--policies", ",".join(plan.policies)]
    else:
        args += ["--url", str(o.url), *(a for u in o.metrics_urls for a in ("--metrics-url", u))]
        args += ["--reset-prefix-cache"] if o.reset_prefix_cache else []
    if o.time_scale != 1:
        args += ["--time-scale", f"{o.time_scale:g}"]
    for mode in ("qps", "concurrency"):
        values = [f"{lv.value:g}" for lv in plan.levels if lv.mode == mode]
        args += [f"--{mode}", ",".join(values)] if values else []
    args += ["--requests", str(o.requests), "--seed", str(o.seed), "--out", str(o.out)]
    return shlex.join(args)


def live_report(plan: LivePlan, runs: Sequence[LiveRun]) -> LiveReport:
    fleet, target = plan.fleet, plan.target
    replicas = fleet.replicas if fleet else len(target.metrics_urls if target else ())
    sweep = SweepReport(
        workload=plan.workload.name,
        preset=plan.preset,
        replicas=replicas,
        seed=plan.options.seed,
        command=command_line(plan),
        parameters=plan.workload.parameters(),
        settings={
            "requests_per_level": plan.settings.requests,
            "arrival": plan.settings.arrivals.kind,
            "api": plan.settings.api,
            "time_scale": plan.settings.time_scale,
        },
        runs=[live.run for live in runs],
    )
    where = target.url if target else f"{replicas} x engine sim (launched)"
    return LiveReport(sweep, where, plan.settings.time_scale, runs)
