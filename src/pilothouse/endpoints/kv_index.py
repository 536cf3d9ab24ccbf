"""The precise prefix index: which replica holds which prompt blocks, from its KV events.

vLLM (and the simulator) publish ``BlockStored`` / ``BlockRemoved`` / ``AllBlocksCleared``
events keyed by the engine's own block hashes, which a router cannot reproduce in general
(the algorithm and its seed are engine settings). So, as ``protocols.md`` 5.2 suggests, the
index keys every block by a *request key* of its own instead: a hash chained over the block's
token ids, computed from the ``token_ids`` each ``BlockStored`` carries and the parent's key
(looked up through ``parent_block_hash``). A request is then matched by hashing its own
tokens the same way (:meth:`KVBlockIndex.block_keys`) and walking the chain
(:meth:`KVBlockIndex.match`).

Per endpoint the index keeps ``engine hash → request key`` (bounded, oldest first out) and, per
tier, how many copies of each block it holds and how many blocks hold each request key;
globally ``request key → endpoints`` holding it in any tier. Tiers come from the events'
``medium``: ``"GPU"`` (or ``None``, older publishers) is the engine's own cache, anything else
(``"CPU"`` from vLLM's offloading connector) is *offloaded*: a hit there must be reloaded
before it saves prefill. A block stored twice counts twice and stays held until removed
twice; a removal only takes a copy of its own medium, as vLLM reports each copy per medium.
Offloaded stores arrive without parent or token ids (vLLM's connector sends none): they are
keyed by the engine hash the endpoint's GPU store announced. Blocks whose parent is unknown
(stored before we subscribed, or evicted from our bound) cannot be keyed and are skipped
(``unresolved``).

:meth:`KVBlockIndex.match` counts blocks held in any tier; :meth:`KVBlockIndex.match_tiers`
also says how many of them, from the first, are on the GPU (what a tier-aware scorer needs).
While no endpoint has reported an offloaded block, both give the same depth and cost the
same.

Request keys use Python's ``hash`` of tuples: salted per process for strings, which is fine
because the index and the requests it matches live in the same process. Keys ignore
``extra_keys`` (multimodal hashes, cache salts) except the LoRA name, which seeds the chain.

Pure and synchronous: the subscriber applies batches, the scheduler reads between them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from pilothouse.endpoints.kv_holders import KeyHolders
from pilothouse.kvevents import (
    MEDIUM_GPU,
    AllBlocksCleared,
    BlockRemoved,
    BlockStored,
    ExternalBlockHash,
    KVEventBatch,
)

_ROOT = "pilothouse.kv-index"


def root_key(lora: str | None) -> int:
    """The parent key of every first block (per LoRA adapter: adapters never share)."""
    return hash((_ROOT, lora))


def block_keys(
    token_ids: Sequence[int],
    block_size: int,
    lora: str | None = None,
    *,
    parent: int | None = None,
    max_blocks: int | None = None,
) -> list[int]:
    """Chained request keys of the full blocks of ``token_ids`` (a partial tail has none)."""
    if block_size < 1:
        raise ValueError("block_size must be positive")
    blocks = len(token_ids) // block_size
    if max_blocks is not None:
        blocks = min(blocks, max_blocks)
    key = root_key(lora) if parent is None else parent
    keys: list[int] = []
    append = keys.append
    # zip(*[it] * n) cuts n-tuples in C; (key,) + chunk hashes like (key, *chunk).
    for chunk in zip(*[iter(token_ids[: blocks * block_size])] * block_size, strict=False):
        key = hash((key,) + chunk)  # noqa: RUF005 (faster, same hash)
        append(key)
    return keys


@dataclass(slots=True)
class _Endpoint:
    """One endpoint's blocks: engine hash → request key, oldest first, and copies per tier.

    A block in ``blocks`` has one GPU copy, plus ``gpu_extra`` more, unless it is in
    ``no_gpu`` (held offloaded only); ``off`` counts its offloaded copies. The common case, a
    single GPU copy, costs no entry beyond ``blocks``.
    """

    blocks: OrderedDict[ExternalBlockHash, int] = field(default_factory=OrderedDict)
    gpu_extra: dict[ExternalBlockHash, int] = field(default_factory=dict)
    no_gpu: set[ExternalBlockHash] = field(default_factory=set)
    off: dict[ExternalBlockHash, int] = field(default_factory=dict)
    key_gpu: dict[int, int] = field(default_factory=dict)  # blocks with a GPU copy, per key
    key_off: dict[int, int] = field(default_factory=dict)  # blocks with an offloaded copy
    block_size: int | None = None
    unresolved: int = 0


def on_gpu(medium: str | None) -> bool:
    """Whether a KV event's ``medium`` is the engine's own (GPU) cache."""
    return medium is None or medium == MEDIUM_GPU


class KVBlockIndex:
    """Request key → endpoints holding that block, maintained from KV-event batches."""

    __slots__ = (
        "_capacity",
        "_endpoints",
        "_holders",
        "_max_endpoints",
        "_sizes",
    )

    def __init__(self, max_blocks_per_endpoint: int = 500_000, max_endpoints: int = 4096) -> None:
        if max_blocks_per_endpoint <= 0 or max_endpoints <= 0:
            raise ValueError("capacities must be positive")
        self._capacity = max_blocks_per_endpoint
        self._max_endpoints = max_endpoints
        self._endpoints: OrderedDict[str, _Endpoint] = OrderedDict()
        self._holders = KeyHolders()
        self._sizes: frozenset[int] = frozenset()

    # -- writes (the subscriber) -----------------------------------------------------------

    def apply(self, endpoint: str, batch: KVEventBatch) -> None:
        """Apply one batch of ``endpoint``'s events, in order; the endpoint becomes tracked."""
        state = self._state(endpoint)
        for event in batch.events:
            if isinstance(event, BlockStored):
                self._store(endpoint, state, event)
            elif isinstance(event, BlockRemoved):
                gpu = on_gpu(event.medium)
                for block in event.block_hashes:
                    self._remove(endpoint, state, block, gpu)
            elif isinstance(event, AllBlocksCleared):
                self._forget(endpoint, state)

    def drop(self, endpoint: str) -> None:
        """Forget ``endpoint`` entirely (it left, restarted or lost its stream)."""
        state = self._endpoints.pop(endpoint, None)
        if state is not None:
            self._forget(endpoint, state)
            self._resize()

    # -- reads (the scheduler) -------------------------------------------------------------

    def tracks(self, endpoint: str) -> bool:
        """Whether events of ``endpoint`` were applied since it was last dropped."""
        return endpoint in self._endpoints

    def block_size(self, endpoint: str) -> int | None:
        """The block size ``endpoint``'s events declared (``None`` before its first store)."""
        state = self._endpoints.get(endpoint)
        return None if state is None else state.block_size

    def block_sizes(self) -> frozenset[int]:
        """The block sizes tracked endpoints declared: those a prompt's keys are needed for.

        Safe to call from another thread (a producer precomputing keys): the set is
        replaced, never mutated.
        """
        return self._sizes

    def block_keys(
        self,
        token_ids: Sequence[int],
        block_size: int,
        lora: str | None = None,
        max_blocks: int | None = None,
    ) -> list[int]:
        """The request keys of a prompt's tokens, as :meth:`match` expects them."""
        return block_keys(token_ids, block_size, lora, max_blocks=max_blocks)

    def match(self, keys: Sequence[int]) -> dict[str, int]:
        """Per endpoint, how many of ``keys`` it holds (any tier) from the first (endpoints
        with ≥ 1)."""
        return self._holders.match(keys)

    def match_tiers(self, keys: Sequence[int]) -> dict[str, tuple[int, int]]:
        """Per endpoint, ``(held, on_gpu)``: how many of ``keys`` it holds from the first in
        any tier (as :meth:`match`), and how many of those, from the first, on the GPU."""
        return self._holders.match_tiers(keys)

    def endpoints(self) -> list[str]:
        """Tracked endpoints, least recently updated first."""
        return list(self._endpoints)

    def size(self, endpoint: str) -> int:
        """Engine blocks currently held by ``endpoint`` (any tier)."""
        state = self._endpoints.get(endpoint)
        return 0 if state is None else len(state.blocks)

    def offloaded_size(self, endpoint: str) -> int:
        """Engine blocks ``endpoint`` holds off the GPU (CPU tier and beyond)."""
        state = self._endpoints.get(endpoint)
        return 0 if state is None else len(state.off)

    def unresolved(self, endpoint: str) -> int:
        """Stored blocks skipped because their parent or token ids were unknown."""
        state = self._endpoints.get(endpoint)
        return 0 if state is None else state.unresolved

    def __len__(self) -> int:
        """Distinct request keys held by any endpoint."""
        return len(self._holders)

    # -- internals -------------------------------------------------------------------------

    def _state(self, endpoint: str) -> _Endpoint:
        state = self._endpoints.get(endpoint)
        if state is not None:
            self._endpoints.move_to_end(endpoint)
            return state
        while len(self._endpoints) >= self._max_endpoints:
            oldest, old_state = self._endpoints.popitem(last=False)
            self._forget(oldest, old_state)
            self._resize()
        state = self._endpoints[endpoint] = _Endpoint()
        return state

    def _store(self, endpoint: str, state: _Endpoint, event: BlockStored) -> None:
        size = event.block_size
        hashes = event.block_hashes
        tokens = event.token_ids
        gpu = on_gpu(event.medium)
        if not gpu and not tokens:  # an offloading connector's store: hashes we know
            for block in hashes:
                known = state.blocks.get(block)
                if known is None:
                    state.unresolved += 1
                else:
                    self._add(endpoint, state, block, known, gpu)
            return
        if size < 1 or len(tokens) != len(hashes) * size:
            state.unresolved += len(hashes)
            return
        if event.parent_block_hash is None:
            key = root_key(event.lora_name)
        else:
            parent = state.blocks.get(event.parent_block_hash)
            if parent is None:
                state.unresolved += len(hashes)
                return
            key = parent
        if gpu and state.block_size != size:
            state.block_size = size
            self._resize()
        chunks = zip(*[iter(tokens)] * size, strict=False)  # n-tuples, cut in C
        for block, chunk in zip(hashes, chunks, strict=False):
            key = hash((key,) + chunk)  # noqa: RUF005 (faster, same hash)
            self._add(endpoint, state, block, key, gpu)

    def _add(
        self, endpoint: str, state: _Endpoint, block: ExternalBlockHash, key: int, gpu: bool
    ) -> None:
        blocks = state.blocks
        if block in blocks:
            blocks.move_to_end(block)
            old = blocks[block]
            if not gpu:
                count = state.off.get(block, 0)
                state.off[block] = count + 1
                if count == 0:
                    self._holders.off_up(endpoint, state.key_gpu, state.key_off, old)
            elif block in state.no_gpu:
                state.no_gpu.discard(block)
                self._holders.gpu_up(endpoint, state.key_gpu, state.key_off, old)
            else:
                state.gpu_extra[block] = state.gpu_extra.get(block, 0) + 1
            return
        blocks[block] = key
        if gpu:
            self._holders.gpu_up(endpoint, state.key_gpu, state.key_off, key)
        else:
            state.no_gpu.add(block)
            state.off[block] = 1
            self._holders.off_up(endpoint, state.key_gpu, state.key_off, key)
        while len(blocks) > self._capacity:
            oldest, old_key = blocks.popitem(last=False)
            state.gpu_extra.pop(oldest, None)
            if oldest in state.no_gpu:
                state.no_gpu.discard(oldest)
            else:
                self._holders.gpu_down(endpoint, state.key_gpu, state.key_off, old_key)
            if state.off.pop(oldest, 0):
                self._holders.off_down(endpoint, state.key_gpu, state.key_off, old_key)

    def _remove(self, endpoint: str, state: _Endpoint, block: ExternalBlockHash, gpu: bool) -> None:
        key = state.blocks.get(block)
        if key is None:
            return
        if gpu:
            if block in state.no_gpu:
                return  # no GPU copy to remove
            extra = state.gpu_extra.get(block)
            if extra:
                if extra == 1:
                    del state.gpu_extra[block]
                else:
                    state.gpu_extra[block] = extra - 1
                return
            self._holders.gpu_down(endpoint, state.key_gpu, state.key_off, key)
            if block in state.off:
                state.no_gpu.add(block)
            else:
                del state.blocks[block]
            return
        count = state.off.get(block, 0)
        if count == 0:
            return  # no offloaded copy to remove
        if count > 1:
            state.off[block] = count - 1
            return
        del state.off[block]
        self._holders.off_down(endpoint, state.key_gpu, state.key_off, key)
        if block in state.no_gpu:
            state.no_gpu.discard(block)
            del state.blocks[block]

    def _resize(self) -> None:
        sizes = {s.block_size for s in self._endpoints.values() if s.block_size is not None}
        if sizes != self._sizes:
            self._sizes = frozenset(sizes)

    def _forget(self, endpoint: str, state: _Endpoint) -> None:
        self._holders.forget(endpoint, state.key_gpu, state.key_off)
        state.blocks.clear()
        state.gpu_extra.clear()
        state.no_gpu.clear()
        state.off.clear()
        state.key_gpu.clear()
        state.key_off.clear()
