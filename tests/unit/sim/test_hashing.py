from __future__ import annotations

import pytest

from pilothouse.sim import block_hash, chain_block_hashes


def test_hashes_are_deterministic_unsigned_64_bit() -> None:
    first = chain_block_hashes(list(range(40)), 16)
    assert first == chain_block_hashes(list(range(40)), 16)
    assert len(first) == 2  # the partial third block has no hash
    assert all(0 <= value < 2**64 for value in first)


def test_equal_prefixes_share_hashes_until_they_diverge() -> None:
    base = list(range(48))
    other = [*base[:20], 999, *base[21:]]
    a, b = chain_block_hashes(base, 16), chain_block_hashes(other, 16)
    assert a[0] == b[0]
    assert a[1] != b[1]
    assert a[2] != b[2]  # chained: a change propagates to every later block


def test_extra_key_separates_adapters() -> None:
    tokens = list(range(16))
    assert chain_block_hashes(tokens, 16) != chain_block_hashes(tokens, 16, extra="lora-a")
    assert chain_block_hashes(tokens, 16, extra="a") != chain_block_hashes(tokens, 16, extra="b")


def test_a_chain_can_be_extended_from_its_last_hash() -> None:
    tokens = list(range(64))
    full = chain_block_hashes(tokens, 16)
    prefix = chain_block_hashes(tokens[:32], 16)
    assert prefix + chain_block_hashes(tokens[32:], 16, parent=prefix[-1]) == full
    assert block_hash(None, tokens[:16]) == full[0]


def test_block_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="block_size"):
        chain_block_hashes([1, 2], 0)
