"""The one request path: resolve the name → hold / admit / shed → schedule → lifecycle.

The standalone gateway, the endpoint picker and the simulator all drive a request through
a :class:`RoutingPipeline`; only the transport around it differs::

    ticket = pipeline.open(request, session)       # traffic split, LoRA adapter → base
    await pipeline.admit(ticket, credentials, ask) # identity, scope, limits, budgets
    route = await pipeline.route(ticket)           # decide(), waiting while it says Wait
    pipeline.started(ticket, route)                # counted in flight on the endpoint
    pipeline.first_token(ticket)                   # its prefill left the backlog
    pipeline.finished(ticket)  or  pipeline.cancelled(ticket)
    pipeline.charge(ticket, used)                  # before the answer's last bytes: ledger

With a :class:`~pilothouse.governance.governor.Governor`, :meth:`RoutingPipeline.admit`
authenticates the request and reserves its limits and budgets before anything else; the
identity becomes the request's tenant (its team: the flow-control fairness id) and caps its
priority. :meth:`RoutingPipeline.charge` writes the request's usage to the ledger
synchronously, so a front door calls it before the last bytes of the answer go out: a
response a client received whole is always in the ledger, even if the process dies next.
A request that never reached an engine is released by :meth:`RoutingPipeline.cancelled`.

:meth:`RoutingPipeline.decide` is synchronous and reads time only from the injected clock,
so the discrete-event simulator calls it in virtual time and handles ``Wait`` itself;
the async front doors use :meth:`RoutingPipeline.route`, whose waiting is the one
primitive of :mod:`pilothouse.routing.waiting`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import replace

from pilothouse.clock import Clock
from pilothouse.config.fleet import FlowControlSpec, HoldSpec
from pilothouse.errors import NoEndpointAvailable
from pilothouse.governance.governor import Ask, Credentials, Governor, Used
from pilothouse.routing.adapters import AdapterRegistry
from pilothouse.routing.decision import DEFER, HOLD, QUEUE, Decision, Pick, Route, Ticket, Wait
from pilothouse.routing.latency import itl_observers, latency_observers, slo_defers, ttft_estimator
from pilothouse.routing.pool import PoolState, RequestPreparer
from pilothouse.routing.prefill_drain import PrefillDrain
from pilothouse.routing.request import with_adapter, with_owner
from pilothouse.routing.traffic import TrafficSplitter
from pilothouse.routing.waiting import Waiting
from pilothouse.routing.waits import defer_policy, hold_policy, queue_policy
from pilothouse.scheduling.flow import SaturationLimits, headroom
from pilothouse.scheduling.latency import ItlObserver, LatencyObserver, latency_features
from pilothouse.scheduling.scheduler import Scheduler
from pilothouse.scheduling.types import Endpoint, SchedulingRequest, SchedulingResult

log = logging.getLogger("pilothouse.routing")

Scheduled = Callable[[SchedulingRequest, SchedulingResult], None]
"""Told of every scheduling result (the web console's recent-decisions ring)."""

Demand = Callable[[str], None]
_ALL = 1 << 30  # "no limit" for the hold queue's room


class RoutingPipeline:
    """Routing state of one front door (see the module docstring)."""

    def __init__(
        self,
        pool: PoolState,
        scheduler: Scheduler,
        clock: Clock,
        *,
        flow: FlowControlSpec | None = None,
        hold: HoldSpec | None = None,
        adapters: AdapterRegistry | None = None,
        traffic: TrafficSplitter | None = None,
        pool_key: str | None = None,
        on_decision: Callable[[float], None] | None = None,
        recheck_s: float = 0.05,
        preparer: RequestPreparer | None = None,
        trust_priority_header: bool = False,
        governor: Governor | None = None,
        observers: Iterable[LatencyObserver | ItlObserver] = (),
    ) -> None:
        self.pool = pool
        self.scheduler = scheduler
        self.clock = clock
        self.flow = flow or FlowControlSpec()
        self.adapters = adapters or AdapterRegistry()
        self.traffic = traffic or TrafficSplitter()
        self.objectives: dict[str, int] = dict(self.flow.objectives)
        self.trust_priority_header = trust_priority_header
        """Numeric priority headers are honoured (objective names always are)."""
        self._pool_key = pool_key
        self._on_decision = on_decision
        self.on_scheduled: Scheduled | None = None
        """Set by a front door that shows recent decisions (None: nothing is recorded)."""
        self.preparer = preparer
        self.governor = governor
        self._settling: set[asyncio.Task[None]] = set()
        observers = tuple(observers)
        self._observers = latency_observers(scheduler, observers)
        self._itl_observers = itl_observers(scheduler, observers)
        estimator = ttft_estimator(self._observers)
        self._drain = PrefillDrain(estimator) if estimator is not None else None
        saturation = self.flow.saturation
        self._limits = SaturationLimits(
            saturation.max_in_flight_per_replica,
            saturation.max_waiting,
            saturation.max_kv_cache_usage,
        )
        self._granted: dict[str, int] = {}
        self._redeciding: set[str] = set()  # models whose deferred requests are released now
        self._hold_models: frozenset[str] = frozenset()
        self._on_demand: Demand | None = None
        hold = hold or HoldSpec()
        self.waiting = Waiting(
            clock,
            {
                HOLD: hold_policy(hold, self._has_ready),
                QUEUE: queue_policy(self.flow, self._room, self._grant, self._ungrant),
                DEFER: defer_policy(self.flow, self._redecide),
            },
            recheck_s,
        )

    # -- names ---------------------------------------------------------------------------

    def hold_for(self, models: Iterable[str], on_demand: Demand) -> None:
        """Hold requests for ``models`` while none of their replicas is ready, and call
        ``on_demand(model)`` when one is held (the executor starts a replica)."""
        self._hold_models = frozenset(models)
        self._on_demand = on_demand

    def set_hold_models(self, models: Iterable[str]) -> None:
        self._hold_models = frozenset(models)

    def hold_models(self) -> frozenset[str]:
        return self._hold_models

    def holds(self, model: str) -> bool:
        return self._on_demand is not None and model in self._hold_models

    def held(self, model: str) -> int:
        """Requests of ``model`` held for a first ready replica now."""
        return self.waiting.queued(HOLD, model)

    def queued(self, model: str) -> int:
        """Requests of ``model`` queued by flow control now."""
        return self.waiting.queued(QUEUE, model)

    def serves(self, model: str) -> bool:
        """True for a model with replicas (or that can be started), an adapter or a split."""
        if self._pool_key is not None:
            return True
        return (
            self.pool.has_model(model)
            or self.holds(model)
            or self.adapters.base_of(model) is not None
            or self.traffic.is_public(model)
        )

    def open(self, request: SchedulingRequest, session: str | None = None) -> Ticket:
        """A ticket for ``request``: a split's public name becomes one of its versions
        (sticky per ``session``), an adapter's name is scheduled over its base model."""
        public = None
        if self.traffic.is_public(request.model):
            public = request.model
            request = replace(request, model=self.traffic.choose(public, session))
        if self._pool_key is None and not self.pool.has_model(request.model):
            base = self.adapters.base_of(request.model)
            if base is not None:
                request = replace(request, model=base, lora=request.model)
        return Ticket(request, public_model=public)

    # -- governance ----------------------------------------------------------------------

    async def admit(self, ticket: Ticket, credentials: Credentials, ask: Ask) -> None:
        """Authenticate and reserve (401 / 403 / 429 before any engine work); the identity
        becomes the request's tenant and caps its priority. A no-op without a governor."""
        governor = self.governor
        if governor is None:
            return
        identity = governor.authenticate(credentials)
        grant = await governor.admit(identity, ask, credentials.client)
        ticket.grant = grant
        tenant = identity.team_name or ticket.request.tenant
        ticket.request = with_owner(ticket.request, tenant, grant.priority)

    def charge(self, ticket: Ticket, used: Used) -> None:
        """The request was served (whole or in part): charge ``used`` and record it in the
        ledger now; limits and budgets are settled right after, off this call."""
        grant = ticket.grant
        if grant is None or grant.done or self.governor is None:
            return
        measured_s = 0.0  # engine time on the pipeline's clock, from the first send
        if used.engine_s is None and grant.routed is not None:
            measured_s = self.clock.now() - grant.routed
        settle = self.governor.charge(grant, used, measured_s)
        if settle is not None:  # a shared store (Redis): settled off this call
            self._track(settle)

    def _release(self, ticket: Ticket) -> None:
        grant = ticket.grant
        if grant is None or grant.done or self.governor is None:
            return
        self._track(self.governor.release(grant))

    def _track(self, settle: Coroutine[None, None, None] | None) -> None:
        if settle is None:
            return
        task = asyncio.get_running_loop().create_task(settle)
        self._settling.add(task)
        task.add_done_callback(self._settled)

    def _settled(self, task: asyncio.Task[None]) -> None:
        self._settling.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("settling a request's limits and budgets failed: %s", task.exception())

    async def drain_settling(self) -> None:
        """Wait for settlements still running (at shutdown)."""
        if self._settling:
            await asyncio.gather(*self._settling, return_exceptions=True)

    # -- the decision --------------------------------------------------------------------

    def decide(self, ticket: Ticket, only: frozenset[str] | None = None) -> Decision:
        """Route, or wait; raises :class:`NoEndpointAvailable` when nothing can serve it.

        ``only`` narrows the candidates to those addresses (a data plane's subset hint).
        """
        request = ticket.request
        key = self._key(ticket)
        first = not ticket.tried
        ready = self.pool.candidates(key, frozenset(ticket.tried))
        candidates = ready
        if not candidates and first and self.holds(key):
            assert self._on_demand is not None
            self._on_demand(key)
            return Wait(HOLD, key)
        load = None
        if request.lora is not None and self._pool_key is None:
            plan = self.adapters.plan(request.lora, candidates)
            candidates = [e for e in candidates if plan.only is None or e.address in plan.only]
            load = plan.load
        if only is not None:
            candidates = [e for e in candidates if e.address in only]
        if not candidates:
            raise NoEndpointAvailable(f"no ready replica of model '{request.model}'")
        if self.flow.enabled and first and not ticket.admitted and self._must_queue(key, ready):
            return Wait(QUEUE, key)
        if self._drain is not None:  # the predictor's estimate of each prefill queue
            candidates = self._drain.annotate(candidates, self.clock.now())
        if ticket.trace is not None:
            route = Route(self._traced(ticket, candidates), load)
        else:
            route = Route(self._schedule(request, candidates), load)
        if first and slo_defers(self.flow, ticket, route.pick, self.clock.now()):
            return Wait(DEFER, key)
        return route

    async def route(self, ticket: Ticket, only: frozenset[str] | None = None) -> Route:
        """:meth:`decide`, waiting as long as it says ``Wait`` (shed errors propagate).

        The first time, the preparer (the prompt tokenizer) completes the request off the
        event loop: the decision itself never tokenizes.
        """
        if self.preparer is not None and not ticket.prepared:
            ticket.request = await self.preparer.prepare(ticket.request)
            ticket.prepared = True
        while True:
            decision = self.decide(ticket, only)
            if isinstance(decision, Route):
                return decision
            if ticket.trace is None:
                await self.waiting.wait(ticket, decision.kind, decision.model)
                continue
            since = self.clock.now()
            try:
                await self.waiting.wait(ticket, decision.kind, decision.model)
            finally:
                ticket.trace.waited(self.clock.now() - since)

    def _schedule(self, request: SchedulingRequest, candidates: list[Endpoint]) -> Pick:
        started = time.perf_counter() if self._on_decision is not None else 0.0
        result = self.scheduler.schedule(with_adapter(request, candidates), candidates)
        if self._on_decision is not None:
            self._on_decision(time.perf_counter() - started)
        if self.on_scheduled is not None:
            self.on_scheduled(request, result)
        return _pick(result)

    def _traced(self, ticket: Ticket, candidates: list[Endpoint]) -> Pick:
        """:meth:`_schedule` for a traced request: the decision goes on its span (each
        scorer's values too when the span wants the detail)."""
        trace = ticket.trace
        assert trace is not None
        request = with_adapter(ticket.request, candidates)
        started = time.perf_counter()
        if trace.detail:
            result, explanation = self.scheduler.explained(request, candidates)
        else:
            result, explanation = self.scheduler.schedule(request, candidates), None
        if self._on_decision is not None:
            self._on_decision(time.perf_counter() - started)
        trace.scheduled(result, explanation, len(candidates), request)
        if self.on_scheduled is not None:
            self.on_scheduled(ticket.request, result)
        return _pick(result)

    def _must_queue(self, model: str, ready: list[Endpoint]) -> bool:
        """``ready``: the model's ready replicas, already snapshotted by the decision."""
        room = headroom(ready, self._limits) - self._granted.get(model, 0)
        return room <= 0 or self.waiting.waiting(QUEUE, model)

    # -- the lifecycle -------------------------------------------------------------------

    def started(self, ticket: Ticket, pick: Pick) -> None:
        """Count the request in flight on ``pick.endpoint`` with its prefill backlog."""
        if ticket.endpoint is not None:
            self.finished(ticket)
        request = ticket.request
        tokens = request.prompt_tokens if pick.uncached_tokens is None else pick.uncached_tokens
        ticket.endpoint, ticket.backlog = pick.endpoint, tokens
        if self._observers or self._itl_observers:  # what latency predictors see of it
            latency = pick.latency_uncached_tokens
            self._features(ticket, pick.endpoint, tokens if latency is None else latency)
        if ticket.grant is not None and ticket.grant.routed is None:
            ticket.grant.routed = self.clock.now()
        ticket.tried.add(pick.endpoint.name)
        ticket.last_endpoint = pick.endpoint.name
        if ticket.trace is not None:
            ticket.trace.sent(pick.endpoint)
        self.pool.acquire(pick.endpoint.name, tokens)
        if ticket.admitted:  # its grant becomes an in-flight count: nothing to wake
            ticket.admitted = False
            self._ungrant(ticket, wake=False)

    def _features(self, ticket: Ticket, endpoint: Endpoint, uncached_tokens: int) -> None:
        """Snapshot what latency observers will be told of this placement; its service time
        joins the endpoint's prefill queue."""
        now = self.clock.now()
        drain = self._drain
        if drain is not None:  # as of now (a moved request's snapshot has no wait on it)
            endpoint = drain.annotate((endpoint,), now)[0]
        features = latency_features(endpoint, uncached_tokens, ticket.request.prompt_tokens)
        ticket.features, ticket.placed_at, ticket.first_token_at = features, now, None
        if drain is not None:
            drain.placed(ticket, endpoint.name, features, now)

    def moved(self, ticket: Ticket, endpoint: Endpoint) -> None:
        """The data plane sent the request elsewhere (its own retry): follow it."""
        self.started(ticket, Pick(endpoint, (), {}, ticket.backlog))

    def first_token(self, ticket: Ticket) -> None:
        """The first byte of the answer arrived: the replica has prefilled the prompt."""
        if ticket.endpoint is not None and ticket.backlog is not None:
            self.pool.prefilled(ticket.endpoint.name, ticket.backlog)
            ticket.backlog = None
            if self._drain is not None:
                self._drain.done(ticket, ticket.endpoint.name, self.clock.now())
        features, placed = ticket.features, ticket.placed_at
        if ticket.endpoint is None or features is None or placed is None:
            return
        if ticket.first_token_at is None:  # told once per placement
            ticket.first_token_at = now = self.clock.now()
            for observer in self._observers:
                observer.observe_ttft(ticket.endpoint.name, features, now - placed)

    def finished(self, ticket: Ticket, output_tokens: int | None = None) -> None:
        """The request (or this attempt of it) ended: its replica has room again.

        ``output_tokens``, when the front door knows how many tokens it streamed, gives the
        request's mean inter-token latency to the ITL observers.
        """
        endpoint = ticket.endpoint
        if endpoint is None:
            return
        features, first = ticket.features, ticket.first_token_at
        if features is not None and first is not None and output_tokens and output_tokens > 1:
            itl = (self.clock.now() - first) / (output_tokens - 1)
            for observer in self._itl_observers:
                observer.observe_itl(endpoint.name, features, itl)
        ticket.features = None
        if self._drain is not None and ticket.backlog is not None:  # no first token there
            self._drain.done(ticket, endpoint.name, self.clock.now())
        self.pool.release(endpoint.name, ticket.backlog)
        ticket.endpoint, ticket.backlog = None, None
        model = self._key(ticket)
        self.waiting.wake(QUEUE, model)
        if self.waiting.waiting(DEFER, model):  # load went down: decide the deferred again
            self._redeciding.add(model)
            try:
                self.waiting.wake(DEFER, model)
            finally:
                self._redeciding.discard(model)

    def cancelled(self, ticket: Ticket) -> None:
        """The request ended without being charged (the client went away, it failed, or
        it was never served): whatever it holds is given back."""
        self._release(ticket)
        if ticket.admitted:
            ticket.admitted = False
            self._ungrant(ticket)
        self.finished(ticket)

    # -- flow-control bookkeeping --------------------------------------------------------

    def _has_ready(self, model: str) -> int:
        """Held requests are all released once the model has a ready replica."""
        return _ALL if self.pool.candidates(model) else 0

    def _redecide(self, model: str) -> int:
        """Deferred requests are all released when a request of their model finishes."""
        return _ALL if model in self._redeciding else 0

    def _room(self, model: str) -> int:
        return headroom(self.pool.candidates(model), self._limits) - self._granted.get(model, 0)

    def _key(self, ticket: Ticket) -> str:
        """The pool key a ticket is scheduled and queued under (the picker has one)."""
        return self._pool_key or ticket.request.model

    def _grant(self, ticket: Ticket) -> None:
        model = self._key(ticket)
        self._granted[model] = self._granted.get(model, 0) + 1
        ticket.admitted = True

    def _ungrant(self, ticket: Ticket, wake: bool = True) -> None:
        model = self._key(ticket)
        self._granted[model] = max(0, self._granted.get(model, 0) - 1)
        if wake:
            self.waiting.wake(QUEUE, model)


def _pick(result: SchedulingResult) -> Pick:
    return Pick(
        result.target,
        result.fallbacks,
        dict(result.headers),
        result.uncached_tokens,
        result.ttft_estimate,
        result.latency_uncached_tokens,
    )
