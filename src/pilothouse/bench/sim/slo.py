"""Latency SLOs for ``bench sim --slo``: ``ttft_p90=1s,itl_p50=50ms`` parsed and checked.

An SLO is a comma-separated list of ``METRIC=LIMIT``; it holds for a run when every metric is
at most its limit **and no request failed** (a request no replica took, or one flow control
shed, would otherwise make a run look faster than it served). A metric is a latency
(``ttft``, ``itl``, ``e2e``) and a percentile (``p50``, ``p90``, ``p99``), named as in the
``runs`` of results.json without the ``_s``; only those the simulator measures are accepted
(:data:`measured_metrics`, read from :class:`~pilothouse.sim.cluster_types.RunMetrics`, so
a percentile the recorder learns to compute becomes usable here without a change). A limit
is a number with a unit, ``s`` or ``ms``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

from pilothouse.errors import ConfigError
from pilothouse.sim.cluster_types import RunMetrics

__all__ = ["Slo", "SloTarget", "measured_metrics", "parse_slo"]

LATENCIES = ("ttft", "itl", "e2e")
PERCENTILES = ("p50", "p90", "p99")
_UNITS = {"s": 1.0, "ms": 1e-3}
_LIMIT = re.compile(r"^([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-z]*)$")


def measured_metrics() -> tuple[str, ...]:
    """The SLO metric names a simulated run reports (``ttft_p90``, ...), in field order."""
    names = {f.name for f in fields(RunMetrics)}
    return tuple(
        f"{latency}_{pct}"
        for latency in LATENCIES
        for pct in PERCENTILES
        if f"{latency}_{pct}_s" in names
    )


@dataclass(frozen=True, slots=True)
class SloTarget:
    """One bound: ``metric`` (``ttft_p90``) at most ``limit_s`` seconds."""

    metric: str
    limit_s: float

    def value(self, metrics: RunMetrics) -> float:
        return float(getattr(metrics, f"{self.metric}_s"))


@dataclass(frozen=True, slots=True)
class Slo:
    """Targets that must all hold; ``text`` is the ``--slo`` value as given."""

    text: str
    targets: tuple[SloTarget, ...]

    def holds(self, metrics: RunMetrics) -> bool:
        """Whether a run met every target and failed no request."""
        if metrics.failed:
            return False
        return all(target.value(metrics) <= target.limit_s for target in self.targets)

    def misses(self, metrics: RunMetrics) -> list[str]:
        """What a run missed, in words (empty when it holds)."""
        missed = [f"{metrics.failed} requests failed"] if metrics.failed else []
        for target in self.targets:
            value = target.value(metrics)
            if value > target.limit_s:
                missed.append(f"{target.metric} {value:.3g} s > {target.limit_s:g} s")
        return missed


def _limit(raw: str, metric: str, text: str) -> float:
    match = _LIMIT.match(raw.strip())
    if match is None:
        raise ConfigError(
            f"--slo {text!r}: {metric} needs a number with a unit (s or ms), got {raw!r}", "slo"
        )
    number, unit = match.groups()
    if unit not in _UNITS:
        given = f"unit {unit!r}" if unit else "no unit"
        raise ConfigError(
            f"--slo {text!r}: {metric}={raw} has {given}; use s or ms (e.g. 1s, 250ms)", "slo"
        )
    value = float(number) * _UNITS[unit]
    if value <= 0:
        raise ConfigError(f"--slo {text!r}: {metric} limit must be > 0", "slo")
    return value


def _metric(name: str, text: str) -> str:
    measured = measured_metrics()
    if name in measured:
        return name
    latency, _, pct = name.partition("_")
    if latency in LATENCIES and pct in PERCENTILES:
        raise ConfigError(
            f"--slo {text!r}: {name} is not measured by bench sim "
            f"(it measures {', '.join(measured)})",
            "slo",
        )
    raise ConfigError(
        f"--slo {text!r}: unknown metric {name!r} (known: {', '.join(measured)})", "slo"
    )


def parse_slo(text: str) -> Slo:
    """``ttft_p90=1s,itl_p50=50ms`` as an :class:`Slo`; a :class:`ConfigError` says what is
    wrong (no target, a repeated or unknown metric, a missing or unknown unit)."""
    targets: list[SloTarget] = []
    for item in text.split(","):
        if not item.strip():
            continue
        name, sep, raw = item.partition("=")
        name = name.strip().lower()
        if not sep or not name:
            raise ConfigError(f"--slo {text!r}: expected METRIC=LIMIT, got {item!r}", "slo")
        metric = _metric(name, text)
        if any(t.metric == metric for t in targets):
            raise ConfigError(f"--slo {text!r}: {metric} is given twice", "slo")
        targets.append(SloTarget(metric, _limit(raw, metric, text)))
    if not targets:
        raise ConfigError("--slo needs at least one METRIC=LIMIT, e.g. ttft_p90=1s", "slo")
    return Slo(text.strip(), tuple(targets))
