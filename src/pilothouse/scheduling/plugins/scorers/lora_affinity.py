"""``lora-affinity`` scorer: send a LoRA request where its adapter is, or can be, loaded.

Reads what the engine reports in ``vllm:lora_requests_info`` (``EndpointMetrics``:
``running_loras``, ``waiting_loras``, ``max_loras``) for the request's adapter
(``SchedulingRequest.lora``):

====================  =====  ============================================================
adapter state          score  why
====================  =====  ============================================================
running                1.0    already in the batch: joins it with no load and no wait
free slot              0.75   fewer than ``max_loras`` adapters run: loads it this step
                              (tens of milliseconds)
waiting                0.5    every slot is taken, but the adapter is already queued there:
                              it will batch with those requests once a slot drains
none                   0.0    every slot is taken by other adapters and this one is not
                              queued: waits for a slot, then loads it
====================  =====  ============================================================

The tiers are checked in that order, so an endpoint with a free slot scores 0.75 whether
or not the adapter also waits there. An endpoint that reports no LoRA information at all
(``max_loras`` unknown: vLLM publishes the series only once an adapter has been loaded)
counts as having a free slot. Requests without an adapter score 1.0 everywhere: neutral.

Use it with load scorers and a saturation filter: it says nothing about how busy the
endpoint with the adapter is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pilothouse.scheduling.context import PluginContext
from pilothouse.scheduling.interfaces import CycleState
from pilothouse.scheduling.plugins.base import NamedPlugin, NoParameters
from pilothouse.scheduling.types import Endpoint, EndpointMetrics, SchedulingRequest
from pilothouse.scheduling.validation import parse_parameters

RUNNING = 1.0
FREE_SLOT = 0.75
WAITING = 0.5
NONE = 0.0


def adapter_affinity(metrics: EndpointMetrics, lora: str) -> float:
    """The score of one endpoint for adapter ``lora`` (see the module docstring)."""
    running = metrics.running_loras
    if lora in running:
        return RUNNING
    if metrics.max_loras is None or len(running) < metrics.max_loras:
        return FREE_SLOT
    if lora in metrics.waiting_loras:
        return WAITING
    return NONE


class LoraAffinityScorer(NamedPlugin):
    __slots__ = ()

    @classmethod
    def create(
        cls, name: str, parameters: Mapping[str, object], ctx: PluginContext
    ) -> LoraAffinityScorer:
        parse_parameters(NoParameters, parameters)
        return cls(name)

    def score(
        self, state: CycleState, request: SchedulingRequest, endpoints: Sequence[Endpoint]
    ) -> Sequence[float]:
        lora = request.lora
        if lora is None:
            return [1.0] * len(endpoints)
        return [adapter_affinity(e.metrics, lora) for e in endpoints]
