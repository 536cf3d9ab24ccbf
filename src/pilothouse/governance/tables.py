"""The governance store's tables (SQLAlchemy Core), shared by the store and its migrations.

Times are seconds since the epoch in double precision (as the records carry them), so SQLite
and PostgreSQL compare and sum them the same way. ``changes`` is one row whose ``version``
grows in the same transaction as every change of an organisation, team or key: the
gateway's directory polls it (one cheap query) and reloads only when it moved.

Key names are unique among a team's *live* keys (a partial index), so a revoked ``ci`` key
can be replaced by a new ``ci`` key.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData()


def _quota_columns() -> list[Column[object]]:
    """A subject's :class:`~pilothouse.governance.records.Quota`, flattened."""
    return [
        Column("rpm", Integer, nullable=True),
        Column("tpm", BigInteger, nullable=True),
        Column("concurrent", Integer, nullable=True),
        Column("budget_tokens", Double, nullable=True),
        Column("budget_cost", Double, nullable=True),
        Column("budget_period", String(8), nullable=False, server_default="month"),
    ]


orgs = Table(
    "orgs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    *_quota_columns(),
    Column("created_at", Double, nullable=False),
)

teams = Table(
    "teams",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("org_id", String(32), ForeignKey("orgs.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("max_priority", Integer, nullable=True),
    Column("default_priority", Integer, nullable=False, server_default="0"),
    *_quota_columns(),
    Column("created_at", Double, nullable=False),
    UniqueConstraint("org_id", "name", name="uq_teams_org_name"),
)

keys = Table(
    "keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("digest", String(64), nullable=False, unique=True),
    Column("shown", String(16), nullable=False),
    Column("name", String(200), nullable=False),
    Column("team_id", String(32), ForeignKey("teams.id"), nullable=False, index=True),
    Column("kind", String(8), nullable=False, server_default="user"),
    Column("owner", String(200), nullable=True),
    Column("models", JSON, nullable=False),
    Column("max_priority", Integer, nullable=True),
    Column("expires_at", Double, nullable=True),
    Column("networks", JSON, nullable=False),
    *_quota_columns(),
    Column("created_at", Double, nullable=False),
    Column("revoked_at", Double, nullable=True),
    Index(
        "uq_keys_team_live_name",
        "team_id",
        "name",
        unique=True,
        sqlite_where=text("revoked_at IS NULL"),
        postgresql_where=text("revoked_at IS NULL"),
    ),
)

ledger = Table(
    "ledger",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("request_id", String(128), nullable=False),
    Column("at", Double, nullable=False, index=True),
    Column("key_id", String(32), nullable=True),
    Column("team_id", String(32), nullable=True),
    Column("org_id", String(32), nullable=True),
    Column("model", String(200), nullable=False),
    Column("prompt_tokens", BigInteger, nullable=False),
    Column("completion_tokens", BigInteger, nullable=False),
    Column("cost", Double, nullable=False),
    Column("engine_s", Double, nullable=False),
    Column("status", Integer, nullable=False),
)

changes = Table(
    "changes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("version", BigInteger, nullable=False),
)

# -- the tool gateway (issue #13): pins, approvals, the audit log -------------------------
#
# Pin changes are counted in ``changes`` row 2 (row 1 counts identities), so gateways reload
# pins with the same one-row poll. The audit log's seq and hash chain are global; its head
# (``audit_head``, one row) is updated in the transaction of every append: writers lock it
# (PostgreSQL: ``FOR UPDATE``; SQLite: the file's write lock), and ``verify`` compares it
# with the last row, so deleting rows at the end is detected too.

tool_observations = Table(
    "tool_observations",
    metadata,
    Column("server", String(64), primary_key=True),
    Column("observed_at", Double, nullable=False),
)

tool_observed = Table(
    "tool_observed",
    metadata,
    Column("server", String(64), primary_key=True),
    Column("tool", Text, primary_key=True),
    Column("digest", String(64), nullable=False),
    Column("definition", JSON, nullable=False),
)

tool_pins = Table(
    "tool_pins",
    metadata,
    Column("server", String(64), primary_key=True),
    Column("tool", Text, primary_key=True),
    Column("digest", String(64), nullable=False),
    Column("definition", JSON, nullable=False),
    Column("approved_at", Double, nullable=False),
    Column("approved_by", Text, nullable=False),
)

approvals = Table(
    "approvals",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("session", Text, nullable=False),
    Column("principal", Text, nullable=False),
    Column("tool", Text, nullable=False),
    Column("args_hash", String(64), nullable=False),
    Column("reason", Text, nullable=False),
    Column("status", String(8), nullable=False, index=True),
    Column("created_at", Double, nullable=False),
    Column("expires_at", Double, nullable=False),
    Column("decided_by", Text, nullable=True),
    Column("decided_at", Double, nullable=True),
    Index(
        "uq_approvals_open_call",
        "session",
        "tool",
        "args_hash",
        unique=True,
        sqlite_where=text("status IN ('pending', 'approved')"),
        postgresql_where=text("status IN ('pending', 'approved')"),
    ),
)

audit = Table(
    "audit",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("at", Double, nullable=False, index=True),
    Column("kind", Text, nullable=False),
    Column("session", Text, nullable=True),
    Column("principal", Text, nullable=True),
    Column("tool", Text, nullable=True),
    Column("decision", Text, nullable=True),
    Column("rule", Text, nullable=True),
    Column("detail", JSON, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
)

# -- agent runs (issue #14): runs, their steps, and the run's budget ledger ----------------
#
# A sub-agent's run id is its parent's id, a dot and the parent's step index, so a run and
# everything it delegated share a prefix. A step's index is deterministic (a model step's
# tool calls take the indexes right after it), so a resumed run finds each call where it
# left it. ``agent_budget_events`` has one row per reservation and one per settlement; a
# reservation and its settlement share ``hold``.

agent_runs = Table(
    "agent_runs",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("agent", String(63), nullable=False, index=True),
    Column("parent_id", String(200), nullable=True),
    Column("task", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("output", Text, nullable=False),
    Column("pending_approval", String(32), nullable=True),
    Column("limits", JSON, nullable=False),
    Column("active_s", Double, nullable=False),
    Column("created_at", Double, nullable=False, index=True),
    Column("updated_at", Double, nullable=False),
    Column("lease_owner", String(200), nullable=True),
    Column("lease_until", Double, nullable=True),
)

agent_steps = Table(
    "agent_steps",
    metadata,
    Column("run_id", String(200), primary_key=True),
    Column("idx", Integer, primary_key=True, autoincrement=False),
    Column("kind", String(16), nullable=False),
    Column("name", Text, nullable=False),
    Column("content", Text, nullable=False),
    Column("arguments", Text, nullable=False),
    Column("tokens", BigInteger, nullable=False),
    Column("state", String(16), nullable=False),
    Column("call_id", String(240), nullable=True),
    Column("approval_id", String(32), nullable=True),
    Column("message", JSON, nullable=True),
    Column("at", Double, nullable=False),
)

agent_budget_events = Table(
    "agent_budget_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(200), nullable=False, index=True),
    Column("hold", String(240), nullable=False),
    Column("action", String(8), nullable=False),
    Column("resource", String(16), nullable=False),
    Column("amount", Double, nullable=False),
    Column("ref", Text, nullable=False),
    Column("at", Double, nullable=False),
)
