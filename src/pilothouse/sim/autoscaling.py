"""Autoscaling in the cluster simulator: a replica-count timeline driven by the very
:func:`~pilothouse.autoscale.autoscale` function the local executor runs.

The cluster pre-builds ``ClusterConfig.replicas`` replicas (the policy's maximum); this
hook decides which of them exist at each virtual instant:

- every ``policy.interval_s`` a **tick** samples the metrics the local gateway would see
  (ready replicas, requests in flight and held, mean KV usage of the ready replicas, p90
  TTFT of the requests finished since the last tick) and asks ``autoscale`` for a target;
- a replica added is **starting** for ``startup_delay_s`` (a fresh engine: cold cache),
  then **ready** and offered to the scheduler;
- a replica removed stops taking requests at once and **drains**: it costs until its last
  request finishes;
- a request that finds no ready replica is **held** (the routing pipeline answers
  ``Wait(hold)``; its TTFT includes the wait) and arrives at the first replica ready; a held
  request also triggers a tick at once, so a fleet at zero starts a replica on its first
  request.

``policy=None`` is the fixed fleet: every replica ready from the start, for comparison.
Replica-seconds integrate the replicas that exist (starting, ready or draining) over the
run; TTFT SLO attainment is the share of requests whose TTFT met ``ttft_slo_s`` (a failed
request misses it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from pilothouse.autoscale import (
    AutoscaleState,
    MetricsSample,
    MetricsWindow,
    autoscale,
)
from pilothouse.config.autoscaling import AutoscalingSpec
from pilothouse.sim.cluster_types import ScalingRun, SimRequest
from pilothouse.sim.events import SCALE
from pilothouse.sim.recorder import percentile
from pilothouse.sim.replica import SimReplica
from pilothouse.sim.types import FinishedRequest

Push = Callable[[float, int, object, int], None]
Renew = Callable[[int], None]
Pending = Callable[[], int]
TICK = -1  # ``ref`` of a tick event; otherwise ``ref`` is a replica index, ``tag`` its version
_KEEP_SAMPLES = 600


@dataclass(frozen=True, slots=True)
class ScalingConfig:
    """What the hook needs: the policy (``None``: fixed), startup delay and TTFT SLO."""

    policy: AutoscalingSpec | None
    startup_delay_s: float = 30.0
    ttft_slo_s: float | None = None

    def __post_init__(self) -> None:
        if self.startup_delay_s < 0:
            raise ValueError("startup_delay_s must be >= 0")


@dataclass(frozen=True, slots=True)
class ClusterHandles:
    """How the hook reaches into the cluster: its replicas, its event queue, a fresh engine."""

    replicas: Sequence[SimReplica]
    push: Push
    pending: Pending
    """Events still queued, not counting the one being handled."""
    renew: Renew
    """Replace replica ``i`` by a fresh one (empty cache) before it starts again."""


class SimScaling:
    """The hook the cluster calls; see the module docstring."""

    def __init__(self, config: ScalingConfig, cluster: ClusterHandles) -> None:
        self._config = config
        self._cluster = cluster
        size = len(cluster.replicas)
        self._phase = ["off"] * size
        self._version = [0] * size
        self._serving: list[int] = []
        self._held: list[SimRequest] = []
        self._held_at: dict[str, float] = {}
        self._ttfts: list[float] = []
        self._met = 0
        self._samples: list[MetricsSample] = []
        self._state = AutoscaleState()
        self._target = 0
        self._last_request: float | None = None
        self._cost = _Meter()
        self._timeline: list[tuple[float, int, int]] = []
        self._tick_pending = False

    def start(self, now: float) -> None:
        """The fleet at ``now``: the fixed replicas, or the policy's minimum, all ready."""
        policy = self._config.policy
        count = len(self._phase) if policy is None else min(policy.min_replicas, len(self._phase))
        for index in range(count):
            self._phase[index] = "ready"
            self._serving.append(index)
        self._target = count
        self._cost.set(now, count)
        self._note(now)
        if policy is not None:
            self._schedule_tick(now)

    # -- the cluster's calls -------------------------------------------------------------

    def arrived(self, now: float) -> None:
        """A request arrived (the autoscaler's idle clock restarts)."""
        self._last_request = now

    def serving(self) -> list[int]:
        """Indices of the replicas the scheduler may use now (ready, not draining)."""
        return self._serving

    def hold(self, request: SimRequest, now: float) -> None:
        """``request`` found no ready replica: hold it until one is ready."""
        self._held.append(request)
        self._held_at.setdefault(request.request_id, now)
        if self._config.policy is not None:
            self._decide(now)  # from zero on the first request, not at the next tick
            if not self._tick_pending:
                self._schedule_tick(now)

    def on_event(self, ref: int, tag: int, now: float) -> list[SimRequest]:
        """A tick, or replica ``ref`` ready; returns the held requests to dispatch now."""
        if ref == TICK:
            self._tick_pending = False
            self._decide(now)
            if self._held or self._cluster.pending() > 0:
                self._schedule_tick(now)
            return []
        if self._phase[ref] == "starting" and self._version[ref] == tag:
            self._phase[ref] = "ready"
            self._serving.append(ref)
            self._note(now)
        if not self._serving:
            return []
        released, self._held = self._held, []
        return released

    def finished(self, done: FinishedRequest) -> FinishedRequest:
        """Account a completed request; a held one is timed from its first arrival."""
        arrived = self._held_at.pop(done.request_id, None)
        if arrived is not None:
            done = replace(done, arrival_time=arrived)
        ttft = done.ttft if done.ttft is not None else done.e2e_latency
        self._ttfts.append(ttft)
        slo = self._config.ttft_slo_s
        if slo is not None and ttft <= slo:
            self._met += 1
        return done

    def result(self, now: float, requests: int) -> ScalingRun:
        """The run's cost and SLO attainment (``requests``: completed plus failed)."""
        self._cost.set(now, self._existing())
        slo = self._config.ttft_slo_s
        return ScalingRun(
            replica_seconds=self._cost.total,
            mean_replicas=self._cost.total / now if now > 0 else 0.0,
            peak_replicas=max((n for _, n, _ in self._timeline), default=0),
            ttft_slo_s=slo,
            slo_attainment=self._met / requests if slo is not None and requests else None,
            timeline=tuple(self._timeline),
        )

    # -- decisions -----------------------------------------------------------------------

    def _schedule_tick(self, now: float) -> None:
        policy = self._config.policy
        assert policy is not None
        self._cluster.push(now + policy.interval_s, SCALE, TICK, 0)
        self._tick_pending = True

    def _decide(self, now: float) -> None:
        policy = self._config.policy
        assert policy is not None
        self._finish_drains()
        self._samples.append(self._sample(now))
        del self._samples[:-_KEEP_SAMPLES]
        window = MetricsWindow(tuple(self._samples), self._last_request)
        decision = autoscale(window, policy, self._target, now, self._state)
        self._state = decision.state
        if decision.target != self._target:
            self._scale_to(decision.target, now)
        self._cost.set(now, self._existing())
        self._note(now)

    def _sample(self, now: float) -> MetricsSample:
        replicas = self._cluster.replicas
        ready = [replicas[i] for i in self._serving]
        in_flight = sum(
            r.in_flight for r, p in zip(replicas, self._phase, strict=True) if p != "off"
        )
        usage = sum(r.engine.kv_usage for r in ready) / len(ready) if ready else None
        ttfts, self._ttfts = sorted(self._ttfts), []
        ttft = percentile(ttfts, 90) if ttfts else None
        return MetricsSample(now, len(ready), in_flight, len(self._held), usage, ttft)

    def _scale_to(self, target: int, now: float) -> None:
        self._target = target
        live = [i for i, p in enumerate(self._phase) if p in ("starting", "ready")]
        for index in sorted(live, key=self._stop_rank)[: max(0, len(live) - target)]:
            self._stop(index)
        spare = [i for i, p in enumerate(self._phase) if p == "off"]
        for index in spare[: max(0, target - len(live))]:
            self._cluster.renew(index)
            self._phase[index] = "starting"
            self._version[index] += 1
            ready_at = now + self._config.startup_delay_s
            self._cluster.push(ready_at, SCALE, index, self._version[index])

    def _stop_rank(self, index: int) -> tuple[int, int]:
        """Stop starting replicas first, then the highest-numbered ready ones."""
        return (0 if self._phase[index] == "starting" else 1, -index)

    def _stop(self, index: int) -> None:
        if self._phase[index] == "ready":
            self._serving.remove(index)
        busy = self._cluster.replicas[index].in_flight > 0
        self._phase[index] = "draining" if busy else "off"

    def _finish_drains(self) -> None:
        for index, phase in enumerate(self._phase):
            if phase == "draining" and self._cluster.replicas[index].in_flight == 0:
                self._phase[index] = "off"

    def _existing(self) -> int:
        return sum(p != "off" for p in self._phase)

    def _note(self, now: float) -> None:
        entry = (now, self._existing(), len(self._serving))
        if not self._timeline or self._timeline[-1][1:] != entry[1:]:
            self._timeline.append(entry)


class _Meter:
    """Integrates a replica count over time."""

    def __init__(self) -> None:
        self.total = 0.0
        self._count = 0
        self._since = 0.0

    def set(self, now: float, count: int) -> None:
        self.total += self._count * max(0.0, now - self._since)
        self._count, self._since = count, now
