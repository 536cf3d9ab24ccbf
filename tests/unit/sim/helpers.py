"""Small builders shared by the engine-model tests."""

from __future__ import annotations

from dataclasses import replace

from pilothouse.sim import (
    EngineConfig,
    EngineModel,
    EngineRequest,
    LatencyModel,
    StepResult,
    chain_block_hashes,
)

FLAT = LatencyModel(
    step_overhead_s=0.010,
    prefill_token_s=0.001,
    prefill_attention_s=0.0,
    decode_seq_s=0.0,
    decode_context_s=0.0,
)


def small_config(**changes: object) -> EngineConfig:
    """A tiny replica with a simple latency model: 10 ms per step + 1 ms per prompt token."""
    config = EngineConfig(
        name="test",
        latency=FLAT,
        num_gpu_blocks=64,
        block_size=4,
        max_num_batched_tokens=64,
        max_num_seqs=8,
        max_model_len=256,
        max_loras=0,
    )
    return replace(config, **changes)  # type: ignore[arg-type]


def request(
    request_id: str,
    tokens: list[int],
    max_tokens: int = 4,
    *,
    block_size: int = 4,
    lora: str | None = None,
    stop_after: int | None = None,
) -> EngineRequest:
    return EngineRequest(
        request_id=request_id,
        prompt_tokens=len(tokens),
        max_tokens=max_tokens,
        block_hashes=chain_block_hashes(tokens, block_size, extra=lora),
        token_ids=tuple(tokens),
        lora=lora,
        stop_after=stop_after,
    )


def run_until_idle(
    model: EngineModel, now: float = 0.0, max_steps: int = 10_000
) -> list[StepResult]:
    """Step back to back until the model has no work; bounded."""
    results: list[StepResult] = []
    for _ in range(max_steps):
        result = model.step(now)
        if result is None:
            return results
        results.append(result)
        now = result.end
    raise AssertionError("model did not drain")
