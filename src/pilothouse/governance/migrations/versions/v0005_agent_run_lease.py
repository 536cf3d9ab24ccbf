"""Agent runs get a lease: the process running a run says so, so no second one resumes it.

Written out in full (a revision is frozen history).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("agent_runs", sa.Column("lease_owner", sa.String(200), nullable=True))
    op.add_column("agent_runs", sa.Column("lease_until", sa.Double(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("agent_runs") as batch:
        batch.drop_column("lease_until")
        batch.drop_column("lease_owner")
