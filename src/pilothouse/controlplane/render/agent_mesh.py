"""What the network and the mesh let one agent do: a NetworkPolicy and Istio policies.

- **NetworkPolicy**: the agent's pods may open connections only to the gateway's pods, the
  tool gateway's pods, the cluster DNS and istiod (the sidecar's configuration and
  certificates); they accept connections only from the gateway's pods, on the agent port.
- **PeerAuthentication** ``STRICT`` on the agent's pods: plaintext is refused, so every caller
  has a mesh identity.
- **AuthorizationPolicy** on the agent's pods (``ALLOW``): only the gateway's service account,
  on the agent's own paths.
- **AuthorizationPolicy** on the gateway and on the tool gateway (``DENY``): a request from the
  agent's service account to any path other than the ones it needs (chat completions and the
  model list; ``/mcp``) is refused. ``DENY`` rather than ``ALLOW`` because both workloads are
  shared: once an ``ALLOW`` policy selects a workload, Istio refuses every request no ``ALLOW``
  rule matches, which would lock out every other client of the gateway.

Policies select workloads in their own namespace: the gateway and the tool gateway are expected
in the agents' namespace (docs/agents-kubernetes.md).
"""

from __future__ import annotations

from pilothouse.config.agents import AgentSpec
from pilothouse.controlplane.render.agent import (
    AGENT_PORT,
    Targets,
    agent_labels,
    object_name,
)
from pilothouse.controlplane.render.meta import AGENT_LABEL, Manifest, metadata
from pilothouse.controlplane.render.options import RenderOptions
from pilothouse.controlplane.render.params import Binder

ISTIO_SECURITY = "security.istio.io/v1"
#: What an agent calls on the gateway: the runtime's model calls, and the model list.
GATEWAY_PATHS = ("/v1/chat/completions", "/v1/models")
#: The tool gateway's MCP endpoint (streamable HTTP: one path, and its sub-paths).
TOOLGATEWAY_PATHS = ("/mcp", "/mcp/*")
DNS_PORT = 53
ISTIOD_PORT = 15012  # xDS and certificate signing, what a sidecar needs from istiod


def mesh_objects(
    spec: AgentSpec, index: int, options: RenderOptions, bind: Binder, targets: Targets
) -> list[Manifest]:
    """NetworkPolicy, PeerAuthentication and the three AuthorizationPolicies of one agent."""
    name = object_name(spec, index)
    principal = targets.principal(name)
    return [
        _network_policy(spec, name, options, bind, targets),
        _policy(
            "PeerAuthentication",
            name,
            spec,
            options,
            bind,
            {"selector": _pods(spec), "mtls": {"mode": "STRICT"}},
        ),
        _policy(
            "AuthorizationPolicy",
            name,
            spec,
            options,
            bind,
            {
                "selector": _pods(spec),
                "action": "ALLOW",
                "rules": [
                    {
                        "from": [{"source": {"principals": [targets.gateway_principal]}}],
                        "to": [{"operation": {"paths": agent_paths(spec)}}],
                    }
                ],
            },
        ),
        _deny_other_paths(
            f"{name}-to-gateway", spec, options, bind, principal, targets.gateway_labels,
            GATEWAY_PATHS,
        ),
        _deny_other_paths(
            f"{name}-to-toolgateway", spec, options, bind, principal, targets.toolgateway_labels,
            TOOLGATEWAY_PATHS,
        ),
    ]  # fmt: skip


def agent_paths(spec: AgentSpec) -> list[str]:
    """What callers may reach on the agent: the Responses API and its A2A server."""
    return ["/v1/responses", "/v1/models", f"/agents/{spec.name}", f"/agents/{spec.name}/*"]


def _pods(spec: AgentSpec) -> Manifest:
    return {"matchLabels": {AGENT_LABEL: spec.name}}


def _policy(
    kind: str, name: str, spec: AgentSpec, options: RenderOptions, bind: Binder, body: Manifest
) -> Manifest:
    meta = metadata(name, options.namespace, bind, "agent")
    meta["labels"] = agent_labels(spec)
    return {"apiVersion": ISTIO_SECURITY, "kind": kind, "metadata": meta, "spec": body}


def _deny_other_paths(
    name: str,
    spec: AgentSpec,
    options: RenderOptions,
    bind: Binder,
    principal: str,
    workload: dict[str, str],
    paths: tuple[str, ...],
) -> Manifest:
    body: Manifest = {
        "selector": {"matchLabels": dict(workload)},
        "action": "DENY",
        "rules": [
            {
                "from": [{"source": {"principals": [principal]}}],
                "to": [{"operation": {"notPaths": list(paths)}}],
            }
        ],
    }
    return _policy("AuthorizationPolicy", name, spec, options, bind, body)


def _network_policy(
    spec: AgentSpec, name: str, options: RenderOptions, bind: Binder, targets: Targets
) -> Manifest:
    meta = metadata(name, options.namespace, bind, "agent")
    meta["labels"] = agent_labels(spec)
    gateway_pods = {"podSelector": {"matchLabels": dict(targets.gateway_labels)}}
    tool_pods = {"podSelector": {"matchLabels": dict(targets.toolgateway_labels)}}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta,
        "spec": {
            "podSelector": _pods(spec),
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [gateway_pods], "ports": [_tcp(AGENT_PORT)]}],
            "egress": [
                {"to": [gateway_pods], "ports": [_tcp(targets.gateway_port)]},
                {"to": [tool_pods], "ports": [_tcp(targets.toolgateway_port)]},
                {
                    "to": [_in_namespace("kube-system", {"k8s-app": "kube-dns"})],
                    "ports": [
                        {"protocol": "UDP", "port": DNS_PORT},
                        _tcp(DNS_PORT),
                    ],
                },
                {
                    "to": [_in_namespace("istio-system", {"app": "istiod"})],
                    "ports": [_tcp(ISTIOD_PORT)],
                },
            ],
        },
    }


def _tcp(port: int) -> Manifest:
    return {"protocol": "TCP", "port": port}


def _in_namespace(namespace: str, pod_labels: dict[str, str]) -> Manifest:
    return {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
        "podSelector": {"matchLabels": pod_labels},
    }
