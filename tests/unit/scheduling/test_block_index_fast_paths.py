"""The prefix indexes' fast paths answer exactly what the plain definitions answer."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from pilothouse.endpoints.kv_index import KVBlockIndex, block_keys, root_key
from pilothouse.kvevents import (
    BlockRemoved,
    BlockStored,
    ExternalBlockHash,
    KVEventBatch,
)
from pilothouse.scheduling.plugins.scorers._block_index import BlockIndex


def _longest_prefix(held: set[int], hashes: Sequence[int]) -> int:
    count = 0
    for h in hashes:
        if h not in held:
            break
        count += 1
    return count


@pytest.mark.parametrize("seed", range(20))
def test_match_many_and_sizes_agree_with_match_and_size(seed: int) -> None:
    rng = random.Random(seed)
    index = BlockIndex(capacity_per_endpoint=rng.randint(1, 12), max_endpoints=3)
    names = [f"e{i}" for i in range(5)]
    pool = list(range(30))
    for _ in range(40):
        hashes = [rng.choice(pool) for _ in range(rng.randint(0, 10))]
        if rng.random() < 0.6:
            index.record(rng.choice(names), hashes)
        expected = [index.match(n, hashes) for n in names]
        assert index.match_many(names, hashes) == expected
        assert index.sizes(names) == [index.size(n) for n in names]
        for name, matched in zip(names, expected, strict=True):
            held = set(index._endpoints.get(name, {}))
            assert matched == _longest_prefix(held, hashes)


def _naive_kv_match(index: KVBlockIndex, keys: Sequence[int]) -> dict[str, int]:
    matched: dict[str, int] = {}
    for name in index.endpoints():
        depth = 0
        for key in keys:
            if name not in index._holders.get(key, set()):
                break
            depth += 1
        if depth:
            matched[name] = depth
    return matched


@pytest.mark.parametrize("seed", range(20))
def test_kv_match_agrees_with_walking_each_endpoint(seed: int) -> None:
    rng = random.Random(seed)
    size = 2
    index = KVBlockIndex()
    prompts = [[rng.randrange(3) for _ in range(size * 6)] for _ in range(4)]
    for step in range(30):
        name = f"e{rng.randrange(4)}"
        tokens = rng.choice(prompts)[: size * rng.randint(1, 6)]
        hashes: list[ExternalBlockHash] = [
            hash((name, step, i)) for i in range(len(tokens) // size)
        ]
        if rng.random() < 0.8:
            stored = BlockStored(hashes, None, tokens, size, None, "GPU", None)
            index.apply(name, KVEventBatch(ts=0.0, events=[stored]))
        else:
            removed = BlockRemoved(hashes[-1:], "GPU")
            index.apply(name, KVEventBatch(ts=0.0, events=[removed]))
        for prompt in prompts:
            keys = block_keys(prompt, size)
            assert index.match(keys) == _naive_kv_match(index, keys)


def test_block_keys_hash_the_key_and_the_block_tokens() -> None:
    tokens = [5, 6, 7, 8, 9]
    first = hash((root_key(None), 5, 6))
    assert block_keys(tokens, 2) == [first, hash((first, 7, 8))]
