"""The picker serves TLS as rendered, and the gateway side is told to connect with TLS."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import pytest

from pilothouse.config.fleet import FleetSpec
from pilothouse.controlplane.render.bundle import render_fleet
from pilothouse.controlplane.render.epp import GRPC_PORT, METRICS_PORT
from pilothouse.controlplane.render.options import RenderOptions
from tests.unit.controlplane.render.schemas import DESTINATION_RULE, require_schemas, validate

Manifest = dict[str, Any]
EPP = "qwen2-5-0-5b-instruct-epp"


def _objects(fleet: FleetSpec, **options: Any) -> list[Manifest]:
    return list(render_fleet(fleet, replace(RenderOptions(), **options)).manifests)


def _picker_params(manifests: list[Manifest]) -> dict[str, Any]:
    epp_cli = pytest.importorskip("pilothouse.epp.cli")
    (deployment,) = [
        m for m in manifests if m["kind"] == "Deployment" and m["metadata"]["name"] == EPP
    ]
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    params: dict[str, Any] = epp_cli.epp_command.make_context("epp", list(args)).params
    return params


def _rules(manifests: list[Manifest]) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == "DestinationRule"]


@pytest.mark.parametrize(("plaintext", "secure"), [(False, True), (True, False)])
def test_the_picker_args_say_whether_it_serves_tls(
    vllm_fleet: FleetSpec, plaintext: bool, secure: bool
) -> None:
    params = _picker_params(_objects(vllm_fleet, epp_tls=not plaintext))
    assert params["secure_serving"] is secure
    assert params["plaintext"] is False
    assert params["cert_path"] is None


def test_istio_gets_a_tls_destination_rule_for_the_ext_proc_port_only(
    vllm_fleet: FleetSpec,
) -> None:
    (rule,) = _rules(_objects(vllm_fleet, gateway_class="istio", namespace="inference"))
    assert rule["metadata"]["name"] == EPP
    assert rule["metadata"]["namespace"] == "inference"
    assert rule["spec"]["host"] == EPP  # the picker Service, in the rule's namespace
    assert set(rule["spec"]["trafficPolicy"]) == {"portLevelSettings"}  # not every port
    (port,) = rule["spec"]["trafficPolicy"]["portLevelSettings"]
    assert port == {
        "port": {"number": GRPC_PORT},
        "tls": {"mode": "SIMPLE", "insecureSkipVerify": True},
    }
    assert METRICS_PORT != GRPC_PORT  # so Prometheus keeps scraping plaintext HTTP
    validate(rule)


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"gateway_class": "kgateway"}, id="kgateway-always-uses-tls"),
        pytest.param({"gateway_class": "agentgateway"}, id="agentgateway"),
        pytest.param({"gateway_class": "istio", "epp_tls": False}, id="istio-plaintext"),
    ],
)
def test_no_destination_rule_where_none_is_needed(
    vllm_fleet: FleetSpec, options: dict[str, Any]
) -> None:
    assert _rules(_objects(vllm_fleet, **options)) == []


def test_every_tls_manifest_validates(vllm_fleet: FleetSpec) -> None:
    require_schemas()
    for manifest in _objects(vllm_fleet, with_gateway=True, namespace="inference"):
        validate(manifest)


@pytest.mark.parametrize(
    "breaks",
    [
        pytest.param(lambda s: s["trafficPolicy"]["portLevelSettings"][0]["tls"].update(
            mode="SIMPEL"), id="unknown-tls-mode"),
        pytest.param(lambda s: s.pop("host"), id="no-host"),
        pytest.param(lambda s: s["trafficPolicy"]["portLevelSettings"][0].update(
            port=GRPC_PORT), id="port-not-a-selector"),
    ],
)  # fmt: skip
def test_the_destination_rule_check_can_fail(vllm_fleet: FleetSpec, breaks: Any) -> None:
    (rule,) = _rules(_objects(vllm_fleet))
    broken = copy.deepcopy(rule)
    breaks(broken["spec"])
    with pytest.raises(AssertionError):
        DESTINATION_RULE(broken)
