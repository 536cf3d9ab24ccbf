"""``pilothouse orgs | teams | keys | usage``: identities and spend, straight on the store.

Every command opens the store named by ``--store``, else by ``-f fleet.yaml``'s
``gateway.governance``, else the SQLite file in ``--state-dir`` (default
``$XDG_STATE_HOME/pilothouse``), brings its schema up to date, and closes it. Failures are
one line on stderr: exit 2 for bad input (an option, a spec, an ambiguous name), 1 for the
rest (unknown or taken names, a store out of reach). A new key's plaintext is the only thing
written to stdout by ``keys create`` (so ``KEY=$(pilothouse keys create …)`` works); the
warning that it is shown once goes to stderr.
"""

from __future__ import annotations

import ipaddress
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

import click

from pilothouse.governance.cli_options import (
    QUOTA_FIELDS,
    emit_json,
    json_option,
    merged_quota,
    parse_when,
    print_table,
    quota_options,
    quota_text,
    record_dict,
    session,
    store_options,
    when_text,
)
from pilothouse.governance.keys import KeyScope
from pilothouse.governance.records import Quota, Snapshot, UsageDimension

# -- orgs -----------------------------------------------------------------------------------


@click.group()
def orgs() -> None:
    """Organisations: the top of organisations → teams → keys."""


@orgs.command("create")
@click.argument("name")
@quota_options
@store_options
def orgs_create(
    name: str, store_url: str | None, state_dir: Path | None, fleet_file: Path | None, **quota: Any
) -> None:
    """Create the organisation NAME (with an optional quota for all its teams together)."""
    with session(store_url, state_dir, fleet_file) as store:
        org = store.create_org(name, merged_quota(Quota(), quota))
    click.echo(f"created organisation {org.name} ({org.id})")


@orgs.command("list")
@json_option
@store_options
def orgs_list(
    as_json: bool, store_url: str | None, state_dir: Path | None, fleet_file: Path | None
) -> None:
    """List organisations with their quotas."""
    with session(store_url, state_dir, fleet_file) as store:
        found = store.list_orgs()
    if as_json:
        emit_json([record_dict(o) for o in found])
        return
    rows = [(o.name, o.id, quota_text(o.quota), when_text(o.created_at)) for o in found]
    print_table("organisations", ("name", "id", "quota", "created"), rows)


# -- teams ----------------------------------------------------------------------------------


@click.group()
def teams() -> None:
    """Teams: who spends; each belongs to one organisation and holds keys."""


@teams.command("create")
@click.argument("org")
@click.argument("name")
@click.option(
    "--max-priority", type=int, help="Highest flow-control priority the team's requests get."
)
@click.option(
    "--default-priority",
    type=int,
    default=0,
    show_default=True,
    help="Priority of the team's requests that ask for none.",
)
@quota_options
@store_options
def teams_create(
    org: str,
    name: str,
    max_priority: int | None,
    default_priority: int,
    store_url: str | None,
    state_dir: Path | None,
    fleet_file: Path | None,
    **quota: Any,
) -> None:
    """Create the team NAME in organisation ORG (its name or id)."""
    with session(store_url, state_dir, fleet_file) as store:
        team = store.create_team(
            org,
            name,
            merged_quota(Quota(), quota),
            max_priority=max_priority,
            default_priority=default_priority,
        )
        parent = store.get_org(team.org_id)
    click.echo(f"created team {parent.name}/{team.name} ({team.id})")


@teams.command("list")
@click.option("--org", help="Only this organisation's teams (name or id).")
@json_option
@store_options
def teams_list(
    org: str | None,
    as_json: bool,
    store_url: str | None,
    state_dir: Path | None,
    fleet_file: Path | None,
) -> None:
    """List teams with their priorities and quotas."""
    with session(store_url, state_dir, fleet_file) as store:
        found = store.list_teams(org)
        names = {o.id: o.name for o in store.list_orgs()}
    if as_json:
        emit_json([record_dict(t) | {"org": names.get(t.org_id)} for t in found])
        return
    rows = [
        (
            f"{names.get(t.org_id, t.org_id)}/{t.name}",
            t.id,
            "-" if t.max_priority is None else str(t.max_priority),
            str(t.default_priority),
            quota_text(t.quota),
        )
        for t in found
    ]
    print_table("teams", ("team", "id", "max priority", "default priority", "quota"), rows)


@teams.command("set-quota")
@click.argument("team")
@quota_options
@store_options
def teams_set_quota(
    team: str, store_url: str | None, state_dir: Path | None, fleet_file: Path | None, **quota: Any
) -> None:
    """Change the limits and budgets of TEAM (org/team, a unique team name, or its id).

    Only the options given change; 'none' removes a limit (--rpm none).
    """
    if all(quota.get(name) is None for name in QUOTA_FIELDS):
        raise click.UsageError("give at least one of --rpm, --tpm, --concurrent, --budget-*")
    with session(store_url, state_dir, fleet_file) as store:
        current = store.get_team(team)
        updated = merged_quota(current.quota, quota)
        store.update_quota(current.id, updated)
    click.echo(f"team {current.name} ({current.id}): {quota_text(updated)}")


# -- keys -----------------------------------------------------------------------------------


def _networks(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    try:
        return tuple(ipaddress.ip_network(value, strict=True) for value in values)
    except ValueError as exc:
        raise click.BadParameter(f"not a CIDR range: {exc}") from None


@click.group()
def keys() -> None:
    """API keys: shown once at creation, stored hashed, scoped, revocable."""


@keys.command("create")
@click.option("--team", required=True, help="The key's team (org/team, a unique name, or id).")
@click.option("--name", required=True, help="A name for the key, unique among its team's keys.")
@click.option("--agent", is_flag=True, help="An agent's key (needs --owner).")
@click.option("--owner", help="Who answers for the key (a person or service account).")
@click.option(
    "--models",
    multiple=True,
    help="Models the key may use, comma-separated or repeated (default: all).",
)
@click.option("--max-priority", type=int, help="Cap on the priority of the key's requests.")
@click.option("--expires", help="When the key stops working: 30d, 12h, or an ISO date (UTC).")
@click.option(
    "--cidr", multiple=True, callback=_networks, help="Client networks allowed (repeatable)."
)
@quota_options
@store_options
def keys_create(
    team: str,
    name: str,
    agent: bool,
    owner: str | None,
    models: tuple[str, ...],
    max_priority: int | None,
    expires: str | None,
    cidr: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...],
    store_url: str | None,
    state_dir: Path | None,
    fleet_file: Path | None,
    **quota: Any,
) -> None:
    """Create a key; its plaintext is printed once, on stdout, and never again."""
    with session(store_url, state_dir, fleet_file) as store:
        scope = KeyScope(
            models=frozenset(m.strip() for arg in models for m in arg.split(",") if m.strip()),
            max_priority=max_priority,
            expires_at=None if expires is None else parse_when(expires, time.time(), ahead=True),
            networks=cidr,
        )
        plaintext, key = store.create_key(
            team,
            name,
            kind="agent" if agent else "user",
            owner=owner,
            scope=scope,
            quota=merged_quota(Quota(), quota),
        )
        owner_team = store.get_team(key.team_id)
        team_name = f"{store.get_org(owner_team.org_id).name}/{owner_team.name}"
    click.echo(f"created {key.kind} key {key.name} ({key.id}) for team {team_name}", err=True)
    click.echo(plaintext)
    click.echo(
        "warning: store this key now; it will not be shown again (only its hash is kept).",
        err=True,
    )


@keys.command("list")
@click.option("--team", help="Only this team's keys (org/team, a unique name, or id).")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked keys.")
@json_option
@store_options
def keys_list(
    team: str | None,
    include_revoked: bool,
    as_json: bool,
    store_url: str | None,
    state_dir: Path | None,
    fleet_file: Path | None,
) -> None:
    """List keys (never their plaintext: the first characters tell them apart)."""
    with session(store_url, state_dir, fleet_file) as store:
        found = store.list_keys(team, revoked=include_revoked)
        names = _names(store.snapshot())
    if as_json:
        emit_json([record_dict(k) | {"team": names.get(k.team_id)} for k in found])
        return
    rows = [
        (
            k.name,
            k.id,
            names.get(k.team_id, k.team_id),
            k.kind if k.owner is None else f"{k.kind} ({k.owner})",
            f"{k.shown}…",
            ",".join(sorted(k.scope.models)) or "all",
            when_text(k.scope.expires_at),
            when_text(k.revoked_at),
        )
        for k in found
    ]
    columns = ("name", "id", "team", "kind", "key", "models", "expires", "revoked")
    print_table("keys", columns, rows)


@keys.command("revoke")
@click.argument("key")
@store_options
def keys_revoke(
    key: str, store_url: str | None, state_dir: Path | None, fleet_file: Path | None
) -> None:
    """Revoke KEY (its id, team/name, or a unique name): every gateway refuses it within
    its sync interval."""
    with session(store_url, state_dir, fleet_file) as store:
        record = store.revoke_key(key)
    click.echo(f"revoked key {record.name} ({record.id}) at {when_text(record.revoked_at)} UTC")


# -- usage ----------------------------------------------------------------------------------


def _names(snapshot: Snapshot) -> dict[str, str]:
    """Id → name for display: organisations, ``org/team`` for teams."""
    orgs_by_id = {o.id: o.name for o in snapshot.orgs}
    names = dict(orgs_by_id)
    names.update({t.id: f"{orgs_by_id.get(t.org_id, t.org_id)}/{t.name}" for t in snapshot.teams})
    return names


def _dimensions(text: str) -> list[UsageDimension]:
    allowed = get_args(UsageDimension)
    found = [part.strip() for part in text.split(",") if part.strip()]
    wrong = [part for part in found if part not in allowed]
    if wrong:
        raise click.BadParameter(
            f"{', '.join(wrong)}: group by {', '.join(allowed)}", param_hint="--by"
        )
    return found  # type: ignore[return-value]


@click.command()
@click.option(
    "--by",
    default="team,model",
    show_default=True,
    help="Comma-separated groups: key, team, org, model ('' for grand totals).",
)
@click.option("--since", help="From: 7d, 24h (ago), or an ISO date or time (UTC).")
@click.option("--until", help="Until (excluded): 1d (ago), or an ISO date or time (UTC).")
@json_option
@store_options
def usage(
    by: str,
    since: str | None,
    until: str | None,
    as_json: bool,
    store_url: str | None,
    state_dir: Path | None,
    fleet_file: Path | None,
) -> None:
    """Requests, tokens and cost from the ledger, grouped by key, team, org or model."""
    dimensions = _dimensions(by)
    with session(store_url, state_dir, fleet_file) as store:
        now = time.time()
        start = None if since is None else _utc(parse_when(since, now, ahead=False))
        end = None if until is None else _utc(parse_when(until, now, ahead=False))
        rows = store.usage(dimensions, start, end)
        names = _names(store.snapshot()) | {k.id: k.name for k in store.list_keys(revoked=True)}
    if as_json:
        emit_json(
            [
                dict(zip(dimensions, row.group, strict=True))
                | {
                    f"{d}_name": names.get(v or "")
                    for d, v in zip(dimensions, row.group, strict=True)
                    if d != "model"
                }
                | {
                    "requests": row.requests,
                    "prompt_tokens": row.prompt_tokens,
                    "completion_tokens": row.completion_tokens,
                    "cost": row.cost,
                }
                for row in rows
            ]
        )
        return
    table_rows = [
        (
            *(names.get(v, v) if v else "-" for v in row.group),
            str(row.requests),
            str(row.prompt_tokens),
            str(row.completion_tokens),
            f"{row.cost:.4f}",
        )
        for row in rows
    ]
    columns = (*dimensions, "requests", "prompt tokens", "completion tokens", "cost")
    print_table("usage", columns, table_rows)


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
