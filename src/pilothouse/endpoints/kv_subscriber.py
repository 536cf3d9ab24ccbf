"""The KV-event data producer: one subscription per endpoint, feeding a :class:`KVBlockIndex`.

For every endpoint whose labels say where it publishes (:func:`kv_event_address`), a feed
(:mod:`pilothouse.endpoints.kv_transport`: a ZMQ SUB, a DEALER for replays) delivers
``(seq, payload)`` batches and a marker each time the connection is established; a
:class:`SequenceTracker` per publisher decides:

- connected: replay from 0 through the replay socket (a PUB drops what it sent before the
  connection); a *re*-connection may be to a restarted engine, so it also drops the endpoint's
  blocks first (a reset);
- ``seq == applied + 1``: apply it;
- a gap (``seq > applied + 1``): replay from ``applied + 1``, apply what comes back, then the
  batch itself; what the publisher no longer buffers is counted as ``lost``;
- ``seq`` at or below the last live one (the engine restarted unnoticed): reset and replay
  from 0;
- a duplicate (``seq <= applied`` after a replay): ignored.

:meth:`KVEventSubscriber.sync` subscribes and unsubscribes as the endpoint set changes (a
removed endpoint, or one whose addresses changed, has its blocks dropped);
:meth:`KVEventSubscriber.watch` calls it periodically with the pool's endpoints. See
``docs/kv-events.md``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import msgspec

from pilothouse.clock import Clock
from pilothouse.endpoints.kv_index import KVBlockIndex
from pilothouse.endpoints.kv_transport import (
    CONNECTED,
    EventFeed,
    FeedFactory,
    KVEventAddress,
    ZmqFeedFactory,
    kv_event_address,
)
from pilothouse.endpoints.tokenizers import ModelTokenizers
from pilothouse.errors import ConfigError, EngineError, KVEventDecodeError
from pilothouse.kvevents import (
    AllBlocksCleared,
    BlockRemoved,
    BlockStored,
    KVEventBatch,
    decode_event_batch,
)
from pilothouse.scheduling.config import SchedulerConfig
from pilothouse.scheduling.plugins.scorers.precise_prefix import (
    KV_INDEX_SERVICE,
    PRECISE_PREFIX_TYPE,
    TOKENIZER_SERVICE,
    PromptTokenizer,
)
from pilothouse.scheduling.scheduler import Scheduler, build_scheduler
from pilothouse.scheduling.types import Endpoint

log = logging.getLogger("pilothouse.kv_events")

AddressResolver = Callable[[Endpoint], KVEventAddress | None]


@dataclass(frozen=True, slots=True)
class Resync:
    """What to do before a live batch is applied: drop the endpoint, replay from a seq."""

    reset: bool = False
    replay_from: int | None = None


class SequenceTracker:
    """Sequence numbers of one publisher (pure; see the module docstring for the rules)."""

    __slots__ = ("applied", "live", "lost")

    def __init__(self) -> None:
        self.applied = -1  # last seq applied (live or replayed)
        self.live = -1  # last seq seen on the live stream
        self.lost = 0  # seqs skipped because nobody could replay them

    def on_connected(self) -> Resync:
        """The connection was established: catch up from 0; a reconnection also resets."""
        reset = self.applied >= 0 or self.live >= 0
        self.applied = self.live = -1
        return Resync(reset, 0)

    def on_live(self, seq: int) -> Resync:
        """A live batch arrived; the caller then replays if asked and calls :meth:`accept`."""
        reset = 0 <= seq <= self.live
        if reset:
            self.applied = self.live = -1
        replay = self.applied + 1 if seq > self.applied + 1 else None
        self.live = seq
        return Resync(reset, replay)

    def accept(self, seq: int) -> bool:
        """Whether to apply batch ``seq`` (live or replayed): not a duplicate; counts losses."""
        if seq <= self.applied:
            return False
        self.lost += seq - self.applied - 1
        self.applied = seq
        return True


@dataclass(frozen=True, slots=True)
class FeedStatus:
    """One subscription's counters, for dashboards and tests."""

    address: KVEventAddress
    connections: int
    applied_seq: int
    batches: int
    replays: int
    resets: int
    lost: int
    decode_errors: int


@dataclass(slots=True)
class _Follower:
    address: KVEventAddress
    feed: EventFeed
    tracker: SequenceTracker = field(default_factory=SequenceTracker)
    task: asyncio.Task[None] | None = None
    connections: int = 0
    batches: int = 0
    replays: int = 0
    resets: int = 0
    decode_errors: int = 0

    def status(self) -> FeedStatus:
        t = self.tracker
        return FeedStatus(
            address=self.address,
            connections=self.connections,
            applied_seq=t.applied,
            batches=self.batches,
            replays=self.replays,
            resets=self.resets,
            lost=t.lost,
            decode_errors=self.decode_errors,
        )


class KVEventSubscriber:
    """Subscribes to every endpoint's KV events and applies them to ``index``."""

    def __init__(
        self,
        index: KVBlockIndex,
        *,
        addresses: AddressResolver = kv_event_address,
        connect: FeedFactory | None = None,
    ) -> None:
        self.index = index
        self._addresses = addresses
        self._connect: FeedFactory = connect or ZmqFeedFactory()
        self._followers: dict[str, _Follower] = {}
        self._watch_task: asyncio.Task[None] | None = None
        self._invalid: dict[str, str] = {}  # endpoint → error already logged

    def status(self, endpoint: str) -> FeedStatus | None:
        follower = self._followers.get(endpoint)
        return None if follower is None else follower.status()

    def subscribed(self) -> dict[str, KVEventAddress]:
        return {name: f.address for name, f in self._followers.items()}

    async def sync(self, endpoints: Iterable[Endpoint]) -> None:
        """Follow exactly the given endpoints that publish KV events (by name and address)."""
        wanted: dict[str, KVEventAddress] = {}
        for endpoint in endpoints:
            address = self._resolve(endpoint)
            if address is not None:
                wanted[endpoint.name] = address
        for name, follower in list(self._followers.items()):
            alive = follower.task is not None and not follower.task.done()
            if wanted.get(name) != follower.address or not alive:
                await self._unfollow(name)
        for name, address in wanted.items():
            if name not in self._followers:
                self._follow(name, address)

    def watch(self, source: Callable[[], Iterable[Endpoint]], interval_s: float = 1.0) -> None:
        """Call :meth:`sync` with ``source()`` now and every ``interval_s`` until closed."""
        if self._watch_task is None:
            self._watch_task = asyncio.create_task(self._watch(source, interval_s), name="kv-sync")

    async def close(self) -> None:
        """Stop watching and unsubscribe from everything (sockets closed, blocks dropped)."""
        if self._watch_task is not None:
            self._watch_task.cancel()
            await asyncio.gather(self._watch_task, return_exceptions=True)
            self._watch_task = None
        for name in list(self._followers):
            await self._unfollow(name)
        await self._connect.close()

    async def _watch(self, source: Callable[[], Iterable[Endpoint]], interval_s: float) -> None:
        while True:
            await self.sync(source())
            await asyncio.sleep(interval_s)

    def _resolve(self, endpoint: Endpoint) -> KVEventAddress | None:
        try:
            address = self._addresses(endpoint)
        except ValueError as exc:
            if self._invalid.get(endpoint.name) != str(exc):
                log.warning("endpoint %s: no KV events: %s", endpoint.name, exc)
                self._invalid[endpoint.name] = str(exc)
            return None
        self._invalid.pop(endpoint.name, None)
        return address

    def _follow(self, name: str, address: KVEventAddress) -> None:
        try:
            feed = self._connect(address)
        except EngineError as exc:
            log.warning("endpoint %s: cannot subscribe to %s: %s", name, address.events, exc)
            return
        follower = _Follower(address, feed)
        follower.task = asyncio.create_task(self._run(name, follower), name=f"kv-{name}")
        self._followers[name] = follower
        log.info("endpoint %s: following KV events at %s", name, address.events)

    async def _unfollow(self, name: str) -> None:
        follower = self._followers.pop(name)
        if follower.task is not None:
            follower.task.cancel()  # it applies nothing more: cancelled at its next step
        self.index.drop(name)
        if follower.task is not None:
            await asyncio.gather(follower.task, return_exceptions=True)
        await follower.feed.close()

    async def _run(self, name: str, follower: _Follower) -> None:
        try:
            while True:
                item = await follower.feed.recv()
                if item is CONNECTED:
                    follower.connections += 1
                    await self._resync(name, follower, follower.tracker.on_connected())
                else:
                    seq, payload = item
                    await self._resync(name, follower, follower.tracker.on_live(seq))
                    if follower.tracker.accept(seq):
                        await self._apply(name, follower, payload)
                    # A queue with batches waiting answers get() without yielding: without
                    # this, a burst of batches (64 prompts stored at once) is applied in one
                    # stretch, every request in flight waiting behind it.
                    await asyncio.sleep(0)
        except EngineError as exc:  # resubscribed on the next sync
            log.warning("endpoint %s: %s; dropping its blocks", name, exc)
            self.index.drop(name)
        except Exception:  # a bug: say so loudly, forget what may be wrong, resubscribe
            log.exception("endpoint %s: KV event feed failed; dropping its blocks", name)
            self.index.drop(name)

    async def _resync(self, name: str, f: _Follower, resync: Resync) -> None:
        if resync.reset:
            f.resets += 1
            self.index.drop(name)
            log.info("endpoint %s: KV event publisher restarted or reconnected: resyncing", name)
        if resync.replay_from is not None:
            f.replays += 1
            for replayed, data in await f.feed.replay(resync.replay_from):
                if f.tracker.accept(replayed):
                    await self._apply(name, f, data)

    def _decode(self, name: str, f: _Follower, payload: bytes) -> KVEventBatch | None:
        try:
            batch = decode_event_batch(payload)
        except KVEventDecodeError as exc:
            f.decode_errors += 1
            log.warning("endpoint %s: %s", name, exc)
            return None
        f.batches += 1
        return batch

    async def _apply(self, name: str, f: _Follower, payload: bytes) -> None:
        """Apply ``batch`` a bounded number of blocks at a time, yielding in between.

        One 6k-token prompt is ~375 blocks of 16 (~1 ms to index), and an engine batches the
        stores of everything that finished in its publish interval: applied whole, a batch
        stalled the event loop for 2-8 ms under 64 concurrent long prompts. Applied in
        slices, each is a short step; the scheduler may see a prompt's first blocks before
        its last, which is what a later batch would have shown it anyway.
        """
        batch = self._decode(name, f, payload)
        if batch is None:
            return
        parts = list(split_events(batch.events, BLOCKS_PER_STEP))
        if len(parts) == 1:
            self.index.apply(name, batch)
            return
        for i, events in enumerate(parts):
            if i:
                await asyncio.sleep(0)
            self.index.apply(name, msgspec.structs.replace(batch, events=events))


def uses_precise_prefix(config: SchedulerConfig) -> bool:
    """Whether ``config`` declares a ``precise-prefix`` plugin (the KV events' only reader)."""
    return any(spec.type == PRECISE_PREFIX_TYPE for spec in config.plugins)


def build_kv_scheduler(
    config: SchedulerConfig,
    clock: Clock,
    *,
    kv_events: bool,
    tokenizer: PromptTokenizer | None = None,
    seed: int | None = None,
    inline_tokenizer: bool = True,
) -> tuple[Scheduler, KVEventSubscriber | None]:
    """A scheduler and, with ``kv_events``, the subscriber that feeds its prefix index.

    The index is passed to the plugins as the ``kv-index`` service. With
    ``inline_tokenizer``, so is the tokenizer (default: the simulator's dummy tokenizer, for
    ``sim`` endpoints only) as the ``tokenizer`` service: requests that arrive without
    ``prompt_token_ids`` are then tokenized inside the decision. Without it, only token ids
    prepared before scheduling (:class:`~pilothouse.endpoints.prompt_tokens.
    PromptTokenizerProducer`) are matched, and a request without them is routed by history.
    The caller starts the subscriber (:meth:`KVEventSubscriber.watch`) and closes it.
    """
    if not kv_events:
        return build_scheduler(config, clock, seed=seed), None
    if not uses_precise_prefix(config):
        raise ConfigError(
            "KV events are read only by a 'precise-prefix' scorer; the scheduler config has "
            "none (see docs/kv-events.md)",
            "kv_events",
        )
    index = KVBlockIndex()
    services: dict[str, object] = {KV_INDEX_SERVICE: index}
    if inline_tokenizer:
        services[TOKENIZER_SERVICE] = tokenizer or ModelTokenizers({})
    scheduler = build_scheduler(config, clock, seed=seed, services=services)
    return scheduler, KVEventSubscriber(index)


BLOCKS_PER_STEP = 64
"""Most blocks the subscriber indexes between two yields to the event loop (~0.2 ms)."""

Event = BlockStored | BlockRemoved | AllBlocksCleared


def split_events(events: list[Event], max_blocks: int) -> Iterator[list[Event]]:
    """``events`` in order, in runs of at most ``max_blocks`` blocks each (an event of more
    is cut: a stored run continues from the last block of the piece before it)."""
    part: list[Event] = []
    room = max_blocks
    for event in events:
        for piece in _pieces(event, max_blocks):
            blocks = len(piece.block_hashes) if not isinstance(piece, AllBlocksCleared) else 1
            if part and blocks > room:
                yield part
                part, room = [], max_blocks
            part.append(piece)
            room -= blocks
    if part or not events:
        yield part


def _pieces(event: Event, n: int) -> Iterator[Event]:
    if isinstance(event, AllBlocksCleared) or len(event.block_hashes) <= n:
        yield event
        return
    hashes = event.block_hashes
    if isinstance(event, BlockRemoved):
        for i in range(0, len(hashes), n):
            yield msgspec.structs.replace(event, block_hashes=hashes[i : i + n])
        return
    size, parent, extra = event.block_size, event.parent_block_hash, event.extra_keys
    tokens = event.token_ids
    cut = len(tokens) == len(hashes) * size  # else the index rejects it whole: keep it so
    if not cut:
        yield event
        return
    for i in range(0, len(hashes), n):
        yield msgspec.structs.replace(
            event,
            block_hashes=hashes[i : i + n],
            parent_block_hash=parent,
            token_ids=tokens[i * size : (i + n) * size],
            extra_keys=None if extra is None else extra[i : i + n],
        )
        parent = hashes[min(i + n, len(hashes)) - 1]
