"""The engine kinds pilothouse knows, by name: the one place that lists them.

Adding a kind is one module in :mod:`pilothouse.engines.kinds` and one entry in
:data:`ENGINE_KINDS` (and its name in the Fleet schema, ``config.fleet.EngineName``);
see ``docs/engines.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from pilothouse.engines.kind import EngineKind, LoraSupport
from pilothouse.engines.kinds.llamacpp import LLAMACPP
from pilothouse.engines.kinds.openai import OPENAI
from pilothouse.engines.kinds.sglang import SGLANG
from pilothouse.engines.kinds.sim import SIM
from pilothouse.engines.kinds.vllm import VLLM
from pilothouse.errors import ConfigError

ENGINE_KINDS: Mapping[str, EngineKind] = MappingProxyType(
    {kind.name: kind for kind in (VLLM, SIM, SGLANG, LLAMACPP, OPENAI)}
)


def engine_kind(name: str) -> EngineKind:
    """The adapter of engine kind ``name``; :class:`ConfigError` listing the known ones."""
    try:
        return ENGINE_KINDS[name]
    except KeyError:
        known = ", ".join(sorted(ENGINE_KINDS))
        raise ConfigError(f"unknown engine '{name}' (known: {known})") from None


def is_known(name: str) -> bool:
    return name in ENGINE_KINDS


def lora_support(name: str) -> LoraSupport | None:
    """How kind ``name`` serves LoRA adapters; ``None`` if it does not, or is unknown."""
    kind = ENGINE_KINDS.get(name)
    return None if kind is None else kind.lora


def rendered_kinds() -> tuple[str, ...]:
    """The kinds ``pilothouse render k8s`` writes a model server for."""
    return tuple(name for name, kind in ENGINE_KINDS.items() if kind.pod is not None)


def builtin_tokenizer_kinds() -> frozenset[str]:
    """The kinds whose prompts pilothouse's dummy tokenizer tokenizes as they do."""
    return frozenset(name for name, kind in ENGINE_KINDS.items() if kind.builtin_tokenizer)
