"""Calibrated engine presets, each with the public figures it was derived from.

Hardware figures used throughout (public spec sheets): NVIDIA H100 SXM5 80 GB, HBM3 at
3.35 TB/s, 989 TFLOPS dense BF16. Decode is memory-bound (every step reads the weights once
plus each sequence's KV cache); prefill is compute-bound (2 x parameters FLOPs per token).
We assume ~55-60 % of peak FLOPS and ~70 % of peak bandwidth are achieved, the usual range
for vLLM on H100.

Every GPU preset knows its KV bytes per token and its host link (PCIe Gen5 x16 per H100: 64
GB/s per direction nominal, ~50 GB/s achieved from pinned memory; a TP2 replica loads each
half of a block over its own GPU's link), so the CPU tier can be switched on with
``EngineOverrides.cpu_kv_gib``; it is off in these presets. The ``-offload`` presets switch it
on with 100 GiB of host memory per GPU (a DGX H100 has 2 TiB for 8 GPUs) and cache generated
blocks, as vLLM with its CPU offloading connector does. The fixed 1 ms per reload (transfer
launch and synchronisation) is an assumption, not a measurement.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType

from pilothouse.errors import ConfigError
from pilothouse.sim.config import EngineConfig, LatencyModel

LLAMA_31_8B_H100 = EngineConfig(
    name="llama-3.1-8b-h100",
    # Llama-3.1-8B: 32 layers, 8 KV heads x 128 dims, BF16 KV = 128 KiB per token.
    # KV budget: 80 GiB x 0.9 (gpu_memory_utilization) - 15 GiB weights - ~3 GiB activations
    # = 54 GiB / 128 KiB = 442,368 tokens = 27,648 blocks of 16.
    num_gpu_blocks=27_648,
    block_size=16,
    # vLLM defaults for GPUs >= 70 GiB other than A100 (vllm/engine/arg_utils.py,
    # get_batch_defaults, OPENAI_API_SERVER usage context): 8192 tokens, 1024 sequences.
    max_num_batched_tokens=8192,
    max_num_seqs=1024,
    max_model_len=131_072,
    kv_bytes_per_token=128 * 1024,
    pcie_gb_s=50.0,
    cpu_load_latency_s=0.001,
    latency=LatencyModel(
        # 16 GB of weights / 3.35 TB/s = 4.8 ms per step, + ~1.2 ms scheduling, sampling and
        # launch overhead: ~6 ms per token for one request (~160 tok/s single stream).
        step_overhead_s=0.0060,
        # 2 x 8.0e9 FLOPs per token / (989e12 x 0.6) = 27 us per token (~37k prompt tok/s).
        prefill_token_s=27e-6,
        # 4 x 32 layers x 32 heads x 128 dims = 0.52 MFLOP per (query, key) pair / 6e14.
        prefill_attention_s=0.87e-9,
        decode_seq_s=30e-6,
        # 128 KiB of KV per context token / (3.35 TB/s x 0.7) = 56 ns per token read.
        decode_context_s=56e-9,
        lora_load_s=0.020,
    ),
    source=(
        "H100 SXM spec (3.35 TB/s HBM3, 989 TFLOPS BF16); Llama-3.1-8B config "
        "(32 layers, 8 KV heads, head dim 128); vLLM H100 batch defaults "
        "(vllm/engine/arg_utils.py get_batch_defaults)"
    ),
)

QWEN3_32B_TP2_H100 = EngineConfig(
    name="qwen3-32b-tp2-h100",
    # llm-d benchmark: "each 307,328-token KV" per 2 x H100 TP2 pod
    # (llm-d/llm-d-kv-cache-manager benchmarking/73-capacity) = 19,208 blocks of 16.
    num_gpu_blocks=19_208,
    block_size=16,
    # llm-d "sticky until saturated" blog: vLLM max-num-batched-tokens = 8192; max_num_seqs
    # is vLLM's H100 default (1024).
    max_num_batched_tokens=8192,
    max_num_seqs=1024,
    max_model_len=40_960,
    kv_bytes_per_token=256 * 1024,  # 128 KiB per GPU, each over its own PCIe link
    pcie_gb_s=100.0,
    cpu_load_latency_s=0.001,
    latency=LatencyModel(
        # 65.5 GB BF16 weights split over 2 GPUs: 32.8 GB / 3.35 TB/s = 9.8 ms, + ~2 ms of
        # tensor-parallel all-reduces (2 per layer x 64 layers), + ~1.2 ms overhead.
        step_overhead_s=0.013,
        # 2 x 32.8e9 FLOPs per token / (2 x 989e12 x 0.55) = 60 us (~16.6k prompt tok/s).
        prefill_token_s=60e-6,
        # 4 x 64 layers x 64 query heads x 128 dims = 2.1 MFLOP per pair / (2 x 5.4e14).
        prefill_attention_s=1.94e-9,
        decode_seq_s=30e-6,
        # 256 KiB KV per token (64 layers, 8 KV heads, 128 dims), 128 KiB per GPU,
        # / (3.35 TB/s x 0.7) = 56 ns. Check against llm-d's reported ITL of 44-63 ms at
        # load: ~80 sequences x ~7,700 tokens of context gives 13 + 2.4 + 34.5 = ~50 ms.
        decode_context_s=56e-9,
        lora_load_s=0.030,
    ),
    source=(
        "llm-d benchmarks (307,328-token KV per TP2 pod; max-num-batched-tokens 8192; "
        "ITL 44-63 ms at load: llm-d guides/optimized-baseline, precise-prefix-cache-aware); "
        "H100 SXM spec; Qwen3-32B config (64 layers, 64 Q / 8 KV heads, head dim 128)"
    ),
)

SMOLLM2_135M_CPU = EngineConfig(
    name="smollm2-135m-cpu",
    # llama.cpp server defaults: n_ctx 2048 = 128 blocks of 16, one slot, n_batch 512.
    num_gpu_blocks=128,
    block_size=16,
    max_num_batched_tokens=512,
    max_num_seqs=1,
    max_model_len=2048,
    latency=LatencyModel(
        # Measured on this 2-core machine with llama-cpp-python, 2 threads
        # (docs: /work/shared/reference/environment.md): decode ~70 tok/s -> 14.3 ms/token.
        step_overhead_s=0.010,
        # prompt processing ~160-220 tok/s -> ~5.3 ms per prompt token.
        prefill_token_s=0.0050,
        prefill_attention_s=0.3e-6,
        decode_seq_s=0.0040,
        decode_context_s=0.5e-6,
        lora_load_s=0.050,
    ),
    source=(
        "measured: SmolLM2-135M Q4_1, llama-cpp-python 2 threads on the 2-core CI machine: "
        "prompt ~160-220 tok/s, decode ~70 tok/s, one request at a time, n_ctx 2048"
    ),
)

OFFLOAD_GIB_PER_GPU = 100


def with_cpu_offload(config: EngineConfig, gib: float, name: str) -> EngineConfig:
    """``config`` with a CPU tier of ``gib`` GiB and generated blocks cached, as ``name``."""
    return replace(
        config,
        name=name,
        num_cpu_blocks=config.cpu_blocks_for(gib),
        cache_generated_blocks=True,
        source=f"{config.source}; CPU tier: {gib:g} GiB of host memory, PCIe Gen5 x16 links",
    )


LLAMA_31_8B_H100_OFFLOAD = with_cpu_offload(
    LLAMA_31_8B_H100, OFFLOAD_GIB_PER_GPU, "llama-3.1-8b-h100-offload"
)
QWEN3_32B_TP2_H100_OFFLOAD = with_cpu_offload(
    QWEN3_32B_TP2_H100, 2 * OFFLOAD_GIB_PER_GPU, "qwen3-32b-tp2-h100-offload"
)

PRESETS: Mapping[str, EngineConfig] = MappingProxyType(
    {
        preset.name: preset
        for preset in (
            LLAMA_31_8B_H100,
            QWEN3_32B_TP2_H100,
            SMOLLM2_135M_CPU,
            LLAMA_31_8B_H100_OFFLOAD,
            QWEN3_32B_TP2_H100_OFFLOAD,
        )
    }
)
DEFAULT_PRESET = LLAMA_31_8B_H100.name


def get_preset(name: str) -> EngineConfig:
    """The preset called ``name``; a :class:`ConfigError` lists the known ones otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        known = ", ".join(sorted(PRESETS))
        raise ConfigError(f"unknown engine preset {name!r} (known: {known})", "preset") from None
