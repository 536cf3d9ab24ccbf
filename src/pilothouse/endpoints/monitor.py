"""The background data producer: health checks and metrics scraping for every endpoint.

Each tick probes every endpoint's health path (the engine adapter says which) and, where the
engine publishes metrics, scrapes and maps them. Results land in the :class:`EndpointPool`;
the scheduler sees them in its next snapshot.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from pilothouse.clock import Clock
from pilothouse.endpoints.metrics_parser import parse_engine_metrics
from pilothouse.endpoints.pool import EndpointPool
from pilothouse.engines.registry import engine_kind
from pilothouse.periodic import PeriodicTask
from pilothouse.scheduling.types import Endpoint

log = logging.getLogger("pilothouse.monitor")


class EndpointMonitor(PeriodicTask):
    """Probes and scrapes every endpoint of a pool on a fixed interval."""

    def __init__(
        self,
        pool: EndpointPool,
        session: aiohttp.ClientSession,
        clock: Clock,
        *,
        interval_s: float = 0.5,
        probe_timeout_s: float = 2.0,
    ) -> None:
        super().__init__(interval_s, "endpoint-monitor")
        self._pool = pool
        self._session = session
        self._clock = clock
        self._timeout = aiohttp.ClientTimeout(total=probe_timeout_s)

    async def tick(self) -> None:
        """Probe every endpoint once, concurrently."""
        await asyncio.gather(*(self._probe(e) for e in self._pool.endpoints()))

    async def _probe(self, endpoint: Endpoint) -> None:
        adapter = engine_kind(endpoint.engine)
        base = f"http://{endpoint.address}"
        try:
            async with self._session.get(base + adapter.health_path, timeout=self._timeout) as r:
                healthy = r.status == 200
                await r.read()
            if healthy and adapter.metrics_path and adapter.metric_names:
                async with self._session.get(
                    base + adapter.metrics_path, timeout=self._timeout
                ) as r:
                    text = await r.text()
                if r.status == 200:
                    metrics = parse_engine_metrics(text, adapter.metric_names, self._clock.now())
                    self._pool.update_metrics(endpoint.name, metrics)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            if endpoint.ready:
                log.warning("endpoint %s failed its probe: %r", endpoint.name, exc)
            healthy = False
        if healthy != endpoint.ready:
            log.info("endpoint %s is %s", endpoint.name, "ready" if healthy else "not ready")
        self._pool.set_ready(endpoint.name, healthy)
