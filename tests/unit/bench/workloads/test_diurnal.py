"""The ``diurnal`` arrival process: a rate that swings around its mean."""

from __future__ import annotations

import itertools
import random

import pytest

from pilothouse.bench.workloads.arrivals import ArrivalSpec, arrival_times, diurnal_rate


def test_diurnal_swings_between_its_low_and_its_peak_and_averages_the_rate() -> None:
    spec = ArrivalSpec("diurnal", period_s=100.0, amplitude=0.8)
    times = list(
        itertools.takewhile(lambda t: t < 1000, arrival_times(spec, 10.0, random.Random(1)))
    )
    assert len(times) == pytest.approx(10_000, rel=0.05)  # ten periods at a mean of 10/s
    low = sum(1 for t in times if t % 100 < 10 or t % 100 >= 90)  # around the troughs
    high = sum(1 for t in times if 40 <= t % 100 < 60)  # around the peaks
    assert high > 5 * low
    assert diurnal_rate(spec, 10.0, 0.0) == pytest.approx(2.0)
    assert diurnal_rate(spec, 10.0, 50.0) == pytest.approx(18.0)


@pytest.mark.parametrize("fields", [{"period_s": 0}, {"amplitude": 1.5}, {"kind": "ramp"}])
def test_bad_diurnal_settings_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"period_s|amplitude|unknown arrival"):
        ArrivalSpec(**{"kind": "diurnal", **fields})  # type: ignore[arg-type]
