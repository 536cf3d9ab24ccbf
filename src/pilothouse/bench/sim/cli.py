"""``pilothouse bench sim``: routing policies on a simulated cluster, in virtual time.

Every policy is an ordinary scheduler config (a built-in name or a YAML file) run by the
real scheduler over N :class:`~pilothouse.sim.engine_model.EngineModel` replicas
(:mod:`pilothouse.sim.cluster`), at each QPS level of a sweep, on the same request stream.
Writes ``results.json``, ``report.md`` and PNG plots into ``--out``.

With ``--autoscale``, the policies compared are autoscaling policies instead
(:mod:`pilothouse.bench.sim.autoscale_policies`), under one scheduler: each run's replica count
follows the autoscaler (:mod:`pilothouse.sim.autoscaling`), and the report adds the
replica-seconds spent and the TTFT SLO attainment (``--ttft-slo``). Pair it with a load
that changes over time, ``--arrival diurnal``.

With ``--slo`` (repeatable), each policy's goodput under each SLO is searched between the
levels (:mod:`pilothouse.bench.sim.goodput`) and reported first.

With ``--scheduling-policy fcfs,priority``, every policy also runs under each of the engines'
vLLM scheduling policies (labelled ``default+fcfs``, ``default+priority``): priorities the
engine ignores against priorities it honours, in one run. A workload with priority classes
(``mixed-priority``) gets per-class metrics (:mod:`pilothouse.bench.sim.classes`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pilothouse.bench.report import PolicyRun, SweepReport, write_report_md, write_results_json
from pilothouse.bench.sim.autoscale_policies import resolve_autoscale
from pilothouse.bench.sim.classes import measured_leftover
from pilothouse.bench.sim.goodput import GoodputEntry
from pilothouse.bench.sim.plan import (
    DEFAULT_GOODPUT_STEPS,
    SimPlan,
    command_line,
    levels_for,
    policy_label,
    report_settings,
    run_policy,
    run_policy_search,
)
from pilothouse.bench.sim.slo import Slo, parse_slo
from pilothouse.bench.workload_options import workload_options
from pilothouse.bench.workloads import ArrivalSpec, Workload
from pilothouse.errors import ConfigError, PilothouseError
from pilothouse.scheduling import resolve_config
from pilothouse.sim.config import FCFS, PRIORITY, SCHEDULING_POLICIES
from pilothouse.sim.presets import DEFAULT_PRESET, PRESETS

__all__ = [
    "DEFAULT_POLICIES",
    "SimPlan",
    "parse_settings",
    "run_policy",
    "run_policy_search",
    "sim_command",
]

DEFAULT_POLICIES = "round-robin,least-requests,cache-aware-sglang,prefix-load"


def _run_all(
    plan: SimPlan, policies: Sequence[str], workload: Workload, jobs: int, console: Console
) -> tuple[list[PolicyRun], list[GoodputEntry]]:
    """Every policy's levels, and with SLOs its goodput searches: one bar for the levels,
    one for the searches (sized for every probe; a search that ends early fills its share)."""
    variants = len(plan.scalings()) * len(plan.scheduling_policies)
    per_policy = plan.requests * len(plan.levels) * variants
    per_search = plan.requests * plan.goodput_steps * len(plan.slos) * variants
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=console, transient=False) as bar:
        task = bar.add_task("simulating requests", total=per_policy * len(policies))
        search = None
        if per_search:
            search = bar.add_task("searching goodput", total=per_search * len(policies))
        results: list[tuple[list[PolicyRun], list[GoodputEntry]]] = []
        if jobs == 1:
            for policy in policies:
                bar.update(task, description=f"simulating {policy_label(policy)}")
                results.append(
                    run_policy_search(
                        plan,
                        policy,
                        workload,
                        lambda n: bar.advance(task, n),
                        None if search is None else lambda n: bar.advance(search, n),
                    )
                )
        else:
            with ProcessPoolExecutor(max_workers=min(jobs, len(policies))) as pool:
                futures = [pool.submit(run_policy_search, plan, policy) for policy in policies]
                for future in futures:
                    results.append(future.result())
                    bar.advance(task, per_policy)
                    if search is not None:
                        bar.advance(search, per_search)
    runs = [run for policy_runs, _ in results for run in policy_runs]
    if len(plan.scheduling_policies) > 1:
        runs = measured_leftovers(runs)
    return runs, [entry for _, entries in results for entry in entries]


def measured_leftovers(runs: Sequence[PolicyRun]) -> list[PolicyRun]:
    """Each ``POLICY+priority`` run with classes, its least important class's leftover
    measured against the ``POLICY+fcfs`` run at the same QPS (:func:`measured_leftover`)."""
    by_key = {(run.policy, run.qps): run for run in runs}
    out = []
    for run in runs:
        base, _, engine = run.policy.rpartition("+")
        fcfs = by_key.get((f"{base}+{FCFS}", run.qps))
        if engine == PRIORITY and fcfs is not None and run.classes and fcfs.classes:
            run = replace(run, classes=measured_leftover(fcfs.classes, run.classes))
        out.append(run)
    return out


def _slos(values: Sequence[str], levels: tuple[float | None, ...]) -> tuple[Slo, ...]:
    """The ``--slo`` values parsed; a search needs QPS levels to bisect between."""
    slos = tuple(parse_slo(value) for value in values)
    if slos and None in levels:
        raise ConfigError(
            "--slo searches between QPS levels: give --qps (a trace replays at its own rate "
            "otherwise)",
            "slo",
        )
    return slos


def _policies(policies: str | None, autoscale: tuple[str, ...]) -> list[str]:
    """The policy list; every config is resolved (and validated) before anything runs.

    Without ``--policies``: the four default routing policies, or, with ``--autoscale``,
    the gateway's ``default`` scheduler alone.
    """
    given = policies if policies is not None else ("default" if autoscale else DEFAULT_POLICIES)
    names = [p.strip() for p in given.split(",") if p.strip()]
    if not names:
        raise ConfigError("--policies names no policy", "policies")
    if autoscale and len(names) > 1:
        raise ConfigError(
            "--autoscale compares autoscaling policies under one scheduler: "
            "give a single --policies value",
            "policies",
        )
    for name in names:
        resolve_config(name)
    return names


def _autoscale(value: str | None, replicas: int, ttft_slo: float | None) -> tuple[str, ...]:
    """The ``--autoscale`` names, each resolved (and validated) before anything runs."""
    if value is None:
        return ()
    names = tuple(n.strip() for n in value.split(",") if n.strip())
    if not names:
        raise ConfigError("--autoscale names no policy", "autoscale")
    for name in names:
        resolve_autoscale(name, replicas, ttft_slo)
    return names


def _scheduling_policies(value: str) -> tuple[str, ...]:
    """The ``--scheduling-policy`` values, each one of vLLM's, none twice."""
    names = tuple(n.strip() for n in value.split(",") if n.strip())
    if not names:
        raise ConfigError("--scheduling-policy names no policy", "scheduling-policy")
    for name in names:
        if name not in SCHEDULING_POLICIES:
            known = ", ".join(SCHEDULING_POLICIES)
            raise ConfigError(
                f"--scheduling-policy: unknown {name!r} (vLLM's are {known})", "scheduling-policy"
            )
    if len(set(names)) != len(names):
        raise ConfigError("--scheduling-policy names a policy twice", "scheduling-policy")
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
@workload_options
@click.option(
    "--policies",
    default=None,
    help="Comma-separated scheduler configs: built-in names or YAML paths "
    f"[default: {DEFAULT_POLICIES}; with --autoscale: default].",
)
@click.option(
    "--autoscale",
    default=None,
    help="Compare autoscaling policies: built-in names (fixed, queue-depth, kv-cache, ttft) "
    "or YAML files of an autoscaling block; --replicas is then the maximum.",
)
@click.option(
    "--startup-delay",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="With --autoscale: seconds before a started replica takes requests.",
)
@click.option(
    "--ttft-slo",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Report the share of requests whose TTFT is at most this many seconds.",
)
@click.option(
    "--slo",
    "slo_values",
    multiple=True,
    metavar="METRIC=LIMIT,...",
    help="Report each policy's goodput: the highest QPS at which every target holds and no "
    "request fails, e.g. --slo ttft_p90=1s,itl_p90=50ms (units s or ms; metrics ttft, itl "
    "or e2e with p50, p90 or p99). Repeatable: one search per SLO.",
)
@click.option(
    "--goodput-steps",
    type=click.IntRange(0, 20),
    default=DEFAULT_GOODPUT_STEPS,
    show_default=True,
    help="With --slo: extra simulated runs per policy and SLO, bisecting between the last "
    "level that holds and the first that misses.",
)
@click.option(
    "--warmup-s",
    type=click.FloatRange(min=0),
    default=None,
    help="Seconds at the start of the arrival window left out of max_queue_ratio_steady "
    "[default: 10% of the arrival window].",
)
@click.option(
    "--scheduling-policy",
    "scheduling_policy",
    default=FCFS,
    show_default=True,
    help="The engines' vLLM --scheduling-policy: fcfs, priority, or both to compare "
    "(fcfs,priority: every policy runs under each, labelled POLICY+fcfs / POLICY+priority).",
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
    "--cpu-kv-gib",
    type=click.FloatRange(min=0),
    default=None,
    help="CPU tier of the KV cache per replica, in GiB of host memory (0: none) "
    "[default: the preset's]. With a CPU tier, `default` scores prefix hits by the prefill "
    "they save per tier.",
)
@click.option(
    "--qps",
    default=None,
    help="Comma-separated QPS levels, or multiples of the capacity estimate (1.3x). Default: "
    "a sweep from a quarter of the no-cache capacity to past the perfect-cache capacity "
    "(a trace: its own rate).",
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
    period: float,
    amplitude: float,
    policies: str | None,
    autoscale: str | None,
    startup_delay: float,
    ttft_slo: float | None,
    slo_values: tuple[str, ...],
    goodput_steps: int,
    warmup_s: float | None,
    scheduling_policy: str,
    replicas: int,
    preset: str,
    cpu_kv_gib: float | None,
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
        scaled = _autoscale(autoscale, replicas, ttft_slo)
        names = _policies(policies, scaled)
        plan = SimPlan(
            workload,
            parse_settings(settings),
            ArrivalSpec(arrival, burstiness, period, amplitude),
            preset,
            replicas,
            requests,
            seed,
            scrape_interval,
            (),
            scaled,
            startup_delay,
            ttft_slo,
            goodput_steps=goodput_steps,
            warmup_s=warmup_s,
            scheduling_policies=_scheduling_policies(scheduling_policy),
            cpu_kv_gib=cpu_kv_gib,
        )
        plan.engine()  # a CPU tier the preset cannot size fails before anything runs
        for value in slo_values:
            parse_slo(value)  # a typo fails before the workload is built
        built = plan.build_workload()
        levels = levels_for(qps, built, preset, replicas)
        plan = replace(plan, levels=levels, slos=_slos(slo_values, levels))
        started = time.perf_counter()
        runs, goodput = _run_all(plan, names, built, jobs, console)
        report = SweepReport(
            workload=built.name,
            preset=preset,
            replicas=replicas,
            seed=seed,
            command=command_line(plan, names, out),
            parameters=built.parameters(),
            settings=report_settings(plan, names),
            runs=runs,
            goodput=goodput,
        )
        plots = _write(report, out, not no_plots)
    except (PilothouseError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    swept = {(run.policy, run.qps) for run in runs}
    probes = {(e.policy, p.qps) for e in goodput for p in e.search.probes} - swept
    console.print(
        f"{len(runs)} runs"
        + (f" (+{len(probes)} goodput probes)" if probes else "")
        + f" in {time.perf_counter() - started:.1f} s (wall); "
        f"wrote {out / 'results.json'}, {out / 'report.md'}"
        + (f" and {len(plots)} plots" if plots else "")
    )
