"""Every rendered manifest passes schema validation: built-in kinds with kubernetes-validate
(strict), InferencePool / HTTPRoute / Gateway against the CRD schemas in ../shared/schemas/."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import pytest

from pilothouse.config.fleet import load_fleet
from pilothouse.controlplane.render.bundle import render_fleet
from pilothouse.controlplane.render.options import RENDERED_ENGINES, Autoscaling, RenderOptions
from tests.unit.controlplane.render.conftest import (
    EMBEDDED_EXAMPLE,
    EXAMPLES,
    SIM_EXAMPLE,
    VLLM_EXAMPLE,
)
from tests.unit.controlplane.render.schemas import require_schemas, validate

AUTOSCALERS = ["hpa", "keda", "none"]


def _examples_with_rendered_engines() -> list[Path]:
    found = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        fleet = load_fleet(path)
        if any(m.engine in RENDERED_ENGINES and m.launched for m in fleet.models):
            found.append(path)
    return found


def test_the_vllm_sim_and_embedded_examples_are_covered() -> None:
    covered = set(_examples_with_rendered_engines())
    assert {VLLM_EXAMPLE, SIM_EXAMPLE, EMBEDDED_EXAMPLE} <= covered


@pytest.mark.parametrize("example", _examples_with_rendered_engines(), ids=lambda p: p.name)
@pytest.mark.parametrize("autoscaling", AUTOSCALERS)
def test_every_manifest_validates(example: Path, autoscaling: str) -> None:
    require_schemas()
    fleet = load_fleet(example)
    # An HPA cannot scale to zero: a scale-to-zero fleet forced onto one needs --min-replicas 1.
    to_zero = any(m.bounds[0] == 0 for m in fleet.models)
    floor = 1 if autoscaling == "hpa" and to_zero else None
    options = RenderOptions(
        namespace="inference",
        with_gateway=True,
        autoscaling=Autoscaling(kind=autoscaling, min_replicas=floor),  # type: ignore[arg-type]
    )
    rendered = render_fleet(fleet, options, base_dir=example.parent)
    kinds = {m["kind"] for m in rendered.manifests}
    assert {"InferencePool", "HTTPRoute", "Gateway", "Deployment", "Role"} <= kinds
    for manifest in rendered.manifests:
        validate(manifest)


@pytest.mark.parametrize("gateway_class", ["kgateway", "istio"])
def test_gateway_class_is_configurable(gateway_class: str) -> None:
    require_schemas()
    options = RenderOptions(with_gateway=True, gateway_class=gateway_class)
    rendered = render_fleet(load_fleet(SIM_EXAMPLE), options)
    (gateway,) = [m for m in rendered.manifests if m["kind"] == "Gateway"]
    assert gateway["spec"]["gatewayClassName"] == gateway_class
    validate(gateway)


# The validators must be able to fail, or the tests above prove nothing.

BROKEN = {
    "InferencePool": lambda m: m["spec"].update(targetPortNumber=8000),  # the v1alpha2 field
    "HTTPRoute": lambda m: m["spec"]["rules"][0]["backendRefs"][0].update(kind=""),
    "Gateway": lambda m: m["spec"].pop("gatewayClassName"),
    "Deployment": lambda m: m["spec"]["template"]["spec"]["containers"][0].update(port=80),
    "Role": lambda m: m["rules"][0].update(verb=["get"]),
    "HorizontalPodAutoscaler": lambda m: m["spec"].update(minReplicas="two"),
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_validation_rejects_a_broken_manifest(kind: str) -> None:
    require_schemas()
    rendered = render_fleet(load_fleet(VLLM_EXAMPLE), replace(RenderOptions(), with_gateway=True))
    manifest = copy.deepcopy(next(m for m in rendered.manifests if m["kind"] == kind))
    validate(manifest)
    BROKEN[kind](manifest)
    with pytest.raises(Exception, match=r".") as caught:
        validate(manifest)
    assert type(caught.value).__name__ == "ValidationError"
