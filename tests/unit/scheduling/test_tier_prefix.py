"""Tier-aware prefix scoring: a hit scores the prefill it saves, GPU hits whole, offloaded
(CPU-tier) hits minus their reload; with nothing offloaded, the scores are the old fractions."""

from __future__ import annotations

import pytest

from pilothouse.endpoints.kv_index import KVBlockIndex
from pilothouse.engines.tokenizer import DummyTokenizer
from pilothouse.kvevents import BlockRemoved, BlockStored, KVEventBatch
from pilothouse.scheduling.interfaces import (
    LATENCY_UNCACHED_TOKENS_KEY,
    PREFIX_MATCH_KEY,
    CycleState,
)
from pilothouse.scheduling.plugins.scorers._tier_cost import TierCostParameters, saved_fraction
from pilothouse.scheduling.plugins.scorers.approx_prefix import (
    ApproxPrefixParameters,
    ApproxPrefixScorer,
)
from pilothouse.scheduling.plugins.scorers.precise_prefix import (
    PrecisePrefixParameters,
    PrecisePrefixScorer,
    TemplateTokenizer,
)
from pilothouse.scheduling.types import (
    Endpoint,
    ProfileResult,
    SchedulingRequest,
    SchedulingResult,
)

BS = 4
PROMPT = "alpha bravo charl delta echo foxtr golf hotel india julie kilo lima mike novem oscar papa"
TOKENS = DummyTokenizer().encode(PROMPT)  # 16 tokens: four blocks
# A reload costs a quarter of a prefill per token; no fixed latency unless a test sets one.
QUARTER = TierCostParameters(
    prefill_s_per_token=1.0, offload_load_s_per_token=0.25, offload_load_latency_s=0.0
)


def ep(name: str) -> Endpoint:
    return Endpoint(name=name, address=f"{name}:1", model="m", engine="sim")


def test_saved_fraction_by_tier() -> None:
    assert saved_fraction(0.5, 0.0, 100, QUARTER) == 0.5  # GPU only: the plain fraction
    assert saved_fraction(0.0, 0.5, 100, QUARTER) == pytest.approx(0.375)  # 0.5 x (1 - 1/4)
    assert saved_fraction(0.5, 0.5, 100, QUARTER) == pytest.approx(0.875)
    slow = QUARTER.model_copy(update={"offload_load_latency_s": 30.0})
    assert saved_fraction(0.0, 0.5, 100, slow) == pytest.approx(0.075)  # 50 x 0.75 - 30 s
    assert saved_fraction(0.0, 0.1, 100, slow) == 0.0  # a reload that costs more than it saves
    assert saved_fraction(0.0, 0.5, 0, slow) == pytest.approx(0.375)  # unknown length: no L


def _index(gpu: dict[str, int], cpu: dict[str, int]) -> KVBlockIndex:
    """Endpoints holding the first blocks of TOKENS on the GPU, or only offloaded."""
    index = KVBlockIndex()
    for name, blocks in {**gpu, **cpu}.items():
        hashes = [hash((name, i)) for i in range(blocks)]
        events: list[BlockStored | BlockRemoved] = [
            BlockStored(hashes, None, list(TOKENS[: blocks * BS]), BS, None, "GPU", None)
        ]
        if name in cpu:  # offloaded by vLLM's connector, then evicted from the GPU
            events.append(BlockStored(hashes, None, [], BS, None, "CPU", None))
            events.append(BlockRemoved(hashes, "GPU"))
        index.apply(name, KVEventBatch(0.0, list(events), 0))
    return index


def _precise(index: KVBlockIndex, costs: TierCostParameters = QUARTER) -> list[float]:
    params = PrecisePrefixParameters(tier_costs=costs)
    tokenizer = TemplateTokenizer(DummyTokenizer())
    plugin = PrecisePrefixScorer("pp", params, index=index, tokenizer=tokenizer)
    request = SchedulingRequest(request_id="r", model="m", prompt=PROMPT)
    names = sorted(index.endpoints())
    state = CycleState(0.0)
    scores = list(plugin.score(state, request, [ep(n) for n in names]))
    assert state.data[PREFIX_MATCH_KEY] == dict(zip(names, scores, strict=True))
    return scores


def test_a_gpu_hit_beats_a_cpu_hit_of_the_same_length() -> None:
    gpu, cpu = _precise(_index({"a": 4}, {"b": 4}))
    assert gpu == 1.0
    assert cpu == pytest.approx(0.75)


def test_a_long_cpu_hit_beats_a_short_gpu_hit_when_it_saves_more() -> None:
    short_gpu, long_cpu = _precise(_index({"a": 1}, {"b": 4}))
    assert (short_gpu, long_cpu) == (0.25, pytest.approx(0.75))
    # ... but not when one reload costs more than the prefill it saves
    slow = QUARTER.model_copy(update={"offload_load_latency_s": 100.0})
    assert _precise(_index({"a": 1}, {"b": 4}), slow) == [0.25, 0.0]


def test_a_partly_offloaded_prefix_scores_each_tier() -> None:
    index = _index({"a": 4}, {})
    block = hash(("a", 3))  # the last block moves to the CPU
    moved = [
        BlockStored([block], None, [], BS, None, "CPU", None),
        BlockRemoved([block], "GPU"),
    ]
    index.apply("a", KVEventBatch(0.0, list(moved), 0))
    assert _precise(index) == [pytest.approx(0.75 + 0.25 * 0.75)]


def test_without_offloaded_blocks_scores_are_the_match_fractions() -> None:
    assert _precise(_index({"a": 2, "b": 3, "c": 4}, {})) == [0.5, 0.75, 1.0]


def _approx(offload: int) -> ApproxPrefixScorer:
    params = ApproxPrefixParameters(
        block_size=4,
        lru_capacity_per_endpoint=2,
        offload_capacity_per_endpoint=offload,
        tier_costs=QUARTER,
    )
    return ApproxPrefixScorer("ap", params)


def _route(plugin: ApproxPrefixScorer, prompt: str, target: str) -> None:
    result = SchedulingResult("p", {"p": ProfileResult(targets=(ep(target),))})
    plugin.post_schedule(CycleState(0.0), SchedulingRequest("r", "m", prompt=prompt), result)


@pytest.mark.parametrize(("offload", "expected"), [(0, [0.0, 1.0]), (8, [0.75, 1.0])])
def test_approx_keeps_pushed_out_blocks_as_offloaded(offload: int, expected: list[float]) -> None:
    plugin = _approx(offload)
    _route(plugin, "abcdefgh", "a")
    _route(plugin, "WXYZwxyz", "a")  # pushes abcdefgh out of a's two recent blocks
    _route(plugin, "abcdefgh", "b")
    request = SchedulingRequest("r", "m", prompt="abcdefgh", prompt_tokens=2)
    assert list(plugin.score(CycleState(0.0), request, [ep("a"), ep("b")])) == expected
    assert plugin.index.size("a") == (4 if offload else 2)
    _route(plugin, "abcdefgh", "a")  # recorded again: recent, no longer offloaded
    assert list(plugin.score(CycleState(0.0), request, [ep("a"), ep("b")])) == [1.0, 1.0]


def _uncached_found(plugin: ApproxPrefixScorer, prompt: str) -> object:
    state = CycleState(0.0)
    request = SchedulingRequest("r", "m", prompt=prompt, prompt_tokens=2)
    score = list(plugin.score(state, request, [ep("a")]))
    return score, state.data[LATENCY_UNCACHED_TOKENS_KEY]


def test_latency_estimates_mirror_the_engines_cpu_tier_which_keeps_reloaded_copies() -> None:
    """Recent LRU: one 2-block prompt; offloaded: two. When P1 is reloaded the engine's CPU
    tier keeps (refreshes) its copy, so P3 pushed out next leaves no room for P2: the engine
    has dropped P2. Routing still scores P2 as offloaded (the routing view moved P1 out);
    the uncached tokens published for latency predictions say it is all to prefill."""
    plugin = _approx(4)
    for prompt in ("P1P1P1P1", "P2P2P2P2", "P3P3P3P3", "P1P1P1P1"):
        _route(plugin, prompt, "a")
    assert _uncached_found(plugin, "P2P2P2P2") == ([0.75], {"a": 2})
    assert _uncached_found(plugin, "P3P3P3P3") == ([0.75], {"a": 0})  # a quarter, rounded
    assert _uncached_found(plugin, "P1P1P1P1") == ([1.0], {"a": 0})
    assert _uncached_found(plugin, "P4P4P4P4") == ([0.0], {"a": 2})
