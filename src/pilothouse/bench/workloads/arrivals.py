"""Arrival processes: when requests (or sessions) reach the gateway.

- ``poisson``: exponential gaps of mean ``1 / rate`` (what inference-perf and llm-d use).
- ``bursty``: gamma-distributed gaps with shape ``burstiness`` and the same mean, as
  ``vllm bench serve --burstiness``: 1.0 is Poisson, below 1 the arrivals clump into
  bursts separated by lulls (coefficient of variation ``1 / sqrt(burstiness)``).
- ``constant``: exactly ``1 / rate`` apart.
- ``diurnal``: Poisson with a rate that swings over ``period_s`` seconds,
  ``rate x (1 - amplitude x cos(2 pi t / period_s))``: it starts at its low,
  ``(1 - amplitude) x rate``, peaks at ``(1 + amplitude) x rate`` half a period later, and
  averages ``rate``; the load an autoscaler must follow (drawn by thinning).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

ARRIVAL_KINDS = ("poisson", "bursty", "constant", "diurnal")


@dataclass(frozen=True, slots=True)
class ArrivalSpec:
    """Which process, the gamma shape of ``bursty``, the period and swing of ``diurnal``."""

    kind: str = "poisson"
    burstiness: float = 0.25
    period_s: float = 600.0
    amplitude: float = 0.8

    def __post_init__(self) -> None:
        if self.kind not in ARRIVAL_KINDS:
            raise ValueError(
                f"unknown arrival process {self.kind!r} (known: {', '.join(ARRIVAL_KINDS)})"
            )
        if self.burstiness <= 0:
            raise ValueError("burstiness must be > 0")
        if self.period_s <= 0:
            raise ValueError("period_s must be > 0")
        if not 0 <= self.amplitude <= 1:
            raise ValueError("amplitude must be in [0, 1]")


def arrival_times(spec: ArrivalSpec, rate: float, rng: random.Random) -> Iterator[float]:
    """Endless non-decreasing arrival times (seconds from 0) at mean ``rate`` per second."""
    if rate <= 0:
        raise ValueError("the arrival rate must be > 0")
    if spec.kind == "diurnal":
        yield from _diurnal(spec, rate, rng)
        return
    now = 0.0
    mean = 1.0 / rate
    shape = spec.burstiness
    while True:
        if spec.kind == "poisson":
            now += rng.expovariate(rate)
        elif spec.kind == "bursty":
            now += rng.gammavariate(shape, mean / shape)
        else:
            now += mean
        yield now


def diurnal_rate(spec: ArrivalSpec, rate: float, t: float) -> float:
    """The instantaneous rate of ``diurnal`` at time ``t``."""
    return rate * (1.0 - spec.amplitude * math.cos(2.0 * math.pi * t / spec.period_s))


def _diurnal(spec: ArrivalSpec, rate: float, rng: random.Random) -> Iterator[float]:
    peak = rate * (1.0 + spec.amplitude)
    now = 0.0
    while True:
        now += rng.expovariate(peak)
        if rng.random() * peak <= diurnal_rate(spec, rate, now):
            yield now
