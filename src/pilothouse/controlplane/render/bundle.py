"""Everything a cluster needs for one Fleet, as plain manifests, and their YAML.

Per rendered model (engine ``vllm``, ``sim`` or ``llamacpp``): the endpoint picker
(ServiceAccount, Role, RoleBinding, Service, Deployment), the model-server Deployment, the
InferencePool, the HTTPRoute and the autoscaler (none for llamacpp, which has no metrics);
once per fleet: the scheduler ConfigMap when the Fleet names a scheduler file, an
example Gateway with ``--with-gateway`` and the Grafana dashboards ConfigMap with
``--with-dashboards``. Per agent (``agents:``): its ServiceAccount, Service,
Deployment, HTTPRoute, NetworkPolicy and Istio policies, and once the Secret holding the
Fleet they read (docs/agents-kubernetes.md).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pilothouse.config.fleet import FleetSpec
from pilothouse.controlplane.render.agent import agent_objects, fleet_secret, targets_for
from pilothouse.controlplane.render.agent_mesh import mesh_objects
from pilothouse.controlplane.render.autoscale import autoscaler
from pilothouse.controlplane.render.dashboards import DASHBOARDS_CONFIGMAP, dashboards_configmap
from pilothouse.controlplane.render.epp import epp_objects, scheduler_configmap
from pilothouse.controlplane.render.meta import AGENT_LABEL, MODEL_LABEL, Manifest
from pilothouse.controlplane.render.model_server import model_server
from pilothouse.controlplane.render.options import RenderOptions, plan_models
from pilothouse.controlplane.render.params import Binder, LiteralBinder, Placeholder
from pilothouse.controlplane.render.pool import inference_pool
from pilothouse.controlplane.render.route import gateway, http_route
from pilothouse.errors import ConfigError

_TOKEN = re.compile(r"'?PHX(\d+)XHP'?")


@dataclass(frozen=True, slots=True)
class Rendered:
    manifests: tuple[Manifest, ...]
    skipped: tuple[str, ...]  # models not rendered (sglang/openai engines, or external)


def render_fleet(
    fleet: FleetSpec,
    options: RenderOptions,
    *,
    bind: Binder | None = None,
    base_dir: Path | None = None,
) -> Rendered:
    """All manifests for ``fleet``; ``base_dir`` resolves a relative scheduler file path."""
    plans, skipped = plan_models(fleet, options)
    if not plans:
        raise ConfigError("no model with engine vllm, sim or llamacpp to render", path="models")
    bind = bind or LiteralBinder()
    scheduler, scheduler_text = _scheduler(fleet.gateway.scheduler, base_dir)
    out: list[Manifest] = []
    if options.with_gateway:
        out.append(gateway(options, bind))
    if scheduler_text is not None:
        out.append(scheduler_configmap(scheduler_text, options, bind))
    if options.with_dashboards:
        out.append(dashboards_configmap(options, bind))
    for plan in plans:
        out += epp_objects(
            plan, options, bind, scheduler_file=scheduler_text is not None, scheduler=scheduler
        )
        out.append(model_server(plan, options, bind))
        out.append(inference_pool(plan, options, bind))
        out.append(http_route(plan, fleet, options, bind, by_model=len(plans) > 1))
        scaler = autoscaler(plan, options, bind)
        if scaler is not None:
            out.append(scaler)
    out += _agents(fleet, options, bind)
    return Rendered(tuple(copy.deepcopy(m) for m in out), tuple(skipped))


def _agents(fleet: FleetSpec, options: RenderOptions, bind: Binder) -> list[Manifest]:
    if not fleet.agents:
        return []
    targets = targets_for(options)
    out = [fleet_secret(fleet, options, bind)]
    for index, spec in enumerate(fleet.agents):
        out += agent_objects(spec, index, options, bind, targets)
        out += mesh_objects(spec, index, options, bind, targets)
    return out


def _scheduler(value: str, base_dir: Path | None) -> tuple[str, str | None]:
    """(name, None) for a built-in scheduler; (path, file text) for a scheduler file."""
    if not (value.endswith((".yaml", ".yml")) or "/" in value):
        return value, None
    path = Path(value)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    try:
        return value, path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read scheduler file {path}: {exc}", "gateway.scheduler") from exc


def group_of(manifest: Manifest) -> str:
    """Which output file an object belongs to: its model's slug, ``agent-<name>``, or its
    kind (the scheduler ConfigMap: ``scheduler``; the dashboards: ``dashboards``; the agents'
    Fleet Secret: its name)."""
    found: dict[str, str] = manifest["metadata"].get("labels", {})
    if MODEL_LABEL in found:
        return found[MODEL_LABEL]
    if AGENT_LABEL in found:
        return f"agent-{found[AGENT_LABEL]}"
    if manifest["kind"] == "Secret":
        return str(manifest["metadata"]["name"])
    if manifest["metadata"]["name"] == DASHBOARDS_CONFIGMAP:
        return "dashboards"
    return "scheduler" if manifest["kind"] == "ConfigMap" else str(manifest["kind"]).lower()


def grouped(manifests: Iterable[Manifest]) -> dict[str, list[Manifest]]:
    groups: dict[str, list[Manifest]] = {}
    for manifest in manifests:
        groups.setdefault(group_of(manifest), []).append(manifest)
    return groups


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def to_yaml(manifests: Sequence[Manifest]) -> str:
    """Multi-document YAML; :class:`Placeholder` values become Helm template actions."""
    expressions: list[str] = []

    def swap(node: Any) -> Any:
        if isinstance(node, Placeholder):
            expressions.append(node.expression())
            return f"PHX{len(expressions) - 1}XHP"
        if isinstance(node, dict):
            return {k: swap(v) for k, v in node.items()}
        if isinstance(node, list):
            return [swap(v) for v in node]
        return node

    docs = [swap(m) for m in manifests]
    text = yaml.dump_all(docs, Dumper=_Dumper, sort_keys=False, explicit_start=True, width=100)
    return _TOKEN.sub(lambda m: expressions[int(m[1])], text)
