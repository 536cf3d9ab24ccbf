"""What the pipeline needs from a pool of endpoints: snapshots out, accounting in.

:class:`~pilothouse.endpoints.pool.EndpointPool` is the front doors' implementation (fed by
discovery, the health/metrics monitor and KV events); the simulator has its own over its
virtual replicas. The pipeline never mutates an :class:`Endpoint`: it reads snapshots and
reports a request's start, first token and end.
"""

from __future__ import annotations

from typing import Protocol

from pilothouse.scheduling.types import Endpoint, SchedulingRequest


class PoolState(Protocol):
    def has_model(self, model: str) -> bool: ...

    def candidates(self, model: str, exclude: frozenset[str] = frozenset()) -> list[Endpoint]:
        """Ready, non-draining endpoints of ``model``, as fresh snapshots."""
        ...

    def acquire(self, name: str, backlog_tokens: int) -> None:
        """A request is in flight on ``name`` and must prefill ``backlog_tokens``."""
        ...

    def prefilled(self, name: str, backlog_tokens: int) -> None:
        """Its first token arrived: ``backlog_tokens`` leave the backlog."""
        ...

    def release(self, name: str, backlog_tokens: int | None) -> None:
        """It ended (``backlog_tokens`` still counted, or ``None`` once prefilled)."""
        ...


class RequestPreparer(Protocol):
    """A data producer that completes a request before its first decision (tokenizing)."""

    async def prepare(self, request: SchedulingRequest) -> SchedulingRequest: ...
