"""The overhead benchmark's targets and how a run is judged against them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pilothouse.bench.overhead.run import LevelResult

CPU_TARGET_MS = 0.5
STREAM_CPU_TARGET_MS = 1.0
ADDED_P99_TARGET_MS = 10.0
_LOADED = 16  # the concurrency from which reference tables quote CPU per request


@dataclass(frozen=True, slots=True)
class Verdict:
    name: str
    value: float
    limit: float
    unit: str
    passed: bool
    detail: str


def _worst(levels: list[LevelResult], key: Callable[[LevelResult], float]) -> LevelResult:
    return max(levels, key=key)


def _cpu_verdict(label: str, limit: float, levels: list[LevelResult]) -> Verdict:
    """Judged on the worst level; the detail adds the worst at c>=16 (what references quote)."""
    worst = _worst(levels, lambda lv: lv.gateway_cpu_ms)
    detail = f"worst level c={worst.concurrency}"
    loaded = [lv for lv in levels if lv.concurrency >= _LOADED]
    if loaded and worst.concurrency < _LOADED:
        under_load = _worst(loaded, lambda lv: lv.gateway_cpu_ms).gateway_cpu_ms
        detail += f"; worst at c>={_LOADED}: {under_load:.3f} ms"
    return Verdict(label, worst.gateway_cpu_ms, limit, "ms", worst.gateway_cpu_ms <= limit, detail)


def judge(levels: list[LevelResult]) -> list[Verdict]:
    """The pass/fail verdicts against the issue's targets, on the worst level of each."""
    verdicts: list[Verdict] = []
    for stream, limit, label in (
        (False, CPU_TARGET_MS, "gateway CPU per request"),
        (True, STREAM_CPU_TARGET_MS, "gateway CPU per streamed request"),
    ):
        chosen = [lv for lv in levels if lv.stream is stream]
        if chosen:
            verdicts.append(_cpu_verdict(label, limit, chosen))
    if levels:
        top = max(lv.concurrency for lv in levels)
        worst = _worst([lv for lv in levels if lv.concurrency == top], lambda lv: lv.added_p99_ms)
        mode = "stream" if worst.stream else "plain"
        verdicts.append(
            Verdict(
                f"added p99 latency at c={top}",
                worst.added_p99_ms,
                ADDED_P99_TARGET_MS,
                "ms",
                worst.added_p99_ms <= ADDED_P99_TARGET_MS,
                f"worst mode {mode}",
            )
        )
    failed = sum(lv.direct.errors + lv.gateway.errors for lv in levels)
    verdicts.append(
        Verdict(
            "failed requests",
            failed,
            0,
            "requests",
            failed == 0,
            "every request must succeed for the numbers to count",
        )
    )
    return verdicts
