"""When each endpoint's prefill queue drains: the router's own estimate, for its predictor.

A chunked-prefill engine that schedules first come, first served gives a request its first
token once the prefills ahead of it are done. The gateway counts those (requests awaiting a
first token, their uncached tokens), but not how far along they are. :class:`PrefillDrain`
keeps that estimate per endpoint from the latency predictor's own answers:

- when a request is placed, the predictor's time to first token for it alone (its
  features with no wait ahead: its *service* time) is added to the endpoint's queue, which
  then drains at ``max(drain, now) + service``;
- when a request there gets its first token (or ends without one), the queue is re-anchored
  on what is known: it drains at ``now`` plus the service times of the requests still
  awaiting, so an estimate that ran early or late is corrected at every first token.

:meth:`PrefillDrain.annotate` puts ``max(0, drain - now)`` on the endpoint snapshots
(:attr:`~pilothouse.scheduling.types.Endpoint.prefill_wait_s`), which the latency features
read; a request placed while nothing is awaiting a first token waits for nothing.

Pure bookkeeping on the pipeline's clock: times are passed in, predictions come from the
injected :class:`~pilothouse.scheduling.latency.TtftEstimator` (``None`` while it is cold:
the request is counted as no work).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import replace

from pilothouse.scheduling.latency import LatencyFeatures, TtftEstimator
from pilothouse.scheduling.types import Endpoint


class PrefillDrain:
    """Per endpoint, the predicted service times of the requests awaiting a first token and
    when they are predicted to have had it (see the module docstring)."""

    __slots__ = ("_drain_at", "_estimator", "_pending")

    def __init__(self, estimator: TtftEstimator) -> None:
        self._estimator = estimator
        self._pending: dict[str, dict[Hashable, float]] = {}
        self._drain_at: dict[str, float] = {}

    def wait_s(self, endpoint: str, now: float) -> float:
        """Seconds until the requests awaiting a first token on ``endpoint`` have it."""
        if not self._pending.get(endpoint):
            return 0.0
        return max(0.0, self._drain_at.get(endpoint, now) - now)

    def annotate(self, endpoints: Sequence[Endpoint], now: float) -> list[Endpoint]:
        """``endpoints`` with their :attr:`~Endpoint.prefill_wait_s` (copies where not 0)."""
        if not self._pending:
            return list(endpoints)
        annotated = []
        for endpoint in endpoints:
            wait = self.wait_s(endpoint.name, now)
            if wait != endpoint.prefill_wait_s:
                endpoint = endpoint.evolve(prefill_wait_s=wait)
            annotated.append(endpoint)
        return annotated

    def placed(self, key: Hashable, endpoint: str, features: LatencyFeatures, now: float) -> None:
        """The request ``key`` was placed on ``endpoint``: its service joins the queue."""
        alone = replace(features, backlog_tokens=0, awaiting=0, wait_s=0.0)
        service = self._estimator.predict_ttft(endpoint, alone)
        if service is None:
            return
        self._pending.setdefault(endpoint, {})[key] = service
        self._drain_at[endpoint] = max(self._drain_at.get(endpoint, now), now) + service

    def done(self, key: Hashable, endpoint: str, now: float) -> None:
        """The request ``key`` had its first token on ``endpoint`` (or ended): re-anchor."""
        pending = self._pending.get(endpoint)
        if pending is None:
            return
        pending.pop(key, None)
        if pending:
            self._drain_at[endpoint] = now + sum(pending.values())
        else:
            del self._pending[endpoint]
            self._drain_at.pop(endpoint, None)
