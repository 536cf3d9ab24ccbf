"""Arrival processes: when requests (or sessions) reach the gateway.

- ``poisson``: exponential gaps of mean ``1 / rate`` (what inference-perf and llm-d use).
- ``bursty``: gamma-distributed gaps with shape ``burstiness`` and the same mean, as
  ``vllm bench serve --burstiness``: 1.0 is Poisson, below 1 the arrivals clump into
  bursts separated by lulls (coefficient of variation ``1 / sqrt(burstiness)``).
- ``constant``: exactly ``1 / rate`` apart.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

ARRIVAL_KINDS = ("poisson", "bursty", "constant")


@dataclass(frozen=True, slots=True)
class ArrivalSpec:
    """Which process, and the gamma shape used by ``bursty``."""

    kind: str = "poisson"
    burstiness: float = 0.25

    def __post_init__(self) -> None:
        if self.kind not in ARRIVAL_KINDS:
            raise ValueError(
                f"unknown arrival process {self.kind!r} (known: poisson, bursty, constant)"
            )
        if self.burstiness <= 0:
            raise ValueError("burstiness must be > 0")


def arrival_times(spec: ArrivalSpec, rate: float, rng: random.Random) -> Iterator[float]:
    """Endless non-decreasing arrival times (seconds from 0) at mean ``rate`` per second."""
    if rate <= 0:
        raise ValueError("the arrival rate must be > 0")
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
