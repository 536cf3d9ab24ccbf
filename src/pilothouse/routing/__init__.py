"""The one request pipeline shared by the gateway, the endpoint picker and the simulator.

resolve the name (traffic split, LoRA adapter) → hold / admit / shed → schedule → lifecycle
(``started``, ``first_token``, ``finished``, ``cancelled``). See
:mod:`pilothouse.routing.pipeline`.
"""

from pilothouse.routing.adapters import AdapterPlan, AdapterRegistry, DeclaredAdapter
from pilothouse.routing.decision import DEFER, HOLD, QUEUE, Decision, Pick, Route, Ticket, Wait
from pilothouse.routing.pipeline import RoutingPipeline
from pilothouse.routing.pool import PoolState, RequestPreparer
from pilothouse.routing.request import (
    PRIORITY_HEADERS,
    TENANT_HEADERS,
    HeaderLookup,
    request_priority,
    request_tenant,
    scheduling_request,
    with_adapter,
)
from pilothouse.routing.traffic import TrafficSplitter, with_fields, with_model

__all__ = [
    "DEFER",
    "HOLD",
    "PRIORITY_HEADERS",
    "QUEUE",
    "TENANT_HEADERS",
    "AdapterPlan",
    "AdapterRegistry",
    "Decision",
    "DeclaredAdapter",
    "HeaderLookup",
    "Pick",
    "PoolState",
    "RequestPreparer",
    "Route",
    "RoutingPipeline",
    "Ticket",
    "TrafficSplitter",
    "Wait",
    "request_priority",
    "request_tenant",
    "scheduling_request",
    "with_adapter",
    "with_fields",
    "with_model",
]
