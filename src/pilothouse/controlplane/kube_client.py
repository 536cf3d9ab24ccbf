"""The Kubernetes calls of ``pilothouse deploy k8s``, with API errors made into clear messages.

A thin wrapper over the official client's ``kubernetes.dynamic.DynamicClient``: discovery maps
each rendered kind to its URL (as ``kubectl`` does, so a missing CRD is found before anything
is written), and every write is a server-side apply (``PATCH``,
``application/apply-patch+yaml``) under one field manager. Objects travel as plain dicts.

Every failure is raised as :class:`DeployError` with a message that says what to do: 403 (the
RBAC rules the field manager needs), 404 (a missing CRD or namespace), 409 (a field another
manager owns: ``--force-conflicts``), 422 (the server's validation message), or an
unreachable server.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pilothouse.errors import PilothouseError

try:
    import urllib3
    from kubernetes import client as k8s_client
    from kubernetes import config as k8s_config
    from kubernetes.client.exceptions import ApiException
    from kubernetes.dynamic import DynamicClient
    from kubernetes.dynamic.exceptions import ResourceNotFoundError
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "pilothouse deploy k8s needs the 'kubernetes' package: pip install 'pilothouse[k8s]'"
    ) from exc

Obj = dict[str, Any]
FIELD_MANAGER = "pilothouse"

#: What installs the API group of a CRD-based kind the render emits.
_CRD_HINTS = {
    "inference.networking.k8s.io": "install the Gateway API Inference Extension CRDs",
    "gateway.networking.k8s.io": "install the Gateway API CRDs",
    "keda.sh": "install KEDA, or render with --autoscaling hpa or none",
    "security.istio.io": "install Istio (its base chart holds the security CRDs) for agents",
}


class DeployError(PilothouseError):
    """Applying a Fleet to a cluster failed; the message says why and what to do."""


class MissingKind(DeployError):
    """The cluster does not serve a kind (its CRD is not installed)."""


@dataclass(frozen=True, slots=True)
class KubeTarget:
    """Which cluster: a kubeconfig file and context (``None``: in-cluster, else the default)."""

    kubeconfig: Path | None = None
    context: str | None = None


def api_client(target: KubeTarget) -> Any:
    """A ``kubernetes.client.ApiClient`` for ``target``."""
    configuration = k8s_client.Configuration()
    try:
        if target.kubeconfig is None and target.context is None:
            try:
                k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
                return k8s_client.ApiClient(configuration)
            except k8s_config.ConfigException:
                pass
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(target.kubeconfig) if target.kubeconfig else None,
            context=target.context,
            client_configuration=configuration,
        )
    except (k8s_config.ConfigException, OSError) as exc:
        raise DeployError(f"cannot load the Kubernetes configuration: {exc}") from exc
    return k8s_client.ApiClient(configuration)


def kind_name(obj: Obj) -> str:
    """``deployment.apps/foo``, ``service/foo``: how ``kubectl`` names an object."""
    group = str(obj["apiVersion"]).rpartition("/")[0]
    kind = str(obj["kind"]).lower()
    return (
        f"{kind}.{group}/{obj['metadata']['name']}"
        if group
        else f"{kind}/{obj['metadata']['name']}"
    )


class KubeClient:
    """Discovery, get, list, server-side apply and delete, as plain dicts."""

    def __init__(
        self, api: Any, *, field_manager: str = FIELD_MANAGER, timeout_s: float = 30.0
    ) -> None:
        self.field_manager = field_manager
        self.server = str(api.configuration.host)
        self._timeout = timeout_s
        with _translated("discovery"), tempfile.TemporaryDirectory() as cache:
            # a fresh discovery each run: a CRD installed a minute ago is seen
            cache_file = str(Path(cache) / "discovery.json")
            try:
                self._dynamic: Any = DynamicClient(api, cache_file=cache_file)  # type: ignore[no-untyped-call]
            except ValueError as exc:  # the client's word for "not an API server at this URL"
                raise DeployError(f"discovery at {self.server}: {exc}") from exc
        self._resources: dict[tuple[str, str], Any] = {}

    def resource(self, api_version: str, kind: str) -> Any:
        """The discovered resource of a kind; :class:`DeployError` when the cluster lacks it."""
        key = (api_version, kind)
        if key not in self._resources:
            try:
                with _translated(f"discovery of {kind}"):
                    self._resources[key] = self._dynamic.resources.get(
                        api_version=api_version, kind=kind
                    )
            except ResourceNotFoundError as exc:
                raise MissingKind(missing_kind(api_version, kind)) from exc
        return self._resources[key]

    def serves(self, api_version: str, kind: str) -> bool:
        """Whether the cluster serves a kind (other discovery failures are raised)."""
        try:
            self.resource(api_version, kind)
        except MissingKind:
            return False
        return True

    def get(self, obj: Obj) -> Obj | None:
        """The live object named like ``obj``, or ``None``."""
        resource = self.resource(obj["apiVersion"], obj["kind"])
        meta = obj["metadata"]
        try:
            with _translated(f"get {kind_name(obj)}", missing=(resource.name, meta["name"])):
                found = self._dynamic.get(
                    resource,
                    name=meta["name"],
                    namespace=meta.get("namespace") if resource.namespaced else None,
                    _request_timeout=self._timeout,
                )
        except _Missing:
            return None
        return _plain(found)

    def list(self, api_version: str, kind: str, namespace: str, selector: str) -> list[Obj]:
        resource = self.resource(api_version, kind)
        with _translated(f"list {kind}"):
            found = self._dynamic.get(
                resource,
                namespace=namespace,
                label_selector=selector,
                _request_timeout=self._timeout,
            )
        items: list[Obj] = _plain(found).get("items") or []
        for item in items:  # list items lack these
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
        return items

    def apply(self, obj: Obj, *, force: bool, dry_run: bool) -> Obj:
        """Server-side apply ``obj``; the object as the server has (or would have) it."""
        resource = self.resource(obj["apiVersion"], obj["kind"])
        meta = obj["metadata"]
        with _translated(f"apply {kind_name(obj)}"):
            found = self._dynamic.server_side_apply(
                resource,
                body=obj,
                name=meta["name"],
                namespace=meta.get("namespace") if resource.namespaced else None,
                field_manager=self.field_manager,
                force_conflicts=force,
                dry_run="All" if dry_run else None,
                _request_timeout=self._timeout,
            )
        return _plain(found)

    def delete(self, obj: Obj, *, dry_run: bool) -> None:
        """Delete ``obj`` (its dependents in the background); gone already is fine."""
        resource = self.resource(obj["apiVersion"], obj["kind"])
        meta = obj["metadata"]
        try:
            with _translated(f"delete {kind_name(obj)}", missing=(resource.name, meta["name"])):
                self._dynamic.delete(
                    resource,
                    name=meta["name"],
                    namespace=meta.get("namespace") if resource.namespaced else None,
                    propagation_policy="Background",
                    dry_run="All" if dry_run else None,
                    _request_timeout=self._timeout,
                )
        except _Missing:
            pass


def missing_kind(api_version: str, kind: str) -> str:
    group = api_version.rpartition("/")[0]
    hint = _CRD_HINTS.get(group, "install the CRD that defines it")
    return (
        f"the cluster does not serve {kind} ({api_version}): {hint} "
        "(see docs/deploy-kubernetes.md, step 1)"
    )


class _Missing(PilothouseError):
    """A 404 for an object (not for a kind or a namespace)."""


@contextmanager
def _translated(action: str, *, missing: tuple[str, str] | None = None) -> Iterator[None]:
    """Turn client and transport errors into :class:`DeployError` with advice.

    ``missing`` is the (plural, name) of the object asked for: a 404 about that object (not
    about its kind or its namespace) raises :class:`_Missing` instead.
    """
    try:
        yield
    except ApiException as exc:
        status = _status(exc)
        if missing is not None and exc.status == 404 and _is_about(status, missing):
            raise _Missing from exc
        raise DeployError(explain(action, int(exc.status or 0), status)) from exc
    except urllib3.exceptions.HTTPError as exc:
        raise DeployError(f"{action}: cannot reach the Kubernetes API server: {exc}") from exc


def explain(action: str, code: int, status: Obj) -> str:
    """A one-paragraph message for an API error ``Status``."""
    message = str(status.get("message") or status.get("reason") or "no message")
    details = status.get("details") or {}
    if code == 403:
        return (
            f"{action}: permission denied: {message}. The identity in your kubeconfig needs "
            "get, list, patch and delete on the rendered kinds in the namespace "
            "(docs/deploy-kubernetes.md#permissions)"
        )
    if code == 404 and details.get("kind") == "namespaces":
        name = details.get("name", "")
        return (
            f"{action}: namespace {name!r} does not exist: create it "
            f"(kubectl create namespace {name}) or pass --create-namespace"
        )
    if code == 404:
        return f"{action}: not found: {message} (is the kind's CRD installed?)"
    if code == 409:
        return (
            f"{action}: {message}. Another field manager (kubectl, a controller, a person) "
            "changed these fields; re-run with --force-conflicts to take them over, or stop "
            "managing them elsewhere"
        )
    if code == 422:
        return f"{action}: the API server rejected the object as invalid: {message}"
    if code == 401:
        return f"{action}: unauthorized ({message}): check the credentials in your kubeconfig"
    if code == 0:
        return f"{action}: cannot reach the Kubernetes API server: {message}"
    return f"{action}: the API server answered {code}: {message}"


def _status(exc: ApiException) -> Obj:
    try:
        body = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        return {"message": str(exc.body or exc.reason or "")}
    return body if isinstance(body, dict) else {"message": str(body)}


def _is_about(status: Obj, wanted: tuple[str, str]) -> bool:
    """Whether a 404 ``Status`` is about the object ``wanted`` (plural, name) itself."""
    details = status.get("details") or {}
    return (details.get("kind"), details.get("name")) == wanted


def _plain(found: Any) -> Obj:
    to_dict = getattr(found, "to_dict", None)
    data = to_dict() if callable(to_dict) else found
    plain: Obj = json.loads(json.dumps(data, default=str))
    return plain
