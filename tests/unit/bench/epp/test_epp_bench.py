"""``pilothouse bench epp``: its statistics and report (the full run is an e2e test)."""

from __future__ import annotations

import math

import pytest

from pilothouse.bench.epp.run import _quantile, _report, _stats


@pytest.mark.parametrize(
    ("q", "expected"),
    [(0.5, 50.0), (0.9, 90.0), (0.99, 99.0), (1.0, 100.0), (0.0, 1.0)],
)
def test_quantiles_are_nearest_rank(q: float, expected: float) -> None:
    assert _quantile([float(v) for v in range(100, 0, -1)], q) == expected


def test_the_report_compares_the_two_paths_in_milliseconds() -> None:
    samples = {
        "direct": [0.001] * 98 + [0.002, 0.010],
        "epp": [0.003] * 98 + [0.004, None],
    }
    report = _report(samples, concurrency=1, replicas=2, decision=0.2)
    assert report.direct.p50 == pytest.approx(1.0)
    assert report.via_epp.p50 == pytest.approx(3.0)
    assert report.added_p50_ms == pytest.approx(2.0)
    assert report.via_epp.errors == 1
    table = report.markdown()
    assert "| **added by the EPP** | **2.00** |" in table
    assert table.count("\n") == 4


def test_no_sample_is_nan_not_a_crash() -> None:
    assert math.isnan(_stats([], errors=3).p50)
