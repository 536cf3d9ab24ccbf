"""The executor's autoscaling state: per model, its samples, the autoscaler's memory and
the current replica target (:func:`~pilothouse.autoscale.autoscale` decides)."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from pilothouse.autoscale import (
    AutoscaleState,
    MetricsSample,
    MetricsWindow,
    autoscale,
)
from pilothouse.config.fleet import FleetSpec, ModelSpec
from pilothouse.controlplane.signals import GatewaySignals

log = logging.getLogger("pilothouse.executor")
_RECENT = 32


@dataclass(slots=True)
class _Scaler:
    samples: deque[MetricsSample] = field(default_factory=lambda: deque(maxlen=512))
    state: AutoscaleState = field(default_factory=AutoscaleState)
    due: float = 0.0


class ReplicaTargets:
    """Replica targets of a fleet's autoscaled models, from a gateway's signals."""

    def __init__(
        self, signals: GatewaySignals | None, wall: Callable[[], float] = time.time
    ) -> None:
        self._signals = signals
        self._scalers: dict[str, _Scaler] = {}
        self._targets: dict[str, int] = {}
        self._demand: set[str] = set()
        self._wall = wall
        self.recent: deque[dict[str, object]] = deque(maxlen=_RECENT)
        """The latest target changes, oldest first (the web console shows them)."""

    @property
    def targets(self) -> Mapping[str, int]:
        return self._targets

    def demand(self, model: str) -> None:
        """A request for ``model`` is held: decide for it at the next :meth:`decide`."""
        self._demand.add(model)

    def decide(self, spec: FleetSpec, now: float) -> None:
        """Sample and decide for every autoscaled model whose interval is due (or demanded)."""
        demand, self._demand = self._demand, set()
        if self._signals is None:
            return
        for model in spec.models:
            if model.autoscaling is not None and model.launched:
                self._decide(model, now, model.name in demand)

    def _decide(self, model: ModelSpec, now: float, demanded: bool) -> None:
        policy, signals = model.autoscaling, self._signals
        assert policy is not None
        assert signals is not None
        scaler = self._scalers.setdefault(model.name, _Scaler())
        if now < scaler.due and not demanded:
            return
        scaler.due = now + policy.interval_s
        scaler.samples.append(signals.sample(model.name, now))
        window = MetricsWindow(tuple(scaler.samples), signals.last_request(model.name))
        current = self._targets.get(model.name, model.initial_replicas)
        decision = autoscale(window, policy, current, now, scaler.state)
        scaler.state = decision.state
        if decision.target != current:
            log.info(
                "%s: %d -> %d replicas (%s)", model.name, current, decision.target, decision.reason
            )
            self.recent.append(
                {
                    "at": self._wall(),
                    "model": model.name,
                    "from": current,
                    "to": decision.target,
                    "reason": decision.reason,
                }
            )
        self._targets[model.name] = decision.target

    def retarget(self, model: ModelSpec, live: int) -> None:
        """A changed policy starts a fresh history from today's count, within its bounds."""
        self._scalers.pop(model.name, None)
        current = self._targets.pop(model.name, live)
        if model.autoscaling is not None:
            low, high = model.bounds
            self._targets[model.name] = min(max(current, low), high)
