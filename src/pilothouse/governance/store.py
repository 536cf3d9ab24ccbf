"""The governance store: organisations, teams, keys and the ledger in SQLite or PostgreSQL.

:class:`SqlStore` implements :class:`~pilothouse.governance.ports.Store` on synchronous
SQLAlchemy Core (async callers run it in a worker thread). The default is one SQLite file,
``<state_dir>/governance.db``, in WAL mode with a busy timeout, so the CLI and several
gateway processes on one machine share it; any SQLAlchemy URL (``postgresql://…``) serves
several machines. Database errors never leave this module as SQLAlchemy's: an unreachable
or failing database is :class:`~pilothouse.errors.StoreUnavailable`, a taken name
:class:`~pilothouse.errors.Conflict`, an unknown one :class:`~pilothouse.errors.NotFound`.

Wherever a team is named, ``org/team`` or a team's id works, and a bare team name when only
one organisation has it; a key likewise as ``team/key`` (``org/team/key``), its id, or its
bare name when only one live key has it.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from pilothouse.config.governance import GovernanceSpec
from pilothouse.errors import BadRequest, Conflict
from pilothouse.governance import schema, sqlite_ledger
from pilothouse.governance.database import WRITE, guard, make_engine, normalise_url
from pilothouse.governance.keys import KeyScope, new_key
from pilothouse.governance.records import (
    KeyKind,
    KeyRecord,
    LedgerEntry,
    Organisation,
    Quota,
    Snapshot,
    Team,
    UsageDimension,
    UsageRow,
)
from pilothouse.governance.tables import keys, ledger, orgs, teams

DB_FILE = "governance.db"
_MAX_NAME = 200


def default_state_dir(env: Mapping[str, str]) -> Path:
    """``$XDG_STATE_HOME/pilothouse``, else ``~/.local/state/pilothouse`` (XDG base dirs)."""
    state_home = env.get("XDG_STATE_HOME", "")
    if state_home:
        return Path(state_home) / "pilothouse"
    home = env.get("HOME", "")
    return (Path(home) if home else Path.home()) / ".local" / "state" / "pilothouse"


def store_url(spec: GovernanceSpec, default_dir: Path) -> str:
    """The spec's store URL, or the SQLite file in its (or the default) state directory."""
    if spec.store:
        return spec.store
    state_dir = (spec.state_dir or default_dir).expanduser()
    return f"sqlite:///{(state_dir / DB_FILE).resolve()}"


def open_store(spec: GovernanceSpec, default_dir: Path) -> SqlStore:
    """The store ``spec`` names (not yet migrated: call :meth:`SqlStore.migrate`)."""
    return SqlStore(store_url(spec, default_dir))


def new_id(kind: str) -> str:
    """``org_…``, ``team_…``, ``key_…``: a kind prefix and 12 random hex digits."""
    return f"{kind}_{secrets.token_hex(6)}"


class SqlStore:
    """Identities and the ledger behind one SQLAlchemy engine (thread-safe)."""

    def __init__(self, url: str, *, wall: Callable[[], float] = time.time) -> None:
        self._wall = wall
        self._url = normalise_url(url)
        self._shown_url = self._url.render_as_string(hide_password=True)
        self._engine = make_engine(self._url)

    def __repr__(self) -> str:
        return f"SqlStore({self._shown_url!r})"

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    def migrate(self) -> None:
        from pilothouse.governance.migrations import upgrade

        with guard(self._shown_url), self._writing() as conn:
            upgrade(conn)

    def close(self) -> None:
        self._engine.dispose()

    # -- organisations and teams -------------------------------------------------------

    def create_org(self, name: str, quota: Quota | None = None) -> Organisation:
        _check_name(name, "organisation")
        org = Organisation(new_id("org"), name, quota or Quota(), self._wall())
        with guard(self._shown_url), self._writing() as conn:
            if conn.execute(select(orgs.c.id).where(orgs.c.name == name)).first():
                raise Conflict(f"organisation '{name}' already exists")
            conn.execute(insert(orgs).values(schema.org_values(org)))
            schema.bump(conn)
        return org

    def create_team(
        self,
        org: str,
        name: str,
        quota: Quota | None = None,
        *,
        max_priority: int | None = None,
        default_priority: int = 0,
    ) -> Team:
        _check_name(name, "team")
        with guard(self._shown_url), self._writing() as conn:
            parent = schema.org_row(conn, org)
            taken = select(teams.c.id).where(teams.c.org_id == parent.id, teams.c.name == name)
            if conn.execute(taken).first():
                raise Conflict(f"team '{name}' already exists in organisation '{parent.name}'")
            team = Team(
                new_id("team"),
                name,
                parent.id,
                quota or Quota(),
                max_priority,
                default_priority,
                self._wall(),
            )
            conn.execute(insert(teams).values(schema.team_values(team)))
            schema.bump(conn)
        return team

    def update_quota(self, subject: str, quota: Quota) -> None:
        """Replace the quota of an organisation, team or key, named by id (or, for teams and
        keys, as elsewhere: ``org/team``, ``team/key``; an organisation by its name)."""
        with guard(self._shown_url), self._writing() as conn:
            if subject.startswith("key_"):
                table, subject_id = keys, schema.key_row(conn, subject).id
            elif subject.startswith("team_") or "/" in subject:
                table, subject_id = teams, schema.team_row(conn, subject).id
            else:
                table, subject_id = orgs, schema.org_row(conn, subject).id
            conn.execute(
                update(table).where(table.c.id == subject_id).values(schema.quota_values(quota))
            )
            schema.bump(conn)

    def get_org(self, org: str) -> Organisation:
        with guard(self._shown_url), self._engine.connect() as conn:
            return schema.org(schema.org_row(conn, org))

    def get_team(self, team: str) -> Team:
        with guard(self._shown_url), self._engine.connect() as conn:
            return schema.team(schema.team_row(conn, team))

    def get_key(self, key: str) -> KeyRecord:
        with guard(self._shown_url), self._engine.connect() as conn:
            return schema.key(schema.key_row(conn, key))

    # -- keys ----------------------------------------------------------------------------

    def create_key(
        self,
        team: str,
        name: str,
        *,
        kind: KeyKind = "user",
        owner: str | None = None,
        scope: KeyScope | None = None,
        quota: Quota | None = None,
    ) -> tuple[str, KeyRecord]:
        _check_name(name, "key")
        if kind not in ("user", "agent"):
            raise BadRequest(f"a key's kind is 'user' or 'agent', not '{kind}'", param="kind")
        if kind == "agent" and not owner:
            raise BadRequest("an agent key needs an owner (who answers for it)", param="owner")
        plaintext, stored = new_key(owner or "", scope)
        with guard(self._shown_url), self._writing() as conn:
            parent = schema.team_row(conn, team)
            taken = schema.live_keys().where(keys.c.team_id == parent.id, keys.c.name == name)
            if conn.execute(taken).first():
                raise Conflict(f"team '{parent.name}' already has a live key named '{name}'")
            record = KeyRecord(
                id=new_id("key"),
                digest=stored.digest,
                shown=stored.shown,
                name=name,
                team_id=parent.id,
                kind=kind,
                owner=owner,
                scope=stored.scope,
                quota=quota or Quota(),
                created_at=self._wall(),
            )
            conn.execute(insert(keys).values(schema.key_values(record)))
            schema.bump(conn)
        return plaintext, record

    def revoke_key(self, key: str) -> KeyRecord:
        """Revoke a key (by id or name); revoking a revoked key changes nothing."""
        with guard(self._shown_url), self._writing() as conn:
            record = schema.key(schema.key_row(conn, key))
            if record.revoked:
                return record
            now = self._wall()
            conn.execute(update(keys).where(keys.c.id == record.id).values(revoked_at=now))
            schema.bump(conn)
        return schema.replace_revoked(record, now)

    # -- listings ------------------------------------------------------------------------

    def list_orgs(self) -> list[Organisation]:
        with guard(self._shown_url), self._engine.connect() as conn:
            rows = conn.execute(select(orgs).order_by(orgs.c.name))
            return [schema.org(row) for row in rows]

    def list_teams(self, org: str | None = None) -> list[Team]:
        with guard(self._shown_url), self._engine.connect() as conn:
            query = select(teams).order_by(teams.c.org_id, teams.c.name)
            if org is not None:
                query = query.where(teams.c.org_id == schema.org_row(conn, org).id)
            return [schema.team(row) for row in conn.execute(query)]

    def list_keys(self, team: str | None = None, *, revoked: bool = False) -> list[KeyRecord]:
        """Live keys (of one team, or all); with ``revoked``, revoked keys too."""
        with guard(self._shown_url), self._engine.connect() as conn:
            query = select(keys).order_by(keys.c.team_id, keys.c.name, keys.c.created_at)
            if team is not None:
                query = query.where(keys.c.team_id == schema.team_row(conn, team).id)
            if not revoked:
                query = query.where(keys.c.revoked_at.is_(None))
            return [schema.key(row) for row in conn.execute(query)]

    def version(self) -> int:
        with guard(self._shown_url), self._engine.connect() as conn:
            return schema.version(conn)

    def snapshot(self) -> Snapshot:
        with guard(self._shown_url), self._engine.connect() as conn:
            # The version is read first: a change landing between the reads makes the rows
            # newer than the version, and the next sync reloads; never the other way round.
            version = schema.version(conn)
            return Snapshot(
                version=version,
                orgs=tuple(schema.org(r) for r in conn.execute(select(orgs).order_by(orgs.c.id))),
                teams=tuple(
                    schema.team(r) for r in conn.execute(select(teams).order_by(teams.c.id))
                ),
                keys=tuple(
                    schema.key(r) for r in conn.execute(schema.live_keys().order_by(keys.c.id))
                ),
            )

    # -- the ledger ------------------------------------------------------------------------

    def write_ledger(self, entries: Sequence[LedgerEntry]) -> int:
        unique = {entry.key(): entry.keyed() for entry in entries}
        if not unique:
            return 0
        if self.dialect == "sqlite":  # entries are rows (schema.LEDGER_COLUMNS)
            with guard(self._shown_url), self._writing() as conn:
                return sqlite_ledger.insert_rows(conn, list(unique.values()))
        rows = [schema.ledger_values(entry) for entry in unique.values()]
        dialect = postgresql if self.dialect == "postgresql" else sqlite
        statement = (
            dialect.insert(ledger)
            .on_conflict_do_nothing(index_elements=[ledger.c.id])
            .returning(ledger.c.id)
        )
        with guard(self._shown_url), self._writing() as conn:
            return len(conn.execute(statement, rows).all())

    def usage(
        self,
        by: Sequence[UsageDimension],
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[UsageRow]:
        """Ledger totals grouped by ``by``, for ``since`` ≤ at < ``until`` (naive times are
        UTC), ordered by group."""
        groups = [schema.usage_column(dimension) for dimension in by]
        query = select(
            *groups,
            func.count(),
            func.coalesce(func.sum(ledger.c.prompt_tokens), 0),
            func.coalesce(func.sum(ledger.c.completion_tokens), 0),
            func.coalesce(func.sum(ledger.c.cost), 0.0),
        ).group_by(*groups)
        if groups:
            query = query.order_by(*groups)
        if since is not None:
            query = query.where(ledger.c.at >= _epoch(since))
        if until is not None:
            query = query.where(ledger.c.at < _epoch(until))
        with guard(self._shown_url), self._engine.connect() as conn:
            rows = conn.execute(query).all()
        width = len(groups)
        found = [
            UsageRow(
                tuple(row[:width]),
                int(row[width]),
                int(row[width + 1]),
                int(row[width + 2]),
                float(row[width + 3]),
            )
            for row in rows
        ]
        if not found and not groups:
            return [UsageRow((), 0, 0, 0, 0.0)]
        return found

    def spent(self, since: datetime) -> Mapping[str, tuple[float, float]]:
        totals: dict[str, tuple[float, float]] = {}
        tokens = func.sum(ledger.c.prompt_tokens + ledger.c.completion_tokens)
        with guard(self._shown_url), self._engine.connect() as conn:
            for column in (ledger.c.key_id, ledger.c.team_id, ledger.c.org_id):
                query = (
                    select(column, tokens, func.sum(ledger.c.cost))
                    .where(ledger.c.at >= _epoch(since), column.is_not(None))
                    .group_by(column)
                )
                for subject, used, cost in conn.execute(query):
                    totals[subject] = (float(used or 0), float(cost or 0.0))
        return totals

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        """A connection in a transaction that will write; committed unless it raises."""
        with (
            self._engine.connect().execution_options(**{WRITE: True}) as conn,
            conn.begin(),
        ):
            yield conn


def _check_name(name: str, what: str) -> None:
    if not name or not name.strip() or len(name) > _MAX_NAME:
        raise BadRequest(f"a {what} name is 1 to {_MAX_NAME} characters", param="name")
    if "/" in name:
        raise BadRequest(f"a {what} name may not contain '/'", param="name")


def _epoch(when: datetime) -> float:
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
