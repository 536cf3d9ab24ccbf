"""The Kubernetes executor: apply a rendered Fleet to a cluster with server-side apply.

Why server-side apply from the command line, and not an operator reconciling a Fleet custom
resource: nothing has to be installed in the cluster first (no CRD for Fleet, no controller
with cluster-wide rights to run and upgrade), the objects are plain Kubernetes objects that
``kubectl``, Helm or a GitOps tool can take over, and the API server itself does the merge:
each field records its manager (``pilothouse``), so fields other tools own (an HPA's
replicas, a label a person added) are left alone, and a field both want is a 409 conflict
rather than a silent overwrite (``force`` takes it over). A Fleet is desired state already;
an operator would add a second copy of it and a reconcile loop the API server does anyway.

:func:`deploy` is the whole run:

1. label every rendered object with ``pilothouse.dev/fleet: <name>`` and sort them so that
   what others depend on goes first (ServiceAccounts and RBAC, ConfigMaps, Services,
   Deployments, then InferencePools, Gateways, HTTPRoutes and autoscalers);
2. check, before writing anything, that the cluster serves every kind (a missing CRD is one
   clear error, not half a deployment);
3. optionally apply the Namespace; apply each object; compare it with what was there before
   to report *created*, *configured* (with the fields that changed) or *unchanged*;
4. prune: delete the objects of this fleet (by label, in this namespace, of the kinds the
   render can produce) that the new render no longer contains, dependents first.

With ``dry_run`` every write is sent with ``dryRun=All``: the server validates, merges and
reports, and stores nothing.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pilothouse.controlplane.kube_client import DeployError, KubeClient, kind_name
from pilothouse.controlplane.render.meta import MANAGED_BY, PART_OF

Obj = dict[str, Any]
Action = Literal["created", "configured", "unchanged", "pruned"]
FLEET_LABEL = "pilothouse.dev/fleet"

#: Every kind the render can produce, in apply order (prune goes the other way).
KINDS: tuple[tuple[str, str], ...] = (
    ("v1", "ServiceAccount"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("v1", "ConfigMap"),
    ("v1", "Secret"),  # the Fleet that agents read
    ("v1", "Service"),
    ("networking.istio.io/v1", "DestinationRule"),  # Istio: TLS to the picker
    # Agents: network and mesh rules before the pods they confine start.
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("security.istio.io/v1", "PeerAuthentication"),
    ("security.istio.io/v1", "AuthorizationPolicy"),
    ("apps/v1", "Deployment"),
    ("inference.networking.k8s.io/v1", "InferencePool"),
    ("gateway.networking.k8s.io/v1", "Gateway"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("keda.sh/v1alpha1", "ScaledObject"),
)
_ORDER = {kind: i for i, (_, kind) in enumerate(KINDS)}
#: Server-set bookkeeping, ignored when deciding whether an object changed.
_VOLATILE_META = ("managedFields", "resourceVersion", "generation", "uid", "creationTimestamp")


@dataclass(frozen=True, slots=True)
class DeployOptions:
    namespace: str
    fleet_name: str
    prune: bool = True
    dry_run: bool = False
    force_conflicts: bool = False
    create_namespace: bool = False


@dataclass(frozen=True, slots=True)
class Change:
    """What happened (or, in a dry run, would happen) to one object."""

    action: Action
    name: str  # kubectl-style: deployment.apps/foo
    fields: tuple[str, ...] = ()  # for "configured": the top changed field paths
    note: str = ""

    def line(self) -> str:
        extra = f" ({', '.join(self.fields)})" if self.fields else ""
        note = f" [{self.note}]" if self.note else ""
        return f"{self.name} {self.action}{extra}{note}"


@dataclass(frozen=True, slots=True)
class DeployResult:
    changes: tuple[Change, ...]
    dry_run: bool
    applied: tuple[Obj, ...] = field(default=(), repr=False)  # as the server returned them

    def count(self, action: Action) -> int:
        return sum(1 for c in self.changes if c.action == action)

    def summary(self) -> str:
        counts = ", ".join(
            f"{self.count(a)} {a}" for a in ("created", "configured", "unchanged", "pruned")
        )
        return counts + (" (server dry run: nothing was changed)" if self.dry_run else "")


def prepare(manifests: Iterable[Mapping[str, Any]], options: DeployOptions) -> list[Obj]:
    """Copies of ``manifests`` in ``options.namespace``, labelled, in apply order."""
    out: list[Obj] = []
    for manifest in manifests:
        obj = copy.deepcopy(dict(manifest))
        if (obj["apiVersion"], obj["kind"]) not in KINDS:
            raise DeployError(f"the executor does not know how to apply {obj['kind']}")
        meta = obj["metadata"]
        meta["namespace"] = options.namespace
        meta.setdefault("labels", {})[FLEET_LABEL] = options.fleet_name
        out.append(obj)
    return sorted(out, key=lambda o: _ORDER[o["kind"]])


def deploy(
    client: KubeClient,
    manifests: Sequence[Mapping[str, Any]],
    options: DeployOptions,
    *,
    report: Callable[[Change], None] = lambda change: None,
) -> DeployResult:
    """Apply ``manifests`` (from ``render_fleet``) and prune what this fleet no longer has."""
    objects = prepare(manifests, options)
    for api_version, kind in dict.fromkeys((o["apiVersion"], o["kind"]) for o in objects):
        client.resource(api_version, kind)  # a missing CRD fails here, before any write
    changes: list[Change] = []
    applied: list[Obj] = []

    def record(change: Change) -> None:
        changes.append(change)
        report(change)

    unvalidated = ""
    if options.create_namespace:
        unvalidated = _ensure_namespace(client, options, record)
    for obj in objects:
        if unvalidated:  # a dry run into a namespace that does not exist yet
            record(Change("created", kind_name(obj), note=unvalidated))
            continue
        before = client.get(obj)
        after = client.apply(obj, force=options.force_conflicts, dry_run=options.dry_run)
        applied.append(after)
        record(_classify(kind_name(obj), before, after))
    if options.prune:
        for gone in _prunable(client, objects, options):
            client.delete(gone, dry_run=options.dry_run)
            record(Change("pruned", kind_name(gone)))
    return DeployResult(tuple(changes), options.dry_run, tuple(applied))


def fleet_selector(fleet_name: str) -> str:
    return f"{FLEET_LABEL}={fleet_name},{MANAGED_BY}=pilothouse"


def _ensure_namespace(
    client: KubeClient, options: DeployOptions, record: Callable[[Change], None]
) -> str:
    """Apply the Namespace; in a dry run of a new one, the note for the objects inside it."""
    namespace: Obj = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": options.namespace, "labels": {PART_OF: "pilothouse"}},
    }
    before = client.get(namespace)
    after = client.apply(namespace, force=options.force_conflicts, dry_run=options.dry_run)
    record(_classify(kind_name(namespace), before, after))
    if options.dry_run and before is None:
        return "namespace not created yet: not checked by the server"
    return ""


def _prunable(client: KubeClient, keep: Sequence[Obj], options: DeployOptions) -> list[Obj]:
    """Live objects of this fleet that ``keep`` does not name, dependents first."""
    wanted = {(o["kind"], o["metadata"]["name"]) for o in keep}
    selector = fleet_selector(options.fleet_name)
    found: list[Obj] = []
    for api_version, kind in reversed(KINDS):
        if not client.serves(api_version, kind):
            continue  # e.g. KEDA not installed: nothing of that kind to prune
        for live in client.list(api_version, kind, options.namespace, selector):
            if (kind, live["metadata"]["name"]) not in wanted:
                found.append(live)
    return found


def _classify(name: str, before: Obj | None, after: Obj) -> Change:
    if before is None:
        return Change("created", name)
    changed = changed_fields(_comparable(before), _comparable(after))
    if not changed:
        return Change("unchanged", name)
    return Change("configured", name, tuple(changed[:4]) + (("...",) if len(changed) > 4 else ()))


def _comparable(obj: Obj) -> Obj:
    out = {k: v for k, v in obj.items() if k != "status"}
    out["metadata"] = {
        k: v for k, v in (obj.get("metadata") or {}).items() if k not in _VOLATILE_META
    }
    return out


def changed_fields(before: Any, after: Any, prefix: str = "") -> list[str]:
    """Dotted paths where ``after`` differs from ``before`` (lists compared whole)."""
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        out: list[str] = []
        for key in sorted(set(before) | set(after), key=str):
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in before or key not in after:
                out.append(path)
            else:
                out += changed_fields(before[key], after[key], path)
        return out
    return [] if before == after else [prefix or "."]
