"""The simulator engine: a vLLM-compatible HTTP server driven by :mod:`pilothouse.sim`.

Same OpenAI API, same ``vllm:*`` metric names, same KV-event wire format as vLLM, with
latency from a calibrated virtual-time engine model and optional fault injection.
"""

from pilothouse.kvevents import (
    AllBlocksCleared,
    BlockRemoved,
    BlockStored,
    KVEventBatch,
    decode_event_batch,
    encode_event_batch,
)
from pilothouse.servers.sim.runner import SimServer, serve
from pilothouse.servers.sim.script import Script, load_script
from pilothouse.servers.sim.server import create_sim_app
from pilothouse.servers.sim.settings import FaultSettings, KVEventSettings, SimSettings

__all__ = [
    "AllBlocksCleared",
    "BlockRemoved",
    "BlockStored",
    "FaultSettings",
    "KVEventBatch",
    "KVEventSettings",
    "Script",
    "SimServer",
    "SimSettings",
    "create_sim_app",
    "decode_event_batch",
    "encode_event_batch",
    "load_script",
    "serve",
]
