"""Sequence tracking, gap replay, resets and subscriptions of the KV-event subscriber.

A fake transport stands in for ZMQ: the tests push live ``(seq, payload)`` batches, hold the
publisher's replay buffer, and announce (re)connections.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

from pilothouse.clock import ManualClock
from pilothouse.endpoints.kv_index import KVBlockIndex, block_keys
from pilothouse.endpoints.kv_subscriber import (
    BLOCKS_PER_STEP,
    KVEventSubscriber,
    Resync,
    SequenceTracker,
    build_kv_scheduler,
    split_events,
)
from pilothouse.endpoints.kv_transport import (
    CONNECTED,
    KV_EVENTS_LABEL,
    KV_REPLAY_LABEL,
    KV_TOPIC_LABEL,
    FeedItem,
    KVEventAddress,
    kv_event_address,
)
from pilothouse.engines.tokenizer import DummyTokenizer
from pilothouse.errors import ConfigError, EngineError
from pilothouse.kvevents import (
    AllBlocksCleared,
    BlockRemoved,
    BlockStored,
    KVEventBatch,
    encode_event_batch,
)
from pilothouse.scheduling.config import load_scheduler_config
from pilothouse.scheduling.interfaces import CycleState
from pilothouse.scheduling.plugins.scorers.precise_prefix import PrecisePrefixScorer
from pilothouse.scheduling.types import Endpoint, SchedulingRequest

BS = 4


# -- the pure sequence rules --------------------------------------------------------------


C = "connected"
Step = tuple[int | str, list[int]]  # a live seq (or C), then the seqs a replay returns


@pytest.mark.parametrize(
    ("steps", "expected", "applied", "lost"),
    [
        pytest.param([(0, [])], [Resync()], 0, 0, id="first-is-zero"),
        pytest.param([(0, []), (1, []), (2, [])], [Resync()] * 3, 2, 0, id="in-order"),
        pytest.param([(3, [0, 1, 2, 3])], [Resync(replay_from=0)], 3, 0, id="late-join-replays"),
        pytest.param(
            [(C, [0, 1]), (2, [])], [Resync(replay_from=0), Resync()], 2, 0,
            id="connecting-catches-up",
        ),
        pytest.param(
            [(C, []), (0, [])], [Resync(replay_from=0), Resync()], 0, 0,
            id="connecting-to-a-silent-publisher",
        ),
        pytest.param(
            [(C, [0, 1, 2]), (2, []), (3, [])], [Resync(replay_from=0), Resync(), Resync()], 3, 0,
            id="live-duplicate-of-the-catch-up",
        ),
        pytest.param(
            [(0, []), (3, [1, 2, 3, 4])], [Resync(), Resync(replay_from=1)], 4, 0,
            id="gap-replayed-beyond-live",
        ),
        pytest.param(
            [(0, []), (5, [3, 4, 5])], [Resync(), Resync(replay_from=1)], 5, 2,
            id="gap-partly-lost",
        ),
        pytest.param(
            [(0, []), (5, [])], [Resync(), Resync(replay_from=1)], 5, 4, id="gap-no-replay"
        ),
        pytest.param(
            [(0, []), (2, [1, 2, 3]), (3, [])], [Resync(), Resync(replay_from=1), Resync()], 3, 0,
            id="duplicate-after-replay",
        ),
        pytest.param(
            [(0, []), (1, []), (7, []), (0, [])],
            [Resync(), Resync(), Resync(replay_from=2), Resync(reset=True)], 0, 5,
            id="backwards-is-a-restart",
        ),
        pytest.param(
            [(4, [4]), (1, [0, 1])],
            [Resync(replay_from=0), Resync(reset=True, replay_from=0)], 1, 4,
            id="restart-resyncs-from-zero",
        ),
        pytest.param(
            [(0, []), (1, []), (1, [0, 1])],
            [Resync(), Resync(), Resync(reset=True, replay_from=0)], 1, 0,
            id="same-seq-twice-live-is-a-restart",
        ),
        pytest.param(
            [(0, []), (1, []), (C, [0, 1, 2, 3]), (4, [])],
            [Resync(), Resync(), Resync(reset=True, replay_from=0), Resync()], 4, 0,
            id="reconnecting-resets",  # a restarted engine may already count past the old one
        ),
    ],
)  # fmt: skip
def test_sequence_rules(steps: list[Step], expected: list[Resync], applied: int, lost: int) -> None:
    tracker = SequenceTracker()
    got: list[Resync] = []
    for seq, replayed in steps:
        got.append(tracker.on_connected() if seq == C else tracker.on_live(int(seq)))
        for r in replayed:
            tracker.accept(r)
        if seq != C:
            tracker.accept(int(seq))
    assert got == expected
    assert (tracker.applied, tracker.lost) == (applied, lost)


# -- addresses from labels ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        pytest.param({}, None, id="no-label"),
        pytest.param(
            {KV_EVENTS_LABEL: "tcp://127.0.0.1:5557"},
            KVEventAddress("tcp://127.0.0.1:5557"),
            id="url",
        ),
        pytest.param(
            {KV_EVENTS_LABEL: "5557", KV_REPLAY_LABEL: "5558", KV_TOPIC_LABEL: "kv"},
            KVEventAddress("tcp://10.0.0.7:5557", "tcp://10.0.0.7:5558", "kv"),
            id="ports-on-the-endpoint-host",
        ),
        pytest.param({KV_EVENTS_LABEL: "ipc:///tmp/kv"}, KVEventAddress("ipc:///tmp/kv"), id="ipc"),
    ],
)
def test_addresses_from_labels(labels: dict[str, str], expected: KVEventAddress | None) -> None:
    endpoint = Endpoint(name="a", address="10.0.0.7:8000", model="m", labels=labels)
    assert kv_event_address(endpoint) == expected


@pytest.mark.parametrize("value", ["localhost:5557", "0", "70000", "http://x:1"])
def test_malformed_address_labels(value: str) -> None:
    endpoint = Endpoint(name="a", address="h:1", model="m", labels={KV_EVENTS_LABEL: value})
    with pytest.raises(ValueError, match=KV_EVENTS_LABEL):
        kv_event_address(endpoint)


def test_ipv6_endpoint_host() -> None:
    endpoint = Endpoint(name="a", address="[::1]:8000", model="m", labels={KV_EVENTS_LABEL: "9"})
    assert kv_event_address(endpoint) == KVEventAddress("tcp://[::1]:9")


# -- the subscriber over a fake transport -------------------------------------------------


class FakeFeed:
    def __init__(self, address: KVEventAddress) -> None:
        self.address = address
        self.live: asyncio.Queue[FeedItem | Exception] = asyncio.Queue()
        self.buffer: dict[int, bytes] = {}
        self.replays: list[int] = []
        self.closed = False

    async def recv(self) -> FeedItem:
        item = await self.live.get()
        if isinstance(item, Exception):
            raise item
        return item

    async def replay(self, start: int) -> list[tuple[int, bytes]]:
        self.replays.append(start)
        return sorted((s, p) for s, p in self.buffer.items() if s >= start)

    async def close(self) -> None:
        self.closed = True

    def publish(self, seq: int, payload: bytes, *, deliver: bool = True) -> None:
        self.buffer[seq] = payload
        if deliver:
            self.live.put_nowait((seq, payload))


class FakeFactory:
    def __init__(self, fail: frozenset[str] = frozenset()) -> None:
        self.feeds: list[FakeFeed] = []
        self.fail = fail
        self.closed = False

    def __call__(self, address: KVEventAddress) -> FakeFeed:
        if address.events in self.fail:
            raise EngineError(f"cannot subscribe to {address.events}")
        feed = FakeFeed(address)
        self.feeds.append(feed)
        return feed

    async def close(self) -> None:
        self.closed = True


def batch(first: int, blocks: int = 1, parent: int | None = None) -> bytes:
    """Blocks ``first .. first+blocks-1`` of the token stream 0, 1, 2, … (hash = block number)."""
    tokens = list(range(first * BS, (first + blocks) * BS))
    event = BlockStored(
        block_hashes=list(range(first, first + blocks)),
        parent_block_hash=parent,
        token_ids=tokens,
        block_size=BS,
        lora_id=None,
        medium="GPU",
        lora_name=None,
    )
    return encode_event_batch([event], 0.0)


def chain(blocks: int) -> list[bytes]:
    """``blocks`` batches, one block each, chained: batch i stores block i."""
    return [batch(i, parent=None if i == 0 else i - 1) for i in range(blocks)]


def held(index: KVBlockIndex, name: str = "a", blocks: int = 8) -> int:
    return index.match(block_keys(list(range(blocks * BS)), BS)).get(name, 0)


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


LABELS = {KV_EVENTS_LABEL: "tcp://127.0.0.1:1", KV_REPLAY_LABEL: "tcp://127.0.0.1:2"}
A = Endpoint(name="a", address="127.0.0.1:8000", model="m", labels=LABELS)


@pytest.fixture
async def setup() -> tuple[KVEventSubscriber, FakeFactory, FakeFeed]:
    factory = FakeFactory()
    subscriber = KVEventSubscriber(KVBlockIndex(), connect=factory)
    await subscriber.sync([A])
    return subscriber, factory, factory.feeds[0]


async def test_in_order_batches_are_applied(
    setup: tuple[KVEventSubscriber, FakeFactory, FakeFeed],
) -> None:
    subscriber, _, feed = setup
    for seq, payload in enumerate(chain(3)):
        feed.publish(seq, payload)
    await until(lambda: held(subscriber.index) == 3)
    status = subscriber.status("a")
    assert status is not None
    assert (status.applied_seq, status.batches, status.replays, status.lost) == (2, 3, 0, 0)
    await subscriber.close()


async def test_gap_is_filled_from_the_replay_socket(
    setup: tuple[KVEventSubscriber, FakeFactory, FakeFeed],
) -> None:
    subscriber, _, feed = setup
    payloads = chain(5)
    feed.publish(0, payloads[0])
    feed.publish(1, payloads[1], deliver=False)  # lost on the live stream
    feed.publish(2, payloads[2], deliver=False)
    feed.publish(3, payloads[3])
    await until(lambda: held(subscriber.index) == 4)
    assert feed.replays == [1]
    feed.publish(4, payloads[4])
    await until(lambda: held(subscriber.index) == 5)
    status = subscriber.status("a")
    assert status is not None
    assert (status.batches, status.replays, status.lost) == (5, 1, 0)
    await subscriber.close()


async def test_late_join_replays_from_zero(
    setup: tuple[KVEventSubscriber, FakeFactory, FakeFeed],
) -> None:
    subscriber, _, feed = setup
    for seq, payload in enumerate(chain(3)):
        feed.publish(seq, payload, deliver=seq == 2)
    await until(lambda: held(subscriber.index) == 3)
    assert feed.replays == [0]
    await subscriber.close()


async def test_restart_drops_old_blocks_and_resyncs(
    setup: tuple[KVEventSubscriber, FakeFactory, FakeFeed],
) -> None:
    subscriber, _, feed = setup
    for seq, payload in enumerate(chain(4)):
        feed.publish(seq, payload)
    await until(lambda: held(subscriber.index) == 4)
    feed.buffer.clear()  # a new engine process: empty buffer, seq from 0
    feed.publish(0, batch(0), deliver=False)
    feed.publish(1, batch(1, parent=0))
    await until(lambda: subscriber.status("a").resets == 1)  # type: ignore[union-attr]
    await until(lambda: held(subscriber.index) == 2)
    assert feed.replays == [0]
    await subscriber.close()


async def test_connecting_catches_up_through_replay(
    setup: tuple[KVEventSubscriber, FakeFactory, FakeFeed],
) -> None:
    subscriber, _, feed = setup
    for seq, payload in enumerate(chain(2)):
        feed.publish(seq, payload, deliver=False)  # sent before the SUB was connected
    feed.live.put_nowait(CONNECTED)
    await until(lambda: held(subscriber.index) == 2)
    status = subscriber.status("a")
    assert status is not None
    assert (status.connections, status.replays, status.resets) == (1, 1, 0)
    await subscriber.close()


async def test_a_reconnection_resyncs_even_when_seq_looks_fine(
    setup: tuple[KVEventSubscriber, FakeFactory, FakeFeed],
) -> None:
    subscriber, _, feed = setup
    feed.publish(0, batch(5))  # an unrelated block: must be gone after the resync
    await until(lambda: subscriber.index.size("a") == 1)
    feed.buffer.clear()  # a new engine that already counted past the old one
    for seq, payload in enumerate(chain(3)):
        feed.publish(seq, payload, deliver=False)
    feed.live.put_nowait(CONNECTED)
    feed.publish(3, batch(3, parent=2))
    await until(lambda: held(subscriber.index) == 4)
    assert subscriber.index.size("a") == 4
    status = subscriber.status("a")
    assert status is not None
    assert (status.resets, status.lost) == (1, 0)
    await subscriber.close()


async def test_undecodable_batches_are_counted(
    setup: tuple[KVEventSubscriber, FakeFactory, FakeFeed], caplog: pytest.LogCaptureFixture
) -> None:
    subscriber, _, feed = setup
    feed.publish(0, b"\xc1 not msgpack")
    feed.publish(1, batch(0))
    await until(lambda: held(subscriber.index) == 1)
    status = subscriber.status("a")
    assert status is not None
    assert (status.decode_errors, status.batches, status.applied_seq) == (1, 1, 1)
    assert "not a KV event batch" in caplog.text
    await subscriber.close()


async def test_sync_follows_the_endpoint_set() -> None:
    factory = FakeFactory()
    subscriber = KVEventSubscriber(KVBlockIndex(), connect=factory)
    b = Endpoint(name="b", address="127.0.0.1:8001", model="m", labels={KV_EVENTS_LABEL: "3"})
    plain = Endpoint(name="c", address="127.0.0.1:8002", model="m")
    await subscriber.sync([A, b, plain])
    assert sorted(subscriber.subscribed()) == ["a", "b"]
    feed_a, feed_b = factory.feeds
    feed_a.publish(0, batch(0))
    feed_b.publish(0, batch(0))
    await until(lambda: sorted(subscriber.index.endpoints()) == ["a", "b"])

    await subscriber.sync([A])  # b left: unsubscribed, its blocks dropped
    assert feed_b.closed
    assert not subscriber.index.tracks("b")
    assert subscriber.index.tracks("a")

    moved = A.evolve(labels={KV_EVENTS_LABEL: "tcp://127.0.0.1:9"})
    await subscriber.sync([moved])  # a new address: a new feed, old blocks dropped
    assert feed_a.closed
    assert not subscriber.index.tracks("a")
    assert subscriber.subscribed() == {"a": KVEventAddress("tcp://127.0.0.1:9")}

    await subscriber.close()
    assert all(feed.closed for feed in factory.feeds)
    assert factory.closed
    assert subscriber.subscribed() == {}


async def test_bad_labels_and_failed_subscriptions_are_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    factory = FakeFactory(fail=frozenset({"tcp://127.0.0.1:1"}))
    subscriber = KVEventSubscriber(KVBlockIndex(), connect=factory)
    bad = Endpoint(name="bad", address="h:1", model="m", labels={KV_EVENTS_LABEL: "nope"})
    with caplog.at_level(logging.WARNING, logger="pilothouse.kv_events"):
        await subscriber.sync([bad, A])
        await subscriber.sync([bad, A])
    assert subscriber.subscribed() == {}
    assert caplog.text.count("neither tcp://host:port nor a port number") == 1
    assert "cannot subscribe to tcp://127.0.0.1:1" in caplog.text
    await subscriber.close()


async def test_a_failed_feed_is_dropped_and_resubscribed(
    setup: tuple[KVEventSubscriber, FakeFactory, FakeFeed],
) -> None:
    subscriber, factory, feed = setup
    feed.publish(0, batch(0))
    await until(lambda: held(subscriber.index) == 1)
    feed.live.put_nowait(EngineError("socket gone"))
    await until(lambda: not subscriber.index.tracks("a"))
    await subscriber.sync([A])
    assert len(factory.feeds) == 2
    assert feed.closed
    await subscriber.close()


async def test_watch_polls_the_source_until_closed() -> None:
    factory = FakeFactory()
    subscriber = KVEventSubscriber(KVBlockIndex(), connect=factory)
    current = [A]
    subscriber.watch(lambda: current, interval_s=0.001)
    await until(lambda: "a" in subscriber.subscribed())
    current = []
    for _ in range(200):
        if not subscriber.subscribed():
            break
        await asyncio.sleep(0.001)
    assert subscriber.subscribed() == {}
    await subscriber.close()


# -- wiring -------------------------------------------------------------------------------

PRECISE = {
    "plugins": [{"type": "precise-prefix"}, {"type": "max-score"}],
    "profiles": [{"name": "p", "plugins": [{"ref": "precise-prefix"}, {"ref": "max-score"}]}],
}
APPROX = {
    "plugins": [{"type": "approx-prefix"}, {"type": "max-score"}],
    "profiles": [{"name": "p", "plugins": [{"ref": "approx-prefix"}, {"ref": "max-score"}]}],
}


async def test_build_kv_scheduler_wires_the_index_into_the_plugin() -> None:
    config = load_scheduler_config(PRECISE)
    scheduler, subscriber = build_kv_scheduler(config, ManualClock(), kv_events=True)
    assert subscriber is not None
    plugin = scheduler.plugins["precise-prefix"]
    assert isinstance(plugin, PrecisePrefixScorer)
    prompt = " ".join(f"w{i}" for i in range(40))
    tokens = DummyTokenizer().encode(prompt)  # the default tokenizer, for sim endpoints
    stored = BlockStored([1, 2], None, tokens[:32], 16, None, "GPU", None)
    subscriber.index.apply("b", KVEventBatch(0.0, [stored], 0))
    eps = [Endpoint(name=n, address=f"{n}:1", model="m", engine="sim") for n in "ab"]
    request = SchedulingRequest(request_id="r", model="m", prompt=prompt)
    assert list(plugin.score(CycleState(0.0), request, eps)) == [0.0, 32 / len(tokens)]
    await subscriber.close()

    _, none = build_kv_scheduler(config, ManualClock(), kv_events=False)
    assert none is None


def test_kv_events_without_a_precise_prefix_plugin_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="precise-prefix") as info:
        build_kv_scheduler(load_scheduler_config(APPROX), ManualClock(), kv_events=True)
    assert info.value.path == "kv_events"


def _events(total: int) -> list[BlockStored | BlockRemoved | AllBlocksCleared]:
    """A root store of ``total`` blocks, a removal of a few, a second chained store."""
    first = BlockStored(
        block_hashes=list(range(total)), parent_block_hash=None,
        token_ids=list(range(total * BS)), block_size=BS, lora_id=None, medium="GPU",
        lora_name=None, extra_keys=[None] * total,
    )  # fmt: skip
    more = BlockStored(
        block_hashes=list(range(total, total + 70)), parent_block_hash=total - 1,
        token_ids=list(range(total * BS, (total + 70) * BS)), block_size=BS, lora_id=None,
        medium="GPU", lora_name=None,
    )  # fmt: skip
    return [first, BlockRemoved(block_hashes=[5, 6, 7], medium="GPU"), more]


@pytest.mark.parametrize("step", [1, 3, 64, 1000])
def test_split_events_bound_each_part_and_index_the_same_blocks(step: int) -> None:
    events = _events(200)
    parts = list(split_events(events, step))
    sizes = [sum(len(e.block_hashes) for e in part if not isinstance(e, AllBlocksCleared))
             for part in parts]  # fmt: skip
    assert max(sizes) <= step
    assert sum(sizes) == 200 + 3 + 70
    whole, pieces = KVBlockIndex(), KVBlockIndex()
    whole.apply("a", KVEventBatch(0.0, events, 0))
    for part in parts:
        pieces.apply("a", KVEventBatch(0.0, part, 0))
    tokens = list(range(270 * BS))
    for n in (1, 5, 6, 200, 201, 270):  # before, at and after the removed blocks and the seam
        keys = block_keys(tokens[: n * BS], BS)
        assert pieces.match(keys) == whole.match(keys)
        assert pieces.match_tiers(keys) == whole.match_tiers(keys)
    for index in (whole, pieces):
        assert (index.size("a"), index.unresolved("a")) == (267, 0)


def test_split_events_keeps_small_batches_and_clears_whole() -> None:
    events = [*_events(10), AllBlocksCleared()]
    assert list(split_events(events, 1000)) == [events]
    assert list(split_events([], 64)) == [[]]


async def test_a_large_batch_is_applied_across_several_loop_steps(
    setup: tuple[KVEventSubscriber, FakeFactory, FakeFeed],
) -> None:
    subscriber, _, feed = setup
    blocks = 5 * BLOCKS_PER_STEP
    feed.publish(0, batch(0, blocks))
    steps = 0
    while held(subscriber.index, blocks=blocks) < blocks:
        steps += 1
        assert steps < 100
        await asyncio.sleep(0)
    # the loop ran other work between slices: the index grew a slice at a time
    assert steps >= 5
    await subscriber.close()
