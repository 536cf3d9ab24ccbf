"""Traffic splits: weighted rotation, sticky sessions, body rewriting."""

from __future__ import annotations

from collections import Counter

import orjson
import pytest

from pilothouse.config.traffic import TrafficSplit, VersionWeight
from pilothouse.routing.traffic import TrafficSplitter, with_model


def split(**weights: int) -> TrafficSplit:
    return TrafficSplit(
        name="pub", versions=[VersionWeight(model=m, weight=w) for m, w in weights.items()]
    )


@pytest.mark.parametrize(
    ("weights", "n"),
    [
        ({"a": 80, "b": 20}, 100),
        ({"a": 90, "b": 10}, 37),
        ({"a": 1, "b": 1, "c": 1}, 10),
        ({"a": 5, "b": 3, "c": 2}, 101),
        ({"a": 999, "b": 1}, 2000),
    ],
)
def test_rotation_keeps_every_prefix_within_one_request_of_its_share(
    weights: dict[str, int], n: int
) -> None:
    splitter = TrafficSplitter([split(**weights)])
    picks = [splitter.choose("pub", None) for _ in range(n)]
    total = sum(weights.values())
    for i in range(1, n + 1):
        counts = Counter(picks[:i])
        for version, weight in weights.items():
            assert abs(counts[version] - i * weight / total) <= 1, (i, version)


def test_zero_weight_is_never_picked_even_for_sessions() -> None:
    splitter = TrafficSplitter([split(a=0, b=3)])
    assert {splitter.choose("pub", None) for _ in range(20)} == {"b"}
    assert {splitter.choose("pub", f"s{i}") for i in range(50)} == {"b"}


def test_sessions_are_sticky_and_split_by_weight() -> None:
    splitter = TrafficSplitter([split(a=80, b=20)])
    first = {f"s{i}": splitter.choose("pub", f"s{i}") for i in range(2000)}
    again = {s: splitter.choose("pub", s) for s in first}
    assert first == again
    share = Counter(first.values())["b"] / len(first)
    assert 0.17 < share < 0.23  # a stable hash: the same answer in every process


def test_new_splits_replace_the_old_ones() -> None:
    splitter = TrafficSplitter([split(a=1, b=1)])
    assert splitter.names() == ["pub"]
    splitter.set_splits([])
    assert not splitter.is_public("pub")


def test_with_model_rewrites_only_the_model() -> None:
    body = orjson.dumps({"model": "pub", "messages": [{"role": "user", "content": "x"}]})
    assert orjson.loads(with_model(body, "v2")) == {
        "model": "v2",
        "messages": [{"role": "user", "content": "x"}],
    }
