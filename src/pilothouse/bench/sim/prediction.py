"""The latency predictor's error in a ``bench sim`` report.

Every simulated run carries a shadow :class:`~pilothouse.scheduling.latency.LatencyPredictor`
that observes every request (whatever the policy; it places nothing), fed by the routing
pipeline exactly as an ``slo-aware`` scorer is: the features seen when the request was
placed (the policy's own uncached-token estimate among them, and the wait for the prefills
ahead, which the pipeline estimates from this shadow's own predictions when the scheduler has
no predictor of its own) and the time to first token it took. Its error is the mean absolute
percentage error of its predictions, each made before the observation is learned, leaving out
each replica's first ``warmup`` (50) observations.

A second shadow predicts each request's mean inter-token latency from the same features,
learned when the request finishes (``(finish - first token) / (output tokens - 1)``).

In ``results.json`` each run gains ``ttft_mape`` and ``itl_mape`` (fractions; ``null`` when
no observation was past the warm-up) with ``ttft_mape_samples`` and ``itl_mape_samples``;
``report.md`` gains a table of both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pilothouse.scheduling.latency import PredictionError

if TYPE_CHECKING:
    from pilothouse.bench.report import PolicyRun

_DECIMALS = 6


def prediction_record(run: PolicyRun) -> dict[str, object]:
    """The predictor fields of a ``runs`` entry (none for a run without a shadow)."""
    record: dict[str, object] = {}
    for name, error in (("ttft", run.result.ttft_prediction), ("itl", run.result.itl_prediction)):
        if error is not None:
            mape = None if error.mape is None else round(error.mape, _DECIMALS)
            record[f"{name}_mape"] = mape
            record[f"{name}_mape_samples"] = error.samples
    return record


def _cell(error: PredictionError | None) -> str:
    return "-" if error is None or error.mape is None else f"{error.mape:.1%}"


def prediction_section(runs: Sequence[PolicyRun]) -> list[str]:
    """``## TTFT predictor error``: MAPE per QPS level and policy."""
    if not any(run.result.ttft_prediction is not None for run in runs):
        return []
    policies = list(dict.fromkeys(run.policy for run in runs))
    by_key = {(run.policy, run.qps): run.result for run in runs}
    lines = [
        "",
        "## Latency predictor error (MAPE): TTFT / ITL",
        "",
        "Shadow online predictors per replica (`slo-aware`'s) observed every request: time to "
        "first token, and each finished request's mean inter-token latency. Mean absolute "
        "percentage error, each prediction made before the observation was learned, each "
        "replica's first 50 observations left out (docs/bench-sim.md).",
        "",
        "| QPS | " + " | ".join(policies) + " |",
        "|" + " ---: |" * (len(policies) + 1),
    ]
    for qps in sorted({run.qps for run in runs}):
        cells = []
        for policy in policies:
            result = by_key.get((policy, qps))
            if result is None:
                cells.append("-")
            else:
                ttft, itl = result.ttft_prediction, result.itl_prediction
                cells.append(f"{_cell(ttft)} / {_cell(itl)}")
        lines.append(f"| {qps:g} | " + " | ".join(cells) + " |")
    return lines
