"""The endpoint pool: mutable bookkeeping in, immutable snapshots out.

Data producers (the health/metrics monitor, the gateway's in-flight accounting) write here;
the scheduler only ever sees frozen :class:`~pilothouse.scheduling.types.Endpoint`
snapshots built by :meth:`EndpointPool.candidates`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from pilothouse.scheduling.types import Endpoint, EndpointMetrics


@dataclass(slots=True)
class _State:
    base: Endpoint
    ready: bool = False
    draining: bool = False
    in_flight: int = 0
    in_flight_tokens: int = 0
    awaiting: int = 0
    metrics: EndpointMetrics = field(default_factory=EndpointMetrics)

    def snapshot(self) -> Endpoint:
        b = self.base
        return Endpoint(
            name=b.name,
            address=b.address,
            model=b.model,
            engine=b.engine,
            ready=self.ready,
            labels=b.labels,
            in_flight=self.in_flight,
            in_flight_tokens=self.in_flight_tokens,
            awaiting_first_token=self.awaiting,
            metrics=self.metrics,
        )


class EndpointPool:
    """All known replicas, grouped by served model name."""

    def __init__(self, endpoints: Iterable[Endpoint] = ()) -> None:
        self._states: dict[str, _State] = {}
        self._by_model: dict[str, list[_State]] = {}
        for endpoint in endpoints:
            self.add(endpoint)

    def add(self, endpoint: Endpoint, *, ready: bool = False) -> None:
        if endpoint.name in self._states:
            raise ValueError(f"endpoint '{endpoint.name}' is already in the pool")
        state = _State(base=endpoint, ready=ready)
        self._states[endpoint.name] = state
        self._by_model.setdefault(endpoint.model, []).append(state)

    def remove(self, name: str) -> None:
        state = self._states.pop(name)
        group = self._by_model[state.base.model]
        group.remove(state)
        if not group:
            del self._by_model[state.base.model]

    def sync(self, desired: Iterable[Endpoint], *, ready: bool = False) -> None:
        """Make the pool hold exactly ``desired`` (by name), as discovery reports it.

        Known endpoints keep their in-flight counts, health and metrics unless their address,
        model or engine changed; new ones start with ``ready``; missing ones are removed.
        """
        wanted = {e.name: e for e in desired}
        for name in [n for n in self._states if n not in wanted]:
            self.remove(name)
        for name, endpoint in wanted.items():
            state = self._states.get(name)
            if state is not None and _same_target(state.base, endpoint):
                state.base = endpoint  # labels may change in place
                continue
            if state is not None:
                self.remove(name)
            self.add(endpoint, ready=ready)

    def models(self) -> list[str]:
        return sorted(self._by_model)

    def has_model(self, model: str) -> bool:
        return model in self._by_model

    def has_endpoint(self, name: str) -> bool:
        return name in self._states

    def endpoints(self) -> list[Endpoint]:
        return [state.snapshot() for state in self._states.values()]

    def get(self, name: str) -> Endpoint:
        return self._states[name].snapshot()

    def candidates(self, model: str, exclude: frozenset[str] = frozenset()) -> list[Endpoint]:
        """Ready, non-draining replicas of ``model`` as fresh snapshots."""
        return [
            s.snapshot()
            for s in self._by_model.get(model, ())
            if s.ready and not s.draining and s.base.name not in exclude
        ]

    def set_ready(self, name: str, ready: bool) -> None:
        state = self._states.get(name)
        if state is not None:
            state.ready = ready

    def set_draining(self, name: str, draining: bool = True) -> None:
        self._states[name].draining = draining

    def update_metrics(self, name: str, metrics: EndpointMetrics) -> None:
        state = self._states.get(name)
        if state is not None:
            state.metrics = metrics

    def acquire(self, name: str, backlog_tokens: int) -> None:
        """Count a request in flight on ``name`` that must prefill ``backlog_tokens``.

        Call :meth:`prefilled` at its first token (if it is seen) and :meth:`release` at its
        end, with the backlog still counted (``None`` once prefilled).
        """
        state = self._states.get(name)
        if state is not None:
            state.in_flight += 1
            state.in_flight_tokens += backlog_tokens
            state.awaiting += 1

    def prefilled(self, name: str, backlog_tokens: int) -> None:
        """The request's first token arrived: its prefill leaves the backlog."""
        state = self._states.get(name)
        if state is not None:
            state.in_flight_tokens = max(0, state.in_flight_tokens - backlog_tokens)
            state.awaiting = max(0, state.awaiting - 1)

    def release(self, name: str, backlog_tokens: int | None) -> None:
        state = self._states.get(name)
        if state is not None:
            state.in_flight = max(0, state.in_flight - 1)
            if backlog_tokens is not None:
                state.in_flight_tokens = max(0, state.in_flight_tokens - backlog_tokens)
                state.awaiting = max(0, state.awaiting - 1)

    def in_flight(self, name: str) -> int:
        state = self._states.get(name)
        return state.in_flight if state is not None else 0


def _same_target(a: Endpoint, b: Endpoint) -> bool:
    return (a.address, a.model, a.engine) == (b.address, b.model, b.engine)
