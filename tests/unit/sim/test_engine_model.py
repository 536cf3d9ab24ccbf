"""The engine model in virtual time, with a flat latency model: 10 ms/step + 1 ms/prompt token."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pilothouse.sim import (
    AllBlocksClearedEvent,
    BlocksRemoved,
    BlocksStored,
    EngineModel,
    chain_block_hashes,
)
from tests.unit.sim.helpers import request, run_until_idle, small_config


def test_single_request_timeline() -> None:
    model = EngineModel(small_config())
    model.add_request(request("a", list(range(10)), max_tokens=3), 0.0)
    results = run_until_idle(model)
    assert [round(r.duration, 9) for r in results] == [0.020, 0.010, 0.010]
    assert [r.emitted for r in results] == [{"a": 1}] * 3
    assert results[0].first_tokens == ("a",)
    (done,) = results[-1].finished
    assert done.completion_tokens == 3
    assert done.finish_reason == "length"
    assert done.ttft == pytest.approx(0.020)
    assert done.e2e_latency == pytest.approx(0.040)
    assert done.queue_time == 0.0
    assert model.num_running == model.num_waiting == 0
    assert model.kv_usage == 0.0
    assert "a" not in model


def test_stop_after_finishes_early_with_reason_stop() -> None:
    model = EngineModel(small_config())
    model.add_request(request("a", list(range(8)), max_tokens=10, stop_after=2), 0.0)
    (done,) = run_until_idle(model)[-1].finished
    assert (done.completion_tokens, done.finish_reason) == (2, "stop")
    assert model.stats.finished == {"stop": 1}


def test_long_prompt_is_prefilled_in_budget_sized_chunks() -> None:
    model = EngineModel(small_config(max_num_batched_tokens=64))
    model.add_request(request("a", list(range(100)), max_tokens=1), 0.0)
    results = run_until_idle(model)
    assert [r.prefill_tokens for r in results] == [64, 36]
    assert [r.emitted for r in results] == [{}, {"a": 1}]
    assert results[-1].finished[0].ttft == pytest.approx(0.074 + 0.046)


def test_continuous_batching_shares_steps() -> None:
    model = EngineModel(small_config())
    model.add_request(request("a", list(range(10)), max_tokens=2), 0.0)
    model.add_request(request("b", list(range(100, 110)), max_tokens=3), 0.0)
    first = model.step(0.0)
    assert first is not None
    assert first.prefill_tokens == 20
    assert set(first.first_tokens) == {"a", "b"}
    second = model.step(first.end)
    assert second is not None
    assert second.emitted == {"a": 1, "b": 1}
    assert second.decode_tokens == 2
    assert [f.request_id for f in second.finished] == ["a"]


def test_decode_runs_before_a_new_prefill_in_the_same_step() -> None:
    model = EngineModel(small_config(max_num_batched_tokens=16, max_num_seqs=4))
    model.add_request(request("a", list(range(8)), max_tokens=5), 0.0)
    first = model.step(0.0)
    assert first is not None
    model.add_request(request("b", list(range(100, 140)), max_tokens=2), first.end)
    mixed = model.step(first.end)
    assert mixed is not None
    assert (mixed.decode_tokens, mixed.prefill_tokens) == (1, 15)  # budget 16 - 1 decode


def test_max_num_seqs_limits_the_batch() -> None:
    model = EngineModel(small_config(max_num_seqs=2))
    for name, offset in (("a", 0), ("b", 100), ("c", 200)):
        model.add_request(request(name, list(range(offset, offset + 8)), max_tokens=2), 0.0)
    first = model.step(0.0)
    assert first is not None
    assert (model.num_running, model.num_waiting) == (2, 1)
    results = run_until_idle(model, first.end)
    third = next(f for r in results for f in r.finished if f.request_id == "c")
    assert third.queue_time == pytest.approx(first.duration + 0.010)


def test_prefix_cache_hits_and_stored_events() -> None:
    model = EngineModel(small_config())
    prompt = list(range(16))
    model.add_request(request("a", prompt, max_tokens=2), 0.0)
    results = run_until_idle(model)
    (stored,) = [e for r in results for e in r.kv_events]
    hashes = chain_block_hashes(prompt, 4)
    assert stored == BlocksStored(hashes, None, tuple(prompt), None)

    model.add_request(request("b", [*prompt, 50, 51, 52, 53], max_tokens=1), 1.0)
    result = model.step(1.0)
    assert result is not None
    assert result.duration == pytest.approx(0.010 + 0.004)  # only 4 uncached tokens
    assert result.finished[0].cached_tokens == 16
    (event,) = result.kv_events
    assert isinstance(event, BlocksStored)
    assert event.parent_block_hash == hashes[-1]
    assert event.token_ids == (50, 51, 52, 53)
    stats = model.stats
    assert (stats.prefix_cache_queries, stats.prefix_cache_hits) == (16 + 20, 16)


def test_identical_prompt_still_computes_its_last_block() -> None:
    model = EngineModel(small_config())
    prompt = list(range(16))
    model.add_request(request("a", prompt, max_tokens=1), 0.0)
    run_until_idle(model)
    model.add_request(request("b", prompt, max_tokens=1), 1.0)
    result = model.step(1.0)
    assert result is not None
    assert result.prefill_tokens == 4
    assert result.finished[0].cached_tokens == 12
    assert result.kv_events == ()  # the recomputed block is adopted, not announced again


def test_lru_eviction_reports_removed_blocks_tail_first() -> None:
    model = EngineModel(small_config(num_gpu_blocks=8, max_model_len=32))
    a, b = list(range(16)), list(range(100, 116))
    model.add_request(request("a", a, max_tokens=2), 0.0)
    run_until_idle(model)
    model.add_request(request("b", b, max_tokens=2), 1.0)
    events = [e for r in run_until_idle(model, 1.0) for e in r.kv_events]
    removed = [e for e in events if isinstance(e, BlocksRemoved)]
    hashes_a = chain_block_hashes(a, 4)
    assert [e.block_hashes for e in removed] == [(hashes_a[3],)]
    model.add_request(request("c", a, max_tokens=1), 2.0)
    result = model.step(2.0)
    assert result is not None
    assert result.finished[0].cached_tokens == 12  # three of a's blocks survived


def test_preemption_recomputes_the_last_admitted_request() -> None:
    model = EngineModel(small_config(num_gpu_blocks=8, max_model_len=32))
    model.add_request(request("a", list(range(8)), max_tokens=16), 0.0)
    model.add_request(request("b", list(range(100, 108)), max_tokens=16), 0.0)
    results = run_until_idle(model)
    preempted = [rid for r in results for rid in r.preempted]
    assert preempted
    assert set(preempted) == {"b"}
    finished = {f.request_id: f for r in results for f in r.finished}
    assert finished["a"].completion_tokens == finished["b"].completion_tokens == 16
    assert finished["b"].num_preemptions == len(preempted)
    assert model.stats.num_preemptions == len(preempted)
    assert sum(n for r in results for n in r.emitted.values()) == 32
    assert model.pool.used_blocks == 0


def test_lora_slots_limit_adapters_in_the_batch() -> None:
    config = small_config(max_loras=1)
    model = EngineModel(replace(config, latency=replace(config.latency, lora_load_s=0.005)))
    model.add_request(request("a1", list(range(8)), max_tokens=3, lora="a"), 0.0)
    model.add_request(request("b1", list(range(8)), max_tokens=3, lora="b"), 0.0)
    model.add_request(request("a2", list(range(50, 58)), max_tokens=3, lora="a"), 0.0)
    first = model.step(0.0)
    assert first is not None
    assert first.duration == pytest.approx(0.010 + 0.016 + 0.005)  # one adapter load
    assert set(first.first_tokens) == {"a1", "a2"}
    assert model.running_loras == {"a"}
    assert model.waiting_loras == {"b"}
    results = run_until_idle(model, first.end)
    b1 = next(f for r in results for f in r.finished if f.request_id == "b1")
    assert b1.lora == "b"
    assert b1.queue_time == pytest.approx(first.duration + 0.020)
    assert model.running_loras == model.waiting_loras == frozenset()


def test_abort_releases_blocks() -> None:
    model = EngineModel(small_config())
    model.add_request(request("a", list(range(10)), max_tokens=50), 0.0)
    model.add_request(request("b", list(range(20, 30)), max_tokens=50), 0.0)
    result = model.step(0.0)
    assert result is not None
    assert model.abort_request("a", result.end) is True
    assert model.abort_request("a", result.end) is False
    assert model.num_running == 1
    assert model.abort_request("b", result.end) is True
    assert model.pool.used_blocks == 0
    assert model.stats.finished == {"abort": 2}
    assert model.step(result.end) is None


def test_reset_prefix_cache_only_when_idle() -> None:
    model = EngineModel(small_config())
    model.add_request(request("a", list(range(10)), max_tokens=2), 0.0)
    first = model.step(0.0)
    assert first is not None
    assert model.reset_prefix_cache() is None
    results = run_until_idle(model, first.end)
    assert model.reset_prefix_cache() == AllBlocksClearedEvent()
    assert model.pool.cached_blocks == 0
    assert results


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_tokens": 300}, "max_model_len"),
        ({"lora": "x"}, "max_loras"),
    ],
)
def test_invalid_requests(kwargs: dict[str, object], message: str) -> None:
    model = EngineModel(small_config())
    with pytest.raises(ValueError, match=message):
        model.add_request(request("a", list(range(8)), **kwargs), 0.0)  # type: ignore[arg-type]


def test_stepping_contract_is_enforced() -> None:
    model = EngineModel(small_config())
    model.add_request(request("a", list(range(8))), 0.0)
    with pytest.raises(ValueError, match="duplicate"):
        model.add_request(request("a", list(range(8))), 0.0)
    with pytest.raises(RuntimeError, match="no step in flight"):
        model.finish_step()
    end = model.begin_step(0.0)
    assert end == model.busy_until
    with pytest.raises(RuntimeError, match="already in flight"):
        model.begin_step(0.0)
    model.finish_step()
    with pytest.raises(ValueError, match="before the previous one ended"):
        model.begin_step(0.0)


def test_preempted_lora_request_counts_as_waiting_again() -> None:
    model = EngineModel(small_config(num_gpu_blocks=8, max_model_len=32, max_loras=2))
    model.add_request(request("a", list(range(8)), max_tokens=16, lora="x"), 0.0)
    model.add_request(request("b", list(range(100, 108)), max_tokens=16, lora="y"), 0.0)
    assert model.waiting_loras == {"x", "y"}
    now, seen_waiting = 0.0, set()
    for _ in range(100):
        result = model.step(now)
        if result is None:
            break
        now = result.end
        if result.preempted:
            seen_waiting |= model.waiting_loras
    assert seen_waiting == {"y"}
    assert model.waiting_loras == model.running_loras == frozenset()
    model.add_request(request("c", list(range(8)), max_tokens=2, lora="x"), now)
    assert model.abort_request("c", now)
    assert model.waiting_loras == frozenset()
