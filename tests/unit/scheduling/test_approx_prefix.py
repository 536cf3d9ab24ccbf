"""The approximate prefix-affinity scorer and its routing history."""

from __future__ import annotations

import pytest

from pilothouse.scheduling.interfaces import CycleState
from pilothouse.scheduling.plugins.scorers._block_index import BlockIndex
from pilothouse.scheduling.plugins.scorers.approx_prefix import (
    ApproxPrefixParameters,
    ApproxPrefixScorer,
    prefix_hashes,
)
from pilothouse.scheduling.testing import endpoint, request
from pilothouse.scheduling.types import (
    ProfileResult,
    SchedulingRequest,
    SchedulingResult,
)

EPS = [endpoint("a"), endpoint("b"), endpoint("c")]


def _scorer(block_size: int = 4, capacity: int = 1000, max_blocks: int = 256) -> ApproxPrefixScorer:
    params = ApproxPrefixParameters(
        block_size=block_size, lru_capacity_per_endpoint=capacity, max_prefix_blocks=max_blocks
    )
    return ApproxPrefixScorer("prefix", params)


def _route(scorer: ApproxPrefixScorer, req: SchedulingRequest, target: str) -> None:
    """Tell the scorer a cycle sent ``req`` to ``target``."""
    chosen = next(e for e in EPS if e.name == target)
    result = SchedulingResult("p", {"p": ProfileResult(targets=(chosen,))})
    scorer.post_schedule(CycleState(0.0), req, result)


def _scores(scorer: ApproxPrefixScorer, prompt: str) -> list[float]:
    return list(scorer.score(CycleState(0.0), request(prompt), EPS))


@pytest.mark.parametrize(
    ("history", "prompt", "expected"),
    [
        pytest.param([], "abcdefgh", [0.0, 0.0, 0.0], id="nothing-seen"),
        pytest.param([("abcdefgh", "b")], "abcdefgh", [0.0, 1.0, 0.0], id="exact-repeat"),
        pytest.param([("abcdefgh", "b")], "abcdWXYZ", [0.0, 0.5, 0.0], id="half-shared"),
        pytest.param([("abcdefgh", "b")], "abcdefghijklmnop", [0.0, 0.5, 0.0], id="longer"),
        pytest.param([("abcdefgh", "b")], "XXXXefgh", [0.0, 0.0, 0.0], id="suffix-not-prefix"),
        pytest.param([("abcdefgh", "b")], "abc", [0.0, 0.0, 0.0], id="shorter-than-a-block"),
        pytest.param([("abcdefgh", "b")], "abcdefg", [0.0, 1.0, 0.0], id="partial-block-ignored"),
        pytest.param(
            [("abcdefgh", "a"), ("abcdefghijkl", "c")],
            "abcdefghijkl",
            [2 / 3, 0.0, 1.0],
            id="longest-match-per-endpoint",
        ),
    ],
)
def test_prefix_scores(history: list[tuple[str, str]], prompt: str, expected: list[float]) -> None:
    scorer = _scorer(block_size=4)
    for seen, target in history:
        _route(scorer, request(seen), target)
    assert _scores(scorer, prompt) == pytest.approx(expected)


def test_hashes_chain_on_the_parent() -> None:
    one = prefix_hashes("abcdWXYZ", 4, 100)
    two = prefix_hashes("efghWXYZ", 4, 100)
    assert len(one) == 2
    assert one[0] != two[0]
    assert one[1] != two[1]  # same block text, different prefix
    assert prefix_hashes("abcdWXYZ", 4, 100) == one


@pytest.mark.parametrize(
    ("prompt", "block_size", "max_blocks", "count"),
    [
        pytest.param("x" * 10, 4, 100, 2, id="floor"),
        pytest.param("x" * 100, 4, 5, 5, id="capped"),
        pytest.param("", 4, 5, 0, id="empty"),
    ],
)
def test_hash_count(prompt: str, block_size: int, max_blocks: int, count: int) -> None:
    assert len(prefix_hashes(prompt, block_size, max_blocks)) == count


def test_lora_separates_prefixes() -> None:
    scorer = _scorer()
    base = SchedulingRequest(request_id="1", model="m", prompt="abcdefgh")
    _route(scorer, base, "a")
    adapted = SchedulingRequest(request_id="2", model="m", prompt="abcdefgh", lora="sql")
    assert list(scorer.score(CycleState(0.0), adapted, EPS)) == [0.0, 0.0, 0.0]


def test_hashes_are_computed_once_per_cycle() -> None:
    scorer = _scorer()
    state = CycleState(0.0)
    req = request("abcdefgh")
    first = scorer.hashes(state, req)
    assert scorer.hashes(state, req) is first
    assert len(state.data) == 1


def test_post_schedule_records_first_target_of_every_profile() -> None:
    scorer = _scorer()
    req = request("abcdefgh")
    result = SchedulingResult(
        "decode",
        {
            "decode": ProfileResult(targets=(EPS[0], EPS[1])),
            "prefill": ProfileResult(targets=(EPS[2],)),
        },
    )
    scorer.post_schedule(CycleState(0.0), req, result)
    assert _scores(scorer, "abcdefgh") == [1.0, 0.0, 1.0]


def test_capacity_forgets_the_tail_of_a_prefix_first() -> None:
    scorer = _scorer(block_size=4, capacity=2)
    _route(scorer, request("abcdefghijkl"), "a")  # three blocks, room for two
    assert scorer.index.size("a") == 2
    assert _scores(scorer, "abcdefghijkl") == pytest.approx([2 / 3, 0.0, 0.0])


def test_block_index_evicts_least_recent_blocks() -> None:
    index = BlockIndex(capacity_per_endpoint=3, max_endpoints=10)
    index.record("a", [1, 2])
    index.record("a", [3, 4])
    assert index.match("a", [3, 4]) == 2
    assert index.match("a", [1]) == 1
    assert index.match("a", [1, 2]) == 1  # block 2 was the oldest


def test_block_index_ages_out_endpoints_never_seen_again() -> None:
    index = BlockIndex(capacity_per_endpoint=10, max_endpoints=2)
    index.record("old", [1])
    index.record("b", [1])
    index.record("old", [2])  # refreshes "old"
    index.record("c", [1])  # evicts "b", the least recently recorded
    assert index.endpoints() == ["old", "c"]
    assert index.match("b", [1]) == 0


@pytest.mark.parametrize(("capacity", "endpoints"), [(0, 1), (1, 0)])
def test_block_index_rejects_non_positive_capacities(capacity: int, endpoints: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        BlockIndex(capacity, endpoints)
