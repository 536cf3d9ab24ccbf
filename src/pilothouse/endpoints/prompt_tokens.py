"""The prompt-token data producer: tokenize before scheduling, in a worker, with a cache.

Tokenizing a 6 k-token prompt with a Hugging Face tokenizer takes tens of milliseconds; done
inside a scheduling decision it stalls the event loop and every request in flight. So the
front doors call :meth:`PromptTokenizerProducer.prepare` before the decision: it returns the
request with ``prompt_token_ids`` (engine kind → token ids) filled, and the ``precise-prefix``
scorer reads them instead of tokenizing.

Where the work runs:

- a prompt seen before (same model, engine kind and text) is answered from a bounded LRU
  synchronously, on the event loop, with no thread hop;
- anything else runs in one worker, a thread or (``process=True``, the gateway's default) a
  process of its own (:mod:`~pilothouse.endpoints.tokenize_process`): the prompt is rendered
  as the engine renders it
  (chat template) and cut into *segments* right after each special token (``<|im_end|>``…)
  by the :class:`PromptRenderer`. Tokenizers restart at special tokens (a fast tokenizer
  splits them out before its pre-tokenizer and model run), so the segments' ids, concatenated,
  are the prompt's ids; each segment's ids are cached by its text. A repeated system prompt,
  or the earlier turns of a conversation, are tokenized once; only the new text is encoded,
  in one ``encode_batch`` call that releases the GIL.

Why segments and not fixed-size text blocks: a cut in the middle of a word changes the
tokens on both sides, so fixed text blocks would need re-tokenizing around every cut; special
tokens are the boundaries that every template already has, and that a renderer can check
(``HFPromptTokenizer`` falls back to one segment per prompt when its tokenizer does not cut
exactly there). Both caches are bounded by the tokens they hold.

With ``block_sizes`` (the KV-event index's :meth:`~pilothouse.endpoints.kv_index.KVBlockIndex.
block_sizes`), the worker also chains the prompt's block keys for each block size the
endpoints declared (``prompt_block_keys``), so the ``precise-prefix`` scorer hashes nothing
inside the decision either (375 keys of a 6 k-token prompt: about 150 µs of the event loop's
time per request). The keys are cached with the prompt; a hit that lacks a block size goes
to the worker.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, replace
from itertools import chain
from types import MappingProxyType
from typing import Protocol

from pilothouse.endpoints.kv_index import block_keys, root_key
from pilothouse.endpoints.tokenize_process import TokenizerProcess
from pilothouse.errors import EngineError
from pilothouse.scheduling.types import BlockKeysId, Endpoint, SchedulingRequest

log = logging.getLogger("pilothouse.tokenize")

GIL_SWITCH_S = 0.001
"""The interpreter's switch interval while a tokenizer worker runs beside the event loop."""

EngineKinds = Callable[[SchedulingRequest], Iterable[str]]
BlockSizes = Callable[[], Iterable[int]]
Tokens = tuple[int, ...]


class SegmentEncoder(Protocol):
    def encode_segments(self, texts: Sequence[str]) -> list[list[int]]:
        """The token ids of each text (thread-safe; may run outside the event loop)."""
        ...


@dataclass(frozen=True, slots=True)
class PromptText:
    """A prompt rendered as one engine tokenizes it, cut where its tokenizer restarts."""

    encoder: SegmentEncoder  # also the cache's vocabulary: segments are cached per encoder
    segments: tuple[str, ...]


class PromptRenderer(Protocol):
    def render(self, request: SchedulingRequest, engine: str) -> PromptText | None:
        """``request``'s prompt as ``engine`` tokenizes it; ``None``: no tokenizer for it."""
        ...


def pool_engines(candidates: Callable[[str], Iterable[Endpoint]]) -> EngineKinds:
    """The engine kinds of the endpoints serving each request's model (``pool.candidates``)."""

    def kinds(request: SchedulingRequest) -> frozenset[str]:
        return frozenset(e.engine for e in candidates(request.model))

    return kinds


def fixed_engines(engines: Iterable[str]) -> EngineKinds:
    """Always the same engine kinds (benchmarks, tests, a pool of one kind)."""
    kinds = frozenset(engines)
    return lambda _request: kinds


class TokenLRU:
    """A thread-safe LRU of token ids, bounded by the number of tokens it holds."""

    __slots__ = ("_entries", "_held", "_lock", "max_tokens")

    def __init__(self, max_tokens: int) -> None:
        self.max_tokens = max_tokens
        self._entries: OrderedDict[Hashable, Tokens] = OrderedDict()
        self._held = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def tokens(self) -> int:
        return self._held

    def get(self, key: Hashable) -> Tokens | None:
        with self._lock:
            tokens = self._entries.get(key)
            if tokens is not None:
                self._entries.move_to_end(key)
            return tokens

    def put(self, key: Hashable, tokens: Tokens) -> None:
        if len(tokens) > self.max_tokens:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            self._held += len(tokens) - (0 if old is None else len(old))
            self._entries[key] = tokens
            while self._held > self.max_tokens:
                _, evicted = self._entries.popitem(last=False)
                self._held -= len(evicted)


@dataclass(frozen=True, slots=True)
class ProducerStats:
    prompt_hits: int
    prompt_misses: int
    segment_hits: int
    segment_misses: int


class PromptTokenizerProducer:
    """Fills ``SchedulingRequest.prompt_token_ids`` before scheduling (see the module doc)."""

    def __init__(
        self,
        renderer: PromptRenderer,
        engines: EngineKinds,
        *,
        max_prompt_tokens: int = 1_000_000,
        max_segment_tokens: int = 1_000_000,
        max_key_blocks: int = 100_000,
        block_sizes: BlockSizes | None = None,
        executor: Executor | None = None,
        process: bool = False,
    ) -> None:
        self._renderer = renderer
        self._engines = engines
        self._block_sizes = block_sizes or (lambda: ())
        self.prompts = TokenLRU(max_prompt_tokens)
        self.segments = TokenLRU(max_segment_tokens)
        self.keys = TokenLRU(max_key_blocks)  # (engine, model, prompt, size, lora) → keys
        self._own_executor = executor is None
        self._counts = [0, 0, 0, 0]  # prompt hits, misses, segment hits, misses
        self._child: TokenizerProcess | None = None
        if process and executor is None:
            # A process of its own, spoken to from the event loop (tokenize_process.py): no
            # GIL shared with the loop, no thread of its own here; the segment cache is there.
            self._child = TokenizerProcess(renderer, max_segment_tokens)
        else:
            # The worker's Python parts (chat template, segment lists, block keys) hold the
            # GIL; the event loop then waits up to the switch interval (5 ms by default) for
            # it back, a stall for every request in flight. 1 ms bounds that wait at a small
            # cost in handoffs. Process-wide, so only ever lowered.
            sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_S))
        self._executor: Executor = executor or ThreadPoolExecutor(1, thread_name_prefix="tokenize")

    def stats(self) -> ProducerStats:
        return ProducerStats(*self._counts)

    async def prepare(self, request: SchedulingRequest) -> SchedulingRequest:
        """``request`` with its prompt's token ids per engine kind serving its model."""
        if request.prompt_token_ids is not None:
            return request
        engines = sorted(set(self._engines(request)))
        cached = self._cached(request, engines)
        if cached is not None:
            return cached
        loop = asyncio.get_running_loop()
        if self._child is None:
            return await loop.run_in_executor(self._executor, self._tokenize, request, engines)
        sizes = tuple(self._block_sizes())
        bare = SchedulingRequest(  # what rendering reads, and nothing that cannot be pickled
            request.request_id, request.model, request.prompt, headers={}, lora=request.lora
        )
        try:
            found, keys, segment_hits, segment_misses = await self._child.call(
                bare, engines, sizes, root_key(request.lora)
            )
        except EngineError as exc:  # routed by history, as when a tokenizer raises
            log.error("cannot tokenize request %s: %s", request.request_id, exc)
            return request
        self._counts[1] += 1
        self._counts[2] += segment_hits
        self._counts[3] += segment_misses
        for engine, tokens in found.items():  # answered here next time, with no hop
            self.prompts.put((engine, request.model, request.prompt), tokens)
        for (engine, size, _lora), chained in keys.items():
            self.keys.put(self._keys_id(request, engine, size), chained)
        return self._prepared(request, found, keys)

    def prepare_now(self, request: SchedulingRequest) -> SchedulingRequest:
        """What :meth:`prepare` does, in the calling thread (benchmarks, the simulator)."""
        if request.prompt_token_ids is not None:
            return request
        engines = sorted(set(self._engines(request)))
        return self._cached(request, engines) or self._tokenize(request, engines)

    async def start(self) -> None:
        """Start the tokenizer process now rather than on the first miss (``process=True``;
        otherwise nothing to do)."""
        if self._child is not None:
            await self._child.start()

    def close(self) -> None:
        """Stop the worker thread this producer started (a given executor is left alone);
        with ``process=True``, :meth:`aclose` stops the process."""
        if self._own_executor:
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def aclose(self) -> None:
        """:meth:`close`, and stop the tokenizer process (``process=True``)."""
        self.close()
        if self._child is not None:
            await self._child.aclose()

    def _cached(
        self, request: SchedulingRequest, engines: Sequence[str]
    ) -> SchedulingRequest | None:
        found: dict[str, Tokens] = {}
        keys: dict[BlockKeysId, Tokens] = {}
        sizes = tuple(self._block_sizes())
        for engine in engines:
            tokens = self.prompts.get((engine, request.model, request.prompt))
            if tokens is None:
                return None
            found[engine] = tokens
            for size in sizes:
                cached = self.keys.get(self._keys_id(request, engine, size))
                if cached is None:
                    return None
                keys[engine, size, request.lora] = cached
        self._counts[0] += 1
        return self._prepared(request, found, keys)

    def _tokenize(self, request: SchedulingRequest, engines: Sequence[str]) -> SchedulingRequest:
        self._counts[1] += 1
        found, keys = self.tokens_and_keys(request, engines, tuple(self._block_sizes()))
        return self._prepared(request, found, keys)

    def tokens_and_keys(
        self,
        request: SchedulingRequest,
        engines: Sequence[str],
        sizes: Sequence[int],
        root: int | None = None,
    ) -> tuple[dict[str, Tokens], dict[BlockKeysId, Tokens]]:
        """``root``: the chain's first parent, from the process whose KV index reads the keys
        (a string's hash is salted per process; the chained tuples of ints are not)."""
        found: dict[str, Tokens] = {}
        keys: dict[BlockKeysId, Tokens] = {}
        for engine in engines:
            try:
                tokens = self._engine_tokens(request, engine)
            except Exception:  # a tokenizer bug must not fail the request: history routing
                log.exception("cannot tokenize request %s for %s", request.request_id, engine)
                continue
            if tokens is not None:
                found[engine] = tokens
                for size in sizes:
                    keys[engine, size, request.lora] = self._block_keys(
                        request, engine, size, tokens, root
                    )
        return found, keys

    @staticmethod
    def _prepared(
        request: SchedulingRequest, found: dict[str, Tokens], keys: dict[BlockKeysId, Tokens]
    ) -> SchedulingRequest:
        return replace(
            request,
            prompt_token_ids=MappingProxyType(found),
            prompt_block_keys=MappingProxyType(keys) if keys else None,
        )

    @staticmethod
    def _keys_id(request: SchedulingRequest, engine: str, size: int) -> Hashable:
        return (engine, request.model, request.prompt, size, request.lora)

    def _block_keys(
        self,
        request: SchedulingRequest,
        engine: str,
        size: int,
        tokens: Tokens,
        root: int | None = None,
    ) -> Tokens:
        """The prompt's chained block keys for ``size`` (as the KV index keys blocks)."""
        cache_id = self._keys_id(request, engine, size)
        keys = self.keys.get(cache_id)
        if keys is None:
            keys = tuple(block_keys(tokens, size, request.lora, parent=root))
            self.keys.put(cache_id, keys)
        return keys

    def _engine_tokens(self, request: SchedulingRequest, engine: str) -> Tokens | None:
        key = (engine, request.model, request.prompt)
        tokens = self.prompts.get(key)
        if tokens is not None:
            return tokens
        text = self._renderer.render(request, engine)
        if text is None:
            return None
        tokens = self._segment_tokens(text)
        self.prompts.put(key, tokens)
        return tokens

    def _segment_tokens(self, text: PromptText) -> Tokens:
        """The prompt's ids: cached segments as they are, the others encoded in one batch."""
        parts: list[Tokens | None] = [self.segments.get((text.encoder, s)) for s in text.segments]
        missing = [i for i, part in enumerate(parts) if part is None]
        self._counts[2] += len(parts) - len(missing)
        self._counts[3] += len(missing)
        if missing:
            encoded = text.encoder.encode_segments([text.segments[i] for i in missing])
            for i, ids in zip(missing, encoded, strict=True):
                parts[i] = tokens = tuple(ids)
                self.segments.put((text.encoder, text.segments[i]), tokens)
        return tuple(chain.from_iterable(p for p in parts if p is not None))
