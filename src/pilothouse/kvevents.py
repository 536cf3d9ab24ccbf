"""vLLM's KV-cache event wire format: msgspec structs, encoder and a lenient decoder.

The structs mirror ``vllm/distributed/kv_events.py`` field for field (same names, order and
defaults; tagged by class name). vLLM releases encode them positionally
(``array_like=True``): ``EventBatch = [ts, events, data_parallel_rank]`` and e.g.
``["BlockStored", block_hashes, parent_block_hash, token_ids, block_size, lora_id, medium,
lora_name, extra_keys, group_idx, kv_cache_spec_kind, kv_cache_spec_sliding_window]``.
msgspec writes every field of an array-like struct, defaults included (``omit_defaults``
only drops fields from maps). Newer vLLM can send the same structs as maps tagged by
``"type"``; :func:`encode_event_batch` writes either layout.

:func:`decode_event_batch` reads both layouts and older, shorter positional events (e.g.
``BlockStored`` without ``medium``/``lora_name``; ``BlockRemoved`` without ``medium``),
so a router can consume any vLLM or simulator publisher with the same structs.

``medium`` names the tier a block lives in: ``"GPU"`` for the engine's own cache (``None``
from older publishers means the same), ``"CPU"`` for blocks vLLM's offloading connector
copied to host memory. The connector announces its stores without parent or token ids
(``parent_block_hash=None, token_ids=[]``): consumers key them by the engine hash they
learnt from the GPU store (:mod:`pilothouse.endpoints.kv_index`).

ZMQ framing (see :mod:`pilothouse.servers.sim.kv_publisher`): PUB multipart
``[topic, seq (8-byte big-endian), payload]``; replay over ROUTER/DEALER.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from pilothouse.errors import KVEventDecodeError as KVEventDecodeError  # re-exported

MEDIUM_GPU = "GPU"  # vLLM's own prefix cache
MEDIUM_CPU = "CPU"  # vLLM's CPU offloading connector (host memory)
END_SEQ = (-1).to_bytes(8, "big", signed=True)  # replay end marker

ExternalBlockHash = int | bytes


class EventBatch(msgspec.Struct, array_like=True, omit_defaults=True, gc=False):
    ts: float
    events: list[Any]
    data_parallel_rank: int | None = None


class KVCacheEvent(msgspec.Struct, array_like=True, omit_defaults=True, gc=False, tag=True):
    """Base class of the tagged union (the tag is the class name)."""


class BlockStored(KVCacheEvent):
    block_hashes: list[ExternalBlockHash]
    parent_block_hash: ExternalBlockHash | None
    token_ids: list[int]
    block_size: int
    lora_id: int | None
    medium: str | None
    lora_name: str | None
    extra_keys: list[tuple[Any, ...] | None] | None = None
    group_idx: int | None = None
    kv_cache_spec_kind: str | None = None
    kv_cache_spec_sliding_window: int | None = None


class BlockRemoved(KVCacheEvent):
    block_hashes: list[ExternalBlockHash]
    medium: str | None
    group_idx: int | None = None


class AllBlocksCleared(KVCacheEvent):
    pass


class KVEventBatch(EventBatch):
    events: list[BlockStored | BlockRemoved | AllBlocksCleared]


# Map layout: same fields, keyed by name, tagged by "type" with the same class names.
class _MapBlockStored(BlockStored, array_like=False, tag="BlockStored"):
    pass


class _MapBlockRemoved(BlockRemoved, array_like=False, tag="BlockRemoved"):
    pass


class _MapAllBlocksCleared(AllBlocksCleared, array_like=False, tag="AllBlocksCleared"):
    pass


class _MapEventBatch(EventBatch, array_like=False):
    pass


_AnyEvent = BlockStored | BlockRemoved | AllBlocksCleared
_TO_MAP: dict[type[KVCacheEvent], type[KVCacheEvent]] = {
    BlockStored: _MapBlockStored,
    BlockRemoved: _MapBlockRemoved,
    AllBlocksCleared: _MapAllBlocksCleared,
}
_EVENT_TYPES: dict[str, type[_AnyEvent]] = {
    "BlockStored": BlockStored,
    "BlockRemoved": BlockRemoved,
    "AllBlocksCleared": AllBlocksCleared,
}
_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(KVEventBatch)
_GENERIC = msgspec.msgpack.Decoder()


def encode_event_batch(
    events: Sequence[KVCacheEvent],
    ts: float,
    data_parallel_rank: int | None = 0,
    layout: str = "array",
) -> bytes:
    """The msgpack payload of one batch, positional (``array``) or keyed (``map``)."""
    if layout == "array":
        return _ENCODER.encode(EventBatch(ts, list(events), data_parallel_rank))
    if layout != "map":
        raise ValueError(f"unknown KV event layout {layout!r}")
    mapped = [_TO_MAP[type(event)](*msgspec.structs.astuple(event)) for event in events]
    return _ENCODER.encode(_MapEventBatch(ts, mapped, data_parallel_rank))


def decode_event_batch(payload: bytes) -> KVEventBatch:
    """Decode one batch (positional, shorter legacy positional, or map layout)."""
    try:
        return _DECODER.decode(payload)
    except msgspec.DecodeError:
        pass  # not the current positional layout: parse it generically below
    try:
        raw = _GENERIC.decode(payload)
        return _batch_from_raw(raw)
    except (msgspec.DecodeError, KeyError, TypeError, IndexError) as exc:
        raise KVEventDecodeError(f"not a KV event batch: {exc}") from exc


def _batch_from_raw(raw: Any) -> KVEventBatch:
    if isinstance(raw, dict):
        ts, events, rank = raw["ts"], raw["events"], raw.get("data_parallel_rank")
    else:
        ts, events = raw[0], raw[1]
        rank = raw[2] if len(raw) > 2 else None
    return KVEventBatch(float(ts), [_event_from_raw(item) for item in events], rank)


def _event_from_raw(raw: Any) -> _AnyEvent:
    values: dict[str, Any]
    if isinstance(raw, dict):
        cls = _EVENT_TYPES[raw["type"]]
        values = {name: raw.get(name) for name in cls.__struct_fields__}
    else:
        cls = _EVENT_TYPES[raw[0]]
        fields = cls.__struct_fields__
        values = dict.fromkeys(fields)
        values.update(zip(fields, raw[1:], strict=False))
    return cls(**values)
