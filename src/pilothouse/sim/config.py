"""Frozen configuration of one simulated engine replica: cache, batching and latency.

:class:`LatencyModel` prices one engine iteration (a forward pass over a batch) with five
coefficients, a roofline-style model in the spirit of Vidur and BLIS::

    t = step_overhead_s
      + prefill_token_s     * uncached prompt tokens computed in the step      (GEMM-bound)
      + prefill_attention_s * sum(n * (c + n / 2)) over prefill chunks          (n new, c cached)
      + decode_seq_s        * decoding sequences in the step
      + decode_context_s    * context tokens those sequences attend to          (KV reads)
      + lora_load_s         * adapters loaded into a slot in the step

and ``jitter`` is a relative standard deviation applied per step (0 = deterministic).
:class:`EngineConfig` carries the vLLM-style scheduler and cache limits.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True, slots=True)
class LatencyModel:
    """Per-iteration cost coefficients, in seconds."""

    step_overhead_s: float
    prefill_token_s: float
    prefill_attention_s: float
    decode_seq_s: float
    decode_context_s: float
    lora_load_s: float = 0.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        for name in (
            "step_overhead_s",
            "prefill_token_s",
            "prefill_attention_s",
            "decode_seq_s",
            "decode_context_s",
            "lora_load_s",
            "jitter",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"LatencyModel.{name} must be >= 0")
        if self.jitter >= 1.0:
            raise ValueError("LatencyModel.jitter must be < 1")


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """One replica: scheduler limits (vLLM names), paged KV cache, LoRA slots, latency.

    ``source`` says where the figures come from; every preset fills it in.
    """

    name: str
    latency: LatencyModel
    num_gpu_blocks: int
    block_size: int = 16
    max_num_batched_tokens: int = 8192
    max_num_seqs: int = 256
    max_model_len: int = 8192
    max_loras: int = 0
    enable_prefix_caching: bool = True
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        for name in ("num_gpu_blocks", "block_size", "max_num_batched_tokens", "max_num_seqs"):
            if getattr(self, name) < 1:
                raise ValueError(f"EngineConfig.{name} must be >= 1")
        if self.max_num_batched_tokens < self.max_num_seqs:
            raise ValueError("EngineConfig.max_num_batched_tokens must be >= max_num_seqs")
        if self.max_loras < 0:
            raise ValueError("EngineConfig.max_loras must be >= 0")
        if self.max_model_len < 2:
            raise ValueError("EngineConfig.max_model_len must be >= 2")
        if self.max_model_len > self.kv_capacity_tokens:
            raise ValueError(
                f"EngineConfig.max_model_len ({self.max_model_len}) exceeds the KV cache "
                f"({self.num_gpu_blocks} blocks x {self.block_size} = "
                f"{self.kv_capacity_tokens} tokens)"
            )

    @property
    def kv_capacity_tokens(self) -> int:
        return self.num_gpu_blocks * self.block_size


@dataclass(frozen=True, slots=True)
class EngineOverrides:
    """Optional per-field overrides of a preset (the simulator's CLI flags map here)."""

    block_size: int | None = None
    num_gpu_blocks: int | None = None
    max_num_batched_tokens: int | None = None
    max_num_seqs: int | None = None
    max_model_len: int | None = None
    max_loras: int | None = None
    enable_prefix_caching: bool | None = None


def apply_overrides(config: EngineConfig, overrides: EngineOverrides) -> EngineConfig:
    """Return ``config`` with every non-``None`` override applied.

    When the cache shrinks and ``max_model_len`` is not given, the context length is clamped
    to what the cache holds (as vLLM requires one full sequence to fit).
    """
    changes: dict[str, object] = {
        name: value
        for name in EngineOverrides.__dataclass_fields__
        if (value := getattr(overrides, name)) is not None
    }
    if overrides.max_model_len is None:
        blocks = overrides.num_gpu_blocks or config.num_gpu_blocks
        size = overrides.block_size or config.block_size
        changes["max_model_len"] = min(config.max_model_len, blocks * size)
    return replace(config, **changes)  # type: ignore[arg-type]
