"""The CPU tier of the engine model: offload on eviction, reload on a hit, LRU order, and
generated blocks entering the prefix cache."""

from __future__ import annotations

import pytest

from pilothouse.bench.workloads import ArrivalSpec, build_workload
from pilothouse.scheduling import resolve_config
from pilothouse.scheduling.config import SchedulerConfig, load_scheduler_config
from pilothouse.sim import BlocksRemoved, BlocksStored, EngineModel, chain_block_hashes
from pilothouse.sim.cluster import simulate
from pilothouse.sim.cluster_types import ClusterConfig
from pilothouse.sim.config import EngineConfig, EngineOverrides, apply_overrides
from pilothouse.sim.cpu_tier import CpuTier
from pilothouse.sim.presets import get_preset
from pilothouse.sim.types import MEDIUM_CPU, MEDIUM_GPU, EngineRequest
from tests.unit.sim.helpers import request, run_until_idle, small_config

# 1,000 KV bytes per token over 0.004 GB/s: 0.25 ms per reloaded token (a quarter of the
# flat model's 1 ms prefill per token), plus 2 ms per reload.
TIER = {"kv_bytes_per_token": 1000, "pcie_gb_s": 0.004, "cpu_load_latency_s": 0.002}
PROMPT = list(range(40))  # 10 blocks of 4
FILLER = list(range(1000, 1255))  # 255 tokens: all 64 GPU blocks


def evict_prompt(model: EngineModel) -> list[object]:
    """Cache PROMPT, then push it out of the GPU tier with FILLER; the filler's events."""
    model.add_request(request("a", PROMPT, max_tokens=1), 0.0)
    now = run_until_idle(model)[-1].end
    model.add_request(request("filler", FILLER, max_tokens=1), now)
    return [event for result in run_until_idle(model, now) for event in result.kv_events]


def test_cpu_tier_lru_order_and_touch() -> None:
    tier = CpuTier(3)
    stored: list[int] = []
    dropped: list[int] = []
    tier.offload([1, 2, 3], stored, dropped)
    tier.offload([4], stored, dropped)
    assert (stored, dropped) == ([1, 2, 3, 4], [1])
    tier.touch([2])  # reloaded: most recently used
    tier.offload([5, 4], stored, dropped)  # 4 is only refreshed
    assert dropped == [1, 3]
    assert [b in tier for b in (2, 4, 5)] == [True, True, True]
    assert tier.match([2, 4, 5, 9], 0, 4) == 3
    assert tier.match([2, 4, 5], 1, 2) == 1
    # a resumed (preempted) request's limit counts its generated tokens: past the prompt
    assert tier.match([9, 2, 4], 1, 7) == 2
    assert tier.match([2, 4], 2, 5) == 0


def test_cpu_tier_smaller_than_a_batch_keeps_its_last_blocks() -> None:
    tier = CpuTier(2)
    stored: list[int] = []
    dropped: list[int] = []
    tier.offload([1, 2, 3, 4], stored, dropped)
    assert (stored, dropped) == ([3, 4], [])


def test_eviction_offloads_to_cpu_with_events_in_vllm_order() -> None:
    model = EngineModel(small_config(num_cpu_blocks=32, **TIER))
    events = evict_prompt(model)
    hashes = set(chain_block_hashes(PROMPT, 4))
    cpu_stored = [e for e in events if isinstance(e, BlocksStored) and e.medium == MEDIUM_CPU]
    gpu_removed = [e for e in events if isinstance(e, BlocksRemoved) and e.medium == MEDIUM_GPU]
    assert set().union(*(e.block_hashes for e in cpu_stored)) == hashes
    assert set().union(*(e.block_hashes for e in gpu_removed)) == hashes
    assert all(e.parent_block_hash is None and e.token_ids == () for e in cpu_stored)
    assert events.index(cpu_stored[0]) < events.index(gpu_removed[0])  # copy, then free
    assert model.cpu_cached_blocks == 10


def test_cpu_hit_is_reloaded_at_bandwidth_cost_instead_of_prefilled() -> None:
    tiered = EngineModel(small_config(num_cpu_blocks=32, **TIER))
    plain = EngineModel(small_config())
    ttfts = []
    for model in (tiered, plain):
        evict_prompt(model)
        model.add_request(request("again", [*PROMPT, 7, 8, 9, 10], max_tokens=1), 100.0)
        results = run_until_idle(model, 100.0)
        (done,) = results[-1].finished
        ttfts.append(done.ttft)
        if model is tiered:
            assert done.cached_tokens == 40
            assert model.stats.cpu_cache_hits == 40
            assert model.stats.prefix_cache_hits == 0
            reloaded = [
                e
                for e in results[0].kv_events
                if isinstance(e, BlocksStored) and e.medium == MEDIUM_GPU
            ]
            assert reloaded[0].block_hashes[:10] == chain_block_hashes(PROMPT, 4)
        else:
            assert done.cached_tokens == 0
    # 10 ms step + 4 prefilled tokens + (2 ms + 40 x 0.25 ms) of reload, against 10 + 44 ms
    assert ttfts == [pytest.approx(0.026), pytest.approx(0.054)]


def test_a_small_cpu_tier_keeps_the_head_of_the_prefix() -> None:
    model = EngineModel(small_config(num_cpu_blocks=4, **TIER))
    evict_prompt(model)
    assert model.cpu_cached_blocks == 4
    model.add_request(request("again", [*PROMPT, 7], max_tokens=1), 100.0)
    (done,) = run_until_idle(model, 100.0)[-1].finished
    assert done.cached_tokens == 16  # the GPU evicts a prefix tail first: blocks 0..3 stay


def test_tier_off_by_default_and_config_checks() -> None:
    model = EngineModel(small_config())
    evict_prompt(model)
    assert model.cpu_cached_blocks == 0
    with pytest.raises(ValueError, match="kv_bytes_per_token"):
        small_config(num_cpu_blocks=4)
    preset = get_preset("qwen3-32b-tp2-h100")
    assert preset.num_cpu_blocks == 0
    assert not preset.cache_generated_blocks
    tiered = apply_overrides(preset, EngineOverrides(cpu_kv_gib=8))
    assert tiered.num_cpu_blocks == 8 * 2**30 // (256 * 1024 * 16)
    offload = get_preset("qwen3-32b-tp2-h100-offload")
    assert offload.num_cpu_blocks > offload.num_gpu_blocks
    assert offload.cache_generated_blocks


def _turn(tokens: list[int], output: list[int], *, cache: bool, rid: str) -> EngineRequest:
    chain = chain_block_hashes(tokens + output, 4)
    prompt = chain_block_hashes(tokens, 4)
    return EngineRequest(
        request_id=rid,
        prompt_tokens=len(tokens),
        max_tokens=len(output),
        block_hashes=prompt,
        token_ids=tuple(tokens),
        output_block_hashes=chain[len(prompt) :] if cache else (),
    )


@pytest.mark.parametrize("cache", [True, False])
def test_generated_blocks_are_cached_for_the_next_turn(cache: bool) -> None:
    model = EngineModel(small_config(cache_generated_blocks=cache))
    first, answer = list(range(10)), list(range(100, 107))  # 10 + 7 tokens: 16 computed
    model.add_request(_turn(first, answer, cache=True, rid="t1"), 0.0)
    results = run_until_idle(model)
    stored = [e for r in results for e in r.kv_events if isinstance(e, BlocksStored)]
    second = [*first, *answer, 200, 201, 202]
    model.add_request(_turn(second, [300], cache=False, rid="t2"), 1.0)
    (done,) = run_until_idle(model, 1.0)[-1].finished
    if cache:  # blocks 2 and 3 (prompt tail + answer) were generated and cached
        assert done.cached_tokens == 16
        assert stored[-1].block_hashes == chain_block_hashes(first + answer, 4)[2:4]
        assert stored[-1].token_ids == ()  # the engine does not know the answer's ids
    else:
        assert done.cached_tokens == 8
    assert model.kv_usage == 0.0


def _tier_aware_default(engine: EngineConfig) -> SchedulerConfig:
    """The ``default`` scheduler with its approx-prefix mirroring ``engine``'s tiers."""
    params = engine.approx_prefix_tiers()
    return load_scheduler_config(
        {
            "plugins": [
                {"type": "ready"},
                {"type": "approx-prefix", "parameters": params},
                {"type": "sticky-prefix"},
                {"type": "max-score"},
            ],
            "profiles": [
                {
                    "name": "default",
                    "plugins": [
                        {"ref": "ready"},
                        {"ref": "approx-prefix", "weight": 0},
                        {"ref": "sticky-prefix", "weight": 1},
                        {"ref": "max-score"},
                    ],
                }
            ],
        }
    )


def _chat_run(cpu_kv_gib: float, *, tier_aware: bool = False) -> tuple[float, float]:
    """Multi-turn chat on 2 replicas whose GPU cache holds ~2 sessions' context: the cache
    hit rate and TTFT p90, with a CPU tier of ``cpu_kv_gib`` GiB (0: none)."""
    params = {
        "system_prompts": "4",
        "system_tokens": "800",
        "user_tokens": "200",
        "answer_tokens": "100",
        "min_turns": "3",
        "max_turns": "5",
        "think_s": "20",
    }
    workload = build_workload("multi-turn-chat", block_size=16, seed=3, overrides=params)
    requests = list(workload.requests(4.0, 240, ArrivalSpec()))
    engine = apply_overrides(
        get_preset("llama-3.1-8b-h100"),
        EngineOverrides(num_gpu_blocks=400, cpu_kv_gib=cpu_kv_gib),
    )
    scheduler = _tier_aware_default(engine) if tier_aware else resolve_config("default")
    metrics = simulate(ClusterConfig(engine, 2), scheduler, requests).metrics
    assert metrics.completed == 240
    return metrics.cache_hit_rate, metrics.ttft_p90_s


def test_a_cpu_tier_raises_the_hit_rate_of_multi_turn_chat() -> None:
    plain_hits, plain_ttft = _chat_run(0)
    tier_hits, tier_ttft = _chat_run(8)  # 4,096 blocks of 16: ten times the GPU tier
    assert tier_hits > plain_hits + 0.1  # measured: 0.61 -> 0.80
    assert tier_ttft < plain_ttft  # reloads are cheaper than the prefill they replace
    aware_hits, _aware_ttft = _chat_run(8, tier_aware=True)  # the scheduler sees both tiers
    assert aware_hits > plain_hits + 0.1


def test_presets_give_the_prefix_scorers_their_tier_figures() -> None:
    offload = get_preset("llama-3.1-8b-h100-offload")
    params = offload.approx_prefix_tiers()
    assert params["lru_capacity_per_endpoint"] == 27_648
    assert params["offload_capacity_per_endpoint"] == offload.num_cpu_blocks
    assert offload.tier_costs() == {
        "prefill_s_per_token": 27e-6,
        "offload_load_s_per_token": pytest.approx(128 * 1024 / 50e9),
        "offload_load_latency_s": 0.001,
    }


def test_cpu_tier_match_stops_at_the_hashes_it_has() -> None:
    # A preempted sequence asks past its prompt's blocks (its total counts generated
    # tokens): the match ends where the hashes do instead of indexing past them.
    tier = CpuTier(4)
    tier.offload([1, 2], [], [])
    assert tier.match((1, 2), 2, 5) == 0
    assert tier.match((1, 2), 0, 5) == 2
