"""Alembic's environment for the governance store: online only, on the caller's connection.

The store hands its open connection in ``config.attributes["connection"]``, so migrations
run with the same URL, driver options and SQLite pragmas as everything else.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from pilothouse.governance.tables import metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("run the governance migrations through SqlStore.migrate()")
_run(connection)
