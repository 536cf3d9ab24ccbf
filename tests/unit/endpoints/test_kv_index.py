"""The precise prefix index: stores, removals, clears, parent chaining, drops and bounds."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from pilothouse.endpoints.kv_index import KVBlockIndex, block_keys
from pilothouse.kvevents import (
    AllBlocksCleared,
    BlockRemoved,
    BlockStored,
    ExternalBlockHash,
    KVEventBatch,
)

BS = 4
PROMPT = list(range(100, 116))  # four blocks of four tokens
OTHER = list(range(200, 216))


def stored(
    hashes: Sequence[ExternalBlockHash],
    tokens: Sequence[int],
    parent: ExternalBlockHash | None = None,
    *,
    lora: str | None = None,
    medium: str = "GPU",
    block_size: int = BS,
) -> BlockStored:
    return BlockStored(
        block_hashes=list(hashes),
        parent_block_hash=parent,
        token_ids=list(tokens),
        block_size=block_size,
        lora_id=None,
        medium=medium,
        lora_name=lora,
    )


def removed(*hashes: ExternalBlockHash, medium: str | None = "GPU") -> BlockRemoved:
    return BlockRemoved(block_hashes=list(hashes), medium=medium)


Event = BlockStored | BlockRemoved | AllBlocksCleared


def apply(index: KVBlockIndex, endpoint: str, *events: Event) -> None:
    index.apply(endpoint, KVEventBatch(0.0, list(events), 0))


def keys(tokens: Sequence[int], lora: str | None = None) -> list[int]:
    return block_keys(tokens, BS, lora)


# Engine hashes are opaque: these are deliberately unrelated to the tokens.
CHAIN = [
    stored([11, 12], PROMPT[:8]),
    stored([13, 14], PROMPT[8:], parent=12),
]


@pytest.mark.parametrize(
    ("events", "query", "expected"),
    [
        pytest.param([], PROMPT, {}, id="empty"),
        pytest.param(CHAIN, PROMPT, {"a": 4}, id="parent-chaining"),
        pytest.param(CHAIN[:1], PROMPT, {"a": 2}, id="prefix-only"),
        pytest.param(CHAIN, PROMPT[:10], {"a": 2}, id="partial-tail-ignored"),
        pytest.param(CHAIN, OTHER, {}, id="other-prompt"),
        pytest.param(CHAIN, PROMPT[4:], {}, id="suffix-is-not-a-prefix"),
        pytest.param([stored([11, 12, 13, 14], PROMPT)], PROMPT, {"a": 4}, id="one-event"),
        pytest.param(CHAIN[1:], PROMPT, {}, id="unknown-parent-unresolved"),
        pytest.param([*CHAIN, removed(13)], PROMPT, {"a": 2}, id="removed-middle-cuts"),
        pytest.param([*CHAIN, removed(11)], PROMPT, {}, id="removed-first-cuts-all"),
        pytest.param([*CHAIN, removed(99)], PROMPT, {"a": 4}, id="removing-unknown-is-noop"),
        pytest.param([*CHAIN, AllBlocksCleared()], PROMPT, {}, id="all-cleared"),
        pytest.param(
            [*CHAIN, AllBlocksCleared(), stored([21], PROMPT[:4])],
            PROMPT,
            {"a": 1},
            id="stored-after-clear",
        ),
        pytest.param(
            [*CHAIN, stored([11], PROMPT[:4], medium="CPU"), removed(11)],
            PROMPT,
            {"a": 4},
            id="second-copy-survives-one-removal",
        ),
        pytest.param(
            [*CHAIN, stored([11], PROMPT[:4], medium="CPU"), removed(11), removed(11)],
            PROMPT,
            {"a": 4},
            id="a-gpu-removal-never-takes-the-cpu-copy",
        ),
        pytest.param(
            [
                *CHAIN,
                stored([11], PROMPT[:4], medium="CPU"),
                removed(11),
                removed(11, medium="CPU"),
            ],
            PROMPT,
            {},
            id="both-copies-removed",
        ),
        pytest.param(
            [*CHAIN, stored([11], PROMPT[:4]), removed(11, medium=None)],
            PROMPT,
            {"a": 4},
            id="no-medium-is-the-gpu",
        ),
        pytest.param(
            [*CHAIN, stored([11, 12], [], medium="CPU"), removed(11, 12, 13, 14)],
            PROMPT,
            {"a": 2},
            id="offloaded-store-without-tokens-keyed-by-known-hash",
        ),
        pytest.param(
            [*CHAIN, stored([31], PROMPT[:4]), removed(11)],
            PROMPT,
            {"a": 4},
            id="same-key-two-engine-hashes",  # e.g. a cache salt the router cannot see
        ),
        pytest.param([stored([11], PROMPT[:3])], PROMPT, {}, id="token-count-mismatch"),
        pytest.param([stored([b"\x01" * 32], PROMPT[:4])], PROMPT, {"a": 1}, id="bytes-hashes"),
    ],
)
def test_match_after_events(
    events: list[Event], query: list[int], expected: dict[str, int]
) -> None:
    index = KVBlockIndex()
    if events:
        apply(index, "a", *events)
    assert index.match(keys(query)) == expected


def test_match_counts_per_endpoint_from_the_first_block() -> None:
    index = KVBlockIndex()
    apply(index, "a", *CHAIN)
    apply(index, "b", stored([51, 52], PROMPT[:8]), stored([53], OTHER[:4], parent=52))
    apply(index, "c", stored([61], OTHER[:4]))  # does not hold the first block
    assert index.match(keys(PROMPT)) == {"a": 4, "b": 2}
    assert index.match(keys(OTHER)) == {"c": 1}
    assert index.match([]) == {}


def test_unresolved_and_block_size_are_reported() -> None:
    index = KVBlockIndex()
    assert index.block_size("a") is None
    apply(index, "a", CHAIN[1], stored([7], [1, 2]))
    assert index.unresolved("a") == 3
    assert index.block_size("a") is None
    apply(index, "a", stored([8], list(range(16)), block_size=16))
    assert index.block_size("a") == 16


def test_block_sizes_are_those_tracked_endpoints_declared() -> None:
    index = KVBlockIndex(max_endpoints=2)
    assert index.block_sizes() == frozenset()
    apply(index, "a", CHAIN[0])
    apply(index, "b", stored([8], list(range(16)), block_size=16))
    assert index.block_sizes() == {BS, 16}
    index.drop("b")
    assert index.block_sizes() == {BS}
    apply(index, "a", AllBlocksCleared(), stored([9], list(range(16)), block_size=16))
    assert index.block_sizes() == {16}  # "a" now declares 16
    apply(index, "b", CHAIN[0])
    apply(index, "c", CHAIN[0])  # evicts "a", the least recently updated
    assert index.block_sizes() == {BS}


def test_lora_adapters_never_share_blocks() -> None:
    index = KVBlockIndex()
    apply(index, "a", stored([1, 2], PROMPT[:8], lora="sql"))
    assert index.match(keys(PROMPT)) == {}
    assert index.match(keys(PROMPT, lora="sql")) == {"a": 2}
    assert index.match(keys(PROMPT, lora="chat")) == {}


def test_drop_forgets_an_endpoint_and_its_blocks() -> None:
    index = KVBlockIndex()
    apply(index, "a", *CHAIN)
    apply(index, "b", *CHAIN)
    assert index.tracks("a")
    assert len(index) == 4
    index.drop("a")
    assert not index.tracks("a")
    assert index.size("a") == 0
    assert index.match(keys(PROMPT)) == {"b": 4}
    index.drop("b")
    assert len(index) == 0
    index.drop("never-seen")  # harmless


def test_clear_keeps_the_endpoint_tracked() -> None:
    index = KVBlockIndex()
    apply(index, "a", *CHAIN, AllBlocksCleared())
    assert index.tracks("a")
    assert index.size("a") == 0
    assert len(index) == 0


def test_blocks_per_endpoint_are_bounded_oldest_first() -> None:
    index = KVBlockIndex(max_blocks_per_endpoint=3)
    apply(index, "a", *CHAIN)  # four blocks: the oldest (the first) is evicted
    assert index.size("a") == 3
    assert len(index) == 3
    assert index.match(keys(PROMPT)) == {}
    apply(index, "a", removed(12, 13, 14))
    assert len(index) == 0


def test_endpoints_are_bounded_least_recently_updated_first() -> None:
    index = KVBlockIndex(max_endpoints=2)
    apply(index, "a", CHAIN[0])
    apply(index, "b", CHAIN[0])
    apply(index, "a", removed(99))  # "a" is now the most recently updated
    apply(index, "c", CHAIN[0])
    assert index.endpoints() == ["a", "c"]
    assert index.match(keys(PROMPT)) == {"a": 2, "c": 2}


def test_request_keys_chain_and_cap() -> None:
    assert block_keys(PROMPT, BS) == keys(PROMPT)
    assert len(block_keys(PROMPT, BS, max_blocks=2)) == 2
    assert block_keys(PROMPT[:3], BS) == []
    assert block_keys(PROMPT, BS)[:2] == block_keys(PROMPT[:8], BS)
    assert block_keys(PROMPT, BS)[1] != block_keys(PROMPT[4:], BS)[0]
    with pytest.raises(ValueError, match="positive"):
        block_keys(PROMPT, 0)
    with pytest.raises(ValueError, match="positive"):
        KVBlockIndex(max_blocks_per_endpoint=0)


def test_match_tiers_splits_gpu_and_offloaded_depth() -> None:
    index = KVBlockIndex()
    apply(index, "a", *CHAIN)
    apply(index, "b", *CHAIN)
    assert index.match_tiers(keys(PROMPT)) == {"a": (4, 4), "b": (4, 4)}
    # "a" offloads its last two blocks and drops them from the GPU, as vLLM's connector does
    apply(index, "a", stored([13, 14], [], medium="CPU", block_size=0), removed(13, 14))
    assert index.match(keys(PROMPT)) == {"a": 4, "b": 4}
    assert index.match_tiers(keys(PROMPT)) == {"a": (4, 2), "b": (4, 4)}
    assert index.offloaded_size("a") == 2
    assert index.block_size("a") == BS  # an offloaded store does not redeclare it
    # reloaded to the GPU: the CPU copy stays, the block counts as on the GPU again
    apply(index, "a", stored([13], PROMPT[8:12], parent=12))
    assert index.match_tiers(keys(PROMPT)) == {"a": (4, 3), "b": (4, 4)}
    apply(index, "a", removed(14, medium="CPU"))
    assert index.match_tiers(keys(PROMPT)) == {"a": (3, 3), "b": (4, 4)}
    apply(index, "a", AllBlocksCleared())
    assert index.match_tiers(keys(PROMPT)) == {"b": (4, 4)}


def test_offloaded_store_of_unknown_hashes_is_unresolved() -> None:
    index = KVBlockIndex()
    apply(index, "a", stored([77, 78], [], medium="CPU", block_size=0))
    assert index.unresolved("a") == 2
    assert index.size("a") == 0
