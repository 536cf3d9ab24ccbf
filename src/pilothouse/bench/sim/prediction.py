"""The latency predictor's error in a ``bench sim`` report.

Every simulated run carries a shadow :class:`~pilothouse.scheduling.latency.LatencyPredictor`
that observes every request (whatever the policy; it places nothing), fed by the routing
pipeline exactly as an ``slo-aware`` scorer is: the features seen when the request was
placed (the policy's own uncached-token estimate among them) and the time to first token it
took. Its error is the mean absolute percentage error of its predictions, each made before
the observation is learned, leaving out each replica's first ``warmup`` (50) observations.

In ``results.json`` each run gains ``ttft_mape`` (a fraction; ``null`` when no observation
was past the warm-up) and ``ttft_mape_samples``; ``report.md`` gains a table of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pilothouse.bench.report import PolicyRun

_DECIMALS = 6


def prediction_record(run: PolicyRun) -> dict[str, object]:
    """The predictor fields of a ``runs`` entry (none when the run has no shadow)."""
    error = run.result.ttft_prediction
    if error is None:
        return {}
    mape = None if error.mape is None else round(error.mape, _DECIMALS)
    return {"ttft_mape": mape, "ttft_mape_samples": error.samples}


def prediction_section(runs: Sequence[PolicyRun]) -> list[str]:
    """``## TTFT predictor error``: MAPE per QPS level and policy."""
    if not any(run.result.ttft_prediction is not None for run in runs):
        return []
    policies = list(dict.fromkeys(run.policy for run in runs))
    by_key = {(run.policy, run.qps): run.result.ttft_prediction for run in runs}
    lines = [
        "",
        "## TTFT predictor error (MAPE)",
        "",
        "A shadow online predictor per replica (`slo-aware`'s) observed every request; its "
        "mean absolute percentage error, each prediction made before the observation was "
        "learned, each replica's first 50 observations left out (docs/bench-sim.md).",
        "",
        "| QPS | " + " | ".join(policies) + " |",
        "|" + " ---: |" * (len(policies) + 1),
    ]
    for qps in sorted({run.qps for run in runs}):
        cells = []
        for policy in policies:
            error = by_key.get((policy, qps))
            cells.append("-" if error is None or error.mape is None else f"{error.mape:.1%}")
        lines.append(f"| {qps:g} | " + " | ".join(cells) + " |")
    return lines
