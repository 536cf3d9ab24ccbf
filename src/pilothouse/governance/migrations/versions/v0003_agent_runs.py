"""Durable agent runs: the runs, their steps, and each run's budget ledger.

Written out in full (a revision is frozen history).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "agent_runs",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("agent", sa.String(63), nullable=False),
        sa.Column("parent_id", sa.String(200), nullable=True),
        sa.Column("task", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("output", sa.Text(), nullable=False),
        sa.Column("pending_approval", sa.String(32), nullable=True),
        sa.Column("limits", sa.JSON(), nullable=False),
        sa.Column("active_s", sa.Double(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
    )
    op.create_index("ix_agent_runs_agent", "agent_runs", ["agent"])
    op.create_index("ix_agent_runs_created_at", "agent_runs", ["created_at"])
    op.create_table(
        "agent_steps",
        sa.Column("run_id", sa.String(200), primary_key=True),
        sa.Column("idx", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("arguments", sa.Text(), nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("call_id", sa.String(240), nullable=True),
        sa.Column("approval_id", sa.String(32), nullable=True),
        sa.Column("message", sa.JSON(), nullable=True),
        sa.Column("at", sa.Double(), nullable=False),
    )
    op.create_table(
        "agent_budget_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(200), nullable=False),
        sa.Column("hold", sa.String(240), nullable=False),
        sa.Column("action", sa.String(8), nullable=False),
        sa.Column("resource", sa.String(16), nullable=False),
        sa.Column("amount", sa.Double(), nullable=False),
        sa.Column("ref", sa.Text(), nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
    )
    op.create_index("ix_agent_budget_events_run_id", "agent_budget_events", ["run_id"])


def downgrade() -> None:
    for table in ("agent_budget_events", "agent_steps", "agent_runs"):
        op.drop_table(table)
