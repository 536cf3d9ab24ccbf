"""Flow control's pure policy: when a pool is saturated, and who waits or is shed.

:mod:`~pilothouse.scheduling.flow.saturation` decides saturation from endpoint snapshots;
:mod:`~pilothouse.scheduling.flow.queue` orders and bounds the waiting requests. Neither
reads a clock nor does I/O; the routing pipeline's waiting primitive
(:mod:`pilothouse.routing.waiting`) drives them. See ``docs/flow-control.md``.
"""

from pilothouse.scheduling.flow.queue import (
    EVICTED,
    QUEUE_FULL,
    TIMED_OUT,
    FlowItem,
    FlowQueue,
    Shed,
)
from pilothouse.scheduling.flow.saturation import (
    SaturationLimits,
    headroom,
    replica_headroom,
    saturated,
)

__all__ = [
    "EVICTED",
    "QUEUE_FULL",
    "TIMED_OUT",
    "FlowItem",
    "FlowQueue",
    "SaturationLimits",
    "Shed",
    "headroom",
    "replica_headroom",
    "saturated",
]
