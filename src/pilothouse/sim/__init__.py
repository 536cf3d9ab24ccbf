"""Simulation: calibrated engine models in virtual time (and, later, the cluster simulator).

The engine model is pure and clock-free: the caller passes ``now`` explicitly, so the same
objects run inside a discrete-event simulation or behind the wall-clock simulator server
(:mod:`pilothouse.servers.sim`).
"""

from pilothouse.sim.config import EngineConfig, EngineOverrides, LatencyModel, apply_overrides
from pilothouse.sim.engine_model import EngineModel
from pilothouse.sim.hashing import block_hash, chain_block_hashes
from pilothouse.sim.kv_cache import KVBlockPool
from pilothouse.sim.presets import DEFAULT_PRESET, PRESETS, get_preset
from pilothouse.sim.stepping import EngineStats
from pilothouse.sim.types import (
    AllBlocksClearedEvent,
    BlocksRemoved,
    BlocksStored,
    EngineRequest,
    FinishedRequest,
    KVEvent,
    StepResult,
)

__all__ = [
    "DEFAULT_PRESET",
    "PRESETS",
    "AllBlocksClearedEvent",
    "BlocksRemoved",
    "BlocksStored",
    "EngineConfig",
    "EngineModel",
    "EngineOverrides",
    "EngineRequest",
    "EngineStats",
    "FinishedRequest",
    "KVBlockPool",
    "KVEvent",
    "LatencyModel",
    "StepResult",
    "apply_overrides",
    "block_hash",
    "chain_block_hashes",
    "get_preset",
]
