"""``render k8s`` for agents: each agent's ServiceAccount, Deployment, Service, HTTPRoute,
NetworkPolicy and Istio policies, validated (kubernetes-validate strict, Istio CRD schemas) and
wired to each other (selectors, principals, the serve command's own options)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from pilothouse.config.fleet import FleetSpec, parse_fleet
from pilothouse.controlplane.render.bundle import grouped, render_fleet
from pilothouse.controlplane.render.options import AgentTargets, RenderOptions
from pilothouse.errors import ConfigError
from tests.unit.controlplane.render.schemas import require_schemas, validate

FLEET: dict[str, Any] = {
    "models": [{"name": "chat", "engine": "sim", "replicas": 1}],
    "tools": {"servers": [{"name": "crm", "url": "http://crm.tools:9000/mcp"}]},
    "agents": [
        {
            "name": "triage",
            "description": "Triage tickets",
            "model": "chat",
            "tools": ["crm__*"],
            "sub_agents": [{"name": "summariser"}],
            "replicas": 2,
        },
        {"name": "summariser", "model": "chat"},
    ],
}
NS = "inference"


def _fleet(**changes: Any) -> FleetSpec:
    return parse_fleet({**FLEET, **changes})


def _render(fleet: FleetSpec, **options: Any) -> list[dict[str, Any]]:
    rendered = render_fleet(fleet, RenderOptions(namespace=NS, with_gateway=True, **options))
    return list(rendered.manifests)


def _one(manifests: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


@pytest.mark.parametrize("gateway_class", ["istio", "kgateway"])
def test_render_agent_manifests_validate(gateway_class: str) -> None:
    require_schemas()
    manifests = _render(_fleet(), gateway_class=gateway_class)
    kinds = [(m["kind"], m["metadata"]["name"]) for m in manifests]
    for agent in ("triage", "summariser"):
        for kind in ("ServiceAccount", "Deployment", "Service", "HTTPRoute", "NetworkPolicy"):
            assert (kind, f"{agent}-agent") in kinds
        assert ("PeerAuthentication", f"{agent}-agent") in kinds
        assert ("AuthorizationPolicy", f"{agent}-agent-to-gateway") in kinds
    for manifest in manifests:
        validate(manifest)


def test_render_agent_deployment_runs_agent_serve_with_the_key_from_a_secret() -> None:
    manifests = _render(_fleet())
    deploy = _one(manifests, "Deployment", "triage-agent")
    pod = deploy["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"] == ["python", "-m", "pilothouse", "agent", "serve"]
    assert container["args"][container["args"].index("--agent") + 1] == "triage"
    assert pod["serviceAccountName"] == "triage-agent"
    assert deploy["spec"]["replicas"] == 2
    env = {e["name"]: e for e in container["env"]}
    assert env["PILOTHOUSE_GATEWAY_URL"]["value"] == "http://inference-gateway-istio:80"
    assert env["PILOTHOUSE_TOOLGATEWAY_URL"]["value"] == "http://pilothouse-toolgateway:8100"
    key = env["PILOTHOUSE_AGENT_KEY"]
    assert "value" not in key
    assert key["valueFrom"]["secretKeyRef"] == {"name": "triage-agent-key", "key": "api-key"}
    # The agent's key is nowhere in a manifest.
    assert "ph-" not in yaml.safe_dump_all(manifests)
    # The Service and the policies select exactly the agent's pods.
    pod_labels = deploy["spec"]["template"]["metadata"]["labels"]
    service = _one(manifests, "Service", "triage-agent")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    summariser_pods = _one(manifests, "Deployment", "summariser-agent")["spec"]["template"]
    assert not service["spec"]["selector"].items() <= summariser_pods["metadata"]["labels"].items()
    # The fleet reaches the pod through a Secret (it may hold keys and store URLs), and
    # parses back to the same fleet.
    secret = _one(manifests, "Secret", "pilothouse-fleet")
    assert parse_fleet(yaml.safe_load(secret["stringData"]["fleet.yaml"])) == _fleet()
    assert pod["volumes"] == [{"name": "fleet", "secret": {"secretName": "pilothouse-fleet"}}]


def test_render_agent_network_policy_allows_only_gateway_toolgateway_and_dns() -> None:
    policy = _one(_render(_fleet()), "NetworkPolicy", "triage-agent")["spec"]
    assert policy["podSelector"] == {"matchLabels": {"pilothouse.dev/agent": "triage"}}
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    peers = [(rule["to"][0], [p["port"] for p in rule["ports"]]) for rule in policy["egress"]]
    selectors = [peer["podSelector"]["matchLabels"] for peer, _ in peers]
    assert selectors == [
        {"gateway.networking.k8s.io/gateway-name": "inference-gateway"},
        {"app.kubernetes.io/name": "pilothouse-toolgateway"},
        {"k8s-app": "kube-dns"},
        {"app": "istiod"},
    ]
    assert [ports for _, ports in peers] == [[80], [8100], [53, 53], [15012]]
    [ingress] = policy["ingress"]
    gateway_pods = {"gateway.networking.k8s.io/gateway-name": "inference-gateway"}
    assert ingress["from"] == [{"podSelector": {"matchLabels": gateway_pods}}]
    assert ingress["ports"] == [{"protocol": "TCP", "port": 8000}]


def test_render_agent_istio_policies_tie_the_service_account_to_its_paths() -> None:
    manifests = _render(_fleet())
    principal = f"cluster.local/ns/{NS}/sa/triage-agent"
    to_gateway = _one(manifests, "AuthorizationPolicy", "triage-agent-to-gateway")["spec"]
    assert to_gateway["action"] == "DENY"
    assert to_gateway["selector"] == {
        "matchLabels": {"gateway.networking.k8s.io/gateway-name": "inference-gateway"}
    }
    [rule] = to_gateway["rules"]
    assert rule["from"] == [{"source": {"principals": [principal]}}]
    assert "/v1/chat/completions" in rule["to"][0]["operation"]["notPaths"]
    to_tools = _one(manifests, "AuthorizationPolicy", "triage-agent-to-toolgateway")["spec"]
    tool_pods = {"app.kubernetes.io/name": "pilothouse-toolgateway"}
    assert to_tools["selector"] == {"matchLabels": tool_pods}
    assert to_tools["rules"][0]["from"] == [{"source": {"principals": [principal]}}]
    assert to_tools["rules"][0]["to"][0]["operation"]["notPaths"] == ["/mcp", "/mcp/*"]
    inbound = _one(manifests, "AuthorizationPolicy", "triage-agent")["spec"]
    assert inbound["action"] == "ALLOW"
    assert inbound["rules"][0]["from"] == [
        {"source": {"principals": [f"cluster.local/ns/{NS}/sa/inference-gateway-istio"]}}
    ]
    assert "/agents/triage/*" in inbound["rules"][0]["to"][0]["operation"]["paths"]
    peer = _one(manifests, "PeerAuthentication", "triage-agent")["spec"]
    assert peer == {
        "selector": {"matchLabels": {"pilothouse.dev/agent": "triage"}},
        "mtls": {"mode": "STRICT"},
    }


def test_render_agent_targets_from_flags() -> None:
    targets = AgentTargets(gateway_url="http://gw.example:8080", toolgateway_url="http://tg:1")
    manifests = _render(_fleet(), agents=targets, gateway_class="kgateway")
    env = _one(manifests, "Deployment", "triage-agent")["spec"]["template"]["spec"]
    values = {e["name"]: e.get("value") for e in env["containers"][0]["env"]}
    assert values["PILOTHOUSE_GATEWAY_URL"] == "http://gw.example:8080"
    assert values["PILOTHOUSE_TOOLGATEWAY_URL"] == "http://tg:1"
    inbound = _one(manifests, "AuthorizationPolicy", "triage-agent")["spec"]
    assert inbound["rules"][0]["from"][0]["source"]["principals"] == [
        f"cluster.local/ns/{NS}/sa/inference-gateway"  # kgateway: the Gateway's own name
    ]


def test_render_agent_objects_go_to_one_file_per_agent() -> None:
    groups = grouped(_render(_fleet()))
    assert {"agent-triage", "agent-summariser", "pilothouse-fleet"} <= set(groups)
    assert len(groups["agent-triage"]) == 9
    assert "chat" in groups  # the model's objects are unchanged


def test_render_agent_fleet_without_agents_renders_no_agent_objects() -> None:
    manifests = _render(_fleet(agents=[], tools=None))
    kinds = {m["kind"] for m in manifests}
    assert not kinds & {"NetworkPolicy", "AuthorizationPolicy", "PeerAuthentication"}
    assert all(m["metadata"]["name"] != "pilothouse-fleet" for m in manifests)


def test_render_agent_name_too_long_for_its_objects_is_a_config_error() -> None:
    name = "a" * 54
    fleet = _fleet(agents=[{"name": name, "model": "chat"}])
    with pytest.raises(ConfigError, match="at most 53") as err:
        _render(fleet)
    assert err.value.path == "agents[0].name"


def test_render_agent_cli_flags(tmp_path: Any) -> None:
    from pilothouse.controlplane.render.cli import render_group

    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(FLEET))
    result = CliRunner().invoke(
        render_group,
        ["k8s", "-f", str(path), "-n", NS, "--agent-gateway-url", "http://gw:1"],
    )
    assert result.exit_code == 0, result.output
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    env = _one(docs, "Deployment", "summariser-agent")["spec"]["template"]["spec"]
    assert {"name": "PILOTHOUSE_GATEWAY_URL", "value": "http://gw:1"} in env["containers"][0]["env"]


def test_render_agent_helm_chart_matches_render_k8s(tmp_path: Any) -> None:
    from pilothouse.controlplane.render.helm import render_chart, write_chart

    fleet = _fleet()
    options = RenderOptions(namespace=NS)
    write_chart(fleet, options, tmp_path, command="test")
    from_chart = render_chart(tmp_path, namespace=NS)
    plain = render_fleet(fleet, options).manifests
    key = lambda m: (m["kind"], m["metadata"]["name"])  # noqa: E731
    assert sorted(from_chart, key=key) == sorted(plain, key=key)
    values = yaml.safe_load((tmp_path / "values.yaml").read_text())
    assert values["agents"]["triage"]["replicas"] == 2


def test_render_agent_fleet_credentials_stay_in_the_fleet_secret() -> None:
    fleet = _fleet(gateway={"api_key": "ph-admin-secret"})
    manifests = _render(fleet)
    holding = [m["kind"] for m in manifests if "ph-admin-secret" in yaml.safe_dump(m)]
    assert holding == ["Secret"]
