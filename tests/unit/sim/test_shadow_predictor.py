"""Every simulated run carries shadow latency predictors: their error is reported, past each
replica's warm-up, and the same run gives the same error."""

from __future__ import annotations

from pilothouse.scheduling import resolve_config
from pilothouse.sim.cluster import simulate

from .cluster_helpers import b2b_requests, cluster


def test_a_run_reports_the_shadow_predictors_error_past_the_warm_up() -> None:
    results = [
        simulate(cluster(2, seed=1), resolve_config("slo-aware"), b2b_requests(20.0, 300))
        for _ in range(2)
    ]
    ttft, itl = results[0].ttft_prediction, results[0].itl_prediction
    assert ttft is not None
    assert itl is not None
    # 300 first tokens and 300 finished requests on 2 replicas, 50 of each left out per replica
    assert ttft.samples == 200
    assert itl.samples == 200
    assert ttft.mape is not None
    assert 0.0 < ttft.mape < 1.0
    assert itl.mape is not None
    assert 0.0 < itl.mape < 1.0
    assert results[1].ttft_prediction == ttft  # deterministic
    assert results[1].itl_prediction == itl
