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

import dataclasses
import ipaddress
import json
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar, get_args

import click

from pilothouse.config.governance import GovernanceSpec
from pilothouse.errors import BadRequest, ConfigError, PilothouseError
from pilothouse.governance.keys import KeyScope
from pilothouse.governance.limits import Limit
from pilothouse.governance.records import (
    BudgetPeriod,
    KeyRecord,
    Quota,
    Snapshot,
    UsageDimension,
)
from pilothouse.governance.store import SqlStore, default_state_dir, open_store

F = TypeVar("F", bound=Callable[..., Any])
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_CLEAR = "none"


def parse_when(text: str, now: float, *, ahead: bool) -> float:
    """``30d`` / ``12h`` / ``90m`` (from ``now``: ahead, or back when not ``ahead``), or an
    ISO date or time (UTC unless it names a zone); seconds since the epoch."""
    match = _DURATION.match(text.strip())
    if match:
        seconds = float(match.group(1)) * _SECONDS[match.group(2)]
        return now + seconds if ahead else now - seconds
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadRequest(
            f"'{text}' is neither a duration (30d, 12h, 90m) nor an ISO date"
        ) from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


# -- opening the store ----------------------------------------------------------------------


def _store_options(command: F) -> F:
    """``--store``, ``--state-dir`` and ``-f``: where the store is (every command)."""
    command = click.option(
        "-f",
        "--file",
        "fleet_file",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Fleet spec whose gateway.governance names the store (store, state_dir).",
    )(command)
    command = click.option(
        "--state-dir",
        type=click.Path(file_okay=False, path_type=Path),
        help="Directory of the default SQLite store (governance.db). "
        "Default: $XDG_STATE_HOME/pilothouse or ~/.local/state/pilothouse.",
    )(command)
    return click.option(
        "--store",
        "store_url",
        metavar="URL",
        help="SQLAlchemy URL of the store (postgresql://user@host/db); overrides -f.",
    )(command)


def _spec(store_url: str | None, state_dir: Path | None, fleet_file: Path | None) -> GovernanceSpec:
    spec = GovernanceSpec()
    if fleet_file is not None:
        from pilothouse.config.fleet import load_fleet

        spec = load_fleet(fleet_file).gateway.governance or spec
    updates: dict[str, object] = {}
    if store_url:
        updates["store"] = store_url
    if state_dir is not None:
        updates["state_dir"] = state_dir
    return spec.model_copy(update=updates)


@contextmanager
def _session(
    store_url: str | None, state_dir: Path | None, fleet_file: Path | None
) -> Iterator[SqlStore]:
    """The store, migrated; every pilothouse error as one line and an exit status."""
    store: SqlStore | None = None
    try:
        spec = _spec(store_url, state_dir, fleet_file)
        store = open_store(spec, default_state_dir(os.environ))
        store.migrate()
        yield store
    except (ConfigError, BadRequest) as exc:
        _fail(exc, 2)
    except PilothouseError as exc:
        _fail(exc, 1)
    finally:
        if store is not None:
            store.close()


def _fail(exc: PilothouseError, status: int) -> NoReturn:
    lines = exc.problems if isinstance(exc, ConfigError) else (str(exc),)
    for line in lines:
        click.echo(f"error: {line}", err=True)
    raise SystemExit(status)


# -- quotas ---------------------------------------------------------------------------------


def _amount(kind: type[int] | type[float]) -> Callable[..., Any]:
    """A click callback: a number ≥ 0 of ``kind``, or ``none`` (set-quota: remove a limit)."""

    def convert(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
        if value is None:
            return None
        if value.lower() == _CLEAR:
            return _CLEAR
        try:
            number = kind(value)
        except ValueError:
            raise click.BadParameter(f"'{value}' is not a number or 'none'") from None
        if number < 0:
            raise click.BadParameter(f"'{value}' is negative")
        return number

    return convert


_QUOTA_FIELDS = ("rpm", "tpm", "concurrent", "budget_tokens", "budget_cost", "budget_period")


def _quota_options(command: F) -> F:
    options = [
        click.option(
            "--rpm",
            metavar="INT|none",
            callback=_amount(int),
            help="Requests per minute ('none': no limit).",
        ),
        click.option(
            "--tpm",
            metavar="INT|none",
            callback=_amount(int),
            help="Tokens (prompt + output) per minute.",
        ),
        click.option(
            "--concurrent",
            metavar="INT|none",
            callback=_amount(int),
            help="Requests in flight at once.",
        ),
        click.option(
            "--budget-tokens",
            metavar="NUM|none",
            callback=_amount(float),
            help="Tokens allowed per budget period.",
        ),
        click.option(
            "--budget-cost",
            metavar="NUM|none",
            callback=_amount(float),
            help="Money allowed per budget period (in the spec's budget_unit).",
        ),
        click.option(
            "--budget-period",
            type=click.Choice(get_args(BudgetPeriod)),
            help="What budgets count over: total, day, or calendar month (UTC; the default).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _quota(base: Quota, values: dict[str, Any]) -> Quota:
    """``base`` with the given options applied (``none`` clears a field)."""

    def pick(name: str, current: Any) -> Any:
        value = values.get(name)
        if value is None:
            return current
        return None if value == _CLEAR else value

    limit = Limit(
        requests_per_min=pick("rpm", base.limit.requests_per_min),
        tokens_per_min=pick("tpm", base.limit.tokens_per_min),
        concurrent=pick("concurrent", base.limit.concurrent),
    )
    return Quota(
        limit=limit,
        budget_tokens=pick("budget_tokens", base.budget_tokens),
        budget_cost=pick("budget_cost", base.budget_cost),
        budget_period=values.get("budget_period") or base.budget_period,
    )


def _quota_text(quota: Quota) -> str:
    parts = [
        f"{label} {value:g}"
        for label, value in (
            ("rpm", quota.limit.requests_per_min),
            ("tpm", quota.limit.tokens_per_min),
            ("concurrent", quota.limit.concurrent),
            ("tokens", quota.budget_tokens),
            ("cost", quota.budget_cost),
        )
        if value is not None
    ]
    if quota.budget_tokens is not None or quota.budget_cost is not None:
        parts.append(f"per {quota.budget_period}")
    return ", ".join(parts) or "-"


# -- output ---------------------------------------------------------------------------------


def _table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold", no_wrap=column in ("id", "key"))
    for row in rows:
        table.add_row(*row)
    console = Console()
    if not console.is_terminal:  # piped: rows a program can read, not folded to 80 columns
        console = Console(width=max(console.width, 200))
    console.print(table)


def _json(value: object) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


def _record(record: object) -> dict[str, Any]:
    data = dataclasses.asdict(record)  # type: ignore[call-overload]
    if isinstance(record, KeyRecord):
        data.pop("digest")
        scope = record.scope
        data["scope"] = {
            "models": sorted(scope.models),
            "max_priority": scope.max_priority,
            "expires_at": scope.expires_at,
            "networks": [str(n) for n in scope.networks],
        }
    return dict(data)


def _time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M")


def _json_option(command: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(
        command
    )


# -- orgs -----------------------------------------------------------------------------------


@click.group()
def orgs() -> None:
    """Organisations: the top of organisations → teams → keys."""


@orgs.command("create")
@click.argument("name")
@_quota_options
@_store_options
def orgs_create(
    name: str, store_url: str | None, state_dir: Path | None, fleet_file: Path | None, **quota: Any
) -> None:
    """Create the organisation NAME (with an optional quota for all its teams together)."""
    with _session(store_url, state_dir, fleet_file) as store:
        org = store.create_org(name, _quota(Quota(), quota))
    click.echo(f"created organisation {org.name} ({org.id})")


@orgs.command("list")
@_json_option
@_store_options
def orgs_list(
    as_json: bool, store_url: str | None, state_dir: Path | None, fleet_file: Path | None
) -> None:
    """List organisations with their quotas."""
    with _session(store_url, state_dir, fleet_file) as store:
        found = store.list_orgs()
    if as_json:
        _json([_record(o) for o in found])
        return
    rows = [(o.name, o.id, _quota_text(o.quota), _time(o.created_at)) for o in found]
    _table("organisations", ("name", "id", "quota", "created"), rows)


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
@_quota_options
@_store_options
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
    with _session(store_url, state_dir, fleet_file) as store:
        team = store.create_team(
            org,
            name,
            _quota(Quota(), quota),
            max_priority=max_priority,
            default_priority=default_priority,
        )
        parent = store.get_org(team.org_id)
    click.echo(f"created team {parent.name}/{team.name} ({team.id})")


@teams.command("list")
@click.option("--org", help="Only this organisation's teams (name or id).")
@_json_option
@_store_options
def teams_list(
    org: str | None,
    as_json: bool,
    store_url: str | None,
    state_dir: Path | None,
    fleet_file: Path | None,
) -> None:
    """List teams with their priorities and quotas."""
    with _session(store_url, state_dir, fleet_file) as store:
        found = store.list_teams(org)
        names = {o.id: o.name for o in store.list_orgs()}
    if as_json:
        _json([_record(t) | {"org": names.get(t.org_id)} for t in found])
        return
    rows = [
        (
            f"{names.get(t.org_id, t.org_id)}/{t.name}",
            t.id,
            "-" if t.max_priority is None else str(t.max_priority),
            str(t.default_priority),
            _quota_text(t.quota),
        )
        for t in found
    ]
    _table("teams", ("team", "id", "max priority", "default priority", "quota"), rows)


@teams.command("set-quota")
@click.argument("team")
@_quota_options
@_store_options
def teams_set_quota(
    team: str, store_url: str | None, state_dir: Path | None, fleet_file: Path | None, **quota: Any
) -> None:
    """Change the limits and budgets of TEAM (org/team, a unique team name, or its id).

    Only the options given change; 'none' removes a limit (--rpm none).
    """
    if all(quota.get(name) is None for name in _QUOTA_FIELDS):
        raise click.UsageError("give at least one of --rpm, --tpm, --concurrent, --budget-*")
    with _session(store_url, state_dir, fleet_file) as store:
        current = store.get_team(team)
        updated = _quota(current.quota, quota)
        store.update_quota(current.id, updated)
    click.echo(f"team {current.name} ({current.id}): {_quota_text(updated)}")


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
@_quota_options
@_store_options
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
    with _session(store_url, state_dir, fleet_file) as store:
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
            quota=_quota(Quota(), quota),
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
@_json_option
@_store_options
def keys_list(
    team: str | None,
    include_revoked: bool,
    as_json: bool,
    store_url: str | None,
    state_dir: Path | None,
    fleet_file: Path | None,
) -> None:
    """List keys (never their plaintext: the first characters tell them apart)."""
    with _session(store_url, state_dir, fleet_file) as store:
        found = store.list_keys(team, revoked=include_revoked)
        names = _names(store.snapshot())
    if as_json:
        _json([_record(k) | {"team": names.get(k.team_id)} for k in found])
        return
    rows = [
        (
            k.name,
            k.id,
            names.get(k.team_id, k.team_id),
            k.kind if k.owner is None else f"{k.kind} ({k.owner})",
            f"{k.shown}…",
            ",".join(sorted(k.scope.models)) or "all",
            _time(k.scope.expires_at),
            _time(k.revoked_at),
        )
        for k in found
    ]
    columns = ("name", "id", "team", "kind", "key", "models", "expires", "revoked")
    _table("keys", columns, rows)


@keys.command("revoke")
@click.argument("key")
@_store_options
def keys_revoke(
    key: str, store_url: str | None, state_dir: Path | None, fleet_file: Path | None
) -> None:
    """Revoke KEY (its id, team/name, or a unique name): every gateway refuses it within
    its sync interval."""
    with _session(store_url, state_dir, fleet_file) as store:
        record = store.revoke_key(key)
    click.echo(f"revoked key {record.name} ({record.id}) at {_time(record.revoked_at)} UTC")


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
@_json_option
@_store_options
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
    with _session(store_url, state_dir, fleet_file) as store:
        now = time.time()
        start = None if since is None else _utc(parse_when(since, now, ahead=False))
        end = None if until is None else _utc(parse_when(until, now, ahead=False))
        rows = store.usage(dimensions, start, end)
        names = _names(store.snapshot()) | {k.id: k.name for k in store.list_keys(revoked=True)}
    if as_json:
        _json(
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
    _table("usage", columns, table_rows)


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
