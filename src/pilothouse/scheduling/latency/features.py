"""What the latency predictor sees of one (request, replica) pair at decision time.

Only what the router already knows when it places a request: the endpoint snapshot (the
gateway's own counts, which never lag, and the engine's last scraped metrics) and the
request's uncached prompt tokens on that replica (from the prefix match the scorers
computed; the whole prompt when no prefix plugin estimated it).

:func:`ttft_vector` turns them into the regression's inputs. Time to first token on a
chunked-prefill engine is roughly the prefill work ahead of and including the request,
divided by a throughput that falls as the running decode batch takes its share of every
step's token budget, plus whatever the engine has queued behind a full KV cache; the
vector holds those terms, their interaction, a quadratic term for long backlogs and the
attention over the cached part of the prompt, scaled to order one so that recursive least
squares stays well conditioned. (Chosen by replaying recorded simulator runs of b2b-saas and
long-context through the predictor: log-linear fits and further terms did worse or no
better.)
"""

from __future__ import annotations

from dataclasses import dataclass

from pilothouse.scheduling.types import Endpoint

_TOKENS = 1e4  # tokens per unit
_SEQS = 100.0  # sequences per unit
_QUEUED = 10.0  # queued requests per unit
_PAIRS = 1e8  # (new token, attended token) pairs per unit

TTFT_FEATURES = 11
"""Length of :func:`ttft_vector`."""
ITL_FEATURES = 7
"""Length of :func:`itl_vector`."""


@dataclass(frozen=True, slots=True)
class LatencyFeatures:
    """The inputs of one prediction, snapshotted when the request is placed."""

    uncached_tokens: int
    """Prompt tokens this replica must prefill for the request (its prefix cache aside)."""
    prompt_tokens: int = 0
    """The request's prompt tokens (the cached ones are still attended to)."""
    backlog_tokens: int = 0
    """Uncached prompt tokens of requests routed there still awaiting a first token."""
    awaiting: int = 0
    """How many requests that backlog is (the gateway's count)."""
    in_flight: int = 0
    """Requests the gateway has in flight there, prefilling or decoding (its own count)."""
    waiting: int = 0
    """The engine's wait queue (scraped)."""
    running: int = 0
    """The engine's running batch (scraped)."""
    kv_cache_usage: float = 0.0
    """The engine's KV cache use in [0, 1] (scraped)."""


def latency_features(
    endpoint: Endpoint, uncached_tokens: int, prompt_tokens: int
) -> LatencyFeatures:
    """The features of placing a request of ``prompt_tokens`` with ``uncached_tokens`` to
    prefill on ``endpoint``."""
    metrics = endpoint.metrics
    return LatencyFeatures(
        uncached_tokens=uncached_tokens,
        prompt_tokens=prompt_tokens,
        backlog_tokens=endpoint.in_flight_tokens,
        awaiting=endpoint.awaiting_first_token,
        in_flight=endpoint.in_flight,
        waiting=metrics.waiting,
        running=metrics.running,
        kv_cache_usage=metrics.kv_cache_usage,
    )


def ttft_vector(f: LatencyFeatures) -> tuple[float, ...]:
    """The regression inputs for time to first token (:data:`TTFT_FEATURES` values)."""
    prefill = (f.backlog_tokens + f.uncached_tokens) / _TOKENS
    running = f.running / _SEQS
    return (
        1.0,  # a step's overhead, and the wait for the step in flight
        prefill,  # the prefill work ahead of and including the request
        f.uncached_tokens / _TOKENS,  # its own prefill (last in line, chunked)
        running,  # decodes in every step
        prefill * running,  # ...which take a share of every step's token budget
        prefill * prefill,  # long backlogs: queueing grows faster than linearly
        f.uncached_tokens * f.prompt_tokens / _PAIRS,  # attention over the whole prompt
        f.awaiting / _QUEUED,  # requests ahead, each a step boundary at least
        f.in_flight / _SEQS,  # the gateway's current count, where the scrape lags
        f.waiting / _QUEUED,  # the engine's queue (a full KV cache holds requests back)
        f.kv_cache_usage,
    )


def itl_vector(f: LatencyFeatures) -> tuple[float, ...]:
    """The regression inputs for the mean gap between a request's tokens (:data:`ITL_FEATURES`
    values): a decode step is a fixed cost, a cost per sequence in the batch and one per token
    of context they attend to (which KV-cache use tracks), plus the prefill chunks of requests
    still arriving, which share the steps."""
    running = f.running / _SEQS
    in_flight = f.in_flight / _SEQS
    return (
        1.0,
        running,
        in_flight,
        f.kv_cache_usage,
        in_flight * f.kv_cache_usage,
        f.backlog_tokens / _TOKENS,
        f.awaiting / _QUEUED,
    )
