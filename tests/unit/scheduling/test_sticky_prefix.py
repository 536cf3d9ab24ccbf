"""Table-driven tests of the sticky-prefix scorer: warm until relatively overloaded."""

from __future__ import annotations

import pytest

from pilothouse.clock import ManualClock
from pilothouse.errors import ConfigError
from pilothouse.scheduling import resolve_config
from pilothouse.scheduling.interfaces import (
    PREFIX_INDEX_SIZE_KEY,
    PREFIX_MATCH_KEY,
    UNCACHED_TOKENS_KEY,
    CycleState,
)
from pilothouse.scheduling.plugins.scorers.sticky_prefix import (
    StickyPrefixParameters,
    StickyPrefixScorer,
)
from pilothouse.scheduling.scheduler import build_scheduler
from pilothouse.scheduling.types import Endpoint, SchedulingRequest
from pilothouse.scheduling.validation import parse_parameters


def _eps(loads: tuple[int, ...]) -> list[Endpoint]:
    return [
        Endpoint(name=n, address=f"{n}:1", model="m", in_flight=load)
        for n, load in zip("abcd", loads, strict=False)
    ]


def _req(tokens: int = 1000, prompt: str = "") -> SchedulingRequest:
    return SchedulingRequest(request_id="r", model="m", prompt=prompt, prompt_tokens=tokens)


@pytest.mark.parametrize(
    ("loads", "match", "sizes", "chosen"),
    [
        pytest.param((0, 0, 0, 0), {}, {}, "a", id="idle-cold-first"),
        pytest.param(
            (0, 0, 0, 0), {}, {"a": 9, "b": 3, "c": 5, "d": 7}, "b", id="cold-smallest-index"
        ),
        pytest.param(
            (0, 0, 2, 0), {}, {"a": 9, "b": 3, "c": 1, "d": 3}, "c", id="cold-load-is-second"
        ),
        pytest.param(
            (20, 0, 0, 0), {}, {"a": 0, "b": 3, "c": 5, "d": 7}, "b", id="cold-skips-overloaded"
        ),
        pytest.param((7, 1, 1, 1), {"a": 0.9}, {}, "a", id="warm-within-slack"),
        # mean 4, limit 1.25 x 4 + 4 = 9: a warm replica with 13 in flight is overloaded
        pytest.param((13, 1, 1, 1), {"a": 0.9}, {}, "b", id="warm-overloaded-spills"),
        pytest.param((13, 1, 0, 1), {"a": 0.9, "b": 0.5}, {}, "c", id="spill-least-busy"),
        pytest.param((13, 1, 1, 1), {"a": 0.9, "c": 0.5}, {}, "c", id="spill-tie-best-match"),
        # all busy alike: nothing is overloaded, the prefix stays put
        pytest.param((40, 30, 30, 30), {"a": 0.9}, {}, "a", id="all-busy-stays-sticky"),
        pytest.param((6, 2, 1, 1), {"a": 0.9, "b": 0.88}, {}, "b", id="least-busy-warm"),
        pytest.param((6, 2, 1, 1), {"a": 0.9, "b": 0.8}, {}, "a", id="outside-tolerance"),
    ],
)
def test_one_choice_per_request(
    loads: tuple[int, ...], match: dict[str, float], sizes: dict[str, int], chosen: str
) -> None:
    scorer = StickyPrefixScorer("s")
    state = CycleState(now=0.0)
    state.data[PREFIX_MATCH_KEY] = match
    state.data[PREFIX_INDEX_SIZE_KEY] = sizes
    endpoints = _eps(loads)
    scores = scorer.score(state, _req(), endpoints)
    assert scores == [1.0 if e.name == chosen else 0.0 for e in endpoints]


@pytest.mark.parametrize(
    ("waits", "match", "chosen"),
    [
        pytest.param((3, 0, 1), {"a": 0.9, "b": 0.9}, "b", id="warm-fewest-awaiting-first-token"),
        pytest.param((0, 0, 0), {"a": 0.9, "b": 0.9}, "b", id="then-fewest-in-flight"),
        pytest.param(
            (3, 2, 0), {"a": 0.9, "b": 0.9, "c": 0.0}, "b", id="cold-never-wins-unless-spill"
        ),
    ],
)
def test_warm_replicas_are_ranked_by_requests_awaiting_their_first_token(
    waits: tuple[int, ...], match: dict[str, float], chosen: str
) -> None:
    endpoints = [
        e.evolve(awaiting_first_token=w) for e, w in zip(_eps((3, 2, 1)), waits, strict=True)
    ]
    state = CycleState(now=0.0)
    state.data[PREFIX_MATCH_KEY] = match
    scores = StickyPrefixScorer("s").score(state, _req(), endpoints)
    assert scores == [1.0 if e.name == chosen else 0.0 for e in endpoints]


@pytest.mark.parametrize(
    ("load", "match"),
    [
        pytest.param(0, {}, id="cold"),
        pytest.param(0, {"a": 0.75}, id="warm"),
        pytest.param(500, {"a": 0.75}, id="overloaded"),
        pytest.param(0, {"a": 0.1}, id="below-min-match"),
    ],
)
def test_a_single_candidate_is_chosen_with_its_uncached_tokens_noted(
    load: int, match: dict[str, float]
) -> None:
    """One candidate (a one-replica model, or one left by the filters) is the choice
    whatever its load or match: scored without the fleet-wide rules, same result."""
    state = CycleState(now=0.0)
    state.data[PREFIX_MATCH_KEY] = match
    endpoint = _eps((load,))[0].evolve(in_flight_tokens=90_000)
    scorer = StickyPrefixScorer("s", StickyPrefixParameters(min_match=0.5, backlog_slack_tokens=0))
    assert scorer.score(state, _req(1000), [endpoint]) == [1.0]
    assert state.data[UNCACHED_TOKENS_KEY] == {"a": round(1000 * (1 - match.get("a", 0.0)))}


def test_publishes_uncached_tokens_per_endpoint() -> None:
    state = CycleState(now=0.0)
    state.data[PREFIX_MATCH_KEY] = {"a": 0.75}
    StickyPrefixScorer("s").score(state, _req(1000), _eps((0, 0)))
    assert state.data[UNCACHED_TOKENS_KEY] == {"a": 250, "b": 1000}


def test_parameters_move_the_overload_line() -> None:
    state = CycleState(now=0.0)
    state.data[PREFIX_MATCH_KEY] = {"a": 1.0}
    endpoints = _eps((6, 2))  # mean 4
    strict = StickyPrefixScorer("s", StickyPrefixParameters(overload_ratio=0, overload_slack=1))
    loose = StickyPrefixScorer("s", StickyPrefixParameters(overload_ratio=1, overload_slack=0))
    assert strict.score(state, _req(), endpoints) == [0.0, 1.0]
    assert loose.score(state, _req(), endpoints) == [1.0, 0.0]


def test_no_endpoints_no_scores() -> None:
    assert list(StickyPrefixScorer("s").score(CycleState(now=0.0), _req(), [])) == []


@pytest.mark.parametrize(
    "bad",
    [
        {"overload_ratio": -1},
        {"warm_tolerance": 2},
        {"overload_slack": -0.5},
        {"min_match": 2},
        {"backlog_ratio": 0.5},
        {"backlog_slack_tokens": -1},
        {"x": 1},
    ],
)
def test_bad_parameters_are_rejected(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        parse_parameters(StickyPrefixParameters, bad)


def test_default_config_sticks_then_spills_a_hot_prefix() -> None:
    """Through the shipped default: a repeated prompt stays on its replica until that replica
    carries clearly more than the others, then it spreads."""
    scheduler = build_scheduler(resolve_config("default"), ManualClock())
    endpoints = _eps((0, 0, 0, 0))
    prompt = "system: you are a helpful assistant. " * 40
    first = scheduler.schedule(_req(500, prompt), endpoints).target.name
    loads = {e.name: 0 for e in endpoints}
    picks = []
    for _ in range(12):
        snapshot = [e.evolve(in_flight=loads[e.name]) for e in endpoints]
        target = scheduler.schedule(_req(500, prompt), snapshot).target.name
        loads[target] += 1
        picks.append(target)
    # sticky while the warm replica is within 1.5 x mean + 1 in flight ...
    assert picks[:2] == [first] * 2
    # ... then the hot prefix spills and spreads
    assert len(set(picks)) > 1


def test_a_match_under_min_match_is_placed_cold() -> None:
    """A short shared prefix ahead of a long unique input (a batch job's document) is placed
    where the least is cached, not piled onto the replica holding the prefix."""
    state = CycleState(now=0.0)
    state.data[PREFIX_MATCH_KEY] = {"a": 0.25}
    state.data[PREFIX_INDEX_SIZE_KEY] = {"a": 9, "b": 3}
    endpoints = _eps((1, 1))
    sticky = StickyPrefixScorer("s")
    placed = StickyPrefixScorer("s", StickyPrefixParameters(min_match=0.5))
    assert sticky.score(state, _req(), endpoints) == [1.0, 0.0]
    assert placed.score(state, _req(), endpoints) == [0.0, 1.0]
    state.data[PREFIX_MATCH_KEY] = {"a": 0.5}
    assert placed.score(state, _req(), endpoints) == [1.0, 0.0]


def _backlogged(backlogs: tuple[int, ...], loads: tuple[int, ...] = ()) -> list[Endpoint]:
    """Endpoints with these prefill backlogs (uncached prompt tokens awaiting a first token)."""
    return [
        e.evolve(in_flight_tokens=b)
        for e, b in zip(_eps(loads or (1,) * len(backlogs)), backlogs, strict=True)
    ]


_BACKLOG = StickyPrefixParameters(backlog_ratio=1.5, backlog_slack_tokens=8_000)


@pytest.mark.parametrize(
    ("backlogs", "match", "sizes", "chosen"),
    [
        # A 20k-token prompt, all cached on a: cost a = backlog + 0, b and c = backlog + 20k.
        # Limit 1.5 x the mean cost + 8k: (50k, 20k, 20k) -> 53k, (70k, 20k, 20k) -> 63k.
        pytest.param((50_000, 0, 0), {"a": 1.0}, {}, "a", id="warm-under-the-limit-stays"),
        pytest.param((70_000, 0, 0), {"a": 1.0}, {}, "b", id="warm-backlogged-spills"),
        pytest.param((70_000, 5_000, 0), {"a": 1.0}, {}, "c", id="spill-to-shortest-queue"),
        # Everyone queues: the limit grows with the mean, the prefix stays put.
        pytest.param((200_000, 150_000, 150_000), {"a": 1.0}, {}, "a", id="all-busy-stays"),
        # Half cached on a and b: a is backlogged, b (warm too) is the cheapest.
        pytest.param((200_000, 0, 0), {"a": 0.5, "b": 0.5}, {}, "b", id="other-warm-replica"),
        # Cold: the smallest index among the replicas that are not backlogged.
        pytest.param((93_000, 0, 0), {}, {"a": 1, "b": 9, "c": 5}, "c", id="cold-skips-backlogged"),
        pytest.param((0, 0, 0), {}, {"a": 1, "b": 9, "c": 5}, "a", id="cold-smallest-index"),
    ],
)
def test_a_long_prefill_queue_is_backlogged(
    backlogs: tuple[int, ...], match: dict[str, float], sizes: dict[str, int], chosen: str
) -> None:
    """A warm replica whose prefill queue (in tokens) is long against the fleet's mean
    spills, though it carries no more requests than the others."""
    state = CycleState(now=0.0)
    state.data[PREFIX_MATCH_KEY] = match
    state.data[PREFIX_INDEX_SIZE_KEY] = sizes
    endpoints = _backlogged(backlogs)
    scores = StickyPrefixScorer("s", _BACKLOG).score(state, _req(20_000), endpoints)
    assert scores == [1.0 if e.name == chosen else 0.0 for e in endpoints]


def test_without_backlog_slack_a_long_queue_stays_sticky() -> None:
    state = CycleState(now=0.0)
    state.data[PREFIX_MATCH_KEY] = {"a": 1.0}
    endpoints = _backlogged((10_000_000, 0, 0))
    assert StickyPrefixScorer("s").score(state, _req(20_000), endpoints) == [1.0, 0.0, 0.0]


def test_the_request_count_rule_still_comes_first() -> None:
    """Overloaded by requests: spill to the least busy, whatever the token queues say."""
    state = CycleState(now=0.0)
    state.data[PREFIX_MATCH_KEY] = {"a": 1.0}
    endpoints = _backlogged((0, 50_000, 0), loads=(13, 1, 2))
    scores = StickyPrefixScorer("s", _BACKLOG).score(state, _req(20_000), endpoints)
    assert scores == [0.0, 1.0, 0.0]


def test_default_config_spills_a_warm_replica_with_a_long_prefill_queue() -> None:
    scheduler = build_scheduler(resolve_config("default"), ManualClock())
    prompt = "document. " * 2000
    endpoints = _eps((0, 0))
    first = scheduler.schedule(_req(20_000, prompt), endpoints).target.name
    other = "b" if first == "a" else "a"

    def queued(backlog: int) -> list[Endpoint]:
        tokens = {first: backlog, other: 0}
        return [e.evolve(in_flight=1, in_flight_tokens=tokens[e.name]) for e in endpoints]

    # limit: 1.5 x the mean of (backlog, the whole 20k-token prompt) + 8k: 92k of backlog
    assert scheduler.schedule(_req(20_000, prompt), queued(80_000)).target.name == first
    assert scheduler.schedule(_req(20_000, prompt), queued(100_000)).target.name == other
