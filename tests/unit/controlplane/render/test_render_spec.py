"""`render k8s` reads the Fleet spec's kubernetes, resources, image and autoscaling fields;
its flags, when given, win."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from pilothouse.config.fleet import FleetSpec, load_fleet
from pilothouse.controlplane.render.bundle import render_fleet
from pilothouse.controlplane.render.cli import render_group
from pilothouse.controlplane.render.helm import render_chart, write_chart
from pilothouse.controlplane.render.spec_options import options_from_fleet
from pilothouse.errors import ConfigError

EXAMPLES = Path(__file__).resolve().parents[4] / "examples"
Manifest = dict[str, Any]

SPEC: dict[str, Any] = {
    "models": [
        {
            "name": "chat",
            "engine": "vllm",
            "source": "s3://weights/chat",
            "image": "registry.local/vllm:v1",
            "kubernetes_name": "chat-prod",
            "resources": {"gpus": 2, "cpu": "8", "memory": "48Gi"},
            "autoscaling": {
                "min_replicas": 2,
                "max_replicas": 6,
                "metric": "kv_cache_usage",
                "target": 0.6,
                "scale_down_stabilization_s": 120,
            },
        }
    ],
    "kubernetes": {
        "namespace": "llm",
        "gateway_name": "edge",
        "picker_replicas": 2,
        "failure_mode": "FailOpen",
        "image_pull_policy": "Always",
    },
}


def render(spec: dict[str, Any], **flags: Any) -> list[Manifest]:
    fleet = FleetSpec.model_validate(spec)
    return list(render_fleet(fleet, options_from_fleet(fleet, flags)).manifests)


def one(manifests: list[Manifest], kind: str) -> Manifest:
    (found,) = [m for m in manifests if m["kind"] == kind and "epp" not in m["metadata"]["name"]]
    return found


def test_fleet_and_model_fields_reach_the_manifests() -> None:
    manifests = render(SPEC)
    assert {m["metadata"]["namespace"] for m in manifests} == {"llm"}
    server = one(manifests, "Deployment")
    assert server["metadata"]["name"] == "chat-prod"
    container = server["spec"]["template"]["spec"]["containers"][0]
    assert (container["image"], container["imagePullPolicy"]) == (
        "registry.local/vllm:v1",
        "Always",
    )
    assert container["resources"]["requests"] == {"cpu": "8", "memory": "48Gi"}
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 2
    args = container["args"]
    assert args[0] == "s3://weights/chat"
    assert args[args.index("--load-format") + 1] == "runai_streamer"
    pool = one(manifests, "InferencePool")
    assert pool["spec"]["endpointPickerRef"]["failureMode"] == "FailOpen"
    picker = next(m for m in manifests if m["kind"] == "Deployment" and m is not server)
    assert picker["spec"]["replicas"] == 2
    route = one(manifests, "HTTPRoute")
    assert route["spec"]["parentRefs"][0]["name"] == "edge"
    hpa = one(manifests, "HorizontalPodAutoscaler")
    spec = hpa["spec"]
    assert (spec["minReplicas"], spec["maxReplicas"]) == (2, 6)
    metric = spec["metrics"][0]["pods"]
    assert metric["metric"]["name"] == "vllm_kv_cache_usage_perc"
    assert metric["target"]["averageValue"] == "0.6"
    assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 120


def test_flags_override_the_spec() -> None:
    manifests = render(
        SPEC, namespace="other", image_pull_policy="Never", max_replicas=9, memory="8Gi"
    )
    assert {m["metadata"]["namespace"] for m in manifests} == {"other"}
    container = one(manifests, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["imagePullPolicy"] == "Never"
    assert container["resources"]["requests"]["memory"] == "8Gi"
    assert one(manifests, "HorizontalPodAutoscaler")["spec"]["maxReplicas"] == 9


@pytest.mark.parametrize(
    ("metric", "query", "metric_type"),
    [
        ("queue_depth", 'sum(vllm:num_requests_running{model_name="m"}) + '
         'sum(vllm:num_requests_waiting{model_name="m"})', None),
        ("kv_cache_usage", 'sum(vllm:kv_cache_usage_perc{model_name="m"})', None),
        ("ttft", 'histogram_quantile(0.9, sum by (le) '
         '(rate(vllm:time_to_first_token_seconds_bucket{model_name="m"}[2m])))', "Value"),
    ],
)  # fmt: skip
def test_keda_follows_the_model_metric(metric: str, query: str, metric_type: str | None) -> None:
    auto = {"min_replicas": 0, "max_replicas": 3, "metric": metric, "idle_timeout_s": 90}
    spec = {"models": [{"name": "m", "engine": "sim", "autoscaling": auto}]}
    scaled = one(render(spec, autoscaling="keda"), "ScaledObject")["spec"]
    trigger = scaled["triggers"][0]
    assert trigger["metadata"]["query"] == query
    assert trigger.get("metricType") == metric_type
    assert (scaled["minReplicaCount"], scaled["maxReplicaCount"]) == (0, 3)
    assert scaled["cooldownPeriod"] == 90


@pytest.mark.parametrize(
    ("auto", "path"),
    [
        ({"min_replicas": 0, "max_replicas": 2}, "models[0].autoscaling.min_replicas"),
        ({"max_replicas": 2, "metric": "ttft"}, "models[0].autoscaling.metric"),
    ],
)
def test_what_an_hpa_cannot_do_names_the_field(auto: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError) as caught:
        render({"models": [{"name": "m", "engine": "sim", "autoscaling": auto}]})
    assert caught.value.path == path


def test_the_autoscaling_example_renders_for_kubernetes() -> None:
    example = EXAMPLES / "fleet-sim-autoscale.yaml"
    result = CliRunner().invoke(render_group, ["k8s", "-f", str(example), "--with-gateway"])
    assert result.exit_code == 0, result.output
    docs = list(yaml.safe_load_all(result.stdout))
    scaled = one(docs, "ScaledObject")["spec"]
    assert (scaled["minReplicaCount"], scaled["maxReplicaCount"]) == (0, 4)
    assert scaled["cooldownPeriod"] == 120
    server = one(docs, "Deployment")
    assert "replicas" not in server["spec"]
    args = server["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--startup-delay") + 1] == "2"


def test_the_autoscaling_example_makes_a_chart_with_the_same_objects(tmp_path: Path) -> None:
    fleet = load_fleet(EXAMPLES / "fleet-sim-autoscale.yaml")
    options = options_from_fleet(fleet, {})
    write_chart(fleet, options, tmp_path, command="test")
    values = yaml.safe_load((tmp_path / "values.yaml").read_text())
    assert values["models"]["sim-chat"]["autoscaling"]["target"] == "8"
    key = lambda m: (m["kind"], m["metadata"]["name"])  # noqa: E731
    got = sorted(render_chart(tmp_path, namespace="default"), key=key)
    assert got == sorted(render_fleet(fleet, options).manifests, key=key)


def test_the_lora_example_renders_its_adapters_into_the_vllm_pods() -> None:
    """Same file, same adapters as `pilothouse up`: vLLM starts with --lora-modules."""
    example = EXAMPLES / "fleet-lora.yaml"
    result = CliRunner().invoke(render_group, ["k8s", "-f", str(example)])
    assert result.exit_code == 0, result.output
    server = one(list(yaml.safe_load_all(result.stdout)), "Deployment")
    args = server["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args.count("--enable-lora") == 1  # the example sets it in args; not repeated
    modules = args[args.index("--lora-modules") + 1 : args.index("--lora-modules") + 3]
    assert modules == [
        "sql-lora=example-org/llama-3.1-8b-sql-lora",
        "support-lora=s3://models/adapters/support-v3",
    ]


def test_sim_adapters_render_like_the_local_launch() -> None:
    spec = {
        "models": [
            {
                "name": "m",
                "engine": "sim",
                "adapters": [{"name": "a1", "source": "/adapters/a1"}],
            }
        ]
    }
    server = one(render(spec), "Deployment")
    args = server["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--lora-modules") + 1] == "a1=/adapters/a1"
    assert "--allow-runtime-lora-updating" in args
