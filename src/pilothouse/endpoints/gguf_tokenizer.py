"""A Hugging Face tokenizer from a GGUF file's metadata, without network, torch or ``gguf``.

A GGUF file carries its model's tokenizer (``tokenizer.ggml.*``: vocabulary, BPE merges,
token types, special token ids) and chat template (``tokenizer.chat_template``). The
embedded SmolLM2 ships only as a GGUF, so this is how a machine without a converted
checkpoint gets the model's real tokenizer: :func:`save_gguf_tokenizer` writes a directory
that :class:`pilothouse.endpoints.tokenizers.HFPromptTokenizer` loads (``tokenizer.json`` +
``tokenizer_config.json``), built as transformers' own GGUF converter builds a ``gpt2``-type
tokenizer (byte-level BPE; control tokens become special added tokens), plus the digit
splitting of SmolLM2's ``smollm`` pre-tokenizer. Only ``gpt2`` (byte-level BPE) vocabularies
are supported: anything else is a :class:`ConfigError`.

The reader parses the GGUF header and metadata only (format v2/v3, little-endian); tensor
data is never read.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from pilothouse.errors import ConfigError

_MAGIC = b"GGUF"
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q",
            11: "<q", 12: "<d"}  # fmt: skip
_STRING, _ARRAY = 8, 9
_CONTROL = 3  # llama.cpp's token type of special (control) tokens


def read_metadata(path: Path, prefix: str = "tokenizer.") -> dict[str, Any]:
    """The GGUF metadata entries whose key starts with ``prefix`` (others are skipped)."""
    try:
        with path.open("rb") as f:
            if f.read(4) != _MAGIC:
                raise ConfigError(f"{path} is not a GGUF file")
            version, _tensors, entries = struct.unpack("<IQQ", f.read(20))
            if version < 2:
                raise ConfigError(f"{path}: GGUF version {version} is not supported")
            found: dict[str, Any] = {}
            for _ in range(entries):
                key = _string(f)
                kind = _u32(f)
                value = _value(f, kind, keep=key.startswith(prefix))
                if key.startswith(prefix):
                    found[key] = value
            return found
    except (OSError, struct.error, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the GGUF metadata of {path}: {exc}") from exc


def _u32(f: BinaryIO) -> int:
    return int(struct.unpack("<I", f.read(4))[0])


def _string(f: BinaryIO) -> str:
    (length,) = struct.unpack("<Q", f.read(8))
    return f.read(length).decode("utf-8")


def _value(f: BinaryIO, kind: int, keep: bool) -> Any:
    if kind in _SCALARS:
        fmt = _SCALARS[kind]
        return struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]
    if kind == _STRING:
        return _string(f)
    if kind != _ARRAY:
        raise struct.error(f"unknown GGUF value type {kind}")
    item, count = struct.unpack("<IQ", f.read(12))
    if item in _SCALARS and not keep:  # skip fixed-size arrays without decoding them
        f.seek(count * struct.calcsize(_SCALARS[item]), 1)
        return None
    read: Callable[[], Any] = lambda: _value(f, item, keep)  # noqa: E731
    return [read() for _ in range(count)]


def save_gguf_tokenizer(gguf: Path, out: Path) -> Path:
    """Write the tokenizer of ``gguf`` to directory ``out`` (``save_pretrained``); returns it."""
    meta = read_metadata(gguf)
    if meta.get("tokenizer.ggml.model") != "gpt2":
        raise ConfigError(f"{gguf}: only byte-level BPE ('gpt2') GGUF tokenizers are supported")
    try:
        from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
        from transformers import PreTrainedTokenizerFast
    except ImportError as exc:
        raise ConfigError(
            "GGUF tokenizers need the 'hf' extra: pip install 'pilothouse[hf]'"
        ) from exc
    tokens: list[str] = meta["tokenizer.ggml.tokens"]
    merges = [tuple(m.split(" ", 1)) for m in meta.get("tokenizer.ggml.merges", [])]
    bpe = models.BPE({t: i for i, t in enumerate(tokens)}, merges, fuse_unk=False)
    backend = Tokenizer(bpe)
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    if meta.get("tokenizer.ggml.pre") == "smollm":  # SmolLM2 splits digits one by one
        backend.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), byte_level]
        )
    else:
        backend.pre_tokenizer = byte_level
    backend.decoder = decoders.ByteLevel()
    types: list[int] = meta.get("tokenizer.ggml.token_type") or []
    special = [t for t, kind in zip(tokens, types, strict=False) if kind == _CONTROL]
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in special])

    def named(key: str) -> str | None:
        index = meta.get(f"tokenizer.ggml.{key}_token_id")
        return None if index is None else tokens[index]

    fast = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=backend,
        bos_token=named("bos"),
        eos_token=named("eos"),
        unk_token=named("unknown"),
        pad_token=named("padding"),
        chat_template=meta.get("tokenizer.chat_template"),
    )
    fast.save_pretrained(out)
    return out
