"""Table-driven tests of the ``role`` filter."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from pilothouse.clock import ManualClock
from pilothouse.errors import ConfigError
from pilothouse.scheduling.context import PluginContext
from pilothouse.scheduling.interfaces import CycleState
from pilothouse.scheduling.plugins.filters.role import RoleFilter
from pilothouse.scheduling.testing import endpoint, request, run_filter
from pilothouse.scheduling.types import Endpoint


def _labelled(name: str, labels: dict[str, str]) -> Endpoint:
    return endpoint(name).evolve(labels=MappingProxyType(labels))


def _role(name: str, role: str | None) -> Endpoint:
    return _labelled(name, {} if role is None else {"llm-d.ai/role": role})


POOL = [_role("p", "prefill"), _role("d", "decode"), _role("b", "both"), _role("u", None)]


@pytest.mark.parametrize(
    ("parameters", "kept"),
    [
        pytest.param({"roles": ["prefill"]}, ["p"], id="prefill"),
        pytest.param({"roles": ["decode", "both"]}, ["d", "b"], id="decode"),
        pytest.param(
            {"roles": ["decode", "both"], "allow_unlabeled": True}, ["d", "b", "u"], id="unlabeled"
        ),
        pytest.param({"roles": ["encode"]}, [], id="none-match"),
        pytest.param({"roles": ["gpu"], "label": "tier"}, [], id="other-label-absent"),
    ],
)
def test_keeps_accepted_roles(parameters: dict[str, object], kept: list[str]) -> None:
    plugin = RoleFilter.create("role", parameters, PluginContext(ManualClock()))
    assert run_filter(plugin, POOL) == kept


def test_any_label_works() -> None:
    pool = [_labelled("x", {"tier": "gpu"}), _labelled("y", {"tier": "cpu"}), endpoint("z")]
    plugin = RoleFilter("tier", roles=["gpu"], label="tier")
    assert run_filter(plugin, pool) == ["x"]


def test_returns_the_input_when_everything_is_kept() -> None:
    plugin = RoleFilter("role", roles=["decode"], allow_unlabeled=True)
    pool = [endpoint("a"), endpoint("b")]
    assert plugin.filter(CycleState(0.0), request(), pool) is pool


@pytest.mark.parametrize(
    ("parameters", "path"),
    [
        pytest.param({}, "roles", id="required"),
        pytest.param({"roles": []}, "roles", id="empty"),
        pytest.param({"roles": "decode"}, "roles", id="not-a-list"),
        pytest.param({"roles": ["decode"], "label": ""}, "label", id="empty-label"),
        pytest.param({"roles": ["decode"], "role": "x"}, "role", id="unknown"),
    ],
)
def test_bad_parameters_name_the_field(parameters: dict[str, object], path: str) -> None:
    with pytest.raises(ConfigError) as info:
        RoleFilter.create("role", parameters, PluginContext(ManualClock()))
    assert info.value.path == path
