"""``pilothouse bench sim``: routing policies on a simulated cluster, in virtual time.

Every policy is an ordinary scheduler config (a built-in name or a YAML file) run by the
real scheduler over N :class:`~pilothouse.sim.engine_model.EngineModel` replicas
(:mod:`pilothouse.sim.cluster`), at each QPS level of a sweep, on the same request stream.
Writes ``results.json``, ``report.md`` and PNG plots into ``--out``.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pilothouse.bench.report import PolicyRun, SweepReport, write_report_md, write_results_json
from pilothouse.bench.workloads import ARRIVAL_KINDS, ArrivalSpec, Workload, build_workload
from pilothouse.errors import ConfigError, PilothouseError
from pilothouse.scheduling import builtin_config_names, resolve_config
from pilothouse.sim.capacity import default_qps_sweep
from pilothouse.sim.cluster import simulate
from pilothouse.sim.cluster_types import ClusterConfig
from pilothouse.sim.presets import DEFAULT_PRESET, PRESETS, get_preset

DEFAULT_POLICIES = "round-robin,least-requests,cache-aware-sglang,prefix-load"
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

    def build_workload(self) -> Workload:
        block_size = get_preset(self.preset).block_size
        return build_workload(
            self.workload, block_size=block_size, seed=self.seed, overrides=dict(self.overrides)
        )

    def cluster(self, qps: float | None, workload: Workload) -> ClusterConfig:
        rate = qps or workload.native_qps() or 1.0
        sample = max(0.1, self.requests / rate / _QUEUE_SAMPLES)
        return ClusterConfig(
            get_preset(self.preset),
            self.replicas,
            seed=self.seed,
            scrape_interval_s=self.scrape_interval_s,
            queue_sample_s=sample,
        )


def _policy_label(policy: str) -> str:
    return policy if policy in builtin_config_names() else Path(policy).stem


def run_policy(
    plan: SimPlan,
    policy: str,
    workload: Workload | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[PolicyRun]:
    """Every QPS level of one policy (a fresh cluster and scheduler per level)."""
    workload = workload or plan.build_workload()
    scheduler = resolve_config(policy)
    runs = []
    for qps in plan.levels:
        requests = workload.requests(qps, plan.requests, plan.arrivals)
        result = simulate(plan.cluster(qps, workload), scheduler, requests, progress=progress)
        rate = qps if qps is not None else workload.native_qps() or 0.0
        runs.append(PolicyRun(_policy_label(policy), rate, result))
    return runs


def _levels(
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


def _command(plan: SimPlan, policies: Sequence[str], out: Path) -> str:
    args = ["pilothouse", "bench", "sim", "--workload", plan.workload]
    for name, value in plan.overrides:
        args += ["--set", f"{name}={value}"]
    if plan.arrivals.kind != "poisson":
        args += ["--arrival", plan.arrivals.kind, "--burstiness", f"{plan.arrivals.burstiness:g}"]
    args += ["--policies", ",".join(policies), "--replicas", str(plan.replicas)]
    args += ["--preset", plan.preset]
    if plan.levels != (None,):
        args += ["--qps", ",".join(f"{q:g}" for q in plan.levels if q is not None)]
    args += ["--requests", str(plan.requests), "--seed", str(plan.seed)]
    if plan.scrape_interval_s != 0.05:
        args += ["--scrape-interval", f"{plan.scrape_interval_s:g}"]
    return shlex.join([*args, "--out", str(out)])


def _run_all(
    plan: SimPlan, policies: Sequence[str], workload: Workload, jobs: int, console: Console
) -> list[PolicyRun]:
    total = plan.requests * len(plan.levels) * len(policies)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=console, transient=False) as bar:
        task = bar.add_task("simulating requests", total=total)
        if jobs == 1:
            runs = []
            for policy in policies:
                bar.update(task, description=f"simulating {_policy_label(policy)}")
                runs += run_policy(plan, policy, workload, lambda n: bar.advance(task, n))
            return runs
        per_policy = plan.requests * len(plan.levels)
        with ProcessPoolExecutor(max_workers=min(jobs, len(policies))) as pool:
            futures = [pool.submit(run_policy, plan, policy) for policy in policies]
            results = []
            for future in futures:
                results.append(future.result())
                bar.advance(task, per_policy)
        return [run for runs in results for run in runs]


def _policies(policies: str) -> list[str]:
    """The policy list; every config is resolved (and validated) before anything runs."""
    names = [p.strip() for p in policies.split(",") if p.strip()]
    if not names:
        raise ConfigError("--policies names no policy", "policies")
    for name in names:
        resolve_config(name)
    return names


def parse_settings(settings: Sequence[str]) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in settings:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"--set expects NAME=VALUE, got {item!r}", "set")
        pairs.append((name.strip(), value.strip()))
    return tuple(pairs)


def _write(report: SweepReport, out: Path, plots: bool) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    write_results_json(out / "results.json", report)
    names: list[str] = []
    if plots:
        from pilothouse.bench.plots import write_plots  # matplotlib is optional

        names = list(write_plots(report, out))
    write_report_md(out / "report.md", report, names)
    return names


@click.command("sim", context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--workload",
    default="b2b-saas",
    show_default=True,
    help="A built-in workload (agentic, b2b-saas, hot-spot, multi-turn-chat, no-reuse) "
    "or a JSONL trace file (docs/workloads.md).",
)
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="NAME=VALUE",
    help="Override a workload parameter, e.g. --set groups=50 (repeatable).",
)
@click.option(
    "--arrival",
    type=click.Choice(ARRIVAL_KINDS),
    default="poisson",
    show_default=True,
    help="Arrival process of requests (or sessions).",
)
@click.option(
    "--burstiness",
    type=click.FloatRange(min=0.01),
    default=0.25,
    show_default=True,
    help="Gamma shape of --arrival bursty (1 = Poisson; smaller is burstier).",
)
@click.option(
    "--policies",
    default=DEFAULT_POLICIES,
    show_default=True,
    help="Comma-separated scheduler configs: built-in names or YAML paths.",
)
@click.option("--replicas", type=click.IntRange(1, 4096), default=8, show_default=True)
@click.option(
    "--preset",
    type=click.Choice(sorted(PRESETS)),
    default=DEFAULT_PRESET,
    show_default=True,
    help="Engine model of every replica.",
)
@click.option(
    "--qps",
    default=None,
    help="Comma-separated QPS levels. Default: a sweep from a quarter of the no-cache "
    "capacity to past the perfect-cache capacity (a trace: its own rate).",
)
@click.option(
    "--requests",
    type=click.IntRange(1),
    default=3000,
    show_default=True,
    help="Requests per QPS level.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--scrape-interval",
    type=click.FloatRange(min=0.0),
    default=0.05,
    show_default=True,
    help="Seconds between engine-metric scrapes (0: always fresh).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("bench-out/sim"),
    show_default=True,
    help="Directory for results.json, report.md and the plots.",
)
@click.option(
    "--jobs",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Run policies in this many worker processes.",
)
@click.option("--no-plots", is_flag=True, help="Skip the PNG plots (no matplotlib needed).")
def sim_command(
    workload: str,
    settings: tuple[str, ...],
    arrival: str,
    burstiness: float,
    policies: str,
    replicas: int,
    preset: str,
    qps: str | None,
    requests: int,
    seed: int,
    scrape_interval: float,
    out: Path,
    jobs: int,
    no_plots: bool,
) -> None:
    """Compare routing policies on a simulated cluster in virtual time."""
    console = Console(stderr=True)
    try:
        names = _policies(policies)
        plan = SimPlan(
            workload,
            parse_settings(settings),
            ArrivalSpec(arrival, burstiness),
            preset,
            replicas,
            requests,
            seed,
            scrape_interval,
            (),
        )
        built = plan.build_workload()
        plan = replace(plan, levels=_levels(qps, built, preset, replicas))
        started = time.perf_counter()
        runs = _run_all(plan, names, built, jobs, console)
        report = SweepReport(
            workload=built.name,
            preset=preset,
            replicas=replicas,
            seed=seed,
            command=_command(plan, names, out),
            parameters=built.parameters(),
            settings={
                "requests_per_level": requests,
                "arrival": arrival,
                "scrape_interval_s": scrape_interval,
            },
            runs=runs,
        )
        plots = _write(report, out, not no_plots)
    except (PilothouseError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    console.print(
        f"{len(runs)} runs in {time.perf_counter() - started:.1f} s (wall); "
        f"wrote {out / 'results.json'}, {out / 'report.md'}"
        + (f" and {len(plots)} plots" if plots else "")
    )
