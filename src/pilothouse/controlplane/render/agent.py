"""Each agent of a Fleet as a service: ServiceAccount, Deployment, Service and HTTPRoute.

An agent runs as ``pilothouse agent serve -f <fleet> --agent <name>`` in the pilothouse image
(docs/agents-kubernetes.md): the Responses API (``/v1/responses``, the agent as the model) and
its A2A server under ``/agents/<name>/`` on port 8000. The Fleet itself reaches the pod
through one Secret shared by every agent (a Secret, not a ConfigMap: a Fleet may hold the
gateway's ``api_key`` and store URLs with passwords). The agent calls the gateway and the tool
gateway with its own key, read from the Secret ``<agent>-agent-key`` (key ``api-key``), never
written into a manifest; its Kubernetes identity is its own ServiceAccount, which the mesh
policies of :mod:`pilothouse.controlplane.render.agent_mesh` name.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from pilothouse.config.agents import AgentSpec
from pilothouse.config.fleet import FleetSpec
from pilothouse.controlplane.render.meta import (
    AGENT_LABEL,
    Manifest,
    http_probe,
    labels,
    metadata,
)
from pilothouse.controlplane.render.options import RenderOptions
from pilothouse.controlplane.render.params import Binder
from pilothouse.controlplane.render.route import API_VERSION as GATEWAY_API
from pilothouse.controlplane.render.route import MODEL_HEADER
from pilothouse.errors import ConfigError

COMPONENT = "agent"
AGENT_PORT = 8000
FLEET_SECRET = "pilothouse-fleet"
FLEET_KEY = "fleet.yaml"
FLEET_MOUNT = "/etc/pilothouse/fleet"
KEY_SECRET_KEY = "api-key"
GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"  # set by Gateway controllers
_NAME_MAX = 53  # "<agent>-agent-key" stays a 63-character name
ENV_GATEWAY_URL = "PILOTHOUSE_GATEWAY_URL"
ENV_TOOLGATEWAY_URL = "PILOTHOUSE_TOOLGATEWAY_URL"
ENV_AGENT_KEY = "PILOTHOUSE_AGENT_KEY"
ENV_PUBLIC_URL = "PILOTHOUSE_AGENT_PUBLIC_URL"


@dataclass(frozen=True, slots=True)
class Targets:
    """:class:`~pilothouse.controlplane.render.options.AgentTargets` with defaults resolved."""

    namespace: str
    gateway_url: str
    gateway_port: int
    gateway_labels: dict[str, str]
    gateway_principal: str
    toolgateway_url: str
    toolgateway_port: int
    toolgateway_labels: dict[str, str]
    trust_domain: str

    def principal(self, service_account: str) -> str:
        """The SPIFFE-style identity Istio gives a service account's workloads."""
        return f"{self.trust_domain}/ns/{self.namespace}/sa/{service_account}"


def targets_for(options: RenderOptions) -> Targets:
    """Resolve the gateway and tool gateway of the agents. Istio's automated deployment names
    a Gateway's Service and ServiceAccount ``<gateway>-istio``; other controllers (kgateway,
    agentgateway) use the Gateway's name. URLs use short Service names: same namespace."""
    agents, name = options.agents, options.gateway_name
    gateway_object = f"{name}-istio" if options.gateway_class == "istio" else name
    gateway_sa = agents.gateway_service_account or gateway_object
    return Targets(
        namespace=options.namespace,
        gateway_url=agents.gateway_url or f"http://{gateway_object}:80",
        gateway_port=agents.gateway_port,
        gateway_labels={GATEWAY_NAME_LABEL: name},
        gateway_principal=f"{agents.trust_domain}/ns/{options.namespace}/sa/{gateway_sa}",
        toolgateway_url=agents.toolgateway_url
        or f"http://pilothouse-toolgateway:{agents.toolgateway_port}",
        toolgateway_port=agents.toolgateway_port,
        toolgateway_labels=dict(agents.toolgateway_labels),
        trust_domain=agents.trust_domain,
    )


def object_name(spec: AgentSpec, index: int) -> str:
    """``<agent>-agent``: the ServiceAccount, Deployment, Service and policies of one agent."""
    if len(spec.name) > _NAME_MAX:
        raise ConfigError(
            f"an agent rendered for Kubernetes has a name of at most {_NAME_MAX} characters "
            f"(its objects are named '<name>-agent-key'); '{spec.name}' has {len(spec.name)}",
            path=f"agents[{index}].name",
        )
    return f"{spec.name}-agent"


def key_secret(spec: AgentSpec) -> str:
    """The Secret holding the agent's key (create it: docs/agents-kubernetes.md)."""
    return f"{spec.name}-agent-key"


def agent_labels(spec: AgentSpec) -> dict[str, str]:
    return {**labels(COMPONENT), AGENT_LABEL: spec.name}


def _meta(name: str, spec: AgentSpec, options: RenderOptions, bind: Binder) -> Manifest:
    return {
        **metadata(name, options.namespace, bind, COMPONENT),
        "labels": agent_labels(spec),
    }


def fleet_secret(fleet: FleetSpec, options: RenderOptions, bind: Binder) -> Manifest:
    """The Fleet as ``agent serve`` reads it (only what differs from the defaults)."""
    text = yaml.safe_dump(
        fleet.model_dump(mode="json", by_alias=True, exclude_defaults=True), sort_keys=False
    )
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(FLEET_SECRET, options.namespace, bind, COMPONENT),
        "type": "Opaque",
        "stringData": {FLEET_KEY: text},
    }


def agent_objects(
    spec: AgentSpec, index: int, options: RenderOptions, bind: Binder, targets: Targets
) -> list[Manifest]:
    """ServiceAccount, Service, Deployment and HTTPRoute of one agent, in apply order."""
    name = object_name(spec, index)
    meta = _meta(name, spec, options, bind)
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": meta,
            "automountServiceAccountToken": False,  # an agent never calls the API server
        },
        _service(spec, meta),
        _deployment(spec, name, meta, options, bind, targets),
        _route(spec, name, meta, options, bind),
    ]


def _service(spec: AgentSpec, meta: Manifest) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "type": "ClusterIP",
            "selector": {AGENT_LABEL: spec.name},
            "ports": [
                {
                    "name": "http",
                    "port": AGENT_PORT,
                    "targetPort": "http",
                    "protocol": "TCP",
                    "appProtocol": "http",
                }
            ],
        },
    }


def _deployment(
    spec: AgentSpec,
    name: str,
    meta: Manifest,
    options: RenderOptions,
    bind: Binder,
    targets: Targets,
) -> Manifest:
    memory = bind("512Mi", "agents", spec.name, "resources", "memory")
    container: Manifest = {
        "name": "agent",
        "image": bind(options.images.pilothouse, "images", "pilothouse"),
        "imagePullPolicy": bind(options.images.pull_policy, "images", "pullPolicy"),
        "command": ["python", "-m", "pilothouse", "agent", "serve"],
        "args": serve_args(spec),
        "env": [
            {"name": ENV_GATEWAY_URL, "value": targets.gateway_url},
            {"name": ENV_TOOLGATEWAY_URL, "value": targets.toolgateway_url},
            {"name": ENV_PUBLIC_URL, "value": f"http://{name}:{AGENT_PORT}"},
            {
                "name": ENV_AGENT_KEY,
                "valueFrom": {"secretKeyRef": {"name": key_secret(spec), "key": KEY_SECRET_KEY}},
            },
        ],
        "ports": [{"name": "http", "containerPort": AGENT_PORT, "protocol": "TCP"}],
        "readinessProbe": http_probe("/health", "http", 5, 3),
        "livenessProbe": http_probe("/health", "http", 10, 3),
        "resources": {
            "requests": {
                "cpu": bind("100m", "agents", spec.name, "resources", "cpu"),
                "memory": memory,
            },
            "limits": {"memory": memory},
        },
        "securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False},
        "volumeMounts": [{"name": "fleet", "mountPath": FLEET_MOUNT, "readOnly": True}],
    }
    pod_labels = {**agent_labels(spec), "sidecar.istio.io/inject": "true"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": bind(spec.replicas, "agents", spec.name, "replicas"),
            "selector": {"matchLabels": {AGENT_LABEL: spec.name}},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "serviceAccountName": name,
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": 30,
                    "containers": [container],
                    "volumes": [{"name": "fleet", "secret": {"secretName": FLEET_SECRET}}],
                },
            },
        },
    }


def serve_args(spec: AgentSpec) -> list[str]:
    """The arguments of ``pilothouse agent serve`` in the pod (URLs and key come from env)."""
    return [
        "-f",
        f"{FLEET_MOUNT}/{FLEET_KEY}",
        "--agent",
        spec.name,
        "--host",
        "0.0.0.0",
        "--port",
        str(AGENT_PORT),
    ]


def _route(
    spec: AgentSpec, name: str, meta: Manifest, options: RenderOptions, bind: Binder
) -> Manifest:
    """From the fleet's Gateway: ``/agents/<name>/...`` (A2A), and ``/v1/responses`` when the
    body-based router names the agent as the model (the same header the model routes use)."""
    backend = [{"kind": "Service", "name": name, "port": AGENT_PORT}]
    timeout = f"{max(1, round(spec.budgets.wall_time_s))}s"
    return {
        "apiVersion": GATEWAY_API,
        "kind": "HTTPRoute",
        "metadata": meta,
        "spec": {
            "parentRefs": [
                {
                    "group": "gateway.networking.k8s.io",
                    "kind": "Gateway",
                    "name": bind(options.gateway_name, "gateway", "name"),
                }
            ],
            "rules": [
                {
                    "matches": [
                        {"path": {"type": "PathPrefix", "value": f"/agents/{spec.name}"}},
                        {
                            "path": {"type": "Exact", "value": "/v1/responses"},
                            "headers": [
                                {"type": "Exact", "name": MODEL_HEADER, "value": spec.name}
                            ],
                        },
                    ],
                    "backendRefs": backend,
                    "timeouts": {"request": timeout},
                }
            ],
        },
    }
