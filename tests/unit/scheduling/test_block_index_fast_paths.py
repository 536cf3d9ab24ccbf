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


@pytest.mark.parametrize("seed", range(10))
def test_offloaded_lru_holds_what_the_recent_one_pushed_out(seed: int) -> None:
    rng = random.Random(seed)
    capacity, offload = rng.randint(1, 6), rng.randint(1, 10)
    index = BlockIndex(capacity, max_endpoints=3, offload_capacity=offload)
    names = [f"e{i}" for i in range(4)]
    pool = list(range(20))
    for _ in range(40):
        hashes = [rng.choice(pool) for _ in range(rng.randint(0, 8))]
        if rng.random() < 0.6:
            index.record(rng.choice(names), hashes)
        tiers = index.match_tiers_many(names, hashes)
        assert [recent for recent, _off in tiers] == index.match_many(names, hashes)
        for name, (recent, off) in zip(names, tiers, strict=True):
            recent_set = set(index._endpoints.get(name, {}))
            off_set = set(index._offloaded.get(name, {}))
            assert not recent_set & off_set
            assert len(recent_set) <= capacity
            assert len(off_set) <= offload
            assert off == _longest_prefix(off_set, hashes[recent:])
            assert index.size(name) == len(recent_set) + len(off_set)
            copies = set(index._copies.get(name, {}))  # the engine's tier: copies may be recent
            assert len(copies) <= offload
            assert off_set - copies == set() or len(copies) == offload
        engine = index.match_engine_tiers_many(names, hashes)
        for name, (recent, held), (same, _off) in zip(names, engine, tiers, strict=True):
            assert recent == same
            copies = set(index._copies.get(name, {}))
            assert held == _longest_prefix(copies, hashes[recent:])


def _naive_kv_match(index: KVBlockIndex, keys: Sequence[int]) -> dict[str, int]:
    matched: dict[str, int] = {}
    for name in index.endpoints():
        depth = 0
        for key in keys:
            if name not in index._holders._any.get(key, set()):
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


def _naive_tiers(index: KVBlockIndex, keys: Sequence[int]) -> dict[str, tuple[int, int]]:
    """Per endpoint, from its own per-tier key counts: (held in any tier, held on the GPU)."""
    tiers: dict[str, tuple[int, int]] = {}
    for name in index.endpoints():
        state = index._endpoints[name]
        held = _longest_prefix({*state.key_gpu, *state.key_off}, keys)
        if held:
            tiers[name] = (held, _longest_prefix(set(state.key_gpu), keys[:held]))
    return tiers


@pytest.mark.parametrize("seed", range(20))
def test_kv_match_tiers_agree_with_each_endpoints_counts(seed: int) -> None:
    """Random GPU and CPU stores and removals (vLLM's connector: CPU stores without tokens,
    removals per medium, a bounded index): the holder maps follow the per-endpoint counts,
    and the counts follow the copies."""
    rng = random.Random(seed)
    size = 2
    index = KVBlockIndex(max_blocks_per_endpoint=8)
    prompts = [[rng.randrange(3) for _ in range(size * 6)] for _ in range(4)]
    for step in range(60):
        name = f"e{rng.randrange(3)}"
        tokens = rng.choice(prompts)[: size * rng.randint(1, 6)]
        hashes: list[ExternalBlockHash] = [hash((name, tuple(tokens[: (i + 1) * size])))
                                           for i in range(len(tokens) // size)]  # fmt: skip
        roll = rng.random()
        some = hashes[rng.randrange(len(hashes)) :]
        event: BlockStored | BlockRemoved
        if roll < 0.4:
            event = BlockStored(hashes, None, tokens, size, None, "GPU", None)
        elif roll < 0.6:
            event = BlockStored(some, None, [], 0, None, "CPU", None)
        else:
            event = BlockRemoved(some, rng.choice(["GPU", "CPU", None]))
        index.apply(name, KVEventBatch(ts=0.0, events=[event]))
        for prompt in prompts:
            keys = block_keys(prompt, size)
            assert index.match_tiers(keys) == _naive_tiers(index, keys), step
        for name in index.endpoints():
            state = index._endpoints[name]
            gpu_keys: dict[int, int] = {}
            off_keys: dict[int, int] = {}
            for block, key in state.blocks.items():
                if block not in state.no_gpu:
                    gpu_keys[key] = gpu_keys.get(key, 0) + 1
                if block in state.off:
                    off_keys[key] = off_keys.get(key, 0) + 1
                assert block not in state.no_gpu or block in state.off
            assert (gpu_keys, off_keys) == (state.key_gpu, state.key_off)


def test_block_keys_hash_the_key_and_the_block_tokens() -> None:
    tokens = [5, 6, 7, 8, 9]
    first = hash((root_key(None), 5, 6))
    assert block_keys(tokens, 2) == [first, hash((first, 7, 8))]
