"""Validators for rendered manifests: built-in kinds with ``kubernetes-validate`` (strict), the
InferencePool, HTTPRoute, Gateway and Istio security CRDs with ``jsonschema`` against the schemas in
``../shared/schemas/`` (read from there at test time, never copied into the project)."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="needs the dev extra")
jsonschema = pytest.importorskip("jsonschema", reason="needs the dev extra")

REPO = Path(__file__).resolve().parents[4]
# A git worktree outside the checkout's parent names the schemas folder explicitly.
SCHEMAS = Path(os.environ.get("PILOTHOUSE_SCHEMAS", REPO.parent / "shared" / "schemas"))
KUBERNETES_VERSIONS = ("1.30", "1.37")  # oldest we claim (gRPC probes are GA) and newest known
CRD_FILES = {
    ("inference.networking.k8s.io/v1", "InferencePool"): (
        "inference.networking.k8s.io_inferencepools.yaml"
    ),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): "gateway.networking.k8s.io_httproutes.yaml",
    ("gateway.networking.k8s.io/v1", "Gateway"): "gateway.networking.k8s.io_gateways.yaml",
    # One file, three CRDs (AuthorizationPolicy, PeerAuthentication, RequestAuthentication).
    ("security.istio.io/v1", "AuthorizationPolicy"): "security.istio.io_crds.yaml",
    ("security.istio.io/v1", "PeerAuthentication"): "security.istio.io_crds.yaml",
}
# Not built in and no schema at hand: checked for the fields KEDA requires only.
KEDA = ("keda.sh/v1alpha1", "ScaledObject")
# Istio's networking CRDs are not in ../shared/schemas (only security.istio.io is): the
# DestinationRule is checked by hand against the fields of Istio's API reference.
ISTIO_DR = ("networking.istio.io/v1", "DestinationRule")
_DR_SPEC = {"host", "trafficPolicy", "subsets", "exportTo", "workloadSelector"}
_DR_POLICY = {"loadBalancer", "connectionPool", "outlierDetection", "tls", "portLevelSettings",
              "tunnel", "proxyProtocol", "retryBudget"}  # fmt: skip
_DR_TLS = {"mode", "clientCertificate", "privateKey", "caCertificates", "credentialName",
           "subjectAltNames", "sni", "insecureSkipVerify", "caCrl"}  # fmt: skip
_DR_TLS_MODES = {"DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"}


def _check_tls(tls: dict[str, Any]) -> None:
    assert set(tls) <= _DR_TLS, f"unknown ClientTLSSettings fields {set(tls) - _DR_TLS}"
    assert tls.get("mode") in _DR_TLS_MODES, f"bad tls.mode {tls.get('mode')!r}"
    assert isinstance(tls.get("insecureSkipVerify", False), bool)


def DESTINATION_RULE(manifest: dict[str, Any]) -> None:  # noqa: N802 - a validator, as KEDA's
    """Raise AssertionError where ``manifest`` is not a DestinationRule Istio accepts."""
    spec = manifest["spec"]
    assert set(spec) <= _DR_SPEC, f"unknown spec fields {set(spec) - _DR_SPEC}"
    assert isinstance(spec.get("host"), str), "spec.host is required"
    assert spec["host"], "spec.host is empty"
    policy = spec.get("trafficPolicy", {})
    assert set(policy) <= _DR_POLICY, f"unknown trafficPolicy fields {set(policy) - _DR_POLICY}"
    if "tls" in policy:
        _check_tls(policy["tls"])
    for level in policy.get("portLevelSettings", []):
        assert set(level) <= _DR_POLICY - {"portLevelSettings"} | {"port"}
        port = level.get("port")
        assert isinstance(port, dict), "port is {number: N}"
        assert set(port) == {"number"}, "port is {number: N}"
        assert isinstance(port["number"], int)
        assert 0 < port["number"] < 65536
        if "tls" in level:
            _check_tls(level["tls"])


def require_schemas() -> Path:
    if not SCHEMAS.is_dir():
        pytest.skip(
            f"CRD schemas not found at {SCHEMAS}: the shared/ folder beside the repository is "
            "absent, so InferencePool/HTTPRoute/Gateway cannot be validated here"
        )
    return SCHEMAS


def _strict(node: Any) -> Any:
    """Reject unknown fields, as the API server's strict field validation does."""
    if isinstance(node, dict):
        node = {k: _strict(v) for k, v in node.items()}
        closed = "properties" in node and "additionalProperties" not in node
        if closed and not node.get("x-kubernetes-preserve-unknown-fields"):
            node["additionalProperties"] = False
    elif isinstance(node, list):
        node = [_strict(v) for v in node]
    return node


@functools.cache
def crd_validator(api_version: str, kind: str) -> Any:
    text = (require_schemas() / CRD_FILES[(api_version, kind)]).read_text()
    group, version = api_version.split("/")
    crds = [d for d in yaml.safe_load_all(text) if d and d["spec"]["names"]["kind"] == kind]
    assert len(crds) == 1, f"one {kind} CRD expected in {CRD_FILES[(api_version, kind)]}"
    crd = crds[0]
    assert (crd["spec"]["group"], crd["spec"]["names"]["kind"]) == (group, kind)
    served = [v for v in crd["spec"]["versions"] if v["name"] == version and v["served"]]
    assert served, f"{api_version} is not a served version of the {kind} CRD"
    schema = _strict(served[0]["schema"]["openAPIV3Schema"])
    # The API server always accepts these at the root; some CRDs (Istio's) leave them out.
    for field, kind_of in (("apiVersion", "string"), ("kind", "string"), ("metadata", "object")):
        schema["properties"].setdefault(field, {"type": kind_of})
    validator_class = jsonschema.validators.validator_for(
        schema, default=jsonschema.Draft7Validator
    )
    return validator_class(schema)


def validate(manifest: dict[str, Any]) -> None:
    """Raise on any schema violation of one manifest, whatever its kind."""
    key = (manifest["apiVersion"], manifest["kind"])
    if key in CRD_FILES:
        crd_validator(*key).validate(manifest)
    elif key == ISTIO_DR:
        DESTINATION_RULE(manifest)
    elif key == KEDA:
        spec = manifest["spec"]
        assert spec["scaleTargetRef"]["name"]
        for trigger in spec["triggers"]:
            assert trigger["type"] == "prometheus"
            assert {"serverAddress", "query", "threshold"} <= set(trigger["metadata"])
            assert all(isinstance(v, str) for v in trigger["metadata"].values())
    else:
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(manifest, version, strict=True)
