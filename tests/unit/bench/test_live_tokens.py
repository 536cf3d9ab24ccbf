"""The simulator engine counts and hashes a workload's prompt exactly as the workload does."""

from __future__ import annotations

import pytest

from pilothouse.bench.workloads import ArrivalSpec, build_workload, workload_names
from pilothouse.engines.tokenizer import DummyTokenizer
from pilothouse.sim.hashing import chain_block_hashes

TOKENIZER = DummyTokenizer()
SMALL = {
    "b2b-saas": {"groups": "3", "system_prompt_tokens": "300", "question_tokens": "50"},
    "hot-spot": {"groups": "3", "prefix_tokens": "300"},
    "agentic": {"system_tokens": "300", "result_tokens": "100"},
    "multi-turn-chat": {"system_tokens": "300"},
    "no-reuse": {"prompt_tokens": "200"},
}


@pytest.mark.parametrize("name", workload_names())
def test_engine_tokenizer_agrees_with_every_workload(name: str) -> None:
    workload = build_workload(name, block_size=16, seed=3, overrides=SMALL.get(name, {}))
    for request in workload.requests(5.0, 12, ArrivalSpec()):
        ids = TOKENIZER.encode(request.prompt)
        assert len(ids) == request.prompt_tokens
        assert tuple(chain_block_hashes(ids, 16)) == request.block_hashes


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("00ff00ff", 2),  # workload token text: four characters per token
        ("deadbeef cafe", 3),  # a hex word of 8 is two tokens; "cafe" stays a word
        ("deadbeefs", 2),  # not all hex: words of at most six characters
        ("0123456789abcdef0", 3),  # not a multiple of four: words of six
        ("<|im_start|>user\n00ff00ff<|im_end|>", 5),  # chat template around workload text
    ],
)
def test_hex_words_split_into_four_character_tokens(text: str, count: int) -> None:
    assert len(TOKENIZER.encode(text)) == count


def test_hex_token_ids_are_the_workload_ids() -> None:
    assert TOKENIZER.encode("0001ffff") == [1, 0xFFFF]
