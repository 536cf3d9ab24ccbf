"""vLLM's KV-event msgpack layouts: what we encode and what we accept."""

from __future__ import annotations

import msgspec
import pytest

from pilothouse.endpoints.kv_index import KVBlockIndex, block_keys
from pilothouse.kvevents import (
    AllBlocksCleared,
    BlockRemoved,
    BlockStored,
    KVEventBatch,
    KVEventDecodeError,
    decode_event_batch,
    encode_event_batch,
)
from pilothouse.servers.sim.kv_publisher import to_wire
from pilothouse.sim import AllBlocksClearedEvent, BlocksRemoved, BlocksStored, EngineModel
from tests.unit.sim.helpers import request, run_until_idle, small_config

STORED = BlockStored([1, 2**64 - 1], None, list(range(8)), 4, None, "GPU", None)
EVENTS = [STORED, BlockRemoved([7], "GPU"), AllBlocksCleared()]


def test_positional_layout_writes_every_field() -> None:
    raw = msgspec.msgpack.decode(encode_event_batch(EVENTS, 1.5))
    assert raw == [
        1.5,
        [
            ["BlockStored", [1, 2**64 - 1], None, list(range(8)), 4, None, "GPU", None,
             None, None, None, None],
            ["BlockRemoved", [7], "GPU", None],
            ["AllBlocksCleared"],
        ],
        0,
    ]  # fmt: skip


def test_map_layout_is_tagged_by_type() -> None:
    raw = msgspec.msgpack.decode(encode_event_batch(EVENTS, 1.5, layout="map"))
    assert raw["ts"] == 1.5
    assert raw["data_parallel_rank"] == 0
    assert [event["type"] for event in raw["events"]] == [
        "BlockStored",
        "BlockRemoved",
        "AllBlocksCleared",
    ]
    assert raw["events"][0]["block_hashes"] == [1, 2**64 - 1]
    assert "group_idx" not in raw["events"][1]  # maps omit defaults


@pytest.mark.parametrize("layout", ["array", "map"])
def test_round_trip(layout: str) -> None:
    batch = decode_event_batch(encode_event_batch(EVENTS, 2.0, layout=layout))
    assert batch.ts == 2.0
    assert batch.data_parallel_rank == 0
    assert batch.events == EVENTS


def test_older_shorter_positional_events_decode() -> None:
    payload = msgspec.msgpack.encode(
        [3.0, [["BlockStored", [5], 4, [1, 2], 2, None], ["BlockRemoved", [5]]]]
    )
    batch = decode_event_batch(payload)
    assert batch.data_parallel_rank is None
    stored, removed = batch.events
    assert isinstance(stored, BlockStored)
    assert (stored.block_hashes, stored.parent_block_hash, stored.medium) == ([5], 4, None)
    assert removed == BlockRemoved([5], None)


def test_byte_hashes_are_accepted() -> None:
    digest = bytes(range(32))
    payload = msgspec.msgpack.encode([1.0, [["BlockRemoved", [digest], "GPU"]], 0])
    assert decode_event_batch(payload).events == [BlockRemoved([digest], "GPU")]


@pytest.mark.parametrize(
    "payload",
    [b"\x01", msgspec.msgpack.encode([1.0, [["Unknown"]], 0]), msgspec.msgpack.encode({"x": 1})],
)
def test_garbage_is_a_decode_error(payload: bytes) -> None:
    with pytest.raises(KVEventDecodeError):
        decode_event_batch(payload)


def test_unknown_layout_is_rejected() -> None:
    with pytest.raises(ValueError, match="layout"):
        encode_event_batch(EVENTS, 1.0, layout="yaml")


def test_model_events_convert_to_vllm_structs() -> None:
    events = (
        BlocksStored((11, 12), 10, tuple(range(8)), "adapter"),
        BlocksRemoved((3,)),
        AllBlocksClearedEvent(),
    )
    wire = to_wire(events, 4, {"adapter": 1})
    assert wire == [
        BlockStored([11, 12], 10, list(range(8)), 4, 1, "GPU", "adapter"),
        BlockRemoved([3], "GPU"),
        AllBlocksCleared(),
    ]


def test_cpu_medium_payload_shaped_like_vllms_offloading_connector() -> None:
    # What vLLM's OffloadingConnector.take_events yields, encoded by vLLM's publisher
    # (structs without array_like, omit_defaults: a map per event, tagged by "type").
    payload = msgspec.msgpack.encode(
        {
            "ts": 4.0,
            "events": [
                {"type": "BlockStored", "block_hashes": [21, 22], "parent_block_hash": None,
                 "token_ids": [], "block_size": 16, "lora_id": None, "medium": "CPU",
                 "lora_name": None},
                {"type": "BlockRemoved", "block_hashes": [21], "medium": "GPU"},
                {"type": "BlockRemoved", "block_hashes": [22], "medium": "CPU"},
            ],
            "data_parallel_rank": 0,
        }
    )  # fmt: skip
    stored, gpu_removed, cpu_removed = decode_event_batch(payload).events
    assert stored == BlockStored([21, 22], None, [], 16, None, "CPU", None)
    assert gpu_removed == BlockRemoved([21], "GPU")
    assert cpu_removed == BlockRemoved([22], "CPU")


@pytest.mark.parametrize("layout", ["array", "map"])
@pytest.mark.parametrize("medium", ["CPU", None])
def test_round_trip_with_and_without_a_medium(layout: str, medium: str | None) -> None:
    events = [
        BlockStored([9], None, [], 16, None, medium, None),
        BlockRemoved([9], medium),
    ]
    assert decode_event_batch(encode_event_batch(events, 1.0, layout=layout)).events == events


def test_cpu_tier_events_convert_with_their_medium() -> None:
    events = (
        BlocksStored((11, 12), None, (), medium="CPU"),
        BlocksRemoved((11,)),
        BlocksRemoved((12,), medium="CPU"),
    )
    assert to_wire(events, 16, {}) == [
        BlockStored([11, 12], None, [], 16, None, "CPU", None),
        BlockRemoved([11], "GPU"),
        BlockRemoved([12], "CPU"),
    ]


def test_cpu_tier_events_keep_an_index_in_step_with_the_engine() -> None:
    """Engine model with a CPU tier → vLLM wire format → the router's index: it sees the
    prompt offloaded after the eviction and back on the GPU after the reload."""
    model = EngineModel(small_config(num_cpu_blocks=32, kv_bytes_per_token=1000, pcie_gb_s=0.004))
    index = KVBlockIndex()

    def run(rid: str, tokens: list[int], now: float) -> float:
        model.add_request(request(rid, tokens, max_tokens=1), now)
        results = run_until_idle(model, now)
        for result in results:
            payload = encode_event_batch(to_wire(result.kv_events, 4, {}), result.end)
            index.apply("r", KVEventBatch(0.0, decode_event_batch(payload).events, 0))
        return results[-1].end

    prompt = list(range(40))
    keys = block_keys(prompt, 4)
    now = run("a", prompt, 0.0)
    assert index.match_tiers(keys) == {"r": (10, 10)}
    now = run("filler", list(range(1000, 1255)), now)  # evicts the prompt to the CPU tier
    assert index.match_tiers(keys) == {"r": (10, 0)}
    assert index.offloaded_size("r") == model.cpu_cached_blocks
    run("again", [*prompt, 1, 2, 3], now)  # reloaded: on the GPU again, still on the CPU
    assert index.match_tiers(keys) == {"r": (10, 10)}
    assert index.unresolved("r") == 0
