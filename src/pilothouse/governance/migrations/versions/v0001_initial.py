"""The initial governance schema: organisations, teams, keys, the ledger, the change counter.

Written out in full rather than from ``tables.metadata``: a revision is frozen history, and
``tables`` will move on. ``tests/unit/governance/test_store_migrations.py`` checks that the
schema this builds is exactly the one ``tables`` describes.

Revision ID: 0001
Revises:
Create Date: 2026-05-20
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def _quota() -> list[sa.Column[object]]:
    return [
        sa.Column("rpm", sa.Integer(), nullable=True),
        sa.Column("tpm", sa.BigInteger(), nullable=True),
        sa.Column("concurrent", sa.Integer(), nullable=True),
        sa.Column("budget_tokens", sa.Double(), nullable=True),
        sa.Column("budget_cost", sa.Double(), nullable=True),
        sa.Column("budget_period", sa.String(8), nullable=False, server_default="month"),
    ]


def upgrade() -> None:
    op.create_table(
        "orgs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        *_quota(),
        sa.Column("created_at", sa.Double(), nullable=False),
    )
    op.create_table(
        "teams",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("org_id", sa.String(32), sa.ForeignKey("orgs.id"), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("max_priority", sa.Integer(), nullable=True),
        sa.Column("default_priority", sa.Integer(), nullable=False, server_default="0"),
        *_quota(),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.UniqueConstraint("org_id", "name", name="uq_teams_org_name"),
    )
    op.create_table(
        "keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("digest", sa.String(64), nullable=False, unique=True),
        sa.Column("shown", sa.String(16), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("team_id", sa.String(32), sa.ForeignKey("teams.id"), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False, server_default="user"),
        sa.Column("owner", sa.String(200), nullable=True),
        sa.Column("models", sa.JSON(), nullable=False),
        sa.Column("max_priority", sa.Integer(), nullable=True),
        sa.Column("expires_at", sa.Double(), nullable=True),
        sa.Column("networks", sa.JSON(), nullable=False),
        *_quota(),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("revoked_at", sa.Double(), nullable=True),
    )
    op.create_index("ix_keys_team_id", "keys", ["team_id"])
    op.create_index(
        "uq_keys_team_live_name",
        "keys",
        ["team_id", "name"],
        unique=True,
        sqlite_where=sa.text("revoked_at IS NULL"),
        postgresql_where=sa.text("revoked_at IS NULL"),
    )
    op.create_table(
        "ledger",
        sa.Column("request_id", sa.String(128), primary_key=True),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=True),
        sa.Column("team_id", sa.String(32), nullable=True),
        sa.Column("org_id", sa.String(32), nullable=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost", sa.Double(), nullable=False),
        sa.Column("engine_s", sa.Double(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
    )
    op.create_index("ix_ledger_at", "ledger", ["at"])
    op.create_index("ix_ledger_key_id", "ledger", ["key_id"])
    op.create_index("ix_ledger_team_id", "ledger", ["team_id"])
    changes = op.create_table(
        "changes",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
    )
    op.bulk_insert(changes, [{"id": 1, "version": 1}])


def downgrade() -> None:
    for table in ("changes", "ledger", "keys", "teams", "orgs"):
        op.drop_table(table)
