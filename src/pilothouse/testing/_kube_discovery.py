"""The kinds :mod:`pilothouse.testing.fake_kube` serves, and its discovery documents.

Discovery (``/version``, ``/api``, ``/api/v1``, ``/apis``, ``/apis/<group>/<version>``) is what
``kubernetes.dynamic.DynamicClient`` (and ``kubectl``) read to map a kind to its URL; a kind
whose CRD is "not installed" (:meth:`FakeKubeAPI.uninstall`) is left out of it and its URLs
answer 404, as on a cluster without that CRD.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

_VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]


@dataclass(frozen=True, slots=True)
class Kind:
    """One resource type: kind, URL prefix (``/api/v1``, ``/apis/<group>/<version>``), plural."""

    kind: str
    prefix: str
    plural: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return self.prefix.removeprefix("/api/").removeprefix("/apis/")


TABLE: tuple[Kind, ...] = (
    Kind("Namespace", "/api/v1", "namespaces", namespaced=False),
    Kind("Pod", "/api/v1", "pods"),
    Kind("ServiceAccount", "/api/v1", "serviceaccounts"),
    Kind("ConfigMap", "/api/v1", "configmaps"),
    Kind("Secret", "/api/v1", "secrets"),
    Kind("Service", "/api/v1", "services"),
    Kind("Deployment", "/apis/apps/v1", "deployments"),
    Kind("Role", "/apis/rbac.authorization.k8s.io/v1", "roles"),
    Kind("RoleBinding", "/apis/rbac.authorization.k8s.io/v1", "rolebindings"),
    Kind("HorizontalPodAutoscaler", "/apis/autoscaling/v2", "horizontalpodautoscalers"),
    Kind("ScaledObject", "/apis/keda.sh/v1alpha1", "scaledobjects"),
    Kind("InferencePool", "/apis/inference.networking.k8s.io/v1", "inferencepools"),
    Kind(
        "InferenceObjective", "/apis/inference.networking.x-k8s.io/v1alpha2", "inferenceobjectives"
    ),
    Kind("HTTPRoute", "/apis/gateway.networking.k8s.io/v1", "httproutes"),
    Kind("Gateway", "/apis/gateway.networking.k8s.io/v1", "gateways"),
    Kind("DestinationRule", "/apis/networking.istio.io/v1", "destinationrules"),
    Kind("NetworkPolicy", "/apis/networking.k8s.io/v1", "networkpolicies"),
    Kind("PeerAuthentication", "/apis/security.istio.io/v1", "peerauthentications"),
    Kind("AuthorizationPolicy", "/apis/security.istio.io/v1", "authorizationpolicies"),
)
BY_KIND: Mapping[str, Kind] = MappingProxyType({k.kind: k for k in TABLE})
BY_PATH: Mapping[tuple[str, str], Kind] = MappingProxyType({(k.prefix, k.plural): k for k in TABLE})
#: Namespaces every cluster has.
BUILTIN_NAMESPACES = frozenset({"default", "kube-system", "kube-public", "kube-node-lease"})


def discovery(path: str, installed: Iterable[Kind]) -> dict[str, Any] | None:
    """The discovery document at ``path``, or ``None`` when it is not a discovery path."""
    kinds = list(installed)
    if path == "/version":
        return {"major": "1", "minor": "33", "gitVersion": "v1.33.0-fake", "platform": "fake"}
    if path == "/api":
        return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
    if path == "/apis":
        return _group_list(kinds)
    prefixes = {k.prefix for k in kinds}
    if path in prefixes:
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": path.removeprefix("/api/").removeprefix("/apis/"),
            "resources": [_resource(k) for k in kinds if k.prefix == path],
        }
    return None


def _group_list(kinds: list[Kind]) -> dict[str, Any]:
    groups: dict[str, list[str]] = {}
    for kind in kinds:
        if kind.prefix.startswith("/apis/"):
            group, version = kind.api_version.split("/")
            if version not in groups.setdefault(group, []):
                groups[group].append(version)
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [
            {
                "name": group,
                "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in versions],
                "preferredVersion": {
                    "groupVersion": f"{group}/{versions[0]}",
                    "version": versions[0],
                },
            }
            for group, versions in groups.items()
        ],
    }


def _resource(kind: Kind) -> dict[str, Any]:
    return {
        "name": kind.plural,
        "singularName": kind.kind.lower(),
        "namespaced": kind.namespaced,
        "kind": kind.kind,
        "verbs": list(_VERBS),
    }
