"""Value types at the engine model's boundary: requests in, step results and KV events out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

MEDIUM_GPU = "GPU"  # the medium names vLLM's KV events carry
MEDIUM_CPU = "CPU"


@dataclass(frozen=True, slots=True)
class EngineRequest:
    """One request as the engine model sees it: token counts and prompt block hashes.

    ``block_hashes`` are the chained hashes of the prompt's *full* blocks (see
    :func:`pilothouse.sim.hashing.chain_block_hashes`); they drive prefix-cache hits.
    ``token_ids`` (optional) only feed the ``token_ids`` of KV events. The request generates
    ``stop_after`` tokens when given (finish reason ``stop``), else ``max_tokens``
    (``length``).

    ``output_block_hashes`` continue the chain over prompt + generated tokens: the hashes of
    the full blocks after the prompt's own full blocks (the first covers the prompt's partial
    tail and the first generated tokens). With ``EngineConfig.cache_generated_blocks`` those
    blocks enter the prefix cache when the request finishes, so the next turn of a
    conversation, which repeats the answer, hits them. Empty: generated blocks stay private.

    ``priority`` is vLLM's request field, in **vLLM's order: lower is served first**; it only
    matters under ``EngineConfig.scheduling_policy == "priority"``. The gateway's priorities
    run the other way (higher is more important); :func:`pilothouse.engines.kinds.vllm.
    vllm_priority` maps one to the other.
    """

    request_id: str
    prompt_tokens: int
    max_tokens: int
    block_hashes: tuple[int, ...] = ()
    token_ids: tuple[int, ...] | None = None
    lora: str | None = None
    stop_after: int | None = None
    output_block_hashes: tuple[int, ...] = ()
    priority: int = 0

    def __post_init__(self) -> None:
        if self.prompt_tokens < 1:
            raise ValueError("EngineRequest.prompt_tokens must be >= 1")
        if self.max_tokens < 1:
            raise ValueError("EngineRequest.max_tokens must be >= 1")
        if self.stop_after is not None and self.stop_after < 1:
            raise ValueError("EngineRequest.stop_after must be >= 1")
        if self.token_ids is not None and len(self.token_ids) != self.prompt_tokens:
            raise ValueError("EngineRequest.token_ids must have prompt_tokens entries")

    @property
    def output_tokens(self) -> int:
        """How many tokens this request will generate."""
        if self.stop_after is None:
            return self.max_tokens
        return min(self.stop_after, self.max_tokens)

    @property
    def finish_reason(self) -> str:
        if self.stop_after is not None and self.stop_after < self.max_tokens:
            return "stop"
        return "length"


@dataclass(frozen=True, slots=True)
class FinishedRequest:
    """Accounting for a request that left the engine (times are the model's clock)."""

    request_id: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    arrival_time: float
    first_scheduled_time: float | None
    first_token_time: float | None
    finish_time: float
    num_preemptions: int
    lora: str | None = None

    @property
    def ttft(self) -> float | None:
        return None if self.first_token_time is None else self.first_token_time - self.arrival_time

    @property
    def e2e_latency(self) -> float:
        return self.finish_time - self.arrival_time

    @property
    def queue_time(self) -> float | None:
        if self.first_scheduled_time is None:
            return None
        return self.first_scheduled_time - self.arrival_time


@dataclass(frozen=True, slots=True)
class BlocksStored:
    """Full blocks newly entered in a tier of the prefix cache.

    On the GPU (``medium`` ``"GPU"``): one run of a request's chain, with its parent and
    token ids (empty when unknown, e.g. generated tokens). On the CPU tier (``"CPU"``):
    blocks offloaded on eviction, announced as vLLM's offloading connector does (no parent,
    no token ids: consumers know the hashes from their GPU store).
    """

    block_hashes: tuple[int, ...]
    parent_block_hash: int | None
    token_ids: tuple[int, ...]
    lora_name: str | None = None
    medium: str = MEDIUM_GPU


@dataclass(frozen=True, slots=True)
class BlocksRemoved:
    """Cached blocks evicted from one tier (``medium``) of the prefix cache."""

    block_hashes: tuple[int, ...]
    medium: str = MEDIUM_GPU


@dataclass(frozen=True, slots=True)
class AllBlocksClearedEvent:
    """The whole prefix cache was reset."""


KVEvent = BlocksStored | BlocksRemoved | AllBlocksClearedEvent


@dataclass(frozen=True, slots=True)
class StepResult:
    """What one engine step did, from ``start`` to ``start + duration``.

    ``iterations`` > 1 when several pure-decode iterations were fused. Every request in
    ``decoded`` produced ``iterations`` tokens; every request in ``prefilled`` finished
    (a chunk of) its prefill and produced its token (its first, unless it was recomputed
    after a preemption). ``emitted`` merges both. ``first_tokens`` lists requests whose
    first token came out; ``finished`` the requests that completed (blocks released).
    """

    start: float
    duration: float
    iterations: int
    prefill_tokens: int
    decode_tokens: int
    decoded: tuple[str, ...]
    prefilled: Mapping[str, int]
    first_tokens: tuple[str, ...]
    finished: tuple[FinishedRequest, ...]
    preempted: tuple[str, ...]
    kv_events: tuple[KVEvent, ...]

    @property
    def end(self) -> float:
        return self.start + self.duration

    @property
    def emitted(self) -> dict[str, int]:
        """Tokens produced per request in this step."""
        tokens = dict.fromkeys(self.decoded, self.iterations)
        tokens.update(self.prefilled)
        return tokens
