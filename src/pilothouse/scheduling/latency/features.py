"""What the latency predictor sees of one (request, replica) pair at decision time.

Only what the router already knows when it places a request: the endpoint snapshot (the
gateway's own counts, which never lag, the engine's last scraped metrics, and the router's
own estimate of when the prefill queue there drains) and the request's uncached prompt
tokens on that replica (from the prefix match the scorers computed; the whole prompt when no
prefix plugin estimated it).

:func:`ttft_vector` turns them into the regression's inputs. On a chunked-prefill engine
that schedules first come, first served, a request's time to first token is the wait for the
prefills ahead of it to finish, plus its own prefill (linear in its uncached tokens, plus
attention among them and over the cached part of the prompt), plus the decode steps it
shares with the running batch (their count and the context they read, which KV-cache use
tracks) and the step in flight when it arrives. The wait ahead is
:attr:`LatencyFeatures.wait_s`: the routing pipeline's running estimate of when the requests
awaiting a first token on that replica will have it, from this predictor's own predictions
for each of them, re-anchored at every first token there
(:class:`~pilothouse.routing.prefill_drain.PrefillDrain`). Its prefill tokens alone (the
backlog) say little: part of it is done already, and how much depends on when it was placed.

Chosen by replaying recorded simulator runs of ``long-context`` and ``b2b-saas`` through
candidate fits (docs/plugins/slo-aware.md): the backlog terms, the queue counts and further
interactions did worse or no better once the wait was in.
"""

from __future__ import annotations

from dataclasses import dataclass

from pilothouse.scheduling.types import Endpoint

_TOKENS = 1e4  # tokens per unit
_SEQS = 100.0  # sequences per unit
_QUEUED = 10.0  # queued requests per unit
_PAIRS = 1e8  # (new token, attended token) pairs per unit

TTFT_FEATURES = 7
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
    wait_s: float = 0.0
    """Seconds until the requests awaiting a first token there are predicted to have it
    (:attr:`~pilothouse.scheduling.types.Endpoint.prefill_wait_s`: the router's estimate)."""


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
        wait_s=endpoint.prefill_wait_s,
    )


def ttft_vector(f: LatencyFeatures) -> tuple[float, ...]:
    """The regression inputs for time to first token (:data:`TTFT_FEATURES` values)."""
    own = f.uncached_tokens / _TOKENS
    return (
        1.0,  # a step's overhead, and the wait for the step in flight
        own,  # its own prefill
        f.uncached_tokens * f.prompt_tokens / _PAIRS,  # attention over the whole prompt
        f.kv_cache_usage,  # the context every decode step reads
        f.running / _SEQS,  # decodes in every step
        f.wait_s,  # the prefills ahead: the router's estimate of when they finish
        own * own,  # attention among its own new tokens (counted twice above)
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
