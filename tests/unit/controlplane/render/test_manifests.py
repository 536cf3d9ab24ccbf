"""What the rendered objects say: the wiring between them and the engine flags."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pilothouse.config.fleet import FleetSpec, ModelSpec
from pilothouse.controlplane.render.bundle import render_fleet
from pilothouse.controlplane.render.options import Autoscaling, RenderOptions, slug
from pilothouse.errors import ConfigError
from pilothouse.servers.sim.cli import settings_from_options, sim_command

Manifest = dict[str, Any]


def objects(fleet: FleetSpec, options: RenderOptions | None = None) -> list[Manifest]:
    return list(render_fleet(fleet, options or RenderOptions()).manifests)


def one(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    (found,) = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    return found


def container(deployment: Manifest) -> Manifest:
    result: Manifest = deployment["spec"]["template"]["spec"]["containers"][0]
    return result


def test_vllm_server_probes_prefix_caching_and_kv_events(vllm_fleet: FleetSpec) -> None:
    manifests = objects(vllm_fleet)
    server = container(one(manifests, "Deployment", "qwen2-5-0-5b-instruct"))
    assert server["image"] == "vllm/vllm-openai:latest"
    assert server["command"] == ["vllm", "serve"]
    args = server["args"]
    assert args[0] == "Qwen/Qwen2.5-0.5B-Instruct"
    assert args[args.index("--served-model-name") + 1] == "qwen2.5-0.5b-instruct"
    assert args.count("--enable-prefix-caching") == 1  # the Fleet asked for it too
    assert args[args.index("--max-model-len") + 1] == "4096"  # Fleet args pass through
    kv = json.loads(args[args.index("--kv-events-config") + 1])
    assert kv == {
        "enable_kv_cache_events": True,
        "publisher": "zmq",
        "endpoint": "tcp://*:5557",
        "replay_endpoint": "tcp://*:5558",
        "topic": "kv@$(POD_IP):8000@qwen2.5-0.5b-instruct",
    }
    # $(POD_IP) is expanded by Kubernetes only when POD_IP is declared in env.
    assert {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}} in server[
        "env"
    ]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert server[probe]["httpGet"] == {"path": "/health", "port": "http"}
    assert server["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_pool_selects_model_pods_only_and_points_at_the_picker(vllm_fleet: FleetSpec) -> None:
    manifests = objects(vllm_fleet)
    name = "qwen2-5-0-5b-instruct"
    pool = one(manifests, "InferencePool", name)
    selector = pool["spec"]["selector"]["matchLabels"]
    server_labels = one(manifests, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
    epp = one(manifests, "Deployment", f"{name}-epp")
    epp_labels = epp["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= server_labels.items()
    assert not selector.items() <= epp_labels.items()
    assert server_labels["llm-d.ai/engine-type"] == "vllm"
    assert pool["spec"]["targetPorts"] == [{"number": 8000}]

    ref = pool["spec"]["endpointPickerRef"]
    service = one(manifests, "Service", ref["name"])
    assert ref["port"]["number"] in [p["port"] for p in service["spec"]["ports"]]
    assert service["spec"]["selector"].items() <= epp_labels.items()
    assert ref["failureMode"] == "FailClose"
    args = container(epp)["args"]
    assert args[args.index("--pool-name") + 1] == pool["metadata"]["name"]
    assert args[args.index("--pool-namespace") + 1] == pool["metadata"]["namespace"]


def test_picker_rbac_covers_what_discovery_watches(vllm_fleet: FleetSpec) -> None:
    manifests = objects(vllm_fleet, RenderOptions(namespace="inference"))
    epp = one(manifests, "Deployment", "qwen2-5-0-5b-instruct-epp")
    account = epp["spec"]["template"]["spec"]["serviceAccountName"]
    binding = one(manifests, "RoleBinding", account)
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account, "namespace": "inference"}
    ]
    role = one(manifests, "Role", binding["roleRef"]["name"])
    granted = {(g, r): set(rule["verbs"]) for rule in role["rules"] for g in rule["apiGroups"]
               for r in rule["resources"]}  # fmt: skip
    assert granted[("", "pods")] >= {"get", "list", "watch"}
    assert granted[("inference.networking.k8s.io", "inferencepools")] >= {"get", "list", "watch"}
    probes = container(epp)
    assert probes["readinessProbe"]["grpc"] == {"port": 9003, "service": "readiness"}
    assert probes["livenessProbe"]["grpc"] == {"port": 9003, "service": "liveness"}


def test_route_from_the_named_gateway_to_the_pool(vllm_fleet: FleetSpec) -> None:
    manifests = objects(vllm_fleet, RenderOptions(gateway_name="edge"))
    route = one(manifests, "HTTPRoute", "qwen2-5-0-5b-instruct")
    assert route["spec"]["parentRefs"][0]["name"] == "edge"
    (rule,) = route["spec"]["rules"]
    assert rule["backendRefs"] == [
        {
            "group": "inference.networking.k8s.io",
            "kind": "InferencePool",
            "name": "qwen2-5-0-5b-instruct",
        }
    ]
    assert "headers" not in rule["matches"][0]  # one model: every request
    assert rule["timeouts"]["request"] == "600s"


def test_several_models_are_routed_by_model_header(two_model_fleet: FleetSpec) -> None:
    routes = [m for m in objects(two_model_fleet) if m["kind"] == "HTTPRoute"]
    headers = [r["spec"]["rules"][0]["matches"][0]["headers"][0] for r in routes]
    assert [h["value"] for h in headers] == ["llama-3.1-8b-instruct", "qwen3-32b"]
    assert {h["name"] for h in headers} == {"X-Gateway-Model-Name"}


def test_sim_server_args_are_accepted_by_the_sim_command(two_model_fleet: FleetSpec) -> None:
    server = container(one(objects(two_model_fleet), "Deployment", "qwen3-32b"))
    assert server["command"] == ["python", "-m", "pilothouse", "engine", "sim"]
    assert "nvidia.com/gpu" not in server["resources"]["limits"]
    ctx = sim_command.make_context("sim", list(server["args"]))
    settings = settings_from_options(ctx.params)
    assert (settings.model, settings.port, settings.preset) == (
        "qwen3-32b",
        8000,
        "qwen3-32b-tp2-h100",
    )
    assert settings.kv_events.topic == "kv@$(POD_IP):8000@qwen3-32b"
    assert (settings.kv_events.port, settings.kv_events.replay_port) == (5557, 5558)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("hpa", "HorizontalPodAutoscaler"), ("keda", "ScaledObject"), ("none", None)],
)
def test_autoscalers(vllm_fleet: FleetSpec, kind: str, expected: str | None) -> None:
    options = RenderOptions(autoscaling=Autoscaling(kind=kind, max_replicas=7))  # type: ignore[arg-type]
    manifests = objects(vllm_fleet, options)
    server = one(manifests, "Deployment", "qwen2-5-0-5b-instruct")
    scalers = [m for m in manifests if m["kind"] in ("HorizontalPodAutoscaler", "ScaledObject")]
    if expected is None:
        assert scalers == []
        assert server["spec"]["replicas"] == 2
        return
    (scaler,) = scalers
    assert scaler["kind"] == expected
    assert "replicas" not in server["spec"]  # the autoscaler owns it
    assert scaler["spec"]["scaleTargetRef"]["name"] == server["metadata"]["name"]
    if expected == "ScaledObject":
        trigger = scaler["spec"]["triggers"][0]["metadata"]
        assert (
            trigger["query"] == 'sum(vllm:num_requests_waiting{model_name="qwen2.5-0.5b-instruct"})'
        )
        assert (scaler["spec"]["minReplicaCount"], scaler["spec"]["maxReplicaCount"]) == (2, 7)
    else:
        assert (scaler["spec"]["minReplicas"], scaler["spec"]["maxReplicas"]) == (2, 7)


def test_scheduler_file_ships_as_a_configmap(tmp_path: Path) -> None:
    (tmp_path / "sched.yaml").write_text("profiles: []\n")
    fleet = FleetSpec.model_validate(
        {"models": [{"name": "m", "engine": "sim"}], "gateway": {"scheduler": "sched.yaml"}}
    )
    manifests = list(render_fleet(fleet, RenderOptions(), base_dir=tmp_path).manifests)
    configmap = one(manifests, "ConfigMap", "pilothouse-scheduler")
    assert configmap["data"] == {"scheduler.yaml": "profiles: []\n"}
    epp = one(manifests, "Deployment", "m-epp")
    args = container(epp)["args"]
    assert args[args.index("--scheduler") + 1] == "/etc/pilothouse/scheduler.yaml"
    assert (
        epp["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"] == "pilothouse-scheduler"
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("qwen2.5-0.5b-instruct", "qwen2-5-0-5b-instruct"),
        ("Qwen/Qwen2.5-7B", "qwen-qwen2-5-7b"),
        ("3b-model", "m-3b-model"),
        ("a" * 80, "a" * 43 + "-" + hashlib.sha256(b"a" * 80).hexdigest()[:6]),
    ],
)
def test_slug_is_a_dns_label(name: str, expected: str) -> None:
    result = slug(name)
    assert result == expected
    assert len(result) <= 50
    assert result[0].isalpha()
    assert result.replace("-", "").isalnum()


def _fleet(*models: dict[str, Any]) -> FleetSpec:
    return FleetSpec.model_validate({"models": list(models)})


def test_only_vllm_sim_and_llamacpp_models_are_rendered() -> None:
    fleet = _fleet(
        {"name": "local", "engine": "llamacpp"},
        {"name": "other", "engine": "sglang"},
        {"name": "external", "engine": "vllm", "endpoints": ["10.0.0.1:8000"]},
        {"name": "sim", "engine": "sim"},
    )
    rendered = render_fleet(fleet, RenderOptions())
    assert rendered.skipped == ("other", "external")
    pools = {m["metadata"]["name"] for m in rendered.manifests if m["kind"] == "InferencePool"}
    assert pools == {"local", "sim"}
    with pytest.raises(ConfigError, match="no model"):
        render_fleet(_fleet({"name": "other", "engine": "sglang"}), RenderOptions())


@pytest.mark.parametrize(
    ("models", "path"),
    [
        ([{"name": "a.b", "engine": "sim"}, {"name": "a-b", "engine": "sim"}], "models[1].name"),
        (
            [{"name": "m", "engine": "vllm", "source": "x", "args": {"port": 1}}],
            "models[0].args.port",
        ),
        ([{"name": "m", "engine": "sim", "args": {"kv_topic": "x"}}], "models[0].args.kv-topic"),
        ([{"name": "m", "engine": "vllm", "source": "embedded"}], "models[0].source"),
        (
            [
                {
                    "name": "m",
                    "engine": "vllm",
                    "source": "x",
                    "args": {"enable-prefix-caching": False},
                }
            ],
            "models[0].args.enable-prefix-caching",
        ),
    ],
)
def test_errors_name_the_fleet_field(models: list[dict[str, Any]], path: str) -> None:
    with pytest.raises(ConfigError) as caught:
        render_fleet(_fleet(*models), RenderOptions())
    assert caught.value.path == path


def test_gpus_follow_tensor_parallelism() -> None:
    fleet = _fleet(
        {"name": "m", "engine": "vllm", "source": "x", "args": {"tensor-parallel-size": 4}}
    )
    server = container(one(objects(fleet), "Deployment", "m"))
    assert server["resources"]["limits"]["nvidia.com/gpu"] == 4
    options = replace(RenderOptions(), resources=replace(RenderOptions().resources, gpus=2))
    server = container(one(objects(fleet, options), "Deployment", "m"))
    assert server["resources"]["limits"]["nvidia.com/gpu"] == 2


def test_hpa_needs_one_replica() -> None:
    fleet = _fleet({"name": "m", "engine": "sim", "replicas": 0})
    hpa = one(objects(fleet), "HorizontalPodAutoscaler", "m")
    assert hpa["spec"]["minReplicas"] == 1
    with pytest.raises(ConfigError, match="at least 1"):
        objects(fleet, RenderOptions(autoscaling=Autoscaling(kind="hpa", min_replicas=0)))
    keda = objects(fleet, RenderOptions(autoscaling=Autoscaling(kind="keda", min_replicas=0)))
    assert one(keda, "ScaledObject", "m")["spec"]["minReplicaCount"] == 0


def test_model_spec_is_untouched_by_rendering() -> None:
    model = ModelSpec(name="m", engine="sim", args={"preset": "llama-3.1-8b-h100"})
    fleet = FleetSpec(models=[model])
    render_fleet(fleet, RenderOptions())
    assert fleet.models[0].args == {"preset": "llama-3.1-8b-h100"}


def test_picker_args_are_accepted_by_the_epp_command(vllm_fleet: FleetSpec) -> None:
    epp_cli = pytest.importorskip("pilothouse.epp.cli", reason="the epp command is not here yet")
    manifests = objects(vllm_fleet, RenderOptions(namespace="inference"))
    picker = container(one(manifests, "Deployment", "qwen2-5-0-5b-instruct-epp"))
    assert picker["command"] == ["python", "-m", "pilothouse", "epp"]
    params = epp_cli.epp_command.make_context("epp", list(picker["args"])).params
    assert (params["pool_name"], params["pool_namespace"]) == ("qwen2-5-0-5b-instruct", "inference")
    assert params["host"] == "0.0.0.0"  # reachable from the gateway, not loopback only
    ports = {p["name"]: p["containerPort"] for p in picker["ports"]}
    assert (params["port"], params["health_port"], params["metrics_port"]) == (
        ports["grpc"],
        ports["grpc-health"],
        ports["metrics"],
    )
