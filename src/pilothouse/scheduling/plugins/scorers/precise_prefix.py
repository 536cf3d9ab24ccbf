"""``precise-prefix`` scorer: prefix-cache affinity from the engines' own KV events.

The plugin reads two services from its :class:`PluginContext` (the scheduler stays pure: the
index is fed by a data producer between cycles, the tokenizer is a pure function):

- ``"kv-index"``, a :class:`PrefixIndexView` (``pilothouse.endpoints.kv_index.KVBlockIndex``
  fed by ``pilothouse.endpoints.kv_subscriber.KVEventSubscriber``);
- ``"tokenizer"``, a :class:`PromptTokenizer`: the token ids an engine computes for a
  request's prompt, chat template included (:class:`TemplateTokenizer` wraps anything with
  ``encode`` and ``apply_chat_template``, such as the simulator's dummy tokenizer).

Token ids prepared before scheduling come first: when a request carries
``prompt_token_ids`` (the gateway's ``PromptTokenizerProducer`` tokenizes in a worker thread,
off the event loop), the scorer reads them and never calls a tokenizer; an engine kind they
lack has unknown tokens. Only a request without them (tests, callers that prepare nothing) is
tokenized here, with the ``"tokenizer"`` service, once per engine kind and cycle.

For each endpoint the index tracks (it has applied that endpoint's events), the prompt's
tokens are cut into that endpoint's block size and chained into request keys; the score is
the fraction of the prompt's tokens in the blocks it holds from the first. When the index
knows tiers (:class:`TieredPrefixIndexView`: the events' ``medium``) and some of those blocks
are held only off the GPU (vLLM's CPU offloading), the score is instead the share of the
prompt's prefill the hit saves (:mod:`._tier_cost`, figures in ``tier_costs``): a GPU block
saves its prefill, an offloaded one its prefill minus its reload. With nothing offloaded it
is exactly the fraction above. The block size is
the one the endpoint's own ``BlockStored`` events declare (vLLM's ``--block-size``, which
``vllm:cache_config_info`` also reports): an endpoint that has stored nothing yet holds
nothing, whatever its block size.

Fallback, explicitly: the plugin embeds an ``approx-prefix`` scorer (routing history) and
records every decision in it. When the events match some endpoint for this prompt, tracked
endpoints score from the events and untracked ones from the history; when they match
nothing (no services, no tokenizer for the engine, nothing tracked, a prompt no engine has
reported, or one still in prefill whose events have not arrived), every endpoint scores from
the history. Like ``approx-prefix``, the fractions are published under ``PREFIX_MATCH_KEY``
and the blocks each endpoint holds under ``PREFIX_INDEX_SIZE_KEY`` (from its events when
tracked, else from the history).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast, runtime_checkable

from pydantic import Field

from pilothouse.scheduling.context import PluginContext
from pilothouse.scheduling.interfaces import PREFIX_INDEX_SIZE_KEY, PREFIX_MATCH_KEY, CycleState
from pilothouse.scheduling.plugins.base import NamedPlugin
from pilothouse.scheduling.plugins.scorers._tier_cost import TierCostParameters, saved_fraction
from pilothouse.scheduling.plugins.scorers.approx_prefix import (
    ApproxPrefixParameters,
    ApproxPrefixScorer,
)
from pilothouse.scheduling.types import Endpoint, SchedulingRequest, SchedulingResult
from pilothouse.scheduling.validation import ParametersModel, parse_parameters

PRECISE_PREFIX_TYPE = "precise-prefix"
KV_INDEX_SERVICE = "kv-index"
TOKENIZER_SERVICE = "tokenizer"
CHAT_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


@runtime_checkable
class PrefixIndexView(Protocol):
    """What the scorer reads from a prefix index (never writes)."""

    def tracks(self, endpoint: str) -> bool: ...

    def block_size(self, endpoint: str) -> int | None: ...

    def block_keys(
        self,
        token_ids: Sequence[int],
        block_size: int,
        lora: str | None = None,
        max_blocks: int | None = None,
    ) -> list[int]: ...

    def match(self, keys: Sequence[int]) -> Mapping[str, int]: ...

    def size(self, endpoint: str) -> int: ...


@runtime_checkable
class TieredPrefixIndexView(PrefixIndexView, Protocol):
    """A prefix index that also knows which matched blocks are on the GPU."""

    def match_tiers(self, keys: Sequence[int]) -> Mapping[str, tuple[int, int]]:
        """Per endpoint, ``(held in any tier, of which on the GPU from the first)``."""
        ...


@runtime_checkable
class PromptTokenizer(Protocol):
    def tokenize(self, request: SchedulingRequest, engine: str) -> Sequence[int] | None:
        """The prompt token ids ``engine`` computes for ``request``; ``None`` when unknown."""
        ...


class ChatEncoder(Protocol):
    """A tokenizer with a chat template (the simulator's ``DummyTokenizer`` is one)."""

    def encode(self, text: str) -> Sequence[int]: ...

    def apply_chat_template(self, messages: Sequence[Any]) -> str: ...


@dataclass(frozen=True, slots=True)
class ChatTurn:
    role: str
    content: str


def chat_turns(prompt: str) -> list[ChatTurn] | None:
    """Undo the gateway's chat flattening (``role\\ncontent\\n…``); ``None`` when not chat.

    A role line is always followed by one content line; further lines belong to the content
    until the next line that is a known role name.
    """
    lines = prompt.split("\n")
    turns: list[ChatTurn] = []
    i = 0
    while i < len(lines):
        if lines[i] not in CHAT_ROLES or i + 1 >= len(lines):
            return None
        end = i + 2
        while end < len(lines) and lines[end] not in CHAT_ROLES:
            end += 1
        turns.append(ChatTurn(lines[i], "\n".join(lines[i + 1 : end])))
        i = end
    return turns or None


class TemplateTokenizer:
    """A :class:`PromptTokenizer` over a :class:`ChatEncoder`, for some engine kinds.

    Chat prompts get the encoder's chat template, other prompts are encoded as they are.
    """

    __slots__ = ("_encoder", "_engines")

    def __init__(self, encoder: ChatEncoder, engines: frozenset[str] | None = None) -> None:
        self._encoder = encoder
        self._engines = engines

    def tokenize(self, request: SchedulingRequest, engine: str) -> Sequence[int] | None:
        if self._engines is not None and engine not in self._engines:
            return None
        turns = chat_turns(request.prompt)
        text = request.prompt if turns is None else self._encoder.apply_chat_template(turns)
        return self._encoder.encode(text)


class PrecisePrefixParameters(ParametersModel):
    max_prefix_blocks: int = Field(default=2048, gt=0)
    approx: ApproxPrefixParameters = Field(default_factory=ApproxPrefixParameters)
    tier_costs: TierCostParameters = Field(default_factory=TierCostParameters)


# matched blocks per endpoint (any tier), prompt tokens, and the GPU depth of the endpoints
# whose match is partly offloaded (None: all of it on the GPU)
_Lookup = tuple[Mapping[str, int], int, Mapping[str, int] | None]


class PrecisePrefixScorer(NamedPlugin):
    """Scores prefix affinity from KV events; routing history when they know nothing."""

    __slots__ = ("_approx", "_costs", "_index", "_key", "_max_blocks", "_tiers", "_tokenizer")

    def __init__(
        self,
        name: str,
        parameters: PrecisePrefixParameters | None = None,
        *,
        index: PrefixIndexView | None = None,
        tokenizer: PromptTokenizer | None = None,
    ) -> None:
        super().__init__(name)
        p = parameters or PrecisePrefixParameters()
        self._max_blocks = p.max_prefix_blocks
        self._approx = ApproxPrefixScorer(f"{name}/approx", p.approx)
        self._index = index
        self._tiers = index if isinstance(index, TieredPrefixIndexView) else None
        self._costs = p.tier_costs
        self._tokenizer = tokenizer
        self._key = f"precise-prefix/{name}"

    @classmethod
    def create(
        cls, name: str, parameters: Mapping[str, object], ctx: PluginContext
    ) -> PrecisePrefixScorer:
        params = parse_parameters(PrecisePrefixParameters, parameters)
        index = _service(ctx, KV_INDEX_SERVICE, PrefixIndexView)
        tokenizer = _service(ctx, TOKENIZER_SERVICE, PromptTokenizer)
        return cls(name, params, index=index, tokenizer=tokenizer)

    @property
    def approx(self) -> ApproxPrefixScorer:
        """The embedded routing-history fallback (read it in tests; do not mutate)."""
        return self._approx

    def score(
        self, state: CycleState, request: SchedulingRequest, endpoints: Sequence[Endpoint]
    ) -> Sequence[float]:
        precise, sizes = self._precise(state, request, endpoints)
        if any(precise.values()):
            rest = [e for e in endpoints if e.name not in precise]
            fractions = {**self._history(state, request, rest), **precise}
        else:
            fractions = self._history(state, request, endpoints)
        if len(sizes) < len(endpoints):  # untracked endpoints: blocks from the history
            history = self._approx.index
            sizes = {
                e.name: sizes[e.name] if e.name in sizes else history.size(e.name)
                for e in endpoints
            }
        state.data[PREFIX_MATCH_KEY] = fractions
        state.data[PREFIX_INDEX_SIZE_KEY] = sizes
        return [fractions[e.name] for e in endpoints]

    def post_schedule(
        self, state: CycleState, request: SchedulingRequest, result: SchedulingResult
    ) -> None:
        self._approx.post_schedule(state, request, result)

    def _history(
        self, state: CycleState, request: SchedulingRequest, endpoints: Sequence[Endpoint]
    ) -> dict[str, float]:
        if not endpoints:
            return {}
        scores = self._approx.score(state, request, endpoints)
        return {e.name: float(s) for e, s in zip(endpoints, scores, strict=True)}

    def _precise(
        self, state: CycleState, request: SchedulingRequest, endpoints: Sequence[Endpoint]
    ) -> tuple[dict[str, float], dict[str, int]]:
        """Fractions of tracked endpoints the tokenizer can serve, and the blocks each
        tracked endpoint holds; both empty without an index. One pass: this is the hot loop
        (64 endpoints a decision)."""
        index = self._index
        if index is None:
            return {}, {}
        known = self._tokenizer is not None or request.prompt_token_ids is not None
        lookups = cast(
            "dict[tuple[str, int], _Lookup | None]", state.data.setdefault(self._key, {})
        )
        tracks, block_size, held = index.tracks, index.block_size, index.size
        fractions: dict[str, float] = {}
        sizes: dict[str, int] = {}
        for e in endpoints:
            name = e.name
            if not tracks(name):
                continue
            sizes[name] = held(name)
            if not known:
                continue
            size = block_size(name)
            if size is None:  # nothing stored yet
                fractions[name] = 0.0
                continue
            key = (e.engine, size)
            if key in lookups:
                lookup = lookups[key]
            else:
                lookup = lookups[key] = self._lookup(state, request, key)
            if lookup is not None:
                matched, tokens, gpu = lookup
                depth = matched.get(name, 0)
                on_gpu = depth if gpu is None else gpu.get(name, depth)
                if on_gpu == depth:
                    fractions[name] = min(1.0, depth * size / tokens)
                else:
                    fractions[name] = saved_fraction(
                        min(1.0, on_gpu * size / tokens),
                        min(1.0, (depth - on_gpu) * size / tokens),
                        tokens,
                        self._costs,
                    )
        return fractions, sizes

    def _lookup(
        self, state: CycleState, request: SchedulingRequest, key: tuple[str, int]
    ) -> _Lookup | None:
        """Index matches and prompt tokens for one (engine, block size), from the block
        keys prepared with the request when it carries them (no hashing here)."""
        assert self._index is not None
        engine, size = key
        tokens = self._tokens(state, request, engine)
        result: _Lookup | None = None
        if tokens:
            prepared = request.prompt_block_keys
            ready = None if prepared is None else prepared.get((engine, size, request.lora))
            keys: Sequence[int]
            if ready is None:
                keys = self._index.block_keys(tokens, size, request.lora, self._max_blocks)
            else:
                keys = ready[: self._max_blocks] if len(ready) > self._max_blocks else ready
            result = self._match(keys, len(tokens))
        return result

    def _match(self, keys: Sequence[int], tokens: int) -> _Lookup:
        if self._tiers is None:
            assert self._index is not None
            return self._index.match(keys), tokens, None
        tiers = self._tiers.match_tiers(keys)
        matched = {name: held for name, (held, _gpu) in tiers.items()}
        partly = {name: gpu for name, (held, gpu) in tiers.items() if gpu < held}
        return matched, tokens, partly or None

    def _tokens(
        self, state: CycleState, request: SchedulingRequest, engine: str
    ) -> Sequence[int] | None:
        prepared = request.prompt_token_ids
        if prepared is not None:  # tokenized before scheduling: never tokenize here
            return prepared.get(engine)
        cache = cast(
            "dict[str, Sequence[int] | None]", state.data.setdefault(f"{self._key}/tokens", {})
        )
        if engine not in cache:
            assert self._tokenizer is not None
            cache[engine] = self._tokenizer.tokenize(request, engine)
        return cache[engine]


def _service(ctx: PluginContext, key: str, kind: type) -> Any:
    """The service under ``key``, ``None`` when absent; a wrong kind is a programming error."""
    value = ctx.services.get(key)
    if value is not None and not isinstance(value, kind):
        raise TypeError(f"service {key!r} must be a {kind.__name__}, got {type(value).__name__}")
    return value
