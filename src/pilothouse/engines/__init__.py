"""Engine-kind adapters (what each engine exposes, how to start and render it).

``engine_kind(name)`` answers every question that depends on the engine kind; see
:mod:`pilothouse.engines.kind` for the adapter and :mod:`pilothouse.engines.kinds` for one
module per kind.
"""

from pilothouse.engines.kind import EngineKind, LoraSupport, MetricNames, PodContext, PodHints
from pilothouse.engines.registry import ENGINE_KINDS, engine_kind, is_known, lora_support

__all__ = [
    "ENGINE_KINDS",
    "EngineKind",
    "LoraSupport",
    "MetricNames",
    "PodContext",
    "PodHints",
    "engine_kind",
    "is_known",
    "lora_support",
]
