"""Determinism, and fused decode iterations against plain single stepping."""

from __future__ import annotations

import math
import random
from dataclasses import replace

import pytest

from pilothouse.sim import (
    EngineConfig,
    EngineModel,
    EngineRequest,
    FinishedRequest,
    LatencyModel,
    chain_block_hashes,
    get_preset,
)
from tests.unit.sim.helpers import request, run_until_idle, small_config


def _workload(seed: int, count: int, block_size: int) -> list[tuple[float, EngineRequest]]:
    """Poisson arrivals over four shared prefixes with unique suffixes."""
    rng = random.Random(seed)
    prefixes = [[p * 10_000 + i for i in range(96)] for p in range(4)]
    now = 0.0
    arrivals = []
    for index in range(count):
        now += rng.expovariate(40.0)
        tokens = prefixes[rng.randrange(4)] + [rng.randrange(1 << 20) for _ in range(40)]
        arrivals.append(
            (
                now,
                EngineRequest(
                    request_id=f"r{index}",
                    prompt_tokens=len(tokens),
                    max_tokens=rng.randrange(1, 120),
                    block_hashes=chain_block_hashes(tokens, block_size),
                ),
            )
        )
    return arrivals


def _drive(
    model: EngineModel, arrivals: list[tuple[float, EngineRequest]]
) -> dict[str, FinishedRequest]:
    """A minimal discrete-event loop: arrivals may cut a fused step short."""
    finished: dict[str, FinishedRequest] = {}
    index, end = 0, None
    for _ in range(1_000_000):
        next_arrival = arrivals[index][0] if index < len(arrivals) else math.inf
        if end is not None and end <= next_arrival:
            for item in model.finish_step().finished:
                finished[item.request_id] = item
            end = model.begin_step(end)
        elif index < len(arrivals):
            now, req = arrivals[index]
            index += 1
            model.add_request(req, now)
            end = model.begin_step(now) if end is None else model.busy_until
        else:
            return finished
    raise AssertionError("simulation did not finish")


def _config() -> EngineConfig:
    preset = get_preset("llama-3.1-8b-h100")
    return replace(preset, num_gpu_blocks=120, max_model_len=1024, max_num_seqs=24)


@pytest.mark.parametrize("fused", [8, 64])
def test_fused_decode_matches_single_iterations(fused: int) -> None:
    config = _config()
    arrivals = _workload(3, 300, 16)
    plain_model = EngineModel(config, max_fused_iterations=1)
    fused_model = EngineModel(config, max_fused_iterations=fused)
    plain = _drive(plain_model, arrivals)
    quick = _drive(fused_model, arrivals)
    assert plain.keys() == quick.keys() == {req.request_id for _, req in arrivals}
    for request_id, item in plain.items():
        other = quick[request_id]
        assert other.completion_tokens == item.completion_tokens
        assert other.cached_tokens == item.cached_tokens
        assert other.num_preemptions == item.num_preemptions
        assert other.first_token_time == pytest.approx(item.first_token_time, rel=1e-9)
        assert other.finish_time == pytest.approx(item.finish_time, rel=1e-9)
    assert fused_model.stats.steps < plain_model.stats.steps
    assert fused_model.stats.iterations == plain_model.stats.iterations
    assert fused_model.stats.generation_tokens == plain_model.stats.generation_tokens


def test_the_workload_exercises_preemption_and_hits() -> None:
    model = EngineModel(_config(), max_fused_iterations=32)
    _drive(model, _workload(3, 300, 16))
    stats = model.stats
    assert stats.num_preemptions > 0
    assert 0 < stats.prefix_cache_hits < stats.prefix_cache_queries
    assert model.pool.used_blocks == 0


def test_fused_step_stops_at_the_first_finish() -> None:
    model = EngineModel(small_config(), max_fused_iterations=100)
    model.add_request(request("a", list(range(8)), max_tokens=30), 0.0)
    model.add_request(request("b", list(range(50, 58)), max_tokens=10), 0.0)
    results = run_until_idle(model)
    assert [r.iterations for r in results] == [1, 9, 20]
    assert results[1].emitted == {"a": 9, "b": 9}
    assert [f.request_id for f in results[1].finished] == ["b"]
    assert results[2].finished[0].completion_tokens == 30


def test_an_arrival_cuts_a_fused_step_at_the_next_boundary() -> None:
    model = EngineModel(small_config(), max_fused_iterations=50)
    model.add_request(request("a", list(range(8)), max_tokens=40), 0.0)
    first = model.step(0.0)
    assert first is not None
    end = model.begin_step(first.end)
    assert end == pytest.approx(first.end + 39 * 0.010)
    model.add_request(request("b", list(range(50, 58)), max_tokens=2), first.end + 0.025)
    assert model.busy_until == pytest.approx(first.end + 0.030)
    cut = model.finish_step()
    assert (cut.iterations, cut.emitted) == (3, {"a": 3})


def test_same_seed_same_jittered_timeline() -> None:
    config = small_config(latency=LatencyModel(0.01, 0.001, 0.0, 0.0, 0.0, jitter=0.2))

    def durations(seed: int) -> list[float]:
        model = EngineModel(config, seed=seed)
        model.add_request(request("a", list(range(10)), max_tokens=20), 0.0)
        return [r.duration for r in run_until_idle(model)]

    assert durations(7) == durations(7)
    assert durations(7) != durations(8)
    assert all(d > 0 for d in durations(9))
