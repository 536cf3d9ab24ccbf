"""A discrete-event simulation of N engine replicas behind the real scheduler, in virtual time.

The gateway part is the very request pipeline the gateway and the endpoint picker run
(:class:`~pilothouse.routing.RoutingPipeline` over :class:`~pilothouse.sim.pool.SimPool`,
its scheduler built by :func:`build_scheduler` with a :class:`~pilothouse.clock.ManualClock`
that the loop sets to each event's time: ``decide`` at arrival, ``started`` /
``first_token`` / ``finished`` as the replica reports them); the
engines are :class:`~pilothouse.sim.engine_model.EngineModel` replicas. Two kinds of event
drive it (:mod:`pilothouse.sim.events`):

- **arrival**: the request is scheduled over the current endpoint snapshots, counted in
  flight on the chosen replica and added to its engine; a step in flight may end earlier
  (a fused decode step is cut), which reschedules that replica's step end;
- **step end**: the step is applied, finished requests leave (their follow-ups are
  released after their think time) and the replica's next step begins;
- **KV transfer**: a request prefilled on another replica (the scheduler returned
  ``x-prefiller-host-port``) reaches its decode replica (:mod:`pilothouse.sim.pd`);
- **scale**: with an autoscaling hook (``scaling``), its tick or a started replica becoming
  ready (:mod:`pilothouse.sim.autoscaling`); the hook then says which replicas the
  scheduler sees, and holds requests while none is ready.

Engine-reported metrics are scraped lazily: before an event at or after a scrape tick, the
replicas whose engine changed since the last scrape are read. No event happened between
the tick and that event, so this is exactly the state at the tick. Queue samples for
``max_queue_ratio`` are taken the same way. Work per event is O(1) in the replica count
except the scheduling cycle itself (its plugins look at every endpoint) and the periodic
scrape and sample. No wall clock, sets or unseeded randomness: a seed fixes the run.

Requests come from any iterable of :class:`SimRequest` in arrival order; it is consumed
lazily, one independent arrival ahead. A follow-up (``after`` set) must come after its
parent and before the next independent request that arrives once that parent could have
finished (the built-in workloads put follow-ups right after their parent).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import cast

from pilothouse.clock import ManualClock
from pilothouse.engines.kinds.vllm import vllm_priority
from pilothouse.errors import NoEndpointAvailable
from pilothouse.routing import RoutingPipeline, Ticket, Wait
from pilothouse.scheduling import PluginRegistry, SchedulerConfig, build_scheduler
from pilothouse.scheduling.latency import ItlPredictor, LatencyPredictor
from pilothouse.scheduling.types import Endpoint, SchedulingRequest
from pilothouse.sim.autoscaling import ClusterHandles, ScalingConfig, SimScaling
from pilothouse.sim.cluster_types import ClusterConfig, RunResult, SimRequest
from pilothouse.sim.engine_model import EngineModel
from pilothouse.sim.events import ARRIVAL, KV_TRANSFER, SCALE, STEP_END, EventQueue
from pilothouse.sim.pd import Disaggregation, Handoff, receive_kv, role_labels
from pilothouse.sim.pool import SimPool
from pilothouse.sim.recorder import Progress, RunRecorder
from pilothouse.sim.replica import SimReplica
from pilothouse.sim.types import EngineRequest, FinishedRequest

_SEED_STRIDE = 1_000_003


class ClusterSimulator:
    """One run: build it, call :meth:`run` once."""

    def __init__(
        self,
        config: ClusterConfig,
        scheduler: SchedulerConfig,
        *,
        registry: PluginRegistry | None = None,
        progress: Progress | None = None,
        scaling: ScalingConfig | None = None,
    ) -> None:
        self._config = config
        self._clock = ManualClock()
        self._replicas = [self._replica(i) for i in range(config.replicas)]
        self._by_name = {r.name: r for r in self._replicas}
        self._endpoints = [r.endpoint for r in self._replicas]
        self._pd = Disaggregation(config, {r.endpoint.address: r.index for r in self._replicas})
        self._queue = EventQueue()
        self._recorder = RunRecorder(config.replicas, progress)
        self._in_flight: dict[str, SimRequest] = {}
        self._tickets: dict[str, Ticket] = {}  # the pipeline's tickets of requests in flight
        self._parked: dict[str, list[SimRequest]] = {}
        self._alive: set[str] = set()  # queued, parked or in flight (membership tests only)
        self._dirty: list[SimReplica] = []
        self._interval = config.scrape_interval_s
        self._next_scrape = self._interval if self._interval > 0 else math.inf
        self._next_sample = 0.0
        self._last_arrival = 0.0
        self._stream_done = False  # the workload sent its last independent request
        self._scaling: SimScaling | None = None
        if scaling is not None:
            handles = ClusterHandles(
                self._replicas, self._queue.push, self._queue.__len__, self._renew
            )
            self._scaling = SimScaling(scaling, handles)
        # Observes every request whatever the policy, to report the predictor's error.
        self._shadow = LatencyPredictor()
        self._itl_shadow = ItlPredictor()
        self._pipeline = _pipeline(
            config,
            scheduler,
            registry,
            self._clock,
            self._by_name,
            self._endpoints,
            self._scaling,
            (self._shadow, self._itl_shadow),
        )

    def _replica(self, index: int) -> SimReplica:
        config = self._config
        engine = EngineModel(
            config.engine,
            seed=config.seed * _SEED_STRIDE + index,
            max_fused_iterations=config.max_fused_iterations,
            record_kv_events=False,
        )
        width = len(str(config.replicas - 1))
        name = f"replica-{index:0{width}d}"
        return SimReplica(index, name, config.model, engine, role_labels(config, index))

    def _renew(self, index: int) -> None:
        """A fresh replica ``index`` (empty cache) for the autoscaling hook to start."""
        old, fresh = self._replicas[index], self._replica(index)
        fresh.version = old.version + 1  # stale step-end events of the old one never match
        if old.dirty:
            self._dirty.remove(old)
        self._replicas[index] = self._by_name[fresh.name] = fresh
        self._endpoints[index] = fresh.endpoint

    @property
    def replicas(self) -> list[SimReplica]:
        return self._replicas

    def run(self, requests: Iterable[SimRequest]) -> RunResult:
        """Simulate until every request has completed or failed."""
        stream = iter(requests)
        self._pull(stream)
        if self._scaling is not None:
            self._scaling.start(0.0)
        queue, clock, events = self._queue, self._clock, 0
        while queue:
            time, kind, _, ref, tag = queue.pop()
            if time >= self._next_scrape:
                self._scrape(time)
            if time >= self._next_sample:
                self._sample(time)
            clock.set(time)
            events += 1
            if kind == STEP_END:
                self._end_step(cast("int", ref), tag, time)
            elif kind == KV_TRANSFER:
                self._transferred(cast("Handoff", ref), time)
            elif kind == SCALE:
                assert self._scaling is not None
                for held in self._scaling.on_event(cast("int", ref), tag, time):
                    self._arrive(held, time)
            else:
                if tag:  # pull first: this request's follow-ups get parked before it can fail
                    self._pull(stream)
                self._arrive(cast("SimRequest", ref), time)
        self._sample(clock.now())
        result = replace(
            self._recorder.result(clock.now(), events),
            ttft_prediction=self._shadow.error,
            itl_prediction=self._itl_shadow.error,
        )
        if self._scaling is None:
            return result
        metrics = result.metrics
        scaling = self._scaling.result(clock.now(), metrics.completed + metrics.failed)
        return replace(result, scaling=scaling)

    # -- the workload stream -------------------------------------------------------------

    def _pull(self, stream: Iterator[SimRequest]) -> None:
        """Queue the next independent arrival; park the follow-ups met on the way."""
        for request in stream:
            if request.after is None:
                if request.arrival_s < self._last_arrival:
                    raise ValueError(
                        f"request {request.request_id!r} arrives at {request.arrival_s} s, "
                        f"before the previous one ({self._last_arrival} s): sort the workload"
                    )
                self._last_arrival = request.arrival_s
                self._alive.add(request.request_id)
                self._queue.push(request.arrival_s, ARRIVAL, request, 1)
                return
            if request.after not in self._alive:
                raise ValueError(
                    f"follow-up {request.request_id!r} names {request.after!r}, which is not "
                    "pending: put follow-ups right after their parent in the workload"
                )
            self._alive.add(request.request_id)
            self._parked.setdefault(request.after, []).append(request)
        self._stream_done = True

    def _release_followups(self, parent: str, now: float) -> None:
        for follow in self._parked.pop(parent, ()):
            self._queue.push(now + follow.arrival_s, ARRIVAL, follow, 0)

    def _fail(self, request: SimRequest) -> None:
        """Count a request as failed, and its follow-ups (their context never happened)."""
        self._alive.discard(request.request_id)
        self._recorder.failed()
        for follow in self._parked.pop(request.request_id, ()):
            self._fail(follow)

    # -- events --------------------------------------------------------------------------

    def _arrive(self, request: SimRequest, now: float) -> None:
        self._recorder.arrival(now)
        scheduling = SchedulingRequest(
            request_id=request.request_id,
            model=self._config.model,
            prompt=request.prompt,
            prompt_tokens=request.prompt_tokens,
            max_tokens=request.max_tokens,
            session_id=request.session_id,
            tenant=request.tenant,
            priority=request.priority,
        )
        if self._scaling is not None:
            self._scaling.arrived(now)
        ticket = self._pipeline.open(scheduling)
        try:
            decision = self._pipeline.decide(ticket)
        except NoEndpointAvailable:
            self._fail(request)
            return
        if isinstance(decision, Wait):  # no replica ready: held until one is
            assert self._scaling is not None
            self._scaling.hold(request, now)
            return
        pick = decision.pick
        replica = self._by_name[pick.endpoint.name]
        prefiller = self._pd.prefiller(pick.headers)
        try:
            if prefiller is None:
                replica.engine.add_request(_engine_request(request), now)
            else:
                self._prefill(request, self._replicas[prefiller], replica, now)
        except ValueError:  # too long for the model: the engine rejects it (HTTP 400)
            self._fail(request)
            return
        self._in_flight[request.request_id] = request
        self._tickets[request.request_id] = ticket
        self._pipeline.started(ticket, pick)
        self._touch(replica, now)
        self._reschedule(replica, now)

    def _prefill(
        self, request: SimRequest, prefill: SimReplica, decode: SimReplica, now: float
    ) -> None:
        """Start a disaggregated request's prefill leg (its decode leg waits for the KV)."""
        if request.prompt_tokens + request.max_tokens > decode.engine.config.max_model_len:
            raise ValueError(f"request {request.request_id!r} is too long for {decode.name}")
        prefill.engine.add_request(self._pd.start(request, decode.index, now), now)
        self._touch(prefill, now)
        self._reschedule(prefill, now)

    def _transferred(self, handoff: Handoff, now: float) -> None:
        """The prompt's KV cache reached the decode replica: its decode leg starts."""
        replica = self._replicas[handoff.decode]
        receive_kv(replica.engine, handoff.request.block_hashes)
        replica.engine.add_request(_engine_request(handoff.request), now)
        self._touch(replica, now)
        self._reschedule(replica, now)

    def _end_step(self, index: int, version: int, now: float) -> None:
        replica = self._replicas[index]
        if version != replica.version:
            return  # superseded: the step was cut and rescheduled
        result = replica.engine.finish_step()
        replica.step_end = None
        self._recorder.step(result)
        for request_id in result.first_tokens:
            ticket = self._tickets.get(request_id)
            if ticket is not None:
                self._pipeline.first_token(ticket)
        for done in result.finished:
            if self._pd.is_prefill(done.request_id):
                at, handoff = self._pd.prefilled(done, now)
                self._queue.push(at, KV_TRANSFER, handoff)
            else:
                self._complete(replica, done, now)
        if result.finished or result.first_tokens:
            self._endpoints[index] = replica.endpoint
        self._touch(replica, now)
        self._reschedule(replica, now)

    def _complete(self, replica: SimReplica, done: FinishedRequest, now: float) -> None:
        request = self._in_flight.pop(done.request_id)
        self._alive.discard(done.request_id)
        self._pipeline.finished(self._tickets.pop(done.request_id), done.completion_tokens)
        done = self._pd.finished(done)
        recorded = done if self._scaling is None else self._scaling.finished(done)
        self._recorder.finished(recorded, request.priority)
        self._release_followups(done.request_id, now)

    def _reschedule(self, replica: SimReplica, now: float) -> None:
        """Make sure the replica's next step end is queued (once, at its current time)."""
        engine = replica.engine
        end = engine.busy_until
        if end is None:
            end = engine.begin_step(now)
            if end is None:
                return
        elif end == replica.step_end:
            return
        replica.version += 1
        replica.step_end = end
        self._queue.push(end, STEP_END, replica.index, replica.version)

    # -- observation ---------------------------------------------------------------------

    def _touch(self, replica: SimReplica, now: float) -> None:
        if self._interval <= 0:
            replica.scrape(now)
            self._endpoints[replica.index] = replica.endpoint
        elif not replica.dirty:
            replica.dirty = True
            self._dirty.append(replica)

    def _scrape(self, now: float) -> None:
        tick = self._next_scrape
        for replica in self._dirty:
            replica.scrape(tick)
            self._endpoints[replica.index] = replica.endpoint
        self._dirty.clear()
        self._next_scrape = (math.floor(now / self._interval) + 1) * self._interval

    def _sample(self, now: float) -> None:
        period = self._config.queue_sample_s
        tick = min(self._next_sample, now)
        self._recorder.sample_queues(tick, self._replicas, in_ratio=not self._stream_done)
        self._next_sample = (math.floor(now / period) + 1) * period


def _pipeline(
    config: ClusterConfig,
    scheduler: SchedulerConfig,
    registry: PluginRegistry | None,
    clock: ManualClock,
    by_name: dict[str, SimReplica],
    endpoints: list[Endpoint],
    scaling: SimScaling | None,
    shadows: tuple[LatencyPredictor, ItlPredictor],
) -> RoutingPipeline:
    """The gateway's request pipeline over the simulated replicas (virtual time)."""
    built = build_scheduler(scheduler, clock, registry=registry, seed=config.seed)
    serving = scaling.serving if scaling is not None else None
    pool = SimPool(by_name, endpoints, serving)
    pipeline = RoutingPipeline(pool, built, clock, observers=shadows)
    if scaling is not None:  # held requests are the hook's: it starts replicas for them
        pipeline.hold_for([config.model], lambda model: None)
    return pipeline


def _engine_request(request: SimRequest) -> EngineRequest:
    output = request.output_tokens
    return EngineRequest(
        request_id=request.request_id,
        prompt_tokens=request.prompt_tokens,
        max_tokens=request.max_tokens,
        block_hashes=request.block_hashes,
        stop_after=output if output < request.max_tokens else None,
        output_block_hashes=request.output_block_hashes,
        priority=vllm_priority(request.priority),
    )


def simulate(
    config: ClusterConfig,
    scheduler: SchedulerConfig,
    requests: Iterable[SimRequest],
    *,
    registry: PluginRegistry | None = None,
    progress: Progress | None = None,
    scaling: ScalingConfig | None = None,
) -> RunResult:
    """Run one simulation of ``requests`` on a fresh cluster and scheduler."""
    simulator = ClusterSimulator(
        config, scheduler, registry=registry, progress=progress, scaling=scaling
    )
    return simulator.run(requests)
