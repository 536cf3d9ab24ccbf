"""What a workload is, and the small helpers the built-in ones share.

A workload is built once per run set (its prompts are cached and reused across policies
and QPS levels) and yields, per call of :meth:`Workload.requests`, a fresh deterministic
stream of :class:`~pilothouse.sim.cluster_types.SimRequest` in arrival order. Its
parameters are a frozen dataclass whose defaults are documented field by field;
``--set NAME=VALUE`` on the command line overrides them (:func:`parse_params`).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from pilothouse.bench.workloads.arrivals import ArrivalSpec
from pilothouse.bench.workloads.tokens import PromptBuilder, random_tokens
from pilothouse.errors import ConfigError
from pilothouse.sim.cluster_types import SimRequest

P = TypeVar("P")


@dataclass(frozen=True, slots=True)
class WorkloadShape:
    """Averages used to place the default QPS sweep (:mod:`pilothouse.sim.capacity`).

    ``reusable_fraction``: the share of prompt tokens an unbounded prefix cache that saw
    every earlier request would serve.
    """

    mean_prompt_tokens: float
    mean_output_tokens: float
    reusable_fraction: float


@dataclass(frozen=True, slots=True)
class PriorityClass:
    """One class of requests of a workload that mixes priorities (for per-class reports).

    ``share`` of the requests, ``priority`` (the gateway's order: higher is more important),
    the class's mean ``prompt_tokens`` and ``output_tokens``, the ``cached_fraction`` of its
    prompt that a warm prefix cache serves, and its TTFT target (``None``: none).
    """

    name: str
    priority: int
    share: float
    prompt_tokens: float
    output_tokens: float
    cached_fraction: float
    ttft_slo_s: float | None


@runtime_checkable
class HasPriorityClasses(Protocol):
    """A workload whose requests fall into priority classes (``mixed-priority``)."""

    def priority_classes(self) -> tuple[PriorityClass, ...]:
        """The classes, most important first."""
        ...


class Workload(Protocol):
    """A named, parameterised request generator."""

    @property
    def name(self) -> str: ...

    def parameters(self) -> Mapping[str, object]:
        """The effective parameters (for the report)."""
        ...

    def shape(self) -> WorkloadShape: ...

    def native_qps(self) -> float | None:
        """The rate the workload has on its own (a trace's), or ``None``."""
        ...

    def requests(
        self, qps: float | None, count: int, arrivals: ArrivalSpec
    ) -> Iterator[SimRequest]:
        """``count`` requests at mean rate ``qps`` (``None``: the native rate)."""
        ...


def _convert(raw: str, kind: Any, name: str) -> object:
    try:
        if kind in (int, "int"):
            return int(raw)
        if kind in (float, "float"):
            return float(raw)
        if kind in (bool, "bool"):
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(raw)
            return raw.lower() in ("true", "1", "yes")
    except ValueError:
        raise ConfigError(f"expected a {kind} value, got {raw!r}", name) from None
    return raw


def parse_params(kind: type[P], overrides: Mapping[str, str]) -> P:
    """Defaults of the dataclass ``kind`` with ``overrides`` (strings) converted and applied."""
    fields = {f.name: f for f in dataclasses.fields(kind)}  # type: ignore[arg-type]
    values: dict[str, object] = {}
    for name, raw in overrides.items():
        field = fields.get(name)
        if field is None:
            known = ", ".join(fields)
            raise ConfigError(f"unknown workload parameter (known: {known})", name)
        values[name] = _convert(raw, field.type, name)
    try:
        return kind(**values)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def as_mapping(params: object) -> dict[str, object]:
    """A parameters dataclass as a plain dict, in field order."""
    return {f.name: getattr(params, f.name) for f in dataclasses.fields(params)}  # type: ignore[arg-type]


def check_positive(params: object, *names: str) -> None:
    for name in names:
        if getattr(params, name) <= 0:
            raise ValueError(f"{name} must be > 0")


def spread_length(rng: random.Random, mean: int, spread: float) -> int:
    """A length uniform in ``mean x [1 - spread, 1 + spread]`` (at least 1)."""
    if spread <= 0:
        return max(1, mean)
    return max(1, round(mean * rng.uniform(1.0 - spread, 1.0 + spread)))


def child_rng(seed: int, *path: object) -> random.Random:
    """A generator seeded by the workload seed and a path: independent streams per use."""
    return random.Random("/".join(str(part) for part in (seed, *path)))


class SyntheticWorkload(Generic[P]):
    """What the built-in generated workloads share: parameters, token block size, seed."""

    name: str

    def __init__(self, params: P, *, block_size: int, seed: int) -> None:
        self._p = params
        self._block_size = block_size
        self._seed = seed
        self._shared: dict[tuple[str, int], PromptBuilder] = {}

    def _shared_prefix(self, label: str, index: int, tokens: int) -> PromptBuilder:
        """The ``index``-th shared prefix of kind ``label`` (a system prompt, a tenant's
        prefix): built once from its own seeded stream, then reused (fork it to extend)."""
        prefix = self._shared.get((label, index))
        if prefix is None:
            rng = child_rng(self._seed, self.name, label, index)
            prefix = PromptBuilder(self._block_size).extend(random_tokens(rng, tokens))
            self._shared[(label, index)] = prefix
        return prefix

    def parameters(self) -> Mapping[str, object]:
        return as_mapping(self._p)

    def native_qps(self) -> float | None:
        """Generated workloads have no rate of their own: the caller sets it."""
        return None


def check_spread(spread: float) -> None:
    """Lengths are drawn uniformly in mean x [1 - spread, 1 + spread]."""
    if not 0.0 <= spread < 1.0:
        raise ValueError("spread must be in [0, 1)")
