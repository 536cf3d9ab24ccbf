"""``pilothouse render k8s | helm``: Kubernetes manifests or a Helm chart from a Fleet spec."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from pilothouse.config.fleet import FleetSpec
from pilothouse.controlplane.render.options import RenderOptions
from pilothouse.controlplane.render.spec_options import options_from_fleet
from pilothouse.errors import PilothouseError

EPILOG = """\b
Examples:
  pilothouse render k8s -f examples/fleet-vllm-gpu.yaml | kubectl apply -f -
  pilothouse render k8s -f examples/fleet-k8s-sim.yaml --with-gateway --out manifests/
  pilothouse render k8s -f fleet.yaml --autoscaling keda --max-replicas 8
  pilothouse render helm -f examples/fleet-vllm-gpu.yaml --out deploy/helm/pilothouse
"""


def render_flags(function: Callable[..., Any]) -> Callable[..., Any]:
    """The render flags, shared by ``render k8s | helm`` and ``deploy k8s``; each one given
    overrides the Fleet's ``kubernetes`` settings (or, for bounds, target and resources, every
    model's own values)."""
    fleet_file = click.Path(exists=True, dir_okay=False, path_type=Path)
    options = [
        click.option(
            "-f", "--file", "fleet_file", type=fleet_file, required=True, help="Fleet spec (YAML)."
        ),
        click.option(
            "--gateway",
            "gateway_name",
            help="Gateway the HTTPRoutes attach to [default: kubernetes.gateway_name, "
            "inference-gateway].",
        ),
        click.option(
            "--with-gateway", is_flag=True, help="Also render an example Gateway with that name."
        ),
        click.option(
            "--with-dashboards",
            is_flag=True,
            help="Also render the Grafana dashboards as a ConfigMap labelled "
            'grafana_dashboard: "1" (for Grafana\'s dashboard sidecar).',
        ),
        click.option(
            "--gateway-class",
            help="gatewayClassName of --with-gateway (istio, kgateway, agentgateway, ...) "
            "[default: kubernetes.gateway_class, istio].",
        ),
        click.option(
            "--autoscaling",
            type=click.Choice(["hpa", "keda", "none"]),
            help="HPA on a custom metric, KEDA on a Prometheus query, or fixed replicas "
            "[default: kubernetes.autoscaler, hpa].",
        ),
        click.option(
            "--min-replicas",
            type=click.IntRange(0, 1000),
            help="Autoscaler minimum of every model (default: its autoscaling.min_replicas, "
            "else its replicas, at least 1).",
        ),
        click.option(
            "--max-replicas",
            type=click.IntRange(1, 1000),
            help="Autoscaler maximum of every model (default: its autoscaling.max_replicas, "
            "else twice the minimum).",
        ),
        click.option(
            "--target-waiting",
            type=click.IntRange(1),
            help="Autoscaler target of every model (default: its autoscaling.target, else 2 "
            "waiting requests per replica).",
        ),
        click.option(
            "--prometheus-url",
            help="Prometheus that KEDA queries [default: kubernetes.prometheus_url].",
        ),
        click.option(
            "--vllm-image",
            help="Image of vLLM model servers [default: kubernetes.vllm_image, "
            "vllm/vllm-openai:latest].",
        ),
        click.option(
            "--pilothouse-image",
            help="Image of the picker and of sim servers [default: kubernetes.pilothouse_image].",
        ),
        click.option(
            "--image-pull-policy",
            type=click.Choice(["Always", "IfNotPresent", "Never"]),
            help="imagePullPolicy of every container [default: kubernetes.image_pull_policy, "
            "IfNotPresent].",
        ),
        click.option(
            "--gpus",
            type=click.IntRange(0),
            help="GPUs per vLLM replica (default: resources.gpus, else tensor-parallel x "
            "pipeline-parallel size, or 1).",
        ),
        click.option(
            "--cpu", help="CPU request per replica (default: resources.cpu, else vllm 4, sim 250m)."
        ),
        click.option(
            "--memory",
            help="Memory per replica (default: resources.memory, else vllm 16Gi, sim 256Mi).",
        ),
        click.option(
            "--epp-replicas",
            type=click.IntRange(1),
            help="Endpoint-picker replicas per pool [default: kubernetes.picker_replicas, 1].",
        ),
        click.option(
            "--failure-mode",
            type=click.Choice(["FailClose", "FailOpen"]),
            help="What the gateway does when the picker is down "
            "[default: kubernetes.failure_mode, FailClose].",
        ),
        click.option(
            "--epp-plaintext",
            is_flag=True,
            help="Pickers serve plaintext gRPC (--secure-serving=false) and no gateway TLS "
            "policy is rendered; by default they serve TLS and, for Istio, a DestinationRule "
            "makes the gateway connect with TLS.",
        ),
        click.option(
            "--agent-gateway-url",
            help="URL agents call the gateway at [default: http://<gateway>-istio:80 for "
            "Istio, else http://<gateway>:80].",
        ),
        click.option(
            "--toolgateway-url",
            help="URL agents call the tool gateway at [default: "
            "http://pilothouse-toolgateway:8100].",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def render_options(params: dict[str, Any], fleet: FleetSpec) -> RenderOptions:
    """:class:`RenderOptions` from the Fleet (its ``kubernetes`` section) and the flags given."""
    return options_from_fleet(fleet, params)


@click.group(name="render", epilog=EPILOG)
def render_group() -> None:
    """Render a Fleet for Kubernetes: manifests, or a Helm chart built from the same code."""


@render_group.command(name="k8s", epilog=EPILOG)
@render_flags
@click.option("-n", "--namespace", help="Target namespace [default: kubernetes.namespace].")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write one YAML file per model into this directory instead of stdout.",
)
def k8s(out: Path | None, **params: Any) -> None:
    """Model servers, pickers, InferencePools, HTTPRoutes and autoscalers as YAML; for each
    agent its Deployment, ServiceAccount, Service, route, NetworkPolicy and Istio policies."""
    from pilothouse.config.fleet import load_fleet
    from pilothouse.controlplane.render.bundle import grouped, render_fleet, to_yaml

    fleet_file: Path = params["fleet_file"]
    try:
        fleet = load_fleet(fleet_file)
        rendered = render_fleet(fleet, render_options(params, fleet), base_dir=fleet_file.parent)
    except PilothouseError as exc:
        raise click.ClickException(str(exc)) from exc
    _note_skipped(rendered.skipped)
    if out is None:
        sys.stdout.write(to_yaml(rendered.manifests))
        return
    out.mkdir(parents=True, exist_ok=True)
    for group, manifests in grouped(rendered.manifests).items():
        (out / f"{group}.yaml").write_text(to_yaml(manifests), encoding="utf-8")
        click.echo(f"wrote {out / f'{group}.yaml'} ({len(manifests)} objects)", err=True)


@render_group.command(name="helm", epilog=EPILOG)
@render_flags
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Chart directory (Chart.yaml, values.yaml, templates/).",
)
@click.option("--chart-name", default="pilothouse", show_default=True, help="Chart name.")
def helm(out: Path, chart_name: str, **params: Any) -> None:
    """A Helm chart whose templates are `render k8s` with tunables taken from values.yaml."""
    from pilothouse.config.fleet import load_fleet
    from pilothouse.controlplane.render.helm import write_chart

    fleet_file: Path = params["fleet_file"]
    command = " ".join([f"-f {fleet_file.as_posix()} --out {out.as_posix()}", *_given_options()])
    try:
        fleet = load_fleet(fleet_file)
        written = write_chart(
            fleet,
            render_options(params, fleet),
            out,
            command=command,
            base_dir=fleet_file.parent,
            chart_name=chart_name,
        )
    except PilothouseError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"wrote {len(written)} files into {out}", err=True)


def _given_options() -> list[str]:
    """The options given with non-default values, to record how a chart was generated."""
    ctx = click.get_current_context()
    given = []
    for param in ctx.command.params:
        value = ctx.params.get(param.name or "")
        if not isinstance(param, click.Option) or param.name in ("fleet_file", "out"):
            continue
        if value is None or value is False or value == param.default:
            continue
        given.append(param.opts[-1] if value is True else f"{param.opts[-1]} {value}")
    return given


def _note_skipped(skipped: tuple[str, ...]) -> None:
    if skipped:
        names = ", ".join(skipped)
        click.echo(
            f"note: not rendered (engine not vllm/sim/llamacpp, or external): {names}", err=True
        )
