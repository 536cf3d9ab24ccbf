"""Wait until the Deployments of a deployed Fleet have rolled out, reporting progress.

A Deployment counts as rolled out the way ``kubectl rollout status`` decides it: the
controller has seen the latest spec (``status.observedGeneration >= metadata.generation``),
and every desired replica is updated and available. Time and sleep are injected so tests
run without waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pilothouse.controlplane.kube_client import DeployError, KubeClient

Obj = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Rollout:
    """Where one Deployment stands."""

    name: str
    desired: int
    updated: int
    available: int
    observed: bool  # the controller has seen the latest spec

    @property
    def done(self) -> bool:
        return self.observed and self.updated >= self.desired and self.available >= self.desired

    def line(self) -> str:
        if not self.observed:
            return f"{self.name}: waiting for the controller to see the new spec"
        return f"{self.name}: {self.available}/{self.desired} available, {self.updated} updated"


def rollout(obj: Obj) -> Rollout:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    generation = int(obj["metadata"].get("generation") or 0)
    desired = int(spec.get("replicas", 1))
    return Rollout(
        name=str(obj["metadata"]["name"]),
        desired=desired,
        updated=int(status.get("updatedReplicas") or 0),
        available=int(status.get("availableReplicas") or 0),
        observed=int(status.get("observedGeneration") or 0) >= generation,
    )


def wait_for_rollout(
    client: KubeClient,
    deployments: Sequence[Obj],
    *,
    timeout_s: float,
    report: Callable[[str], None],
    poll_s: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Poll ``deployments`` until all have rolled out; :class:`DeployError` at the timeout."""
    deadline = clock() + timeout_s
    last: dict[str, str] = {}
    pending = list(deployments)
    while True:
        states = []
        for obj in pending:
            live = client.get(obj)
            if live is None:
                raise DeployError(f"deployment {obj['metadata']['name']} disappeared while waiting")
            states.append((obj, rollout(live)))
        for _, state in states:
            if last.get(state.name) != state.line():
                last[state.name] = state.line()
                report(state.line())
        pending = [obj for obj, state in states if not state.done]
        if not pending:
            return
        if clock() >= deadline:
            waiting = "; ".join(state.line() for _, state in states if not state.done)
            raise DeployError(
                f"timed out after {timeout_s:g}s waiting for deployments: {waiting} "
                "(kubectl describe deployment / kubectl get events say why)"
            )
        sleep(min(poll_s, max(0.0, deadline - clock())))
