"""Frozen value types that cross the scheduler boundary.

Data producers (metrics scraper, in-flight tracker, KV-event subscriber) build new
:class:`Endpoint` snapshots; the scheduler reads them and returns a :class:`SchedulingResult`.
Nothing here does I/O or reads the clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field, replace
from types import MappingProxyType

from pilothouse.values import value

_EMPTY: Mapping[str, str] = MappingProxyType({})
_NO_SCORES: Mapping[str, float] = MappingProxyType({})


def _no_strings() -> Mapping[str, str]:
    # A factory, not a default: dataclasses reject unhashable defaults such as mappingproxy.
    return _EMPTY


def _no_scores() -> Mapping[str, float]:
    return _NO_SCORES


@value
class EndpointMetrics:
    """What the engine itself reports (scraped); ``None`` when the engine does not say."""

    waiting: int = 0
    running: int = 0
    kv_cache_usage: float = 0.0
    block_size: int | None = None
    num_gpu_blocks: int | None = None
    max_loras: int | None = None
    running_loras: frozenset[str] = frozenset()
    waiting_loras: frozenset[str] = frozenset()
    updated_at: float | None = None


@value
class Endpoint:
    """An immutable snapshot of one model-server replica.

    ``in_flight``, ``in_flight_tokens`` and ``awaiting_first_token`` are the gateway's own
    counts (they never lag): requests in flight, the estimated uncached prompt tokens of those
    that have not produced a first token yet (the replica's prefill backlog), and how many
    requests that is. ``prefill_wait_s`` is the router's own estimate of how long until those
    have their first token (from its latency predictor; 0 without one or with none
    awaiting). ``metrics`` is what the engine last reported.
    """

    name: str
    address: str
    model: str
    engine: str = "vllm"
    ready: bool = True
    labels: Mapping[str, str] = field(default_factory=_no_strings)
    in_flight: int = 0
    in_flight_tokens: int = 0
    awaiting_first_token: int = 0
    metrics: EndpointMetrics = field(default_factory=EndpointMetrics)
    prefill_wait_s: float = 0.0

    def evolve(self, **changes: object) -> Endpoint:
        """A copy with some fields changed (snapshots are never mutated)."""
        return replace(self, **changes)  # type: ignore[arg-type]


BlockKeysId = tuple[str, int, str | None]  # engine kind, block size, lora


@value
class SchedulingRequest:
    """What routing needs to know about a request, and nothing more.

    ``prompt`` is the prompt flattened to text (chat messages joined in order), used for
    approximate prefix matching; ``prompt_tokens`` is an estimate of its length in tokens.

    ``prompt_token_ids`` is the prompt's token ids per engine kind (``"vllm"``, ``"sim"``…), as
    that engine computes them, prepared before scheduling by a data producer (tokenizing is
    heavy: it never runs inside a decision). ``None``: nobody prepared them; an engine kind
    missing from the mapping: its tokens are unknown (no tokenizer for it).

    ``prompt_block_keys`` holds, for some ``(engine kind, block size, lora)``, the chained
    request keys of the prompt's full blocks as the KV-event index computes them
    (``pilothouse.endpoints.kv_index.block_keys`` over that engine's ``prompt_token_ids``),
    prepared by the same producer so that a decision does no hashing; a combination missing
    from it is hashed by the scorer.
    """

    request_id: str
    model: str
    prompt: str = ""
    prompt_tokens: int = 0
    max_tokens: int | None = None
    stream: bool = False
    headers: Mapping[str, str] = field(default_factory=_no_strings)
    session_id: str | None = None
    tenant: str | None = None
    priority: int = 0
    lora: str | None = None
    prompt_token_ids: Mapping[str, tuple[int, ...]] | None = None
    prompt_block_keys: Mapping[BlockKeysId, tuple[int, ...]] | None = None


@value
class ScoredEndpoint:
    """An endpoint with its weighted total score in one profile."""

    endpoint: Endpoint
    score: float


@value
class ProfileResult:
    """The outcome of one profile: targets in preference order (first is primary)."""

    targets: tuple[Endpoint, ...]
    scores: Mapping[str, float] = field(default_factory=_no_scores)


@value
class TtftEstimate:
    """A latency predictor's view of one request: the lowest time to first token it predicts
    on any endpoint scored, and the request's target (``slo-aware`` publishes it)."""

    best_s: float
    target_s: float

    def misses(self, margin: float = 0.0) -> bool:
        """True when even the best endpoint is predicted over the target by more than
        ``margin`` (a fraction of the target)."""
        return self.best_s > self.target_s * (1.0 + margin)


@value
class SchedulingResult:
    """The outcome of one scheduling cycle: one result per profile that ran.

    ``uncached_tokens`` is the scheduler's estimate of the prompt tokens the primary target
    must prefill (not served by its prefix cache), when a plugin estimated it; data producers
    count it as that replica's prefill backlog until the first token arrives.
    ``ttft_estimate`` is a latency predictor's estimate for the request, when a plugin made
    one (flow control may shed or defer a request predicted to miss its target).
    ``latency_uncached_tokens`` is the prompt tokens the target is expected to really
    prefill, when a plugin estimates that apart from the routing view (latency predictors
    prefer it to ``uncached_tokens``)."""

    primary_profile: str
    profiles: Mapping[str, ProfileResult]
    uncached_tokens: int | None = None
    headers: Mapping[str, str] = field(default_factory=_no_strings)
    ttft_estimate: TtftEstimate | None = None
    latency_uncached_tokens: int | None = None

    @property
    def target(self) -> Endpoint:
        """The primary profile's first choice."""
        return self.profiles[self.primary_profile].targets[0]

    @property
    def fallbacks(self) -> tuple[Endpoint, ...]:
        """The primary profile's other choices, in order."""
        return self.profiles[self.primary_profile].targets[1:]
