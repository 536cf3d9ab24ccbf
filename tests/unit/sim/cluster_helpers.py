"""Builders shared by the cluster-simulator tests: tiny workloads and a spying scorer."""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from pilothouse.bench.workloads import ArrivalSpec, build_workload
from pilothouse.scheduling import PluginRegistry, default_registry, load_scheduler_config
from pilothouse.scheduling.config import SchedulerConfig
from pilothouse.scheduling.context import PluginContext
from pilothouse.scheduling.interfaces import CycleState
from pilothouse.scheduling.plugins.base import NamedPlugin
from pilothouse.scheduling.types import Endpoint, SchedulingRequest
from pilothouse.sim import EngineOverrides, apply_overrides, get_preset
from pilothouse.sim.cluster_types import ClusterConfig, SimRequest
from pilothouse.sim.hashing import chain_block_hashes

PRESET = get_preset("llama-3.1-8b-h100")
# A replica that caches about a quarter of SMALL_B2B's 8,448 distinct prompt tokens.
SMALL_CACHE = apply_overrides(PRESET, EngineOverrides(num_gpu_blocks=160))

SMALL_B2B = {
    "groups": "12",
    "users_per_group": "3",
    "system_prompt_tokens": "512",
    "question_tokens": "64",
    "output_tokens": "24",
}


def b2b_requests(qps: float, count: int, seed: int = 0) -> list[SimRequest]:
    workload = build_workload("b2b-saas", block_size=16, seed=seed, overrides=SMALL_B2B)
    return list(workload.requests(qps, count, ArrivalSpec()))


def cluster(replicas: int = 4, **changes: object) -> ClusterConfig:
    """Replicas with the small cache (so that routing decides what stays cached)."""
    return ClusterConfig(SMALL_CACHE, replicas, **changes)  # type: ignore[arg-type]


def plain_request(
    request_id: str,
    arrival_s: float,
    *,
    tokens: int = 64,
    output: int = 8,
    after: str | None = None,
) -> SimRequest:
    rng = random.Random(request_id)
    token_ids = [rng.randrange(50_000) for _ in range(tokens)]
    return SimRequest(
        request_id=request_id,
        arrival_s=arrival_s,
        prompt=request_id.ljust(tokens * 4, "."),
        prompt_tokens=tokens,
        block_hashes=chain_block_hashes(token_ids, 16),
        output_tokens=output,
        max_tokens=output,
        after=after,
    )


@dataclass
class Sighting:
    """What the scheduler saw in one cycle."""

    request_id: str
    now: float
    endpoints: tuple[Endpoint, ...]


@dataclass
class Spy:
    sightings: list[Sighting] = field(default_factory=list)

    def by_id(self) -> dict[str, Sighting]:
        return {s.request_id: s for s in self.sightings}


class SpyScorer(NamedPlugin):
    """Scores nothing; remembers the time and the endpoint snapshots of every cycle."""

    def __init__(self, name: str, spy: Spy) -> None:
        super().__init__(name)
        self._spy = spy

    def score(
        self, state: CycleState, request: SchedulingRequest, endpoints: Sequence[Endpoint]
    ) -> Sequence[float]:
        self._spy.sightings.append(Sighting(request.request_id, state.now, tuple(endpoints)))
        return [0.0] * len(endpoints)


def spying(spy: Spy) -> tuple[PluginRegistry, SchedulerConfig]:
    """A registry with a ``spy`` scorer and a round-robin config that includes it."""
    registry = default_registry()

    def create(name: str, parameters: Mapping[str, object], ctx: PluginContext) -> SpyScorer:
        return SpyScorer(name, spy)

    registry.register("spy", create)
    config = load_scheduler_config(
        {
            "plugins": [{"type": "spy"}, {"type": "round-robin"}],
            "profiles": [{"name": "p", "plugins": [{"ref": "spy"}, {"ref": "round-robin"}]}],
        }
    )
    return registry, config


def stream(requests: Sequence[SimRequest]) -> Iterator[SimRequest]:
    yield from requests
