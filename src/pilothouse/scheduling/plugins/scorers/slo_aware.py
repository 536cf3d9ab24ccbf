"""``slo-aware`` scorer: place each request where its predicted time to first token is lowest,
measured against its target.

The prediction is learned, not assumed: the scorer owns a per-replica
:class:`~pilothouse.scheduling.latency.LatencyPredictor` and is a
:class:`~pilothouse.scheduling.latency.LatencyObserver`, so the routing pipeline tells it
the time to first token of every request it placed, with the features it saw then (the
gateway's backlog and in-flight counts, the scraped queue, running batch and KV use, and
the request's uncached prompt tokens). Until a replica has ``warmup`` observations the pooled
fit of all replicas answers; until that is warm too, a cold estimate does:
``cold_overhead_s + (backlog + uncached tokens) / cold_prefill_tokens_per_s``.

The request's uncached tokens on each endpoint are those a prefix scorer published
(``uncached-tokens``), else derived from its match fractions (``prefix-match``: put
``approx-prefix`` or ``precise-prefix`` before this scorer), else the whole prompt. They are
published as ``uncached-tokens`` when nobody did, so the gateway counts the right backlog.

With ``t`` the request's target (``ttft_targets_s`` by priority, else ``ttft_target_s``)
and ``p`` an endpoint's prediction, the score is ``1 - p / 2t`` while ``p <= t`` (in
[0.5, 1]) and ``t / 2p`` beyond (below 0.5): continuous, decreasing in ``p``, and every
endpoint that meets the target outranks every one that misses it. The best prediction and
the target are published as the cycle's ``ttft-estimate``, which flow control's SLO gate
reads (``gateway.flow_control.slo``) to shed or defer a request no endpoint can serve in
time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated

from pydantic import Field

from pilothouse.scheduling.context import PluginContext
from pilothouse.scheduling.interfaces import (
    LATENCY_UNCACHED_TOKENS_KEY,
    PREFIX_MATCH_KEY,
    TTFT_ESTIMATE_KEY,
    UNCACHED_TOKENS_KEY,
    CycleState,
)
from pilothouse.scheduling.latency import LatencyFeatures, LatencyPredictor, latency_features
from pilothouse.scheduling.plugins.base import NamedPlugin
from pilothouse.scheduling.types import Endpoint, SchedulingRequest, TtftEstimate
from pilothouse.scheduling.validation import ParametersModel, parse_parameters


class SloAwareParameters(ParametersModel):
    ttft_target_s: float = Field(default=1.0, gt=0.0)
    ttft_targets_s: dict[int, Annotated[float, Field(gt=0.0)]] = Field(default_factory=dict)
    warmup: int = Field(default=50, ge=0)
    forgetting: float = Field(default=0.999, gt=0.0, le=1.0)
    cold_overhead_s: float = Field(default=0.02, ge=0.0)
    cold_prefill_tokens_per_s: float = Field(default=10_000.0, gt=0.0)


class SloAwareScorer(NamedPlugin):
    """Scores endpoints by learned TTFT against the request's target (module docstring)."""

    __slots__ = ("_params", "_predictor")

    def __init__(self, name: str, parameters: SloAwareParameters | None = None) -> None:
        super().__init__(name)
        p = parameters or SloAwareParameters()
        self._params = p
        self._predictor = LatencyPredictor(warmup=p.warmup, forgetting=p.forgetting)

    @classmethod
    def create(
        cls, name: str, parameters: Mapping[str, object], ctx: PluginContext
    ) -> SloAwareScorer:
        return cls(name, parse_parameters(SloAwareParameters, parameters))

    @property
    def predictor(self) -> LatencyPredictor:
        return self._predictor

    def target_s(self, request: SchedulingRequest) -> float:
        """The request's TTFT target: by its priority, else the default."""
        p = self._params
        return p.ttft_targets_s.get(request.priority, p.ttft_target_s)

    def observe_ttft(self, endpoint: str, features: LatencyFeatures, ttft_s: float) -> None:
        self._predictor.observe_ttft(endpoint, features, ttft_s)

    def predict(self, endpoint: Endpoint, uncached_tokens: int, prompt_tokens: int) -> float:
        """Predicted seconds to first token of a request placed on ``endpoint`` now."""
        return self.predict_ttft(
            endpoint.name, latency_features(endpoint, uncached_tokens, prompt_tokens)
        )

    def predict_ttft(self, endpoint: str, features: LatencyFeatures) -> float:
        """Predicted seconds to first token on ``endpoint`` with ``features``: learned, else
        the cold estimate (a :class:`~pilothouse.scheduling.latency.TtftEstimator`)."""
        learned = self._predictor.predict_ttft(endpoint, features)
        if learned is not None:
            return learned
        p = self._params
        tokens = features.backlog_tokens + features.uncached_tokens
        return p.cold_overhead_s + tokens / p.cold_prefill_tokens_per_s

    def score(
        self, state: CycleState, request: SchedulingRequest, endpoints: Sequence[Endpoint]
    ) -> Sequence[float]:
        if not endpoints:
            return []
        uncached = _uncached(state, request, endpoints)
        found = state.data.get(LATENCY_UNCACHED_TOKENS_KEY)  # what the engine will find
        if isinstance(found, dict) and all(e.name in found for e in endpoints):
            uncached = found
        prompt = request.prompt_tokens
        predicted = [self.predict(e, uncached[e.name], prompt) for e in endpoints]
        target = self.target_s(request)
        state.data[TTFT_ESTIMATE_KEY] = TtftEstimate(min(predicted), target)
        return [1.0 - p / (2.0 * target) if p <= target else target / (2.0 * p) for p in predicted]


def _uncached(
    state: CycleState, request: SchedulingRequest, endpoints: Sequence[Endpoint]
) -> Mapping[str, int]:
    """Each endpoint's uncached prompt tokens: as published, from the match fractions, or
    the whole prompt; published when nobody did."""
    published = state.data.get(UNCACHED_TOKENS_KEY)
    if isinstance(published, dict) and all(e.name in published for e in endpoints):
        return published
    match = state.data.get(PREFIX_MATCH_KEY)
    fractions: Mapping[str, float] = match if isinstance(match, dict) else {}
    prompt = request.prompt_tokens
    uncached = {e.name: round(prompt * (1.0 - fractions.get(e.name, 0.0))) for e in endpoints}
    state.data[UNCACHED_TOKENS_KEY] = uncached
    return uncached
