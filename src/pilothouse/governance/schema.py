"""Rows of :mod:`~pilothouse.governance.tables` to records and back, and lookups by name.

One place knows how a :class:`Quota` is flattened into columns and a :class:`KeyScope`'s
models and networks into JSON lists, so the store's queries never spell it out; and how an
organisation, team or key is found from what a person typed (an id, ``org/team``,
``team/key``, or a name unique enough on its own).
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any, cast

from sqlalchemy import ColumnElement, Connection, Row, Select, select, update

from pilothouse.errors import BadRequest, NotFound
from pilothouse.governance.keys import KeyScope
from pilothouse.governance.limits import Limit
from pilothouse.governance.records import (
    BudgetPeriod,
    KeyKind,
    KeyRecord,
    LedgerEntry,
    Organisation,
    Quota,
    Team,
    UsageDimension,
)
from pilothouse.governance.tables import changes, keys, ledger, orgs, teams


def quota_values(quota: Quota) -> dict[str, Any]:
    return {
        "rpm": quota.limit.requests_per_min,
        "tpm": quota.limit.tokens_per_min,
        "concurrent": quota.limit.concurrent,
        "budget_tokens": quota.budget_tokens,
        "budget_cost": quota.budget_cost,
        "budget_period": quota.budget_period,
    }


def quota(row: Row[Any]) -> Quota:
    return Quota(
        limit=Limit(row.rpm, row.tpm, row.concurrent),
        budget_tokens=row.budget_tokens,
        budget_cost=row.budget_cost,
        budget_period=cast(BudgetPeriod, row.budget_period),
    )


def org_values(org: Organisation) -> dict[str, Any]:
    return {"id": org.id, "name": org.name, "created_at": org.created_at} | quota_values(org.quota)


def org(row: Row[Any]) -> Organisation:
    return Organisation(row.id, row.name, quota(row), row.created_at)


def team_values(team: Team) -> dict[str, Any]:
    return {
        "id": team.id,
        "org_id": team.org_id,
        "name": team.name,
        "max_priority": team.max_priority,
        "default_priority": team.default_priority,
        "created_at": team.created_at,
    } | quota_values(team.quota)


def team(row: Row[Any]) -> Team:
    return Team(
        id=row.id,
        name=row.name,
        org_id=row.org_id,
        quota=quota(row),
        max_priority=row.max_priority,
        default_priority=row.default_priority,
        created_at=row.created_at,
    )


def key_values(key: KeyRecord) -> dict[str, Any]:
    return {
        "id": key.id,
        "digest": key.digest,
        "shown": key.shown,
        "name": key.name,
        "team_id": key.team_id,
        "kind": key.kind,
        "owner": key.owner,
        "models": sorted(key.scope.models),
        "max_priority": key.scope.max_priority,
        "expires_at": key.scope.expires_at,
        "networks": [str(network) for network in key.scope.networks],
        "created_at": key.created_at,
        "revoked_at": key.revoked_at,
    } | quota_values(key.quota)


def key(row: Row[Any]) -> KeyRecord:
    scope = KeyScope(
        models=frozenset(row.models or ()),
        max_priority=row.max_priority,
        expires_at=row.expires_at,
        networks=tuple(ipaddress.ip_network(n) for n in row.networks or ()),
    )
    return KeyRecord(
        id=row.id,
        digest=row.digest,
        shown=row.shown,
        name=row.name,
        team_id=row.team_id,
        kind=cast(KeyKind, row.kind),
        owner=row.owner,
        scope=scope,
        quota=quota(row),
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


def replace_revoked(key: KeyRecord, at: float) -> KeyRecord:
    return dataclasses.replace(key, revoked_at=at)


LEDGER_COLUMNS: tuple[str, ...] = LedgerEntry._fields
"""The ledger's columns in the order of a :class:`LedgerEntry`'s fields: an entry is its
own row of positional parameters (a named tuple), nothing to copy per row."""


def ledger_values(entry: LedgerEntry) -> dict[str, Any]:
    return {
        "id": entry.key(),
        "request_id": entry.request_id,
        "at": entry.at,
        "key_id": entry.key_id,
        "team_id": entry.team_id,
        "org_id": entry.org_id,
        "model": entry.model,
        "prompt_tokens": entry.prompt_tokens,
        "completion_tokens": entry.completion_tokens,
        "cost": entry.cost,
        "engine_s": entry.engine_s,
        "status": entry.status,
    }


_USAGE_COLUMNS: Mapping[str, ColumnElement[Any]] = {
    "key": ledger.c.key_id,
    "team": ledger.c.team_id,
    "org": ledger.c.org_id,
    "model": ledger.c.model,
}


def usage_column(dimension: UsageDimension) -> ColumnElement[Any]:
    """The ledger column a usage dimension groups by."""
    try:
        return _USAGE_COLUMNS[dimension]
    except KeyError:
        raise BadRequest(
            f"usage is grouped by key, team, org or model, not '{dimension}'", param="by"
        ) from None


# -- lookups and the change counter ------------------------------------------------------


def bump(conn: Connection) -> None:
    conn.execute(update(changes).where(changes.c.id == 1).values(version=changes.c.version + 1))


def version(conn: Connection) -> int:
    return int(conn.execute(select(changes.c.version).where(changes.c.id == 1)).scalar_one())


def live_keys() -> Select[Any]:
    return select(keys).where(keys.c.revoked_at.is_(None))


def org_row(conn: Connection, ref: str) -> Row[Any]:
    row = conn.execute(select(orgs).where(orgs.c.id == ref)).first()
    row = row or conn.execute(select(orgs).where(orgs.c.name == ref)).first()
    if row is None:
        raise NotFound(f"no organisation '{ref}'")
    return row


def team_row(conn: Connection, ref: str) -> Row[Any]:
    row = conn.execute(select(teams).where(teams.c.id == ref)).first()
    if row is not None:
        return row
    if "/" in ref:
        org_ref, _, name = ref.rpartition("/")
        parent = org_row(conn, org_ref)
        query = select(teams).where(teams.c.org_id == parent.id, teams.c.name == name)
    else:
        query = select(teams).where(teams.c.name == ref)
    return _one(conn.execute(query).all(), f"team '{ref}'", "org/team")


def key_row(conn: Connection, ref: str) -> Row[Any]:
    row = conn.execute(select(keys).where(keys.c.id == ref)).first()
    if row is not None:
        return row
    query = live_keys()
    if "/" in ref:
        team_ref, _, name = ref.rpartition("/")
        query = query.where(keys.c.team_id == team_row(conn, team_ref).id, keys.c.name == name)
    else:
        query = query.where(keys.c.name == ref)
    return _one(conn.execute(query).all(), f"live key '{ref}'", "team/key or its id")


def _one(rows: Sequence[Row[Any]], what: str, hint: str) -> Row[Any]:
    if not rows:
        raise NotFound(f"no {what}")
    if len(rows) > 1:
        raise BadRequest(f"{what} is ambiguous: name it as {hint}")
    return rows[0]
