"""The governance CLI's shared pieces: where the store is, quota options, output.

Every command takes ``--store`` / ``--state-dir`` / ``-f`` (:func:`store_options`) and runs
inside :func:`session`, which opens and migrates the store and turns every pilothouse error
into one line on stderr and an exit status (2: bad input; 1: the rest).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar, get_args

import click

from pilothouse.config.governance import GovernanceSpec
from pilothouse.errors import BadRequest, ConfigError, PilothouseError
from pilothouse.governance.limits import Limit
from pilothouse.governance.records import BudgetPeriod, KeyRecord, Quota
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


def store_options(command: F) -> F:
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
def session(
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


QUOTA_FIELDS = ("rpm", "tpm", "concurrent", "budget_tokens", "budget_cost", "budget_period")


def quota_options(command: F) -> F:
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


def merged_quota(base: Quota, values: dict[str, Any]) -> Quota:
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


def quota_text(quota: Quota) -> str:
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


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
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


def emit_json(value: object) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


def record_dict(record: object) -> dict[str, Any]:
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


def when_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M")


def json_option(command: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(
        command
    )
