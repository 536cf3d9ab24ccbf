"""Iteration durations from a :class:`~pilothouse.sim.config.LatencyModel`, in closed form.

Fused decode iterations grow linearly: every sequence's context gains one token per
iteration, so iteration ``j`` lasts ``first + growth * j`` and ``k`` iterations last
``k * first + growth * k * (k - 1) / 2``.
"""

from __future__ import annotations

from collections.abc import Iterable

from pilothouse.sim.config import LatencyModel


def iteration_time(
    model: LatencyModel,
    prefill_chunks: Iterable[tuple[int, int]],
    decode_seqs: int,
    decode_context: int,
    lora_loads: int = 0,
) -> float:
    """One iteration: prefill chunks ``(new tokens, tokens already cached)`` plus decodes.

    ``decode_context`` is the sum over decoding sequences of the tokens each attends to.
    """
    total = model.step_overhead_s + model.lora_load_s * lora_loads
    total += model.decode_seq_s * decode_seqs + model.decode_context_s * decode_context
    for new, cached in prefill_chunks:
        total += model.prefill_token_s * new + model.prefill_attention_s * new * (cached + new / 2)
    return total


def decode_growth(model: LatencyModel, decode_seqs: int) -> float:
    """How much each further fused decode iteration adds over the previous one."""
    return model.decode_context_s * decode_seqs


def fused_duration(first: float, growth: float, iterations: int) -> float:
    """Total duration of ``iterations`` fused iterations."""
    return iterations * first + growth * iterations * (iterations - 1) / 2


def iterations_started_before(first: float, growth: float, iterations: int, elapsed: float) -> int:
    """How many of ``iterations`` fused iterations started strictly before ``elapsed``.

    The first iteration always counts (it started at 0, when the step was scheduled).
    """
    started = 1
    start = first
    while started < iterations and start < elapsed:
        started += 1
        start += first + growth * (started - 1)
    return started
