"""LoRA adapters served as models: which replicas hold which adapter (pure bookkeeping).

vLLM serves an adapter under its own model name next to its base model. The registry keeps:

- the adapters the Fleet spec declares (``models[].adapters``: name → base model, source);
- the adapters each replica holds, as the front door last learned them (its adapter
  watcher reads ``GET /v1/models``; a load or unload it makes itself is recorded at once);
- the adapters a replica's engine reports running or waiting (``vllm:lora_requests_info``,
  already in its metrics snapshot).

A request naming an adapter is scheduled over its base model's replicas
(``SchedulingRequest.model`` = base, ``lora`` = adapter, so ``lora-affinity`` applies) and
narrowed to those that hold it (:meth:`AdapterRegistry.plan`). When none does and the spec
declares the adapter, any ready replica whose engine loads adapters at run time may take
it: the plan then says which adapter the front door must load before forwarding.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pilothouse.config.fleet import FleetSpec
from pilothouse.engines.registry import lora_support
from pilothouse.errors import NoEndpointAvailable
from pilothouse.scheduling.types import Endpoint


@dataclass(frozen=True, slots=True)
class DeclaredAdapter:
    name: str
    base: str
    source: str

    @property
    def path(self) -> str:
        """What vLLM's ``lora_path`` takes: a local path or a Hub id (``hf://`` dropped)."""
        return self.source.removeprefix("hf://")


@dataclass(frozen=True, slots=True)
class AdapterPlan:
    """Where an adapter request may go: ``only`` these addresses, or any, loading first."""

    only: frozenset[str] | None
    load: DeclaredAdapter | None = None


class AdapterRegistry:
    """Declared adapters and the adapters each replica holds (see the module docstring)."""

    def __init__(self, spec: FleetSpec | None = None) -> None:
        self._declared: dict[str, DeclaredAdapter] = {}
        self._held: dict[str, frozenset[str]] = {}  # endpoint name -> adapters
        self._models: dict[str, str] = {}  # endpoint name -> its base model
        self._bases: dict[str, str] = {}  # adapter held somewhere -> base model
        if spec is not None:
            self.update(spec)

    def update(self, spec: FleetSpec) -> None:
        """Adopt the adapters of a (new) spec; what replicas hold is kept."""
        self._declared = {
            a.name: DeclaredAdapter(a.name, m.name, a.source)
            for m in spec.models
            for a in m.adapters
        }

    # -- names ---------------------------------------------------------------------------

    def base_of(self, name: str) -> str | None:
        """The base model serving adapter ``name``, or None when no one knows it."""
        declared = self._declared.get(name)
        return declared.base if declared is not None else self._bases.get(name)

    def declared(self, name: str) -> DeclaredAdapter | None:
        return self._declared.get(name)

    def names(self) -> dict[str, str]:
        """Every adapter known (declared or held somewhere) → its base model."""
        names = dict(self._bases)
        names.update({name: a.base for name, a in self._declared.items()})
        return names

    def loaded(self, endpoint: str, adapter: str) -> bool:
        """Whether ``endpoint`` is known to hold ``adapter`` (as last seen or loaded)."""
        return adapter in self._held.get(endpoint, ())

    def held(self) -> dict[str, frozenset[str]]:
        """Endpoint name → adapters it holds (as last seen)."""
        return dict(self._held)

    # -- what replicas hold --------------------------------------------------------------

    def set_held(self, endpoint: Endpoint, adapters: Iterable[str]) -> None:
        held = frozenset(adapters)
        if self._held.get(endpoint.name) != held:
            self._held[endpoint.name] = held
            self._models[endpoint.name] = endpoint.model
            self._reindex()

    def add(self, endpoint: Endpoint, adapter: str) -> None:
        self.set_held(endpoint, self._held.get(endpoint.name, frozenset()) | {adapter})

    def discard(self, endpoint: Endpoint, adapter: str) -> None:
        self.set_held(endpoint, self._held.get(endpoint.name, frozenset()) - {adapter})

    def forget_missing(self, names: Iterable[str]) -> None:
        """Drop what endpoints that left the pool held."""
        keep = set(names)
        gone = [n for n in self._held if n not in keep]
        for name in gone:
            del self._held[name]
            self._models.pop(name, None)
        if gone:
            self._reindex()

    def _reindex(self) -> None:
        self._bases = {
            adapter: self._models[endpoint]
            for endpoint, held in self._held.items()
            for adapter in held
        }

    def holds(self, endpoint: Endpoint, adapter: str) -> bool:
        metrics = endpoint.metrics
        return (
            adapter in self._held.get(endpoint.name, ())
            or adapter in metrics.running_loras
            or adapter in metrics.waiting_loras
        )

    def plan(self, adapter: str, candidates: Sequence[Endpoint]) -> AdapterPlan:
        """Narrow ``candidates`` (ready replicas of the base) for a request on ``adapter``."""
        holders = frozenset(e.address for e in candidates if self.holds(e, adapter))
        if holders:
            return AdapterPlan(only=holders)
        declared = self._declared.get(adapter)
        loadable = [e for e in candidates if lora_support(e.engine) is not None]
        if declared is not None and loadable:
            return AdapterPlan(only=frozenset(e.address for e in loadable), load=declared)
        raise NoEndpointAvailable(f"no ready replica serves adapter '{adapter}'")
