"""One simulated replica as the gateway sees it: an engine model plus the gateway's counts.

The scheduler reads :class:`~pilothouse.scheduling.types.Endpoint` snapshots. A replica
keeps its current snapshot and rebuilds it only when something the scheduler can see
changes: the gateway's in-flight counts (always current, as the real gateway counts them
itself) or a scrape of the engine's metrics (``waiting``, ``running``, KV usage, LoRA
adapters), which the cluster runs every ``scrape_interval_s`` of virtual time, so those lag
as real scrapes do. ``metrics.updated_at`` is the scrape at which the values last changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from pilothouse.scheduling.types import Endpoint, EndpointMetrics
from pilothouse.sim.engine_model import EngineModel


class SimReplica:
    """Mutable bookkeeping of one replica inside the cluster loop."""

    __slots__ = (
        "awaiting",
        "dirty",
        "endpoint",
        "engine",
        "in_flight",
        "in_flight_tokens",
        "index",
        "labels",
        "metrics",
        "model",
        "name",
        "step_end",
        "version",
    )

    def __init__(
        self,
        index: int,
        name: str,
        model: str,
        engine: EngineModel,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        self.index = index
        self.labels: Mapping[str, str] = MappingProxyType(dict(labels or {}))
        self.name = name
        self.model = model
        self.engine = engine
        self.in_flight = 0
        self.in_flight_tokens = 0
        self.awaiting = 0
        config = engine.config
        self.metrics = EndpointMetrics(
            block_size=config.block_size,
            num_gpu_blocks=config.num_gpu_blocks,
            max_loras=config.max_loras or None,
            updated_at=0.0,
        )
        self.step_end: float | None = None  # end of the step in flight
        self.version = 0  # bumped whenever the step-end event is rescheduled
        self.dirty = False  # engine state changed since the last scrape
        self.endpoint = self._snapshot()

    def _snapshot(self) -> Endpoint:
        return Endpoint(
            name=self.name,
            address=f"sim://{self.name}",
            model=self.model,
            engine="sim",
            labels=self.labels,
            in_flight=self.in_flight,
            in_flight_tokens=self.in_flight_tokens,
            awaiting_first_token=self.awaiting,
            metrics=self.metrics,
        )

    def acquire(self, uncached_tokens: int) -> None:
        """The gateway routed a request here that must prefill ``uncached_tokens``."""
        self.in_flight += 1
        self.in_flight_tokens += uncached_tokens
        self.awaiting += 1
        self.endpoint = self._snapshot()

    def prefilled(self, tokens: int) -> None:
        """A request routed here produced its first token: its prefill left the backlog."""
        self.in_flight_tokens -= tokens
        self.awaiting -= 1
        self.endpoint = self._snapshot()

    def release(self, backlog_tokens: int | None) -> None:
        """A request routed here completed (``backlog_tokens``: its prefill still counted)."""
        self.in_flight -= 1
        if backlog_tokens is not None:
            self.in_flight_tokens -= backlog_tokens
            self.awaiting -= 1
        self.endpoint = self._snapshot()

    def scrape(self, now: float) -> None:
        """Read the engine's metrics as a scraper would; rebuild the snapshot if they moved."""
        self.dirty = False
        engine = self.engine
        waiting, running, usage = engine.num_waiting, engine.num_running, engine.kv_usage
        old = self.metrics
        loras = engine.config.max_loras > 0
        running_loras = engine.running_loras if loras else old.running_loras
        waiting_loras = engine.waiting_loras if loras else old.waiting_loras
        if (waiting, running, usage, running_loras, waiting_loras) == (
            old.waiting,
            old.running,
            old.kv_cache_usage,
            old.running_loras,
            old.waiting_loras,
        ):
            return  # nothing moved: keep the snapshot (and its updated_at)
        self.metrics = EndpointMetrics(
            waiting=waiting,
            running=running,
            kv_cache_usage=usage,
            block_size=old.block_size,
            num_gpu_blocks=old.num_gpu_blocks,
            max_loras=old.max_loras,
            running_loras=running_loras,
            waiting_loras=waiting_loras,
            updated_at=now,
        )
        self.endpoint = self._snapshot()
