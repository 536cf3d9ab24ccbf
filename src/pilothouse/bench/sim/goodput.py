"""Goodput: the highest QPS at which an SLO still holds, found between a sweep's levels.

:func:`search_goodput` is a pure function of a ``holds(qps)`` predicate, so it is tested
without the simulator. It evaluates the sweep's levels in ascending order up to the first
that misses the SLO, then bisects between the last level that held and that one, ``steps``
more evaluations, each at the geometric mean of the two ends (sweeps are geometric ladders,
so this halves the ratio between them, not the difference). Latency grows with load, so
``holds`` is taken as monotone: a level above the first miss that happens to hold again
(noise near saturation) is not looked at, and the answer is the conservative one.

Three outcomes: a QPS between two levels (the SLO held there, and missed ``steps`` halvings
above); ``qps = 0`` with ``below`` the lowest level (it never held: the goodput is below the
sweep); the highest level with ``bound = "lower"`` (it held everywhere: the goodput is at
least that).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["BASELINES", "GoodputEntry", "GoodputSearch", "Probe", "goodput_table", "search_goodput"]

BASELINES = ("round-robin", "least-requests", "cache-aware-sglang", "prefix-load")
"""The policies a goodput is compared with: prefix-blind, SGLang's rule, llm-d's blend."""


@dataclass(frozen=True, slots=True)
class Probe:
    """One evaluation of the search: a QPS and whether the SLO held there."""

    qps: float
    holds: bool


@dataclass(frozen=True, slots=True)
class GoodputSearch:
    """What a search found; see the module docstring for ``bound`` and ``below``."""

    qps: float
    bound: str | None = None
    below: float | None = None
    probes: tuple[Probe, ...] = ()


def search_goodput(
    levels: Sequence[float], holds: Callable[[float], bool], steps: int
) -> GoodputSearch:
    """The highest QPS found to hold: the levels first, then ``steps`` bisection probes."""
    if not levels:
        raise ValueError("search_goodput needs at least one QPS level")
    if steps < 0:
        raise ValueError("steps must be >= 0")
    probes: list[Probe] = []
    good: float | None = None
    bad: float | None = None
    for qps in sorted(set(levels)):
        ok = holds(qps)
        probes.append(Probe(qps, ok))
        if not ok:
            bad = qps
            break
        good = qps
    if good is None:
        return GoodputSearch(0.0, below=bad, probes=tuple(probes))
    if bad is None:
        return GoodputSearch(good, bound="lower", probes=tuple(probes))
    for _ in range(steps):
        mid = math.sqrt(good * bad)
        ok = holds(mid)
        probes.append(Probe(mid, ok))
        if ok:
            good = mid
        else:
            bad = mid
    return GoodputSearch(good, probes=tuple(probes))


@dataclass(frozen=True, slots=True)
class GoodputEntry:
    """One policy's goodput under one SLO (a ``goodput`` entry of results.json)."""

    policy: str
    slo: str
    search: GoodputSearch

    def record(self, decimals: int = 6) -> dict[str, object]:
        record: dict[str, object] = {
            "policy": self.policy,
            "slo": self.slo,
            "qps": round(self.search.qps, decimals),
        }
        if self.search.bound is not None:
            record["bound"] = self.search.bound
        if self.search.below is not None:
            record["below"] = round(self.search.below, decimals)
        record["probes"] = [[round(p.qps, decimals), p.holds] for p in self.search.probes]
        return record


def _ratio(qps: float, other: GoodputEntry | None) -> str:
    if other is None or other.search.qps <= 0:
        return "-"
    return f"{qps / other.search.qps:.2f}x"


def _qps_cell(search: GoodputSearch) -> str:
    if search.below is not None:
        return f"0 (missed at {search.below:g})"
    prefix = "≥ " if search.bound == "lower" else ""
    return f"{prefix}{search.qps:.3g}"


def goodput_table(entries: Sequence[GoodputEntry]) -> list[str]:
    """Markdown: one row per (SLO, policy) with the ratios to round-robin and to the best
    baseline (of :data:`BASELINES` in the run, other than the row's own policy)."""
    lines = [
        "| policy | SLO | goodput (QPS) | vs round-robin | vs best baseline | best baseline |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for slo in dict.fromkeys(entry.slo for entry in entries):
        group = [entry for entry in entries if entry.slo == slo]
        by_policy = {entry.policy: entry for entry in group}
        for entry in group:
            others = [e for e in group if e.policy in BASELINES and e.policy != entry.policy]
            best = max(others, key=lambda e: e.search.qps, default=None)
            qps = entry.search.qps
            lines.append(
                f"| {entry.policy} | `{slo}` | {_qps_cell(entry.search)} | "
                f"{_ratio(qps, by_policy.get('round-robin'))} | {_ratio(qps, best)} | "
                f"{best.policy if best else '-'} |"
            )
    return lines
