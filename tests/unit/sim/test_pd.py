"""Prefill/decode disaggregation in the cluster simulator, driven by the ``pd`` config."""

from __future__ import annotations

import pytest

from pilothouse.scheduling import resolve_config
from pilothouse.sim.cluster import ClusterSimulator, simulate
from pilothouse.sim.cluster_types import ClusterConfig
from pilothouse.sim.engine_model import EngineModel
from pilothouse.sim.pd import receive_kv
from tests.unit.sim.cluster_helpers import PRESET, b2b_requests, plain_request

LONG = 1024  # tokens: 64 full blocks, above the pd config's 512-token threshold
SHORT = 128


def _pd(replicas: int = 4, prefill: int = 2, **changes: object) -> ClusterConfig:
    return ClusterConfig(PRESET, replicas, prefill_replicas=prefill, **changes)  # type: ignore[arg-type]


def _roles(simulator: ClusterSimulator) -> dict[str, list[int]]:
    """Prompt tokens each replica's engine processed, by role."""
    roles: dict[str, list[int]] = {}
    for replica in simulator.replicas:
        role = replica.labels.get("llm-d.ai/role", "none")
        roles.setdefault(role, []).append(replica.engine.stats.prompt_tokens)
    return roles


def test_replicas_are_labelled_by_role() -> None:
    simulator = ClusterSimulator(_pd(4, 1), resolve_config("pd"))
    roles = [r.endpoint.labels.get("llm-d.ai/role") for r in simulator.replicas]
    assert roles == ["prefill", "decode", "decode", "decode"]
    plain = ClusterSimulator(ClusterConfig(PRESET, 2), resolve_config("pd"))
    assert [dict(r.endpoint.labels) for r in plain.replicas] == [{}, {}]


def test_long_prompts_prefill_on_prefill_replicas_and_decode_elsewhere() -> None:
    requests = [plain_request(f"r{i}", i * 0.05, tokens=LONG, output=16) for i in range(12)]
    simulator = ClusterSimulator(_pd(), resolve_config("pd"))
    metrics = simulator.run(requests).metrics
    assert (metrics.completed, metrics.failed) == (12, 0)
    prefill = [r for r in simulator.replicas if r.labels["llm-d.ai/role"] == "prefill"]
    decode = [r for r in simulator.replicas if r.labels["llm-d.ai/role"] == "decode"]
    # every prompt was prefilled on a prefill replica, which generated one token per request
    assert sum(r.engine.stats.prompt_tokens for r in prefill) == 12 * LONG
    assert sum(r.engine.stats.generation_tokens for r in prefill) == 12
    # every output token came from a decode replica, which reused the transferred blocks
    assert sum(r.engine.stats.generation_tokens for r in decode) == 12 * 16
    assert sum(r.engine.stats.prefix_cache_hits for r in decode) == 12 * (LONG - 16)
    assert metrics.cache_hit_rate == 0.0  # transferred KV is not a prefix-cache hit
    for replica in simulator.replicas:
        assert (replica.in_flight, replica.in_flight_tokens, replica.awaiting) == (0, 0, 0)
        assert not replica.engine.has_work


def test_short_prompts_stay_on_the_decode_replicas() -> None:
    requests = [plain_request(f"r{i}", i * 0.05, tokens=SHORT, output=8) for i in range(10)]
    simulator = ClusterSimulator(_pd(), resolve_config("pd"))
    assert simulator.run(requests).metrics.completed == 10
    assert _roles(simulator)["prefill"] == [0, 0]
    assert sum(_roles(simulator)["decode"]) == 10 * SHORT


@pytest.mark.parametrize(
    ("per_token", "overhead"), [(0.0, 0.0), (1e-4, 0.0), (0.0, 0.25), (2e-5, 0.01)]
)
def test_the_kv_transfer_delays_the_first_token(per_token: float, overhead: float) -> None:
    request = [plain_request("one", 0.0, tokens=LONG, output=4)]
    base = simulate(_pd(), resolve_config("pd"), request).metrics
    slow = _pd(kv_transfer_s_per_token=per_token, kv_transfer_overhead_s=overhead)
    metrics = simulate(slow, resolve_config("pd"), request).metrics
    assert metrics.ttft_p50_s - base.ttft_p50_s == pytest.approx(overhead + per_token * LONG)


def test_ttft_counts_from_the_arrival_including_the_prefill() -> None:
    request = [plain_request("one", 3.0, tokens=LONG, output=4)]
    together = simulate(ClusterConfig(PRESET, 2), resolve_config("pd"), request).metrics
    split = simulate(_pd(2, 1), resolve_config("pd"), request).metrics
    # a prefill step plus the decode replica's short tail step: longer than one prefill step
    assert split.ttft_p50_s > together.ttft_p50_s > 0.0


def test_without_prefill_replicas_pd_routes_exactly_like_default() -> None:
    requests = b2b_requests(20.0, 150)
    plain = ClusterConfig(PRESET, 4)
    assert (
        simulate(plain, resolve_config("pd"), requests).metrics
        == simulate(plain, resolve_config("default"), requests).metrics
    )


def test_received_blocks_are_cached_and_leave_capacity_unchanged() -> None:
    engine = EngineModel(PRESET)
    hashes = plain_request("x", 0.0, tokens=LONG).block_hashes
    available = engine.pool.available_blocks
    assert receive_kv(engine, hashes) == len(hashes)
    assert engine.pool.available_blocks == available
    assert engine.pool.match_prefix(hashes, len(hashes)) == len(hashes)
    assert receive_kv(engine, hashes) == len(hashes)  # already there: still fine
    assert engine.pool.available_blocks == available


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        pytest.param({"prefill_replicas": 4}, "prefill_replicas", id="all-prefill"),
        pytest.param({"prefill_replicas": -1}, "prefill_replicas", id="negative"),
        pytest.param({"kv_transfer_s_per_token": -1.0}, "KV transfer", id="negative-transfer"),
    ],
)
def test_bad_cluster_config(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ClusterConfig(PRESET, 4, **changes)  # type: ignore[arg-type]


def test_a_request_too_long_for_the_decode_replica_fails_before_its_prefill() -> None:
    too_long = plain_request("big", 0.0, tokens=PRESET.max_model_len - 4, output=8)
    simulator = ClusterSimulator(_pd(), resolve_config("pd"))
    metrics = simulator.run([too_long, plain_request("ok", 0.1, tokens=LONG)]).metrics
    assert (metrics.completed, metrics.failed) == (1, 1)
    assert sum(_roles(simulator)["prefill"]) == LONG  # only "ok" was prefilled
