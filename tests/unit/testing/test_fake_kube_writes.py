"""The fake API server's writes and discovery, over raw HTTP (what a client sees)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from pilothouse.testing.fake_kube import FakeKubeAPI

APPLY = "application/apply-patch+yaml"
DEPLOYS = "/apis/apps/v1/namespaces/default/deployments"


@pytest.fixture
def fake() -> Iterator[FakeKubeAPI]:
    with FakeKubeAPI() as api:
        yield api


def call(
    fake: FakeKubeAPI, method: str, path: str, body: Any = None, content_type: str = APPLY
) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(fake.url + path, data=data, method=method)
    request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def deployment(name: str = "d", **labels: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": labels or {"app": name}}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {"replicas": 1},
    }


def test_apply_creates_then_a_no_op_keeps_the_resource_version(fake: FakeKubeAPI) -> None:
    code, created = call(fake, "PATCH", f"{DEPLOYS}/d?fieldManager=me", deployment())
    assert code == 201
    assert created["metadata"]["namespace"] == "default"
    code, again = call(fake, "PATCH", f"{DEPLOYS}/d?fieldManager=me", deployment())
    assert code == 200
    assert again["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


def test_dry_run_apply_and_delete_store_nothing(fake: FakeKubeAPI) -> None:
    code, _ = call(fake, "PATCH", f"{DEPLOYS}/d?fieldManager=me&dryRun=All", deployment())
    assert code == 201
    assert fake.names("Deployment") == []
    call(fake, "PATCH", f"{DEPLOYS}/d?fieldManager=me", deployment())
    assert call(fake, "DELETE", f"{DEPLOYS}/d?dryRun=All")[0] == 200
    assert fake.names("Deployment") == ["d"]
    assert call(fake, "DELETE", f"{DEPLOYS}/d")[0] == 200
    code, status = call(fake, "DELETE", f"{DEPLOYS}/d")
    assert (code, status["details"]["kind"]) == (404, "deployments")


@pytest.mark.parametrize(
    ("path", "body", "content_type", "code", "message"),
    [
        (
            f"{DEPLOYS}/d?fieldManager=me",
            deployment(),
            "application/merge-patch+json",
            415,
            "apply",
        ),
        (f"{DEPLOYS}/d", deployment(), APPLY, 400, "fieldManager"),
        (f"{DEPLOYS}/e?fieldManager=me", deployment(), APPLY, 400, "name on the URL"),
        (f"{DEPLOYS}/Bad_Name?fieldManager=me", deployment("Bad_Name"), APPLY, 422, "RFC 1123"),
        (
            "/apis/apps/v1/namespaces/nowhere/deployments/d?fieldManager=me",
            deployment(),
            APPLY,
            404,
            'namespaces "nowhere" not found',
        ),
        (
            "/api/v1/namespaces/default/services/d?fieldManager=me",
            deployment(),
            APPLY,
            400,
            "does not match",
        ),
    ],
)
def test_refused_applies(
    fake: FakeKubeAPI, path: str, body: Any, content_type: str, code: int, message: str
) -> None:
    got, status = call(fake, "PATCH", path, body, content_type)
    assert got == code
    assert message in status["message"]
    assert fake.names("Deployment") == []


def test_label_selector_list_of_a_written_kind(fake: FakeKubeAPI) -> None:
    call(fake, "PATCH", f"{DEPLOYS}/a?fieldManager=me", deployment("a", fleet="x"))
    call(fake, "PATCH", f"{DEPLOYS}/b?fieldManager=me", deployment("b", fleet="y"))
    code, listed = call(fake, "GET", f"{DEPLOYS}?labelSelector=fleet%3Dx")
    assert code == 200
    assert listed["kind"] == "DeploymentList"
    assert [i["metadata"]["name"] for i in listed["items"]] == ["a"]


def test_discovery_and_an_uninstalled_crd(fake: FakeKubeAPI) -> None:
    _, groups = call(fake, "GET", "/apis")
    assert "inference.networking.k8s.io" in {g["name"] for g in groups["groups"]}
    _, core = call(fake, "GET", "/api/v1")
    assert {"namespaces": False, "pods": True}.items() <= {
        r["name"]: r["namespaced"] for r in core["resources"]
    }.items()
    fake.uninstall("InferencePool")
    _, groups = call(fake, "GET", "/apis")
    assert "inference.networking.k8s.io" not in {g["name"] for g in groups["groups"]}
    path = "/apis/inference.networking.k8s.io/v1/namespaces/default/inferencepools"
    assert call(fake, "GET", path)[0] == 404


def test_injected_failure(fake: FakeKubeAPI) -> None:
    fake.fail("PATCH", "Deployment", 403, "forbidden: no")
    code, status = call(fake, "PATCH", f"{DEPLOYS}/d?fieldManager=me", deployment())
    assert (code, status["reason"], status["message"]) == (403, "Forbidden", "forbidden: no")
    fake.clear_failures()
    assert call(fake, "PATCH", f"{DEPLOYS}/d?fieldManager=me", deployment())[0] == 201
