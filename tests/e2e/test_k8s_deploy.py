"""``pilothouse deploy k8s`` against an in-process fake of the Kubernetes API.

The real ``kubernetes`` client (its ``DynamicClient``: discovery, then server-side apply) talks
HTTP to :class:`pilothouse.testing.fake_kube.FakeKubeAPI`, reached through a kubeconfig file
as on a real machine. The tests render the example sim Fleet and check what lands in the
fake: objects with the field manager and the fleet label; re-apply is "unchanged"; a changed
image or replica count is "configured"; a removed model is pruned; a dry run writes nothing;
a missing CRD, RBAC denial, invalid object and field conflict are clean CLI errors; and
``--wait`` follows the Deployments until they are available.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("kubernetes", reason="needs the 'k8s' extra (pip install 'pilothouse[k8s]')")

from click.testing import CliRunner, Result

from pilothouse.cli import cli
from pilothouse.config.fleet import FleetSpec
from pilothouse.controlplane.kube_apply import FLEET_LABEL, DeployOptions, deploy
from pilothouse.controlplane.kube_client import DeployError, KubeClient
from pilothouse.controlplane.render.bundle import render_fleet
from pilothouse.controlplane.render.options import RenderOptions
from pilothouse.testing.fake_kube import FakeKubeAPI

pytestmark = pytest.mark.e2e

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fleet-k8s-sim.yaml"
NS = "inference"
MODEL = "llama-3-1-8b-instruct"
SECOND = "qwen3-32b"
ALL_OF_ONE_MODEL = {
    "ServiceAccount": [f"{MODEL}-epp"],
    "Role": [f"{MODEL}-epp"],
    "RoleBinding": [f"{MODEL}-epp"],
    "Service": [f"{MODEL}-epp"],
    "DestinationRule": [f"{MODEL}-epp"],  # Istio (the default class) reaches the picker by TLS
    "Deployment": [MODEL, f"{MODEL}-epp"],
    "InferencePool": [MODEL],
    "HTTPRoute": [MODEL],
    "HorizontalPodAutoscaler": [MODEL],
}


@pytest.fixture
def fake() -> Iterator[FakeKubeAPI]:
    with FakeKubeAPI() as api:
        yield api


@pytest.fixture
def kubeconfig(fake: FakeKubeAPI, tmp_path: Path) -> Path:
    return fake.write_kubeconfig(tmp_path / "kubeconfig")


def fleet_file(tmp_path: Path, *, second_model: bool = False, **changes: Any) -> Path:
    """The sim example, with ``changes`` merged into its first model, as a file."""
    data = yaml.safe_load(EXAMPLE.read_text())
    data["models"][0].update(changes)
    if second_model:
        data["models"].append(
            {
                "name": SECOND,
                "engine": "sim",
                "replicas": 1,
                "args": {"preset": "qwen3-32b-tp2-h100"},
            }
        )
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def run(kubeconfig: Path, fleet: Path, *args: str) -> Result:
    argv = ["deploy", "k8s", "-f", str(fleet), "-n", NS, "--kubeconfig", str(kubeconfig)]
    return CliRunner().invoke(cli, [*argv, *args])


def lines(result: Result) -> dict[str, str]:
    """kubectl-style object name → the rest of its report line."""
    out = {}
    for line in result.stdout.splitlines():
        name, _, rest = line.partition(" ")
        out[name] = rest
    return out


def inventory(fake: FakeKubeAPI) -> dict[str, list[str]]:
    kinds = [*ALL_OF_ONE_MODEL, "ConfigMap", "ScaledObject", "Gateway"]
    return {k: fake.names(k, NS) for k in kinds if fake.names(k, NS)}


# --------------------------------------------------------------------------- apply


def test_first_apply_creates_every_object_with_manager_and_fleet_label(
    fake: FakeKubeAPI, kubeconfig: Path, tmp_path: Path
) -> None:
    result = run(kubeconfig, fleet_file(tmp_path), "--create-namespace")
    assert result.exit_code == 0, result.output
    assert inventory(fake) == ALL_OF_ONE_MODEL
    report = lines(result)
    assert report["namespace/inference"] == "created"
    assert report[f"deployment.apps/{MODEL}"] == "created"
    assert len(report) == 11  # with the picker's Istio DestinationRule (TLS)
    assert set(report.values()) == {"created"}
    assert "11 created, 0 configured, 0 unchanged, 0 pruned" in result.stderr
    server = fake.get("Deployment", MODEL, NS)
    assert server is not None
    assert server["metadata"]["labels"][FLEET_LABEL] == "fleet"  # the file's name
    assert [m["manager"] for m in server["metadata"]["managedFields"]] == ["pilothouse"]
    applies = [r for r in fake.requests() if r.method == "PATCH"]
    assert {r.query["fieldManager"] for r in applies} == {"pilothouse"}
    assert all("dryRun" not in r.query for r in applies)


def test_objects_are_applied_in_dependency_order(
    fake: FakeKubeAPI, kubeconfig: Path, tmp_path: Path
) -> None:
    assert run(kubeconfig, fleet_file(tmp_path), "--create-namespace").exit_code == 0
    order = [r.path.split("/")[-2] for r in fake.requests() if r.method == "PATCH"]
    assert order.index("namespaces") == 0  # cluster-scoped path: /api/v1/namespaces/inference
    assert order.index("serviceaccounts") < order.index("rolebindings") < order.index("deployments")
    assert order.index("deployments") < order.index("inferencepools") < order.index("httproutes")


def test_reapply_unchanged_then_configured_fields(
    fake: FakeKubeAPI, kubeconfig: Path, tmp_path: Path
) -> None:
    assert run(kubeconfig, fleet_file(tmp_path), "--create-namespace").exit_code == 0
    version = fake.resource_version
    again = run(kubeconfig, fleet_file(tmp_path))
    assert again.exit_code == 0, again.output
    assert set(lines(again).values()) == {"unchanged"}
    assert fake.resource_version == version  # a no-op apply writes nothing

    changed = fleet_file(tmp_path, image="registry.example/sim:2")
    result = run(kubeconfig, changed, "--autoscaling", "none")
    assert result.exit_code == 0, result.output
    report = lines(result)
    assert report[f"deployment.apps/{MODEL}"].startswith("configured (")
    assert "spec.replicas" in report[f"deployment.apps/{MODEL}"]
    assert "spec.template.spec.containers" in report[f"deployment.apps/{MODEL}"]
    assert report[f"horizontalpodautoscaler.autoscaling/{MODEL}"] == "pruned"
    assert report[f"service/{MODEL}-epp"] == "unchanged"
    server = fake.get("Deployment", MODEL, NS)
    assert server is not None
    assert server["spec"]["replicas"] == 3
    assert server["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/sim:2"
    assert server["metadata"]["generation"] == 2
    assert fake.names("HorizontalPodAutoscaler", NS) == []


def test_removed_model_is_pruned_and_no_prune_keeps_it(
    fake: FakeKubeAPI, kubeconfig: Path, tmp_path: Path
) -> None:
    two = fleet_file(tmp_path, second_model=True)
    assert run(kubeconfig, two, "--create-namespace").exit_code == 0
    assert SECOND in fake.names("Deployment", NS)
    one = fleet_file(tmp_path)
    kept = run(kubeconfig, one, "--no-prune")
    assert kept.exit_code == 0, kept.output
    assert SECOND in fake.names("Deployment", NS)
    result = run(kubeconfig, one)
    assert result.exit_code == 0, result.output
    pruned = sorted(k for k, v in lines(result).items() if v == "pruned")
    assert pruned == sorted(
        [
            f"deployment.apps/{SECOND}",
            f"deployment.apps/{SECOND}-epp",
            f"destinationrule.networking.istio.io/{SECOND}-epp",
            f"horizontalpodautoscaler.autoscaling/{SECOND}",
            f"httproute.gateway.networking.k8s.io/{SECOND}",
            f"inferencepool.inference.networking.k8s.io/{SECOND}",
            f"role.rbac.authorization.k8s.io/{SECOND}-epp",
            f"rolebinding.rbac.authorization.k8s.io/{SECOND}-epp",
            f"service/{SECOND}-epp",
            f"serviceaccount/{SECOND}-epp",
        ]
    )
    assert inventory(fake) == ALL_OF_ONE_MODEL
    # deletes go dependents first: the route before the pool, the pool before the servers
    deletes = [r.path.split("/")[-2] for r in fake.requests() if r.method == "DELETE"]
    assert (
        deletes.index("httproutes") < deletes.index("inferencepools") < deletes.index("deployments")
    )


def test_prune_is_scoped_to_the_fleet_label(
    fake: FakeKubeAPI, kubeconfig: Path, tmp_path: Path
) -> None:
    """Another fleet's objects, and unlabelled ones, in the same namespace are never pruned."""
    two = fleet_file(tmp_path, second_model=True)
    assert run(kubeconfig, two, "--create-namespace", "--name", "other").exit_code == 0
    fake.put({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "mine", "namespace": NS}})
    result = run(kubeconfig, fleet_file(tmp_path), "--name", "fleet")
    assert result.exit_code == 0, result.output
    assert "pruned" not in result.stdout
    assert SECOND in fake.names("Deployment", NS)
    assert "mine" in fake.names("Service", NS)


def test_dry_run_changes_nothing(fake: FakeKubeAPI, kubeconfig: Path, tmp_path: Path) -> None:
    fake.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    version = fake.resource_version
    result = run(kubeconfig, fleet_file(tmp_path, second_model=True), "--dry-run")
    assert result.exit_code == 0, result.output
    assert set(lines(result).values()) == {"created"}
    assert "(server dry run: nothing was changed)" in result.stderr
    assert fake.resource_version == version
    assert inventory(fake) == {}
    applies = [r for r in fake.requests() if r.method == "PATCH"]
    assert applies
    assert all(r.query.get("dryRun") == "All" for r in applies)

    assert run(kubeconfig, fleet_file(tmp_path, second_model=True)).exit_code == 0
    version = fake.resource_version
    result = run(kubeconfig, fleet_file(tmp_path, replicas=5), "--dry-run", "--autoscaling", "none")
    assert result.exit_code == 0, result.output
    report = lines(result)
    assert "spec.replicas" in report[f"deployment.apps/{MODEL}"]
    assert report[f"deployment.apps/{SECOND}"] == "pruned"
    assert fake.resource_version == version
    assert SECOND in fake.names("Deployment", NS)


def test_dry_run_into_a_new_namespace(fake: FakeKubeAPI, kubeconfig: Path, tmp_path: Path) -> None:
    result = run(kubeconfig, fleet_file(tmp_path), "--dry-run", "--create-namespace")
    assert result.exit_code == 0, result.output
    assert lines(result)["namespace/inference"] == "created"
    assert "not checked by the server" in lines(result)[f"deployment.apps/{MODEL}"]
    assert fake.names("Namespace") == []


# --------------------------------------------------------------------------- errors


def test_missing_namespace_is_a_clean_error(kubeconfig: Path, tmp_path: Path) -> None:
    result = run(kubeconfig, fleet_file(tmp_path))
    assert result.exit_code == 1
    assert "namespace 'inference' does not exist" in result.stderr
    assert "--create-namespace" in result.stderr
    assert "Traceback" not in result.output


def test_missing_crd_fails_before_any_write(
    fake: FakeKubeAPI, kubeconfig: Path, tmp_path: Path
) -> None:
    fake.uninstall("InferencePool")
    result = run(kubeconfig, fleet_file(tmp_path), "--create-namespace")
    assert result.exit_code == 1
    assert "does not serve InferencePool (inference.networking.k8s.io/v1)" in result.stderr
    assert "install the Gateway API Inference Extension CRDs" in result.stderr
    assert [r for r in fake.requests() if r.method != "GET"] == []
    assert "Traceback" not in result.output


def test_missing_optional_crd_is_skipped_by_prune_and_named_when_rendered(
    fake: FakeKubeAPI, kubeconfig: Path, tmp_path: Path
) -> None:
    """KEDA not installed: prune skips ScaledObjects; rendering one is a clear error."""
    fake.uninstall("ScaledObject")
    assert run(kubeconfig, fleet_file(tmp_path), "--create-namespace").exit_code == 0
    result = run(kubeconfig, fleet_file(tmp_path), "--autoscaling", "keda")
    assert result.exit_code == 1
    assert "does not serve ScaledObject" in result.stderr
    assert "install KEDA" in result.stderr


def test_rbac_denial_is_a_clean_error(fake: FakeKubeAPI, kubeconfig: Path, tmp_path: Path) -> None:
    message = (
        'roles.rbac.authorization.k8s.io "llama-3-1-8b-instruct-epp" is forbidden: User '
        '"dev" cannot patch resource "roles" in API group "rbac.authorization.k8s.io"'
    )
    fake.fail("PATCH", "Role", 403, message)
    result = run(kubeconfig, fleet_file(tmp_path), "--create-namespace")
    assert result.exit_code == 1
    assert f"apply role.rbac.authorization.k8s.io/{MODEL}-epp: permission denied" in result.stderr
    assert 'User "dev" cannot patch' in result.stderr
    assert "#permissions" in result.stderr
    assert "Traceback" not in result.output


def test_invalid_object_is_a_clean_error(
    fake: FakeKubeAPI, kubeconfig: Path, tmp_path: Path
) -> None:
    message = 'Deployment.apps "x" is invalid: spec.template.spec.containers[0].image: Required'
    fake.fail("PATCH", "Deployment", 422, message)
    result = run(kubeconfig, fleet_file(tmp_path), "--create-namespace")
    assert result.exit_code == 1
    assert "rejected the object as invalid" in result.stderr
    assert "containers[0].image" in result.stderr


def test_conflict_then_force_conflicts(fake: FakeKubeAPI, kubeconfig: Path, tmp_path: Path) -> None:
    fleet = fleet_file(tmp_path)
    assert run(kubeconfig, fleet, "--create-namespace", "--autoscaling", "none").exit_code == 0
    # someone scales by hand with their own apply: they now own spec.replicas too
    scale = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": MODEL}}
    fake.apply(
        {**scale, "metadata": {"name": MODEL, "namespace": NS}, "spec": {"replicas": 7}},
        manager="kubectl",
        force=True,
    )
    same = run(kubeconfig, fleet, "--autoscaling", "none")
    assert same.exit_code == 1
    assert 'conflict with "kubectl" using apps/v1: .spec.replicas' in same.stderr
    assert "--force-conflicts" in same.stderr
    assert "Traceback" not in same.output
    live = fake.get("Deployment", MODEL, NS)
    assert live is not None
    assert live["spec"]["replicas"] == 7

    forced = run(kubeconfig, fleet, "--autoscaling", "none", "--force-conflicts")
    assert forced.exit_code == 0, forced.output
    assert "spec.replicas" in lines(forced)[f"deployment.apps/{MODEL}"]
    live = fake.get("Deployment", MODEL, NS)
    assert live is not None
    assert live["spec"]["replicas"] == 3
    owned = {m["manager"]: m["fieldsV1"] for m in live["metadata"]["managedFields"]}
    assert "f:replicas" in owned["pilothouse"]["f:spec"]
    assert "kubectl" not in owned  # it owned nothing else


def test_fields_owned_elsewhere_are_left_alone(
    fake: FakeKubeAPI, kubeconfig: Path, tmp_path: Path
) -> None:
    """An annotation another manager added survives a re-apply (no conflict: we don't set it)."""
    fleet = fleet_file(tmp_path)
    assert run(kubeconfig, fleet, "--create-namespace").exit_code == 0
    note = {"metadata": {"name": MODEL, "namespace": NS, "annotations": {"team": "ml"}}}
    fake.apply({"apiVersion": "apps/v1", "kind": "Deployment", **note}, manager="kubectl")
    result = run(kubeconfig, fleet)
    assert result.exit_code == 0, result.output
    live = fake.get("Deployment", MODEL, NS)
    assert live is not None
    assert live["metadata"]["annotations"] == {"team": "ml"}


def test_unreachable_server_is_a_clean_error(tmp_path: Path) -> None:
    with FakeKubeAPI() as gone:
        kubeconfig = gone.write_kubeconfig(tmp_path / "kubeconfig")
    result = run(kubeconfig, fleet_file(tmp_path))
    assert result.exit_code == 1
    assert "cannot reach the Kubernetes API server" in result.stderr
    assert "Traceback" not in result.output


# --------------------------------------------------------------------------- wait


def test_wait_follows_the_deployments_until_available(
    fake: FakeKubeAPI, kubeconfig: Path, tmp_path: Path
) -> None:
    def controller() -> None:  # plays the Deployment controller once the objects exist
        fake.wait_for_request(lambda r: r.method == "PATCH" and "/httproutes/" in r.path)
        for name, replicas in ((MODEL, 3), (f"{MODEL}-epp", 1)):
            fake.set_status(
                "Deployment",
                name,
                NS,
                observedGeneration=1,
                updatedReplicas=replicas,
                availableReplicas=replicas,
            )

    thread = threading.Thread(target=controller)
    thread.start()
    try:
        result = run(
            kubeconfig,
            fleet_file(tmp_path),
            "--create-namespace",
            "--autoscaling",
            "none",
            "--wait",
            "--timeout",
            "20",
        )
    finally:
        thread.join(timeout=10)
    assert result.exit_code == 0, result.output
    assert f"{MODEL}: 3/3 available, 3 updated" in result.stderr
    assert "all deployments are available" in result.stderr


def test_wait_times_out_with_where_each_deployment_stands(
    fake: FakeKubeAPI, kubeconfig: Path, tmp_path: Path
) -> None:
    result = run(
        kubeconfig,
        fleet_file(tmp_path),
        "--create-namespace",
        "--autoscaling",
        "none",
        "--wait",
        "--timeout",
        "1",
    )
    assert result.exit_code == 1
    assert "timed out after 1s waiting for deployments" in result.stderr
    assert f"{MODEL}: waiting for the controller" in result.stderr


# --------------------------------------------------------------------------- library use


def test_deploy_as_a_library(fake: FakeKubeAPI) -> None:
    fleet = FleetSpec.model_validate(yaml.safe_load(EXAMPLE.read_text()))
    rendered = render_fleet(fleet, RenderOptions(namespace="default"))
    with fake.api_client() as api:
        client = KubeClient(api)
        options = DeployOptions(namespace="default", fleet_name="lib")
        first = deploy(client, rendered.manifests, options)
        again = deploy(client, rendered.manifests, options)
        with pytest.raises(DeployError, match="does not know how to apply"):
            deploy(
                client,
                [{"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "x"}}],
                options,
            )
    assert first.count("created") == 10  # nine objects and the Istio DestinationRule
    assert again.count("unchanged") == 10
    assert again.summary() == "0 created, 0 configured, 10 unchanged, 0 pruned"


def test_deploy_render_agent_fleet_applies_policies_before_the_pods(fake: FakeKubeAPI) -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["agents"] = [{"name": "triage", "model": data["models"][0]["name"]}]
    rendered = render_fleet(FleetSpec.model_validate(data), RenderOptions(namespace="default"))
    with fake.api_client() as api:
        result = deploy(KubeClient(api), rendered.manifests, DeployOptions("default", "agents"))
    names = [c.name for c in result.changes]
    assert {c.action for c in result.changes} == {"created"}
    for name in (
        "secret/pilothouse-fleet",
        "networkpolicy.networking.k8s.io/triage-agent",
        "peerauthentication.security.istio.io/triage-agent",
        "authorizationpolicy.security.istio.io/triage-agent-to-gateway",
        "deployment.apps/triage-agent",
    ):
        assert name in names
    assert names.index("networkpolicy.networking.k8s.io/triage-agent") < names.index(
        "deployment.apps/triage-agent"
    )
