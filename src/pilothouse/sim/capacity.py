"""A back-of-the-envelope capacity estimate of a replica, to place a QPS sweep.

For requests of ``P`` prompt tokens (a fraction ``c`` served from the prefix cache) and
``O`` output tokens, on one replica of an :class:`EngineConfig`:

- **batch**: ``n = min(max_num_seqs, kv_tokens / (P·(1 - c) + O / 2))`` requests fit in the
  KV cache at once (shared prefix blocks are counted once, so only the uncached part of
  each prompt and on average half the output hold private blocks);
- **decode**: one iteration for ``n`` requests lasts
  ``t(n) = step_overhead + n · decode_seq + n · (P + O / 2) · decode_context``;
- **prefill**: with ``N = P·(1 - c)`` new tokens,
  ``p = N · prefill_token + prefill_attention · N · (P·c + N / 2)``;
- a request costs the replica ``p + O · t(n) / n`` seconds, so it serves ``1 / that`` per
  second.

It ignores chunking, preemption and queueing, so it is an estimate of where saturation
starts, not a prediction; the simulation itself measures.
"""

from __future__ import annotations

from pilothouse.sim.config import EngineConfig

SWEEP_POINTS = 6
LOW_FACTOR = 0.25  # the sweep starts at a quarter of the no-cache capacity ...
HIGH_FACTOR = 1.25  # ... and ends a quarter above the perfect-cache capacity


def replica_capacity_qps(
    config: EngineConfig, prompt_tokens: float, output_tokens: float, cached: float = 0.0
) -> float:
    """Requests per second one replica sustains (see the module docstring)."""
    if prompt_tokens <= 0 or output_tokens <= 0 or not 0.0 <= cached <= 1.0:
        raise ValueError("need positive token counts and a cached fraction in [0, 1]")
    lat = config.latency
    new = prompt_tokens * (1.0 - cached)
    private = new + output_tokens / 2
    batch = max(1.0, min(float(config.max_num_seqs), config.kv_capacity_tokens / private))
    context = prompt_tokens + output_tokens / 2
    iteration = lat.step_overhead_s + batch * (lat.decode_seq_s + context * lat.decode_context_s)
    prefill = new * lat.prefill_token_s
    prefill += lat.prefill_attention_s * new * (prompt_tokens - new + new / 2)
    return 1.0 / (prefill + output_tokens * iteration / batch)


def _round2(value: float) -> float:
    """Two significant digits (0.123 -> 0.12, 14.7 -> 15.0)."""
    if value <= 0:
        return value
    return float(f"{value:.2g}")


def default_qps_sweep(
    config: EngineConfig,
    replicas: int,
    prompt_tokens: float,
    output_tokens: float,
    reusable: float,
) -> tuple[float, ...]:
    """A geometric ladder of QPS levels that reaches saturation for any routing policy.

    From a quarter of the cluster's capacity with no prefix-cache hits to a quarter above its
    capacity with every reusable prompt token served from the cache (``reusable``: the
    workload's shareable fraction), in ``SWEEP_POINTS`` steps, two significant digits each.
    """
    low = LOW_FACTOR * replicas * replica_capacity_qps(config, prompt_tokens, output_tokens)
    best = replica_capacity_qps(config, prompt_tokens, output_tokens, reusable)
    high = HIGH_FACTOR * replicas * best
    ratio = (high / low) ** (1.0 / (SWEEP_POINTS - 1))
    levels = [_round2(low * ratio**i) for i in range(SWEEP_POINTS)]
    return tuple(sorted(set(levels)))
