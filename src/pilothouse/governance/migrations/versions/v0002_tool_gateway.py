"""The tool gateway's tables: observed and pinned tool definitions, approvals, the audit log.

Written out in full (a revision is frozen history). Row 2 of ``changes`` starts counting pin
changes; ``audit_head`` starts at seq 0 with the genesis hash (64 zeros), which the first
audit row names as its ``prev_hash``.

Revision ID: 0002
Revises: 0001
Create Date: 2026-05-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

_OPEN = "status IN ('pending', 'approved')"


def upgrade() -> None:
    op.create_table(
        "tool_observations",
        sa.Column("server", sa.String(64), primary_key=True),
        sa.Column("observed_at", sa.Double(), nullable=False),
    )
    op.create_table(
        "tool_observed",
        sa.Column("server", sa.String(64), primary_key=True),
        sa.Column("tool", sa.Text(), primary_key=True),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
    )
    op.create_table(
        "tool_pins",
        sa.Column("server", sa.String(64), primary_key=True),
        sa.Column("tool", sa.Text(), primary_key=True),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("approved_at", sa.Double(), nullable=False),
        sa.Column("approved_by", sa.Text(), nullable=False),
    )
    op.create_table(
        "approvals",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("session", sa.Text(), nullable=False),
        sa.Column("principal", sa.Text(), nullable=False),
        sa.Column("tool", sa.Text(), nullable=False),
        sa.Column("args_hash", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.Column("decided_by", sa.Text(), nullable=True),
        sa.Column("decided_at", sa.Double(), nullable=True),
    )
    op.create_index("ix_approvals_status", "approvals", ["status"])
    op.create_index(
        "uq_approvals_open_call",
        "approvals",
        ["session", "tool", "args_hash"],
        unique=True,
        sqlite_where=sa.text(_OPEN),
        postgresql_where=sa.text(_OPEN),
    )
    op.create_table(
        "audit",
        sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("session", sa.Text(), nullable=True),
        sa.Column("principal", sa.Text(), nullable=True),
        sa.Column("tool", sa.Text(), nullable=True),
        sa.Column("decision", sa.Text(), nullable=True),
        sa.Column("rule", sa.Text(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_audit_at", "audit", ["at"])
    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": "0" * 64}])
    changes = sa.table("changes", sa.column("id", sa.Integer()), sa.column("version"))
    op.bulk_insert(changes, [{"id": 2, "version": 1}])


def downgrade() -> None:
    op.execute("DELETE FROM changes WHERE id = 2")
    for table in (
        "audit_head",
        "audit",
        "approvals",
        "tool_pins",
        "tool_observed",
        "tool_observations",
    ):
        op.drop_table(table)
