"""Table-driven tests of the built-in pickers."""

from __future__ import annotations

from collections import Counter

import pytest

from pilothouse.clock import ManualClock
from pilothouse.scheduling.context import PluginContext
from pilothouse.scheduling.plugins.pickers.max_score import MaxScorePicker
from pilothouse.scheduling.plugins.pickers.random_picker import RandomPicker
from pilothouse.scheduling.plugins.pickers.round_robin import RoundRobinPicker
from pilothouse.scheduling.testing import endpoint, run_picker
from pilothouse.scheduling.types import Endpoint

A, B, C, D = (endpoint(n) for n in "abcd")
CTX = PluginContext(ManualClock(), seed=1)


@pytest.mark.parametrize(
    ("scored", "max_targets", "expected"),
    [
        pytest.param([(A, 0.1), (B, 0.9), (C, 0.5)], None, ["b", "c", "a"], id="sorted"),
        pytest.param([(A, 0.1), (B, 0.9), (C, 0.5)], 1, ["b"], id="one-target"),
        pytest.param([(A, 0.1), (B, 0.9), (C, 0.5)], 2, ["b", "c"], id="two-targets"),
        pytest.param([(A, 3.0)], None, ["a"], id="single"),
        pytest.param([], None, [], id="empty"),
    ],
)
def test_max_score_order(
    scored: list[tuple[Endpoint, float]], max_targets: int | None, expected: list[str]
) -> None:
    assert run_picker(MaxScorePicker("m", CTX, max_targets=max_targets), scored) == expected


def test_max_score_breaks_top_ties_at_random_but_keeps_lower_scores_last() -> None:
    picker = MaxScorePicker("m", CTX)
    scored = [(A, 1.0), (B, 0.2), (C, 1.0), (D, 1.0 - 1e-12)]
    firsts: Counter[str] = Counter()
    for _ in range(300):
        targets = run_picker(picker, scored)
        firsts[targets[0]] += 1
        assert targets[-1] == "b"
    assert set(firsts) == {"a", "c", "d"}
    assert min(firsts.values()) > 50


def test_max_score_is_reproducible_with_a_seed() -> None:
    scored = [(A, 1.0), (B, 1.0), (C, 1.0)]
    runs = []
    for _ in range(2):
        picker = MaxScorePicker("m", CTX)
        runs.append([run_picker(picker, scored)[0] for _ in range(30)])
    assert runs[0] == runs[1]
    assert len(set(runs[0])) == 3


def test_random_picker_covers_all_and_is_seeded() -> None:
    scored = [(A, 0.0), (B, 5.0), (C, 0.0)]
    runs = []
    for _ in range(2):
        picker = RandomPicker("r", CTX, max_targets=1)
        runs.append([run_picker(picker, scored) for _ in range(200)])
    first, again = runs
    assert first == again
    counts = Counter(t[0] for t in first)
    assert set(counts) == {"a", "b", "c"}
    assert min(counts.values()) > 40


def test_random_picker_returns_a_permutation_as_fallbacks() -> None:
    targets = run_picker(RandomPicker("r", CTX), [(A, 0.0), (B, 0.0), (C, 0.0), (D, 0.0)])
    assert sorted(targets) == ["a", "b", "c", "d"]
    assert run_picker(RandomPicker("r", CTX), []) == []


@pytest.mark.parametrize(
    ("scored", "max_targets", "expected"),
    [
        pytest.param(
            [(C, 1.0), (A, 0.0), (B, 0.5)],
            1,
            [["a"], ["b"], ["c"], ["a"]],
            id="name-order-ignores-scores",
        ),
        pytest.param(
            [(A, 0.0), (B, 0.0), (C, 0.0)],
            None,
            [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"]],
            id="fallbacks-follow-rotation",
        ),
        pytest.param([], None, [[], []], id="empty"),
    ],
)
def test_round_robin(
    scored: list[tuple[Endpoint, float]], max_targets: int | None, expected: list[list[str]]
) -> None:
    picker = RoundRobinPicker("rr", max_targets=max_targets)
    assert [run_picker(picker, scored) for _ in expected] == expected


def test_round_robin_survives_a_shrinking_set() -> None:
    picker = RoundRobinPicker("rr", max_targets=1)
    assert run_picker(picker, [(A, 0), (B, 0), (C, 0)]) == ["a"]
    assert run_picker(picker, [(A, 0), (B, 0), (C, 0)]) == ["b"]
    assert run_picker(picker, [(A, 0), (C, 0)]) == ["a"]
    assert run_picker(picker, [(A, 0), (C, 0)]) == ["c"]
