"""The plugin registry: explicit, per instance, extensible with user plugins."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest
from pydantic import Field

from pilothouse.clock import ManualClock
from pilothouse.errors import ConfigError
from pilothouse.scheduling.config import PluginSpec, load_scheduler_config
from pilothouse.scheduling.context import PluginContext
from pilothouse.scheduling.interfaces import CycleState
from pilothouse.scheduling.registry import PluginRegistry, default_registry
from pilothouse.scheduling.scheduler import build_scheduler
from pilothouse.scheduling.testing import endpoint, request
from pilothouse.scheduling.types import Endpoint, SchedulingRequest
from pilothouse.scheduling.validation import ParametersModel, parse_parameters

BUILTINS = [
    "approx-prefix",
    "cache-aware-sglang",
    "estimated-ttft",
    "kv-cache-usage",
    "least-requests",
    "lora-affinity",
    "max-in-flight",
    "max-score",
    "not-saturated",
    "pd-disaggregation",
    "precise-prefix",
    "queue-depth",
    "random",
    "ready",
    "role",
    "round-robin",
    "session-affinity",
    "single",
    "slo-aware",
    "sticky-prefix",
]


class _LabelParameters(ParametersModel):
    label: str = Field(min_length=1)


class LabelScorer:
    """A user plugin: 1.0 for endpoints carrying a label."""

    def __init__(self, name: str, label: str) -> None:
        self.name = name
        self.label = label

    @classmethod
    def create(cls, name: str, parameters: Mapping[str, object], ctx: PluginContext) -> LabelScorer:
        return cls(name, parse_parameters(_LabelParameters, parameters).label)

    def score(
        self, state: CycleState, request: SchedulingRequest, endpoints: Sequence[Endpoint]
    ) -> Sequence[float]:
        return [1.0 if self.label in e.labels else 0.0 for e in endpoints]


def test_default_registry_has_every_builtin() -> None:
    assert default_registry().types() == BUILTINS


def test_default_registry_is_fresh_each_time() -> None:
    first = default_registry()
    first.register("label", LabelScorer.create)
    assert "label" in first
    assert "label" not in default_registry()


def test_duplicate_registration_is_refused_unless_replacing() -> None:
    registry = default_registry()
    with pytest.raises(ValueError, match="already registered"):
        registry.register("ready", LabelScorer.create)
    registry.register("ready", LabelScorer.create, replace=True)
    assert len(registry) == len(BUILTINS)


def test_custom_plugin_is_built_and_scores() -> None:
    registry = default_registry()
    registry.register("label", LabelScorer.create)
    config = load_scheduler_config(
        {
            "plugins": [
                {"type": "label", "name": "gpu", "parameters": {"label": "h100"}},
                {"type": "max-score"},
            ],
            "profiles": [{"name": "p", "plugins": [{"ref": "gpu"}, {"ref": "max-score"}]}],
        }
    )
    scheduler = build_scheduler(config, ManualClock(), registry=registry, seed=0)
    fast = endpoint("b").evolve(labels={"h100": "1"})
    for _ in range(5):
        result = scheduler.schedule(request(), [endpoint("a"), fast, endpoint("c")])
        assert result.target.name == "b"


def test_custom_plugin_parameter_error_has_path() -> None:
    registry = PluginRegistry({"label": LabelScorer.create})
    spec = PluginSpec(type="label", parameters={"label": ""})
    with pytest.raises(ConfigError) as info:
        registry.create(spec, PluginContext(ManualClock()), path="plugins[4]")
    assert info.value.path == "plugins[4].parameters.label"


def test_empty_registry_reports_no_known_types() -> None:
    with pytest.raises(ConfigError, match=r"known: none"):
        PluginRegistry().create(PluginSpec(type="ready"), PluginContext(ManualClock()))


def test_factory_must_return_plugin_with_declared_name() -> None:
    registry = PluginRegistry({"label": lambda name, params, ctx: LabelScorer("other", "x")})
    with pytest.raises(TypeError, match="named 'label'"):
        registry.create(PluginSpec(type="label"), PluginContext(ManualClock()))


@pytest.mark.parametrize(
    ("seed", "same"),
    [pytest.param(7, True, id="seeded-reproducible"), pytest.param(None, False, id="unseeded")],
)
def test_context_rng(seed: int | None, same: bool) -> None:
    ctx = PluginContext(ManualClock(), seed=seed)
    first = [ctx.rng("p").random() for _ in range(3)]
    again = [ctx.rng("p").random() for _ in range(3)]
    assert (first == again) is same
    assert ctx.rng("p").random() != ctx.rng("q").random()
