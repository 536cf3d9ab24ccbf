"""Endpoint discovery: where the set of replicas comes from.

Every source (a static list, a watched file, Kubernetes InferencePool pods, a local or Ray
executor) reports the *whole* current set to a sink whenever it changes; the sink (usually
:meth:`EndpointPool.sync`) reconciles. Reporting full sets keeps sources simple and makes a
resumed watch or a missed event harmless.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Protocol

from pilothouse.scheduling.types import Endpoint

EndpointSink = Callable[[Sequence[Endpoint]], None]


class EndpointSource(Protocol):
    """A long-running producer of endpoint sets."""

    async def run(self, sink: EndpointSink) -> None:
        """Report the current set, then every change, until cancelled."""
        ...


class StaticSource:
    """A fixed list of endpoints, reported once."""

    def __init__(self, endpoints: Sequence[Endpoint]) -> None:
        self._endpoints = tuple(endpoints)

    async def run(self, sink: EndpointSink) -> None:
        sink(self._endpoints)
        await asyncio.Event().wait()  # nothing ever changes; run until cancelled
