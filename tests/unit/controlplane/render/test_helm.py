"""The Helm chart in deploy/helm/pilothouse renders the same objects as `render k8s`.

Rendered twice: by :func:`render_chart` (the four template action forms the generator emits,
evaluated in Python) and, when ``helm-python-sdk`` (Helm's own Go engine, v4) is installed,
by Helm itself, the equivalent of ``helm template``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from pilothouse.config.fleet import load_fleet
from pilothouse.controlplane.render.bundle import render_fleet
from pilothouse.controlplane.render.helm import ACTION, ACTION_FORM, render_chart, write_chart
from pilothouse.controlplane.render.options import Autoscaling, Images, RenderOptions
from tests.unit.controlplane.render.conftest import SIM_EXAMPLE, VLLM_EXAMPLE
from tests.unit.controlplane.render.schemas import require_schemas, validate

REPO = Path(__file__).resolve().parents[4]
CHART = REPO / "deploy" / "helm" / "pilothouse"
REGENERATE = "-f examples/fleet-vllm-gpu.yaml --out deploy/helm/pilothouse"
SLUG = "qwen2-5-0-5b-instruct"

Manifest = dict[str, Any]


def by_identity(manifests: list[Manifest]) -> list[Manifest]:
    return sorted(manifests, key=lambda m: (m["kind"], m["metadata"]["name"]))


def expected(options: RenderOptions) -> list[Manifest]:
    return by_identity(list(render_fleet(load_fleet(VLLM_EXAMPLE), options).manifests))


def helm_template(chart: Path, values: dict[str, Any], namespace: str) -> list[Manifest]:
    helm = pytest.importorskip("helm_python", reason="Helm's engine: pip install helm-python-sdk")
    rendered = helm.Chart.load(str(chart)).render(values=values, name="fleet", namespace=namespace)
    return [doc for text in rendered.values() for doc in yaml.safe_load_all(text) if doc]


OVERRIDES: dict[str, Any] = {
    "images": {"vllm": "registry.local/vllm:v0.11", "pullPolicy": "Always"},
    "gateway": {"name": "edge"},
    "models": {SLUG: {"autoscaling": {"maxReplicas": 9}, "resources": {"memory": "24Gi"}}},
}
OVERRIDDEN = replace(
    RenderOptions(namespace="prod", gateway_name="edge"),
    images=Images(vllm="registry.local/vllm:v0.11", pull_policy="Always"),
    autoscaling=Autoscaling(max_replicas=9),
    resources=replace(RenderOptions().resources, memory="24Gi"),
)


def test_committed_chart_is_up_to_date(tmp_path: Path) -> None:
    write_chart(load_fleet(VLLM_EXAMPLE), RenderOptions(), tmp_path, command=REGENERATE)
    fresh = {p.relative_to(tmp_path): p.read_text() for p in tmp_path.rglob("*.yaml")}
    committed = {p.relative_to(CHART): p.read_text() for p in CHART.rglob("*.yaml")}
    assert committed == fresh, f"regenerate: pilothouse render helm {REGENERATE}"


def test_templates_use_only_the_supported_actions() -> None:
    actions = [
        a for t in (CHART / "templates").glob("*.yaml") for a in ACTION.findall(t.read_text())
    ]
    assert actions, "the chart has no tunables"
    assert [a for a in actions if not ACTION_FORM.match(a)] == []


@pytest.mark.parametrize("renderer", ["python", "helm"])
def test_chart_defaults_render_the_same_objects_as_render_k8s(renderer: str) -> None:
    if renderer == "helm":
        got = helm_template(CHART, {}, "default")
    else:
        got = render_chart(CHART, namespace="default")
    assert by_identity(got) == expected(RenderOptions())


@pytest.mark.parametrize("renderer", ["python", "helm"])
def test_chart_values_match_the_render_options(renderer: str) -> None:
    if renderer == "helm":
        got = helm_template(CHART, OVERRIDES, "prod")
    else:
        got = render_chart(CHART, values=OVERRIDES, namespace="prod")
    assert by_identity(got) == expected(OVERRIDDEN)


@pytest.mark.parametrize("renderer", ["python", "helm"])
@pytest.mark.parametrize("autoscaling", ["keda", "none"])
def test_generated_charts_for_other_fleets_match(
    tmp_path: Path, renderer: str, autoscaling: str
) -> None:
    options = RenderOptions(autoscaling=Autoscaling(kind=autoscaling))  # type: ignore[arg-type]
    fleet = load_fleet(SIM_EXAMPLE)
    write_chart(fleet, options, tmp_path, command="test")
    if renderer == "helm":
        got = helm_template(tmp_path, {}, "default")
    else:
        got = render_chart(tmp_path, namespace="default")
    assert by_identity(got) == by_identity(list(render_fleet(fleet, options).manifests))


def test_chart_objects_validate() -> None:
    require_schemas()
    for manifest in render_chart(CHART, values=OVERRIDES, namespace="prod"):
        validate(manifest)


def test_regenerating_removes_stale_templates_only(tmp_path: Path) -> None:
    write_chart(load_fleet(SIM_EXAMPLE), RenderOptions(), tmp_path, command="sim")
    (tmp_path / "templates" / "extra.yaml").write_text("# hand-written\n")
    write_chart(load_fleet(VLLM_EXAMPLE), RenderOptions(), tmp_path, command="vllm")
    names = sorted(p.name for p in (tmp_path / "templates").glob("*.yaml"))
    assert names == ["extra.yaml", f"{SLUG}.yaml"]
