"""Chained block hashes over token ids, as a paged prefix cache keys its blocks.

Block ``i`` hashes ``(hash of block i-1, token ids of block i, extra key)`` so equal hashes
mean equal prefixes. The digest is BLAKE2b with 8-byte output over::

    parent (8 bytes, big-endian; ROOT_HASH for the first block)
    || extra key (UTF-8, e.g. the LoRA name; empty when none) || 0x00
    || token ids (8 bytes each, little-endian signed)

and the value is the unsigned 64-bit integer of the digest (big-endian): the same width vLLM
sends in KV events (``VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES=1``, the low 64 bits). It is not
vLLM's own hash (sha256 of pickled or CBOR tuples seeded by ``PYTHONHASHSEED``); consumers
that want to predict hits should follow the events, not recompute hashes.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence

ROOT_HASH = 0x5049_4C4F_5448_5345  # "PILOTHSE": the parent of every first block
_U64 = struct.Struct(">Q")


def block_hash(parent: int | None, tokens: Sequence[int], extra: str | None = None) -> int:
    """The hash of one block given its parent's hash (``None`` for the first block)."""
    digest = hashlib.blake2b(digest_size=8)
    digest.update(_U64.pack(ROOT_HASH if parent is None else parent))
    if extra:
        digest.update(extra.encode("utf-8"))
    digest.update(b"\x00")
    digest.update(struct.pack(f"<{len(tokens)}q", *tokens))
    return int.from_bytes(digest.digest(), "big")


def chain_block_hashes(
    token_ids: Sequence[int],
    block_size: int,
    *,
    parent: int | None = None,
    extra: str | None = None,
) -> tuple[int, ...]:
    """Hashes of every *full* block of ``token_ids``, chained from ``parent``.

    A trailing partial block has no hash (it cannot be shared). To extend a chain (a shared
    prefix followed by a unique suffix that starts on a block boundary), pass the prefix's
    last hash as ``parent``.
    """
    if block_size < 1:
        raise ValueError("block_size must be >= 1")
    hashes: list[int] = []
    previous = parent
    for start in range(0, len(token_ids) - block_size + 1, block_size):
        previous = block_hash(previous, token_ids[start : start + block_size], extra)
        hashes.append(previous)
    return tuple(hashes)
