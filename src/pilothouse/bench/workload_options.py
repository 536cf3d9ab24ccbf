"""The workload options `bench sim` and `bench live` share: one definition, one meaning."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import click

from pilothouse.bench.workloads.arrivals import ARRIVAL_KINDS, ArrivalSpec

F = TypeVar("F", bound=Callable[..., object])

_OPTIONS = (
    click.option(
        "--workload",
        default="b2b-saas",
        show_default=True,
        help="A built-in workload (agentic, b2b-saas, hot-spot, long-context, "
        "mixed-priority, multi-turn-chat, no-reuse) or a JSONL trace file "
        "(docs/workloads.md).",
    ),
    click.option(
        "--set",
        "settings",
        multiple=True,
        metavar="NAME=VALUE",
        help="Override a workload parameter, e.g. --set groups=50 (repeatable).",
    ),
    click.option(
        "--arrival",
        type=click.Choice(ARRIVAL_KINDS),
        default="poisson",
        show_default=True,
        help="Arrival process of requests (or sessions).",
    ),
    click.option(
        "--burstiness",
        type=click.FloatRange(min=0.01),
        default=0.25,
        show_default=True,
        help="Gamma shape of --arrival bursty (1 = Poisson; smaller is burstier).",
    ),
    click.option(
        "--period",
        type=click.FloatRange(min=0, min_open=True),
        default=600.0,
        show_default=True,
        help="Seconds of one load cycle of --arrival diurnal.",
    ),
    click.option(
        "--amplitude",
        type=click.FloatRange(0.0, 1.0),
        default=0.8,
        show_default=True,
        help="Swing of --arrival diurnal: the rate goes from (1-A) to (1+A) x QPS.",
    ),
)


def workload_options(command: F) -> F:
    """Add --workload, --set (as ``settings``), --arrival, --burstiness, --period, --amplitude."""
    for option in reversed(_OPTIONS):
        command = option(command)
    return command


def arrival_args(spec: ArrivalSpec) -> list[str]:
    """The command-line flags that reproduce ``spec`` (nothing for the Poisson default)."""
    if spec.kind == "diurnal":
        return ["--arrival", "diurnal", "--period", f"{spec.period_s:g}",
                "--amplitude", f"{spec.amplitude:g}"]  # fmt: skip
    if spec.kind != "poisson":
        return ["--arrival", spec.kind, "--burstiness", f"{spec.burstiness:g}"]
    return []
