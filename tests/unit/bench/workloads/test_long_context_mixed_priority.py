"""The ``long-context`` and ``mixed-priority`` workloads: the distributions they promise."""

from __future__ import annotations

import itertools
import random
import statistics
from collections import Counter
from collections.abc import Sequence

import pytest

from pilothouse.bench.workloads import ArrivalSpec, build_workload
from pilothouse.bench.workloads.long_context import (
    LongContextWorkload,
    bounded_pareto,
    bounded_pareto_mean,
)
from pilothouse.bench.workloads.mixed_priority import MixedPriorityWorkload
from pilothouse.sim.cluster_types import SimRequest

BLOCK = 16
POISSON = ArrivalSpec()


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))]


def test_bounded_pareto_is_heavy_tailed_within_its_bounds() -> None:
    rng = random.Random(7)
    draws = [bounded_pareto(rng, 5000, 100_000, 1.0) for _ in range(20_000)]
    assert min(draws) >= 5000
    assert max(draws) <= 100_000
    # alpha 1: median L / (1 - 0.5 (1 - L/H)) = 9,524; p90 = 34,483
    assert _quantile(draws, 0.5) == pytest.approx(9524, rel=0.05)
    assert _quantile(draws, 0.9) == pytest.approx(34_483, rel=0.08)
    assert statistics.fmean(draws) == pytest.approx(
        bounded_pareto_mean(5000, 100_000, 1.0), rel=0.05
    )
    assert statistics.fmean(draws) > 1.5 * _quantile(draws, 0.5)  # the tail pulls the mean up
    other = [bounded_pareto(rng, 10, 1000, 2.5) for _ in range(20_000)]
    assert statistics.fmean(other) == pytest.approx(bounded_pareto_mean(10, 1000, 2.5), rel=0.05)


SHORT = {"min_prompt_tokens": "300", "max_prompt_tokens": "3000", "user_tokens": "40"}


def _long(count: int, seed: str = "0", **overrides: str) -> list[SimRequest]:
    """``count`` requests at 2 QPS."""
    workload = build_workload("long-context", block_size=BLOCK, seed=int(seed), overrides=overrides)
    return list(workload.requests(2.0, count, POISSON))


def test_long_context_defaults_give_5k_to_100k_prompts_that_recur_minutes_apart() -> None:
    workload = build_workload("long-context", block_size=BLOCK)
    assert isinstance(workload, LongContextWorkload)
    documents = [workload.document_tokens(i) for i in range(256)]
    assert min(documents) >= 5000
    assert max(documents) <= 100_000
    assert _quantile(documents, 0.5) < 15_000 < _quantile(documents, 0.9)
    assert max(documents) > 50_000  # the tail is there
    requests = _long(100, documents="12")  # few documents: fewer to build
    assert all(5000 <= r.prompt_tokens <= 100_000 for r in requests)
    assert requests[:20] == _long(20, documents="12")  # the seed fixes the stream
    assert requests[:20] != _long(20, seed="1", documents="12")
    # first turns of other conversations about the same document share its blocks
    assert max(Counter(r.tenant for r in requests).values()) >= 2


def _gaps(requests: list[SimRequest]) -> list[float]:
    """Seconds between consecutive turns of each conversation (checking that they grow)."""
    by_session: dict[str | None, list[SimRequest]] = {}
    for r in requests:
        by_session.setdefault(r.session_id, []).append(r)
    gaps = []
    for turns in by_session.values():
        for previous, turn in itertools.pairwise(turns):
            assert turn.prompt.startswith(previous.prompt)
            assert turn.prompt_tokens > previous.prompt_tokens
            assert turn.tenant == previous.tenant
            gaps.append(turn.arrival_s - previous.arrival_s)
    return gaps


def test_long_context_turns_grow_their_conversation_minutes_apart_at_a_steady_rate() -> None:
    # think time 20 s: the 1,500 s window sees whole conversations (long gaps are not cut)
    requests = _long(3000, think_s="20", **SHORT)
    times = [r.arrival_s for r in requests]
    assert times == sorted(times)
    assert times[0] >= 0.0
    assert all(r.after is None for r in requests)  # open loop: every turn is an arrival
    # stationary from time 0: the rate asked for (2 QPS) in both halves, no ramp-up
    half = len(times) // 2
    assert half / times[half] == pytest.approx(2.0, rel=0.12)
    assert (len(times) - half) / (times[-1] - times[half]) == pytest.approx(2.0, rel=0.12)
    gaps = _gaps(requests)
    assert len(gaps) > 1000
    assert statistics.fmean(gaps) == pytest.approx(20.0, rel=0.1)
    default = _long(1000, **SHORT)  # think_s 180: minutes apart
    assert _quantile(_gaps(default), 0.5) > 60.0


def test_long_context_documents_are_shared_and_conversations_stay_within_bounds() -> None:
    overrides = {"documents": "4", "min_prompt_tokens": "300", "max_prompt_tokens": "5000"}
    workload = build_workload("long-context", block_size=BLOCK, overrides=overrides)
    assert isinstance(workload, LongContextWorkload)
    requests = list(workload.requests(2.0, 300, POISSON))
    assert all(300 <= r.prompt_tokens <= 5000 for r in requests)
    firsts = [r for r in requests if r.after is None]
    assert len({r.tenant for r in firsts}) == 4
    for a in firsts:
        for b in firsts:
            if a.tenant == b.tenant:  # the same document: its full blocks are shared
                document = int(str(a.tenant).removeprefix("document-"))
                blocks = workload.document_tokens(document) // BLOCK
                assert a.block_hashes[:blocks] == b.block_hashes[:blocks]
            else:
                assert a.block_hashes[0] != b.block_hashes[0]


def _mixed(
    count: int, seed: int = 0, qps: float = 10.0
) -> tuple[MixedPriorityWorkload, list[SimRequest]]:
    workload = build_workload("mixed-priority", block_size=BLOCK, seed=seed)
    assert isinstance(workload, MixedPriorityWorkload)
    return workload, list(workload.requests(qps, count, POISSON))


def test_mixed_priority_has_two_classes_with_their_shapes_and_objectives() -> None:
    workload, requests = _mixed(1500)
    assert requests[:200] == _mixed(200)[1]
    assert requests[:200] != _mixed(200, seed=1)[1]
    interactive = [r for r in requests if r.tenant.startswith("interactive-")]  # type: ignore[union-attr]
    batch = [r for r in requests if r.tenant.startswith("batch-")]  # type: ignore[union-attr]
    assert len(interactive) + len(batch) == 1500
    assert len(interactive) / 1500 == pytest.approx(0.8, abs=0.03)
    assert {r.tenant for r in interactive} == {f"interactive-{i}" for i in range(4)}
    assert {r.tenant for r in batch} == {"batch-0", "batch-1"}
    # interactive: 1000-token system prompt + ~200; batch: + ~3000, outputs 10x longer
    assert all(1100 <= r.prompt_tokens <= 1300 for r in interactive)
    assert all(2500 <= r.prompt_tokens <= 5500 for r in batch)
    assert all(50 <= r.output_tokens <= 150 for r in interactive)
    assert all(500 <= r.output_tokens <= 1500 for r in batch)
    assert statistics.fmean(r.output_tokens for r in batch) == pytest.approx(1000, rel=0.05)
    assert workload.objective(interactive[0]).priority == 1
    assert workload.objective(interactive[0]).ttft_slo_s == 0.5
    assert workload.objective(batch[0]).priority == 0
    assert workload.objective(batch[0]).ttft_slo_s is None
    # a tenant's requests share its system prompt, other tenants' do not
    same = [r for r in interactive if r.tenant == "interactive-0"][:2]
    assert same[0].block_hashes[: 1000 // BLOCK] == same[1].block_hashes[: 1000 // BLOCK]
    assert interactive[0].block_hashes[0] != batch[0].block_hashes[0]
    times = [r.arrival_s for r in requests]
    assert times == sorted(times)
    assert len(times) / times[-1] == pytest.approx(10.0, rel=0.1)


def test_mixed_priority_rejects_inverted_priorities() -> None:
    from pilothouse.errors import ConfigError

    with pytest.raises(ConfigError, match="interactive_priority must be > batch_priority"):
        build_workload(
            "mixed-priority",
            block_size=BLOCK,
            overrides={"interactive_priority": "0", "batch_priority": "0"},
        )
