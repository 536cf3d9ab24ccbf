"""``pilothouse deploy k8s``: render a Fleet and apply it to a cluster (server-side apply)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from pilothouse.controlplane.render.cli import render_flags, render_options
from pilothouse.errors import PilothouseError

EPILOG = """\b
Examples:
  pilothouse deploy k8s -f examples/fleet-k8s-sim.yaml -n inference --create-namespace
  pilothouse deploy k8s -f fleet.yaml --dry-run            # what would change; nothing written
  pilothouse deploy k8s -f fleet.yaml --wait --timeout 900 # until every Deployment is available
  pilothouse deploy k8s -f fleet.yaml --context prod --kubeconfig ~/.kube/prod.yaml

\b
Objects are labelled pilothouse.dev/fleet=NAME; objects of that fleet the new render no
longer contains are deleted (--no-prune keeps them). See docs/deploy-kubernetes.md.
"""


@click.group(name="deploy", epilog=EPILOG)
def deploy_group() -> None:
    """Deploy a Fleet: render it and apply it to a Kubernetes cluster."""


@deploy_group.command(name="k8s", epilog=EPILOG)
@render_flags
@click.option("-n", "--namespace", help="Namespace to deploy into [default: kubernetes.namespace].")
@click.option(
    "--name",
    "fleet_name",
    help="Name of this deployment, the value of the pilothouse.dev/fleet label that scopes "
    "pruning; keep it stable [default: the Fleet file's name, e.g. fleet-k8s-sim].",
)
@click.option(
    "--kubeconfig",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Kubeconfig file [default: in-cluster service account, else $KUBECONFIG or "
    "~/.kube/config].",
)
@click.option("--context", help="Kubeconfig context [default: the current context].")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Server-side dry run (dryRun=All): the API server validates and merges every "
    "object and reports what would change; nothing is stored.",
)
@click.option(
    "--prune/--no-prune",
    default=True,
    show_default=True,
    help="Delete this fleet's objects (same --name, same namespace) that the render no "
    "longer contains.",
)
@click.option(
    "--force-conflicts",
    is_flag=True,
    help="Take over fields another field manager owns instead of failing with a conflict.",
)
@click.option("--create-namespace", is_flag=True, help="Create the namespace if it does not exist.")
@click.option(
    "--wait",
    is_flag=True,
    help="After applying, wait until every Deployment is rolled out and available.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=600.0,
    show_default=True,
    help="Seconds --wait waits for the Deployments.",
)
def k8s(
    fleet_name: str | None,
    kubeconfig: Path | None,
    context: str | None,
    dry_run: bool,
    prune: bool,
    force_conflicts: bool,
    create_namespace: bool,
    wait: bool,
    timeout: float,
    **params: Any,
) -> None:
    """Apply what `render k8s` renders, with server-side apply (field manager `pilothouse`).

    Every object is applied in dependency order and reported as created, configured (with
    the fields that changed) or unchanged; objects this fleet deployed before and no longer
    renders are pruned. The render flags are those of `pilothouse render k8s`.
    """
    from pilothouse.config.fleet import load_fleet
    from pilothouse.controlplane.kube_apply import DeployOptions, deploy
    from pilothouse.controlplane.kube_client import KubeClient, KubeTarget, api_client
    from pilothouse.controlplane.kube_wait import wait_for_rollout
    from pilothouse.controlplane.render.bundle import render_fleet
    from pilothouse.controlplane.render.options import slug

    fleet_file: Path = params["fleet_file"]
    try:
        fleet = load_fleet(fleet_file)
        options = render_options(params, fleet)
        rendered = render_fleet(fleet, options, base_dir=fleet_file.parent)
        if rendered.skipped:
            names = ", ".join(rendered.skipped)
            click.echo(
                f"note: not deployed (engine not vllm/sim/llamacpp, or external): {names}", err=True
            )
        target = DeployOptions(
            namespace=options.namespace,
            fleet_name=fleet_name or slug(fleet_file.stem),
            prune=prune,
            dry_run=dry_run,
            force_conflicts=force_conflicts,
            create_namespace=create_namespace,
        )
        with api_client(KubeTarget(kubeconfig, context)) as api:
            client = KubeClient(api)
            mode = " (server dry run)" if dry_run else ""
            click.echo(
                f"deploying fleet {target.fleet_name} to {client.server}, namespace "
                f"{target.namespace}{mode}",
                err=True,
            )
            result = deploy(
                client, rendered.manifests, target, report=lambda c: click.echo(c.line())
            )
            click.echo(result.summary(), err=True)
            deployments = [o for o in result.applied if o.get("kind") == "Deployment"]
            if wait and dry_run:
                click.echo("note: --wait is ignored with --dry-run", err=True)
            elif wait and deployments:
                wait_for_rollout(
                    client,
                    deployments,
                    timeout_s=timeout,
                    report=lambda line: click.echo(f"  {line}", err=True),
                )
                click.echo("all deployments are available", err=True)
    except PilothouseError as exc:
        raise click.ClickException(str(exc)) from exc
