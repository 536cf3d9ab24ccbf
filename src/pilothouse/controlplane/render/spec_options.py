"""Render settings from the Fleet spec, with the command-line flags that were given winning.

Every ``pilothouse render`` flag defaults to ``None`` ("not given"); the Fleet's
``kubernetes`` section supplies the rest. Per-model values (autoscaling bounds and target,
resources, image, Kubernetes name) stay in the spec and are resolved per model by
:func:`pilothouse.controlplane.render.options.plan_models`; the matching flags override them
for every model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pilothouse.config.fleet import FleetSpec
from pilothouse.controlplane.render.options import (
    AgentTargets,
    Autoscaling,
    Images,
    RenderOptions,
    Resources,
)

T = TypeVar("T")


def _pick(flags: Mapping[str, Any], name: str, default: T) -> T:
    value = flags.get(name)
    return default if value is None else value


def options_from_fleet(fleet: FleetSpec, flags: Mapping[str, Any]) -> RenderOptions:
    """:class:`RenderOptions` for ``fleet``; ``flags`` are the command's keyword options."""
    k8s = fleet.kubernetes
    return RenderOptions(
        namespace=_pick(flags, "namespace", k8s.namespace),
        gateway_name=_pick(flags, "gateway_name", k8s.gateway_name),
        with_gateway=bool(flags.get("with_gateway", False)),
        with_dashboards=bool(flags.get("with_dashboards", False)),
        gateway_class=_pick(flags, "gateway_class", k8s.gateway_class),
        epp_replicas=_pick(flags, "epp_replicas", k8s.picker_replicas),
        failure_mode=_pick(flags, "failure_mode", k8s.failure_mode),
        epp_tls=not flags.get("epp_plaintext", False),
        images=Images(
            _pick(flags, "vllm_image", k8s.vllm_image),
            _pick(flags, "pilothouse_image", k8s.pilothouse_image),
            _pick(flags, "image_pull_policy", k8s.image_pull_policy),
        ),
        autoscaling=Autoscaling(
            kind=_pick(flags, "autoscaling", k8s.autoscaler),
            min_replicas=flags.get("min_replicas"),
            max_replicas=flags.get("max_replicas"),
            target_waiting=flags.get("target_waiting"),
            prometheus_url=_pick(flags, "prometheus_url", k8s.prometheus_url),
        ),
        resources=Resources(
            gpus=flags.get("gpus"), cpu=flags.get("cpu"), memory=flags.get("memory")
        ),
        agents=AgentTargets(
            gateway_url=flags.get("agent_gateway_url"),
            toolgateway_url=flags.get("toolgateway_url"),
        ),
    )
