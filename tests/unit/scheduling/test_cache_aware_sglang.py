"""Table-driven tests of the ``cache-aware-sglang`` picker and its approximate tree."""

from __future__ import annotations

import pytest

from pilothouse.clock import ManualClock
from pilothouse.errors import ConfigError
from pilothouse.scheduling import SchedulingRequest, build_scheduler, resolve_config
from pilothouse.scheduling.context import PluginContext
from pilothouse.scheduling.interfaces import CycleState
from pilothouse.scheduling.plugins.pickers._approx_tree import ApproxTree
from pilothouse.scheduling.plugins.pickers.cache_aware_sglang import (
    CacheAwareSglangParameters,
    CacheAwareSglangPicker,
    is_imbalanced,
)
from pilothouse.scheduling.testing import endpoint, request
from pilothouse.scheduling.types import Endpoint, ProfileResult, SchedulingResult, ScoredEndpoint

CTX = PluginContext(ManualClock(), seed=1)


def _sizes_by_walk(tree: ApproxTree) -> dict[str, int]:
    sizes = dict.fromkeys(tree.tenants(), 0)
    for node in tree._nodes():
        for tenant in node.tenants:
            sizes[tenant] += len(node.text)
    return sizes


@pytest.mark.parametrize(
    ("inserts", "text", "matched", "tenant"),
    [
        pytest.param([], "hello", 0, None, id="cold"),
        pytest.param([("hello", "a")], "hello", 5, "a", id="exact"),
        pytest.param([("hello", "a")], "help", 3, "a", id="partial-edge"),
        pytest.param([("hello", "a"), ("help me", "b")], "help me now", 7, "b", id="after-split"),
        pytest.param([("hello", "a"), ("help me", "b")], "hex", 2, "a", id="shared-node-first"),
        pytest.param([("abc", "a")], "xyz", 0, "a", id="no-match-root"),
    ],
)
def test_prefix_match(
    inserts: list[tuple[str, str]], text: str, matched: int, tenant: str | None
) -> None:
    tree = ApproxTree()
    for i, (t, who) in enumerate(inserts):
        tree.insert(t, who, float(i))
    assert tree.prefix_match(text, 99.0) == (matched, tenant)


@pytest.mark.parametrize(
    "inserts",
    [
        pytest.param([("apple", "t1"), ("apricot", "t1"), ("banana", "t1")], id="one"),
        pytest.param(
            [("apple", "t1"), ("amplify", "t2"), ("application", "t2"), ("zebra", "t1")],
            id="two",
        ),
        pytest.param([("zero", "t1"), ("zero", "t2"), ("ze", "t3"), ("zebra", "t2")], id="same"),
    ],
)
def test_sizes_match_a_walk_of_the_tree(inserts: list[tuple[str, str]]) -> None:
    tree = ApproxTree()
    for i, (text, who) in enumerate(inserts):
        tree.insert(text, who, float(i))
    assert {t: tree.size(t) for t in tree.tenants()} == _sizes_by_walk(tree)


def test_evict_drops_least_recently_used_leaves_first() -> None:
    tree = ApproxTree()
    tree.insert("old-prefix-aaaa", "t1", 1.0)
    tree.insert("new-prefix-bbbb", "t1", 2.0)
    tree.insert("shared", "t2", 3.0)
    tree.evict(max_size=20)
    assert tree.size("t1") == 15
    assert tree.prefix_match("new-prefix-bbbb", 4.0) == (15, "t1")
    assert tree.prefix_match("old-prefix-aaaa", 4.0)[0] == 0
    assert tree.size("t2") == 6  # under budget: untouched
    assert {t: tree.size(t) for t in tree.tenants()} == _sizes_by_walk(tree)


def test_evict_keeps_nodes_other_tenants_still_hold() -> None:
    tree = ApproxTree()
    tree.insert("common-text", "t1", 1.0)
    tree.insert("common-text", "t2", 2.0)
    tree.insert("zzzzzzzzzzzz", "t1", 3.0)
    tree.evict(max_size=12)
    assert tree.size("t1") == 12
    assert tree.prefix_match("common-text", 3.0) == (11, "t2")


@pytest.mark.parametrize(
    ("loads", "abs_t", "rel_t", "expected"),
    [
        pytest.param([0, 33], 32, 1.0001, True, id="abs-and-rel"),
        pytest.param([0, 32], 32, 1.0001, False, id="abs-not-exceeded"),
        pytest.param([40, 80], 32, 1.5, True, id="rel-1.5-exceeded"),
        pytest.param([60, 80], 32, 1.5, False, id="rel-1.5-not-exceeded"),
        pytest.param([5, 5, 5], 0, 1.0001, False, id="equal"),
    ],
)
def test_imbalance_rule(loads: list[int], abs_t: int, rel_t: float, expected: bool) -> None:
    assert is_imbalanced(loads, abs_t, rel_t) is expected


def _pick(picker: CacheAwareSglangPicker, prompt: str, endpoints: list[Endpoint]) -> str:
    state = CycleState(now=0.0)
    req = request(prompt)
    targets = picker.pick(state, req, [ScoredEndpoint(e, 0.0) for e in endpoints])
    result = SchedulingResult("p", {"p": ProfileResult(targets=targets)})
    picker.post_schedule(state, req, result)
    return targets[0].name


PROMPT = "system prompt shared by the group " * 4


@pytest.mark.parametrize(
    ("history", "prompt", "loads", "expected"),
    [
        pytest.param([], PROMPT, {"a": 0, "b": 0}, "a", id="cold-first-smallest"),
        pytest.param([(PROMPT, "b")], PROMPT + "q1", {"a": 0, "b": 0}, "b", id="sticky"),
        pytest.param([(PROMPT, "b")], PROMPT, {"a": 0, "b": 33}, "a", id="imbalanced"),
        pytest.param([(PROMPT, "b")], PROMPT, {"a": 0, "b": 32}, "b", id="at-abs-threshold"),
        pytest.param([(PROMPT, "b")], "unrelated", {"a": 5, "b": 0}, "a", id="miss-smallest"),
        pytest.param([(PROMPT[:40], "b")], PROMPT, {"a": 0, "b": 0}, "a", id="below-threshold"),
    ],
)
def test_picker_rule(
    history: list[tuple[str, str]], prompt: str, loads: dict[str, int], expected: str
) -> None:
    picker = CacheAwareSglangPicker("c")
    for text, who in history:
        picker.tree.insert(text, who, 0.0)
    endpoints = [endpoint(name, in_flight=load) for name, load in loads.items()]
    assert _pick(picker, prompt, endpoints) == expected


def test_fallbacks_follow_load_and_max_targets() -> None:
    picker = CacheAwareSglangPicker("c", CacheAwareSglangParameters(max_targets=2))
    endpoints = [endpoint("a", in_flight=3), endpoint("b", in_flight=1), endpoint("c")]
    targets = picker.pick(
        CycleState(now=0.0), request("x"), [ScoredEndpoint(e, 0) for e in endpoints]
    )
    assert [e.name for e in targets] == ["a", "c"]


def test_periodic_eviction_uses_scheduler_time() -> None:
    params = CacheAwareSglangParameters(eviction_interval_s=10.0, max_tree_size=4)
    picker = CacheAwareSglangPicker("c", params)
    req = request("abcdefgh")
    result = SchedulingResult("p", {"p": ProfileResult(targets=(endpoint("a"),))})
    picker.post_schedule(CycleState(now=0.0), req, result)
    picker.post_schedule(CycleState(now=5.0), req, result)
    assert picker.tree.size("a") == 8
    picker.post_schedule(CycleState(now=10.0), req, result)
    assert picker.tree.size("a") == 0


def test_builtin_config_routes_a_shared_prefix_to_one_replica() -> None:
    scheduler = build_scheduler(resolve_config("cache-aware-sglang"), ManualClock(), seed=0)
    endpoints = [endpoint(f"r{i}") for i in range(4)]
    picks = {
        scheduler.schedule(
            SchedulingRequest(f"q{i}", "m", prompt=PROMPT + str(i)), endpoints
        ).target.name
        for i in range(10)
    }
    assert len(picks) == 1


@pytest.mark.parametrize(
    ("parameters", "path"),
    [
        pytest.param({"cache_threshold": 1.5}, "cache_threshold", id="threshold"),
        pytest.param({"balance_rel_threshold": 0.5}, "balance_rel_threshold", id="rel"),
        pytest.param({"max_tree_size": 0}, "max_tree_size", id="tree-size"),
        pytest.param({"eviction": 3}, "eviction", id="unknown"),
    ],
)
def test_bad_parameters_name_the_field(parameters: dict[str, object], path: str) -> None:
    with pytest.raises(ConfigError) as info:
        CacheAwareSglangPicker.create("c", parameters, CTX)
    assert info.value.path == path
