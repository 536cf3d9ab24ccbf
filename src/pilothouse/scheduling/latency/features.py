"""What the latency predictor sees of one (request, replica) pair at decision time.

Only what the router already knows when it places a request: the endpoint snapshot (the
gateway's own counts, which never lag, and the engine's last scraped metrics) and the
request's uncached prompt tokens on that replica (from the prefix match the scorers
computed; the whole prompt when no prefix plugin estimated it).

:func:`ttft_vector` turns them into the regression's inputs. Time to first token on a
chunked-prefill engine is roughly the prefill work ahead of and including the request,
divided by a throughput that falls as the running decode batch takes its share of every
step's token budget, plus whatever the engine has queued behind a full KV cache; the
vector holds those terms and their interaction, scaled to order one so that recursive
least squares stays well conditioned.
"""

from __future__ import annotations

from dataclasses import dataclass

from pilothouse.scheduling.types import Endpoint

_TOKENS = 1e4  # tokens per unit
_SEQS = 100.0  # sequences per unit
_QUEUED = 10.0  # queued requests per unit

TTFT_FEATURES = 8
"""Length of :func:`ttft_vector`."""


@dataclass(frozen=True, slots=True)
class LatencyFeatures:
    """The inputs of one prediction, snapshotted when the request is placed."""

    uncached_tokens: int
    """Prompt tokens this replica must prefill for the request (its prefix cache aside)."""
    backlog_tokens: int = 0
    """Uncached prompt tokens of requests routed there still awaiting a first token."""
    awaiting: int = 0
    """How many requests that backlog is (the gateway's count)."""
    waiting: int = 0
    """The engine's wait queue (scraped)."""
    running: int = 0
    """The engine's running batch (scraped)."""
    kv_cache_usage: float = 0.0
    """The engine's KV cache use in [0, 1] (scraped)."""


def latency_features(endpoint: Endpoint, uncached_tokens: int) -> LatencyFeatures:
    """The features of placing a request with ``uncached_tokens`` to prefill on ``endpoint``."""
    metrics = endpoint.metrics
    return LatencyFeatures(
        uncached_tokens=uncached_tokens,
        backlog_tokens=endpoint.in_flight_tokens,
        awaiting=endpoint.awaiting_first_token,
        waiting=metrics.waiting,
        running=metrics.running,
        kv_cache_usage=metrics.kv_cache_usage,
    )


def ttft_vector(f: LatencyFeatures) -> tuple[float, ...]:
    """The regression inputs for time to first token (:data:`TTFT_FEATURES` values)."""
    prefill = (f.backlog_tokens + f.uncached_tokens) / _TOKENS
    running = f.running / _SEQS
    return (
        1.0,
        prefill,
        f.uncached_tokens / _TOKENS,
        running,
        prefill * running,
        f.awaiting / _QUEUED,
        f.waiting / _QUEUED,
        f.kv_cache_usage,
    )
