"""What the pipeline decides for one request, and the ticket that carries it to the end.

:meth:`RoutingPipeline.decide <pilothouse.routing.pipeline.RoutingPipeline.decide>` answers
one of two things, synchronously, from the current snapshots:

- :class:`Route`: send the request to ``pick.endpoint`` (after loading ``load`` there);
- :class:`Wait`: not now: the model has no ready replica but one can be started
  (``HOLD``), every replica is saturated and flow control queues it (``QUEUE``), or flow
  control's SLO gate predicts it would miss its TTFT target anywhere (``DEFER``).

It raises :class:`~pilothouse.errors.NoEndpointAvailable` (503) when nothing can serve the
request. Shedding (429, or 503 for a full hold queue) happens while waiting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from pilothouse.governance.governor import Grant
from pilothouse.routing.adapters import DeclaredAdapter
from pilothouse.scheduling.latency import LatencyFeatures
from pilothouse.scheduling.types import Endpoint, SchedulingRequest, TtftEstimate
from pilothouse.values import value

if TYPE_CHECKING:  # the OpenTelemetry SDK is imported only when tracing is configured
    from pilothouse.telemetry.request import RequestTrace

HOLD: Literal["hold"] = "hold"
QUEUE: Literal["queue"] = "queue"
DEFER: Literal["defer"] = "defer"
WaitKind = Literal["hold", "queue", "defer"]


@value
class Pick:
    """Where a request goes, and the headers the scheduler wants sent with it."""

    endpoint: Endpoint
    fallbacks: tuple[Endpoint, ...]
    headers: dict[str, str]
    uncached_tokens: int | None = None
    ttft_estimate: TtftEstimate | None = None
    latency_uncached_tokens: int | None = None
    """What latency predictors take as uncached, when the scheduler estimated it apart."""


@value
class Route:
    """Send the request to ``pick.endpoint``; load adapter ``load`` there first if set."""

    pick: Pick
    load: DeclaredAdapter | None = None


@value
class Wait:
    """Not now: wait for a replica to start (``hold``), for room (``queue``), or for a
    request to finish before deciding again (``defer``)."""

    kind: WaitKind
    model: str


Decision = Route | Wait


@dataclass(slots=True, eq=False)
class Ticket:
    """One request's passage through the pipeline, from arrival to its end.

    ``request`` is the resolved request (model = what is scheduled, ``lora`` set for an
    adapter). While ``endpoint`` is set the request counts in flight there; ``backlog`` is
    its prefill still counted in that endpoint's backlog (``None`` once prefilled).
    """

    request: SchedulingRequest
    public_model: str | None = None
    """The traffic split's public name when the request named one."""
    prepared: bool = False
    """The preparer (prompt tokenizer) has completed ``request``."""
    admitted: bool = False
    """Dispatched by flow control: it may be scheduled without queueing again."""
    endpoint: Endpoint | None = None
    backlog: int | None = None
    waiting: str | None = None
    """The key of its entry in a wait queue while it waits."""
    tried: set[str] = field(default_factory=set)
    """Endpoints already tried (a retry goes elsewhere)."""
    last_endpoint: str | None = None
    """The endpoint it was last sent to (kept after it ends, for the access log)."""
    grant: Grant | None = None
    """Its governance holds (limits, budgets) until charged or released."""
    trace: RequestTrace | None = None
    """Its span, when tracing is configured (the front door opens and ends it)."""
    features: LatencyFeatures | None = None
    """What latency observers are told of its placement, until it finishes."""
    placed_at: float | None = None
    """When it was last placed on an endpoint (the pipeline's clock)."""
    first_token_at: float | None = None
    """When its first token arrived on the current placement (the pipeline's clock)."""
    deferred_at: float | None = None
    """When flow control's SLO gate first deferred it."""
