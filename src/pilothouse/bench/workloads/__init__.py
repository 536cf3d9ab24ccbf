"""Workloads for the cluster simulator, by name, plus JSONL trace replay.

::

    workload = build_workload("b2b-saas", block_size=16, seed=0, overrides={"groups": "50"})
    for request in workload.requests(qps=10.0, count=1000, arrivals=ArrivalSpec()):
        ...

Every workload keeps prompt text, token ids and block hashes consistent
(:mod:`.tokens`); see ``docs/workloads.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pilothouse.bench.workloads.agentic import AgenticParams, AgenticWorkload
from pilothouse.bench.workloads.arrivals import ARRIVAL_KINDS, ArrivalSpec
from pilothouse.bench.workloads.b2b_saas import B2bSaasParams, B2bSaasWorkload
from pilothouse.bench.workloads.base import Workload, WorkloadShape, parse_params
from pilothouse.bench.workloads.hot_spot import HotSpotParams, HotSpotWorkload
from pilothouse.bench.workloads.long_context import LongContextParams, LongContextWorkload
from pilothouse.bench.workloads.mixed_priority import MixedPriorityParams, MixedPriorityWorkload
from pilothouse.bench.workloads.multi_turn_chat import MultiTurnChatParams, MultiTurnChatWorkload
from pilothouse.bench.workloads.no_reuse import NoReuseParams, NoReuseWorkload
from pilothouse.bench.workloads.trace import TraceParams, TraceWorkload
from pilothouse.errors import ConfigError

__all__ = [
    "ARRIVAL_KINDS",
    "WORKLOADS",
    "ArrivalSpec",
    "Workload",
    "WorkloadEntry",
    "WorkloadShape",
    "build_workload",
    "workload_names",
]


@dataclass(frozen=True, slots=True)
class WorkloadEntry:
    """A built-in workload: its parameters dataclass and its constructor."""

    params: type[Any]
    factory: Callable[..., Workload]


WORKLOADS: Mapping[str, WorkloadEntry] = MappingProxyType(
    {
        "b2b-saas": WorkloadEntry(B2bSaasParams, B2bSaasWorkload),
        "multi-turn-chat": WorkloadEntry(MultiTurnChatParams, MultiTurnChatWorkload),
        "agentic": WorkloadEntry(AgenticParams, AgenticWorkload),
        "no-reuse": WorkloadEntry(NoReuseParams, NoReuseWorkload),
        "hot-spot": WorkloadEntry(HotSpotParams, HotSpotWorkload),
        "long-context": WorkloadEntry(LongContextParams, LongContextWorkload),
        "mixed-priority": WorkloadEntry(MixedPriorityParams, MixedPriorityWorkload),
    }
)


def workload_names() -> list[str]:
    return sorted(WORKLOADS)


def build_workload(
    name_or_path: str,
    *,
    block_size: int,
    seed: int = 0,
    overrides: Mapping[str, str] | None = None,
) -> Workload:
    """A built-in workload by name, or a JSONL trace by path; ConfigError otherwise."""
    overrides = overrides or {}
    entry = WORKLOADS.get(name_or_path)
    if entry is not None:
        params = parse_params(entry.params, overrides)
        return entry.factory(params, block_size=block_size, seed=seed)
    path = Path(name_or_path)
    if path.is_file():
        params = parse_params(TraceParams, overrides)
        return TraceWorkload(path, params, block_size=block_size, seed=seed)
    known = ", ".join(workload_names())
    raise ConfigError(
        f"{name_or_path!r} is neither a built-in workload ({known}) nor a JSONL trace file",
        "workload",
    )
