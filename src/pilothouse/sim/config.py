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
:class:`EngineConfig` carries the vLLM-style scheduler and cache limits, and the optional CPU
tier of the KV cache (:mod:`pilothouse.sim.cpu_tier`): ``num_cpu_blocks`` blocks of host
memory that take what the GPU tier evicts, reloaded over PCIe at ``pcie_gb_s`` plus
``cpu_load_latency_s`` per load instead of being recomputed. Off by default (0 blocks).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

FCFS = "fcfs"
PRIORITY = "priority"
SCHEDULING_POLICIES = (FCFS, PRIORITY)
"""vLLM's ``--scheduling-policy`` values the engine model follows (``sim/waiting.py``)."""


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
    kv_bytes_per_token: int = 0
    """KV-cache bytes one token takes on the replica (all layers, K and V; 0 = unknown)."""
    num_cpu_blocks: int = 0
    """Blocks of the CPU tier (host memory that takes what the GPU tier evicts); 0 = off."""
    pcie_gb_s: float = 0.0
    """Host-to-device bandwidth a reload from the CPU tier gets, GB/s (all GPUs together)."""
    cpu_load_latency_s: float = 0.0
    """Fixed cost of one reload from the CPU tier (launch, synchronisation), seconds."""
    cache_generated_blocks: bool = False
    """Full blocks of generated tokens enter the prefix cache when a request finishes (vLLM
    caches them); needs ``EngineRequest.output_block_hashes``. Off: only prompt blocks."""
    scheduling_policy: str = FCFS
    """vLLM's ``--scheduling-policy``: ``fcfs`` (arrival order) or ``priority`` (waiting
    requests by ``EngineRequest.priority``, lowest value first, then arrival; preemption takes
    the running request of the highest value, latest arrival, first)."""
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        for name in ("num_gpu_blocks", "block_size", "max_num_batched_tokens", "max_num_seqs"):
            if getattr(self, name) < 1:
                raise ValueError(f"EngineConfig.{name} must be >= 1")
        if self.max_num_batched_tokens < self.max_num_seqs:
            raise ValueError("EngineConfig.max_num_batched_tokens must be >= max_num_seqs")
        if self.max_loras < 0:
            raise ValueError("EngineConfig.max_loras must be >= 0")
        if self.scheduling_policy not in SCHEDULING_POLICIES:
            raise ValueError(
                f"EngineConfig.scheduling_policy must be one of {', '.join(SCHEDULING_POLICIES)}"
            )
        if self.max_model_len < 2:
            raise ValueError("EngineConfig.max_model_len must be >= 2")
        if self.kv_bytes_per_token < 0 or self.num_cpu_blocks < 0:
            raise ValueError("EngineConfig.kv_bytes_per_token and num_cpu_blocks must be >= 0")
        if self.pcie_gb_s < 0 or self.cpu_load_latency_s < 0:
            raise ValueError("EngineConfig.pcie_gb_s and cpu_load_latency_s must be >= 0")
        if self.num_cpu_blocks and (self.kv_bytes_per_token == 0 or self.pcie_gb_s == 0):
            raise ValueError(
                "EngineConfig.num_cpu_blocks needs kv_bytes_per_token and pcie_gb_s "
                "(what a reload from the CPU tier costs)"
            )
        if self.max_model_len > self.kv_capacity_tokens:
            raise ValueError(
                f"EngineConfig.max_model_len ({self.max_model_len}) exceeds the KV cache "
                f"({self.num_gpu_blocks} blocks x {self.block_size} = "
                f"{self.kv_capacity_tokens} tokens)"
            )

    @property
    def kv_capacity_tokens(self) -> int:
        return self.num_gpu_blocks * self.block_size

    @property
    def cpu_load_s_per_token(self) -> float:
        """Seconds to reload one token's KV from the CPU tier (bandwidth only)."""
        if self.pcie_gb_s == 0:
            return 0.0
        return self.kv_bytes_per_token / (self.pcie_gb_s * 1e9)

    def cpu_load_s(self, tokens: int) -> float:
        """What reloading ``tokens`` tokens from the CPU tier takes: bytes / bandwidth +
        the fixed load latency (0 for no tokens)."""
        if tokens <= 0:
            return 0.0
        return self.cpu_load_latency_s + tokens * self.cpu_load_s_per_token

    def tier_costs(self) -> dict[str, float]:
        """The prefix scorers' ``tier_costs`` parameters for this engine (what a GPU and a
        CPU-tier hit save: ``docs/plugins/approx-prefix.md``)."""
        return {
            "prefill_s_per_token": self.latency.prefill_token_s,
            "offload_load_s_per_token": self.cpu_load_s_per_token,
            "offload_load_latency_s": self.cpu_load_latency_s,
        }

    def approx_prefix_tiers(
        self, *, chars_per_block: int = 64, chars_per_token: int = 4
    ) -> dict[str, object]:
        """``approx-prefix`` parameters that mirror this engine's two tiers: its recent LRU
        holds what the GPU holds, its offloaded LRU what the CPU tier holds (in blocks of
        ``chars_per_block`` characters at ``chars_per_token``), and its scores are the
        prefill saved. Meant for engines with a CPU tier (it resizes the recent LRU)."""
        tokens = max(1, chars_per_block // chars_per_token)
        return {
            "block_size": chars_per_block,
            "lru_capacity_per_endpoint": max(1, self.kv_capacity_tokens // tokens),
            "offload_capacity_per_endpoint": self.num_cpu_blocks * self.block_size // tokens,
            "tier_costs": self.tier_costs(),
        }

    def cpu_blocks_for(self, gib: float) -> int:
        """How many blocks ``gib`` GiB of host memory hold (``kv_bytes_per_token`` needed)."""
        if self.kv_bytes_per_token == 0:
            raise ValueError(f"preset {self.name!r} does not know its KV bytes per token")
        return int(gib * 2**30 // (self.kv_bytes_per_token * self.block_size))


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
    cpu_kv_gib: float | None = None
    """Size of the CPU tier in GiB of host memory (0 turns it off)."""
    cache_generated_blocks: bool | None = None
    scheduling_policy: str | None = None


def apply_overrides(config: EngineConfig, overrides: EngineOverrides) -> EngineConfig:
    """Return ``config`` with every non-``None`` override applied.

    When the cache shrinks and ``max_model_len`` is not given, the context length is clamped
    to what the cache holds (as vLLM requires one full sequence to fit). ``cpu_kv_gib``
    becomes ``num_cpu_blocks`` at the resulting block size.
    """
    changes: dict[str, object] = {
        name: value
        for name in EngineOverrides.__dataclass_fields__
        if (value := getattr(overrides, name)) is not None and name != "cpu_kv_gib"
    }
    if overrides.max_model_len is None:
        blocks = overrides.num_gpu_blocks or config.num_gpu_blocks
        size = overrides.block_size or config.block_size
        changes["max_model_len"] = min(config.max_model_len, blocks * size)
    result = replace(config, **changes)  # type: ignore[arg-type]
    if overrides.cpu_kv_gib is not None:
        if overrides.cpu_kv_gib < 0:
            raise ValueError("cpu_kv_gib must be >= 0")
        blocks = result.cpu_blocks_for(overrides.cpu_kv_gib) if overrides.cpu_kv_gib else 0
        result = replace(result, num_cpu_blocks=blocks)
    return result
