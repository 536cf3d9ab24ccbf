"""Session and long-context workloads name the blocks their answers add, so an engine that
caches generated blocks (``cache_generated_blocks``) holds what the next turn repeats."""

from __future__ import annotations

from itertools import pairwise

import pytest

from pilothouse.bench.workloads import ArrivalSpec, build_workload

BLOCK = 16
SMALL = {
    "multi-turn-chat": {"system_tokens": "100", "user_tokens": "30", "answer_tokens": "40"},
    "agentic": {"system_tokens": "100", "task_tokens": "30", "result_tokens": "50"},
    "long-context": {"min_prompt_tokens": "300", "max_prompt_tokens": "3000"},
}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_answers_continue_the_prompt_chain_and_the_next_turn_repeats_them(name: str) -> None:
    workload = build_workload(name, block_size=BLOCK, seed=1, overrides=SMALL[name])
    requests = list(workload.requests(2.0, 200, ArrivalSpec()))
    by_session: dict[str, list] = {}
    for request in requests:
        by_session.setdefault(request.session_id or "", []).append(request)
    followed = 0
    for turns in by_session.values():
        turns.sort(key=lambda r: int(r.request_id.rsplit("-", 1)[1]))
        for turn, following in pairwise(turns):
            chain = turn.block_hashes + turn.output_block_hashes
            assert len(chain) == (turn.prompt_tokens + turn.output_tokens) // BLOCK
            assert turn.output_block_hashes  # every answer here fills at least one block
            assert following.block_hashes[: len(chain)] == chain
            followed += 1
    assert followed > 20
