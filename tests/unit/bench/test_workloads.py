"""Workloads: sharing structure, text/token/hash consistency, arrival rates, trace replay."""

from __future__ import annotations

import itertools
import json
import random
import statistics
from collections import Counter
from pathlib import Path

import pytest

from pilothouse.bench.workloads import ArrivalSpec, build_workload, workload_names
from pilothouse.bench.workloads.arrivals import arrival_times
from pilothouse.bench.workloads.tokens import PromptBuilder, random_tokens, render
from pilothouse.errors import ConfigError
from pilothouse.sim.cluster_types import SimRequest
from pilothouse.sim.hashing import chain_block_hashes

BLOCK = 16
POISSON = ArrivalSpec()
SMALL = {
    "b2b-saas": {"groups": "4", "users_per_group": "3", "system_prompt_tokens": "100"},
    "multi-turn-chat": {"system_tokens": "64", "user_tokens": "40", "answer_tokens": "30"},
    "agentic": {"system_tokens": "96", "result_tokens": "80", "max_context_tokens": "1200"},
    "no-reuse": {"prompt_tokens": "80"},
    "hot-spot": {"groups": "16", "prefix_tokens": "128", "question_tokens": "40"},
    "long-context": {
        "documents": "8", "min_prompt_tokens": "200", "max_prompt_tokens": "2000", "max_turns": "3",
        "user_tokens": "30", "answer_tokens": "20", "think_s": "60",
    },
    "mixed-priority": {
        "system_tokens": "64", "interactive_prompt_tokens": "20", "batch_prompt_tokens": "90",
    },
}  # fmt: skip


def _requests(name: str, count: int = 60, seed: int = 0, qps: float = 10.0) -> list[SimRequest]:
    workload = build_workload(name, block_size=BLOCK, seed=seed, overrides=SMALL[name])
    return list(workload.requests(qps, count, POISSON))


def _shared_blocks(a: SimRequest, b: SimRequest) -> int:
    return sum(
        1
        for _ in itertools.takewhile(
            lambda p: p[0] == p[1], zip(a.block_hashes, b.block_hashes, strict=False)
        )
    )


def _shared_chars(a: str, b: str) -> int:
    return sum(1 for _ in itertools.takewhile(lambda p: p[0] == p[1], zip(a, b, strict=False)))


def test_registry_lists_the_builtins() -> None:
    assert workload_names() == [
        "agentic",
        "b2b-saas",
        "hot-spot",
        "long-context",
        "mixed-priority",
        "multi-turn-chat",
        "no-reuse",
    ]


@pytest.mark.parametrize("name", sorted(SMALL))
def test_text_tokens_and_hashes_agree(name: str) -> None:
    requests = _requests(name, 40)
    assert len(requests) == 40
    for r in requests:
        assert len(r.prompt) == 4 * r.prompt_tokens
        assert len(r.block_hashes) == r.prompt_tokens // BLOCK
    for a, b in itertools.combinations(requests[:25], 2):
        # a shared block prefix <=> a shared text prefix of as many 64-character blocks
        assert _shared_blocks(a, b) == min(
            _shared_chars(a.prompt, b.prompt) // (4 * BLOCK),
            len(a.block_hashes),
            len(b.block_hashes),
        )


@pytest.mark.parametrize("name", sorted(SMALL))
def test_same_seed_same_stream_other_seed_other_stream(name: str) -> None:
    assert _requests(name, 30, seed=3) == _requests(name, 30, seed=3)
    assert _requests(name, 30, seed=3) != _requests(name, 30, seed=4)


def test_b2b_saas_cycles_through_every_prompt_and_shares_only_within_groups() -> None:
    requests = _requests("b2b-saas", 36)
    prompts = [r.prompt for r in requests]
    assert len(set(prompts[:12])) == 12  # 4 groups x 3 users, each once per cycle
    assert prompts[:12] == prompts[12:24] == prompts[24:]
    system_blocks = 100 // BLOCK
    for a, b in itertools.combinations(requests[:12], 2):
        same_group = a.tenant == b.tenant
        assert _shared_blocks(a, b) == (system_blocks if same_group else 0)


def test_b2b_saas_defaults_are_llm_d_s_shape() -> None:
    workload = build_workload("b2b-saas", block_size=BLOCK)
    assert dict(workload.parameters()) == {
        "groups": 150,
        "users_per_group": 5,
        "system_prompt_tokens": 6000,
        "question_tokens": 1200,
        "output_tokens": 1000,
    }
    request = next(iter(workload.requests(3.0, 1, POISSON)))
    assert (request.prompt_tokens, request.output_tokens) == (7200, 1000)


@pytest.mark.parametrize("name", ["multi-turn-chat", "agentic"])
def test_sessions_grow_their_context_and_follow_their_previous_turn(name: str) -> None:
    requests = _requests(name, 80)
    by_id = {r.request_id: r for r in requests}
    follow_ups = [r for r in requests if r.after is not None]
    assert follow_ups
    for r in follow_ups:
        parent = by_id[r.after]  # type: ignore[index]
        assert requests.index(parent) < requests.index(r)
        assert r.session_id == parent.session_id
        assert r.prompt.startswith(parent.prompt)
        assert r.prompt_tokens > parent.prompt_tokens
        assert r.block_hashes[: len(parent.block_hashes)] == parent.block_hashes
        assert r.arrival_s > 0  # a think time / tool latency, not an absolute time
    firsts = [r.arrival_s for r in requests if r.after is None]
    assert firsts == sorted(firsts)


def test_agentic_respects_its_context_limit() -> None:
    for r in _requests("agentic", 200):
        assert r.prompt_tokens + r.output_tokens <= 1200


def test_no_reuse_shares_nothing() -> None:
    requests = _requests("no-reuse", 50)
    firsts = Counter(r.block_hashes[0] for r in requests)
    assert max(firsts.values()) == 1


def test_hot_spot_sends_half_the_traffic_to_one_group() -> None:
    requests = _requests("hot-spot", 2000)
    groups = Counter(r.tenant for r in requests)
    assert groups["group-0"] / 2000 == pytest.approx(0.5, abs=0.04)
    assert len(groups) == 16


@pytest.mark.parametrize(
    ("spec", "cv_low", "cv_high"),
    [
        pytest.param(ArrivalSpec("poisson"), 0.9, 1.1, id="poisson"),
        pytest.param(ArrivalSpec("bursty", burstiness=0.25), 1.8, 2.2, id="bursty"),
        pytest.param(ArrivalSpec("constant"), 0.0, 1e-9, id="constant"),
    ],
)
def test_arrival_rate_and_burstiness(spec: ArrivalSpec, cv_low: float, cv_high: float) -> None:
    times = list(itertools.islice(arrival_times(spec, 20.0, random.Random(5)), 20000))
    gaps = [b - a for a, b in zip([0.0, *times], times, strict=False)]
    assert len(times) / times[-1] == pytest.approx(20.0, rel=0.05)
    cv = statistics.pstdev(gaps) / statistics.fmean(gaps)
    assert cv_low <= cv <= cv_high


def test_session_workloads_keep_the_request_rate() -> None:
    workload = build_workload(
        "multi-turn-chat", block_size=BLOCK, overrides=SMALL["multi-turn-chat"]
    )
    requests = list(workload.requests(12.0, 3000, POISSON))
    starts = [r.arrival_s for r in requests if r.after is None]
    assert len(requests) / starts[-1] == pytest.approx(12.0, rel=0.1)


def test_prompt_builder_hashes_match_a_one_shot_chain() -> None:
    rng = random.Random(1)
    pieces = [random_tokens(rng, n) for n in (7, 33, 16, 1, 50)]
    builder = PromptBuilder(BLOCK)
    for piece in pieces:
        builder.extend(piece)
    every = [t for piece in pieces for t in piece]
    prompt = builder.build()
    assert prompt.block_hashes == chain_block_hashes(every, BLOCK)
    assert prompt.text == render(every)
    assert prompt.tokens == len(every)


@pytest.mark.parametrize(
    ("overrides", "path"),
    [
        pytest.param({"groupz": "3"}, "groupz", id="unknown"),
        pytest.param({"groups": "many"}, "groups", id="not-an-int"),
    ],
)
def test_bad_parameters_name_the_field(overrides: dict[str, str], path: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_workload("b2b-saas", block_size=BLOCK, overrides=overrides)
    assert info.value.path == path


def test_bad_parameter_values_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="must be > 0"):
        build_workload("no-reuse", block_size=BLOCK, overrides={"prompt_tokens": "0"})
    with pytest.raises(ConfigError, match="neither a built-in workload"):
        build_workload("nope", block_size=BLOCK)


# -- trace replay --------------------------------------------------------------------------

TRACE = "\n".join(
    [
        "# comment lines and blank lines are skipped",
        "",
        json.dumps({"arrival_s": 1.0, "prompt_tokens": 96, "prefix_group": "g",
                    "prefix_tokens": 64, "output_tokens": 5, "tenant": "t1"}),
        json.dumps({"arrival_s": 0.0, "output_tokens": 3,
                    "prompt": "hello world, this prompt is literal text of some length...."}),
        json.dumps({"timestamp": 3000, "input_length": 1100, "output_length": 7,
                    "hash_ids": [1, 2, 3]}),
        json.dumps({"arrival_s": 2.0, "prompt_tokens": 80, "prefix_group": "g",
                    "prefix_tokens": 48, "output_tokens": 4, "max_tokens": 9}),
        json.dumps({"timestamp": 4000, "input_length": 600, "output_length": 7,
                    "hash_ids": [1, 2]}),
    ]
)  # fmt: skip


def _trace(tmp_path: Path, text: str = TRACE) -> Path:
    path = tmp_path / "trace.jsonl"
    path.write_text(text, encoding="utf-8")
    return path


def test_trace_replays_sorted_with_consistent_sharing(tmp_path: Path) -> None:
    workload = build_workload(str(_trace(tmp_path)), block_size=BLOCK)
    requests = list(workload.requests(None, 100, POISSON))
    assert [r.arrival_s for r in requests] == [0.0, 1.0, 2.0, 3.0, 4.0]
    literal, g1, g2, mc1, mc2 = requests
    assert literal.prompt.startswith("hello world")
    assert literal.prompt_tokens == 15
    assert (g1.tenant, g1.prompt_tokens, g2.max_tokens) == ("t1", 96, 9)
    assert _shared_blocks(g1, g2) == 3  # the 48 tokens both share with group g
    assert mc1.prompt_tokens == 1100
    assert len(mc1.block_hashes) == 1100 // BLOCK
    assert _shared_blocks(mc1, mc2) == 512 // BLOCK + 88 // BLOCK  # hash ids 1 and part of 2
    assert workload.native_qps() == pytest.approx(1.0)


def test_trace_is_rescaled_to_a_qps(tmp_path: Path) -> None:
    workload = build_workload(str(_trace(tmp_path)), block_size=BLOCK)
    requests = list(workload.requests(4.0, 3, POISSON))
    assert [r.arrival_s for r in requests] == [0.0, 0.25, 0.5]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        pytest.param('{"prompt_tokens": 5, "output_tokens": 1}', "arrival_s", id="no-time"),
        pytest.param('{"arrival_s": 0, "prompt_tokens": 5}', "output_tokens", id="no-output"),
        pytest.param('{"arrival_s": 0, "output_tokens": 2}', "prompt", id="no-prompt"),
        pytest.param(
            '{"arrival_s": 0, "prompt_tokens": 5, "output_tokens": 1, "x": 1}',
            "unknown field",
            id="unknown-field",
        ),
        pytest.param(
            '{"arrival_s": 0, "prompt_tokens": 5, "prefix_tokens": 9, '
            '"prefix_group": "g", "output_tokens": 1}',
            "prefix_tokens",
            id="prefix",
        ),
        pytest.param("[1, 2]", "JSON object", id="not-an-object"),
        pytest.param("{oops", "invalid JSON", id="bad-json"),
    ],
)
def test_bad_trace_lines_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = _trace(tmp_path, '{"arrival_s": 0, "prompt_tokens": 4, "output_tokens": 1}\n' + line)
    with pytest.raises(ConfigError, match=message) as info:
        build_workload(str(path), block_size=BLOCK)
    assert info.value.path == "trace.jsonl:2"
