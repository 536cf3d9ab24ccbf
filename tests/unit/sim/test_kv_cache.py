from __future__ import annotations

import pytest

from pilothouse.sim import KVBlockPool


def test_allocation_and_usage() -> None:
    pool = KVBlockPool(10, 4)
    evicted: list[int] = []
    pool.allocate(4, evicted)
    assert (pool.used_blocks, pool.available_blocks, pool.usage) == (4, 6, 0.4)
    with pytest.raises(ValueError, match="cannot allocate"):
        pool.allocate(7, evicted)
    assert evicted == []


def test_released_prefix_stays_cached_and_is_hit() -> None:
    pool = KVBlockPool(10, 4)
    pool.allocate(3, [])
    assert all(pool.register(h) for h in (1, 2, 3))
    pool.release([1, 2, 3], private=0)
    assert pool.used_blocks == 0
    assert pool.evictable_blocks == 3
    assert pool.match_prefix([1, 2, 3, 4], 10) == 3
    assert pool.match_prefix([1, 2, 3], 2) == 2
    assert pool.match_prefix([9, 1], 10) == 0
    assert pool.unreferenced([1, 2]) == 2
    pool.acquire([1, 2])
    assert pool.used_blocks == 2
    assert pool.unreferenced([1, 2, 3]) == 1


def test_lru_evicts_least_recently_released_tail_first() -> None:
    pool = KVBlockPool(6, 4)
    pool.allocate(3, [])
    for h in (1, 2, 3):
        pool.register(h)
    pool.release([1, 2, 3], private=0)  # chain A released first
    pool.allocate(3, [])
    for h in (11, 12, 13):
        pool.register(h)
    pool.release([11, 12, 13], private=0)  # then chain B
    evicted: list[int] = []
    pool.allocate(2, evicted)
    assert evicted == [3, 2]  # A's tail goes first
    assert pool.match_prefix([1, 2, 3], 3) == 1
    assert pool.match_prefix([11, 12, 13], 3) == 3


def test_a_hit_refreshes_recency() -> None:
    pool = KVBlockPool(4, 4)
    pool.allocate(2, [])
    pool.register(1)
    pool.register(2)
    pool.release([1, 2], private=0)
    pool.allocate(2, [])
    pool.register(3)
    pool.register(4)
    pool.release([3, 4], private=0)
    pool.acquire([1])
    pool.release([1], private=0)  # 1 is now the most recently released
    evicted: list[int] = []
    pool.allocate(3, evicted)
    assert evicted == [2, 4, 3]


def test_register_adopts_an_existing_block() -> None:
    pool = KVBlockPool(8, 4)
    pool.allocate(2, [])
    assert pool.register(7) is True
    assert pool.register(7) is False  # second request computed the same block
    assert pool.used_blocks == 1  # its private copy was freed
    pool.release([7], private=0)
    pool.release([7], private=0)
    assert pool.evictable_blocks == 1
    pool.allocate(2, [])
    assert pool.register_all([7, 8]) == [False, True]  # 7 revived from the LRU, 8 new
    assert (pool.used_blocks, pool.evictable_blocks, pool.cached_blocks) == (2, 0, 2)
    pool.allocate(2, [])
    assert pool.register_all([9, 10]) == [True, True]


def test_clear_only_when_idle() -> None:
    pool = KVBlockPool(8, 4)
    pool.allocate(1, [])
    pool.register(5)
    assert pool.clear() is False
    pool.release([5], private=0)
    assert pool.clear() is True
    assert pool.cached_blocks == 0
    assert 5 not in pool


def test_prefix_caching_off_never_hits() -> None:
    pool = KVBlockPool(8, 4, enable_prefix_caching=False)
    pool.allocate(1, [])
    pool.register(5)
    assert pool.match_prefix([5], 1) == 0
