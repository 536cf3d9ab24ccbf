"""Write a small PEFT-format LoRA adapter for a Llama-style checkpoint (the converted SmolLM2).

The real-vLLM e2e test (``tests/e2e/test_vllm_cpu.py``) loads it on the CPU vLLM server; it
needs no network and no ``peft``: shapes come from the checkpoint's ``config.json`` and the
tensors are written with torch and safetensors (both in the vLLM venv)::

    .venv-vllm/bin/python scripts/make_lora_adapter.py .cache/smollm2-hf OUT_DIR

OUT_DIR gets ``adapter_config.json`` (``peft_type`` LORA, rank ``--rank``) and
``adapter_model.safetensors`` with ``lora_A`` (rank x in) and ``lora_B`` (out x rank)
weights for every targeted projection of every layer, named as PEFT saves them
(``base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight``). The weights are small
and random from a fixed seed, so the same arguments always write the same adapter; ``lora_B``
is scaled down so that the adapter nudges the base model rather than breaking it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

#: Llama projections by block: ``self_attn`` or ``mlp`` in the parameter names.
_ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
_MLP = ("gate_proj", "up_proj", "down_proj")


def projection_shapes(config: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """(in_features, out_features) of each Llama projection, from ``config.json``."""
    hidden = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    kv_heads = int(config.get("num_key_value_heads") or heads)
    head_dim = int(config.get("head_dim") or hidden // heads)
    intermediate = int(config["intermediate_size"])
    return {
        "q_proj": (hidden, heads * head_dim),
        "k_proj": (hidden, kv_heads * head_dim),
        "v_proj": (hidden, kv_heads * head_dim),
        "o_proj": (heads * head_dim, hidden),
        "gate_proj": (hidden, intermediate),
        "up_proj": (hidden, intermediate),
        "down_proj": (intermediate, hidden),
    }


def adapter_tensors(
    config: dict[str, Any], targets: list[str], rank: int, seed: int
) -> dict[str, torch.Tensor]:
    """``lora_A``/``lora_B`` weights for every targeted projection of every layer."""
    shapes = projection_shapes(config)
    unknown = [t for t in targets if t not in shapes]
    if unknown:
        raise SystemExit(f"make_lora_adapter: unknown target modules {unknown}")
    generator = torch.Generator().manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}
    for layer in range(int(config["num_hidden_layers"])):
        for target in targets:
            block = "self_attn" if target in _ATTENTION else "mlp"
            prefix = f"base_model.model.model.layers.{layer}.{block}.{target}"
            in_features, out_features = shapes[target]
            a = torch.randn(rank, in_features, generator=generator) / in_features**0.5
            b = torch.randn(out_features, rank, generator=generator) * 1e-3
            tensors[f"{prefix}.lora_A.weight"] = a.contiguous()
            tensors[f"{prefix}.lora_B.weight"] = b.contiguous()
    return tensors


def adapter_config(base: Path, targets: list[str], rank: int, alpha: int) -> dict[str, Any]:
    """The ``adapter_config.json`` PEFT writes for a plain LoRA adapter."""
    return {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": str(base),
        "r": rank,
        "lora_alpha": alpha,
        "lora_dropout": 0.0,
        "target_modules": targets,
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
        "modules_to_save": None,
        "use_rslora": False,
        "use_dora": False,
    }


def write_adapter(
    base: Path,
    out: Path,
    *,
    targets: list[str],
    rank: int = 8,
    alpha: int = 16,
    seed: int = 0,
) -> None:
    """Write the adapter for checkpoint ``base`` into ``out`` (created if missing)."""
    config = json.loads((base / "config.json").read_text())
    if config.get("model_type") != "llama":
        raise SystemExit(f"make_lora_adapter: {base} is not a Llama checkpoint")
    tensors = adapter_tensors(config, targets, rank, seed)
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / "adapter_model.safetensors"), metadata={"format": "pt"})
    document = adapter_config(base.resolve(), targets, rank, alpha)
    (out / "adapter_config.json").write_text(json.dumps(document, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("base", type=Path, help="the base checkpoint (with config.json)")
    parser.add_argument("out", type=Path, help="the adapter directory to write")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--alpha", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--target-modules", nargs="+", default=["q_proj", "v_proj"], metavar="MODULE"
    )
    args = parser.parse_args()
    write_adapter(
        args.base,
        args.out,
        targets=args.target_modules,
        rank=args.rank,
        alpha=args.alpha,
        seed=args.seed,
    )
    print(f"wrote a rank-{args.rank} LoRA adapter for {args.base} to {args.out}")


if __name__ == "__main__":
    main()
