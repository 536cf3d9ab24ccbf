"""Approvals of single tool calls in the governance store (see :mod:`.tool_store`)."""

from __future__ import annotations

import secrets
from dataclasses import replace

from sqlalchemy import Connection, insert, select, update

from pilothouse.errors import BadRequest, Conflict, NotFound
from pilothouse.governance.tables import (
    approvals,
)
from pilothouse.governance.tool_audit import AuditBook
from pilothouse.governance.tool_records import (
    _OPEN,
    Approval,
    ApprovalStatus,
    AuditEvent,
    _approval,
    _approval_values,
)


class ApprovalBook(AuditBook):
    """Request, decide, consume and list approvals."""

    # -- approvals ------------------------------------------------------------------------------

    def request_approval(
        self,
        session: str,
        principal: str,
        tool: str,
        args_hash: str,
        reason: str,
        ttl_s: float,
        now: float,
    ) -> Approval:
        """A pending approval for this exact call, or the open (pending or approved,
        unexpired) one that already exists for it."""
        if ttl_s <= 0:
            raise BadRequest("an approval's ttl_s must be positive", param="ttl_s")
        for attempt in range(2):
            try:
                with self._writing() as conn:
                    _expire(conn, now)
                    existing = conn.execute(
                        select(approvals).where(
                            approvals.c.session == session,
                            approvals.c.tool == tool,
                            approvals.c.args_hash == args_hash,
                            approvals.c.status.in_(_OPEN),
                        )
                    ).first()
                    if existing is not None:
                        return _approval(existing)
                    created = Approval(
                        id=f"apr_{secrets.token_hex(8)}",
                        session=session,
                        principal=principal,
                        tool=tool,
                        args_hash=args_hash,
                        reason=reason,
                        status="pending",
                        created_at=now,
                        expires_at=now + ttl_s,
                    )
                    conn.execute(insert(approvals).values(_approval_values(created)))
                    return created
            except Conflict:
                # Another writer opened one for the same call between our read and insert
                # (PostgreSQL; the partial unique index refused ours): read theirs.
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def decide(self, approval_id: str, approve: bool, by: str, now: float) -> Approval:
        """Approve or deny a pending approval. NotFound: no such id; Conflict: it was decided
        already, or expired."""
        if not by.strip():
            raise BadRequest("say who decides (--by)", param="by")
        status: ApprovalStatus = "approved" if approve else "denied"
        with self._writing() as conn:
            _expire(conn, now)
            row = conn.execute(select(approvals).where(approvals.c.id == approval_id)).first()
            if row is None:
                raise NotFound(f"no approval '{approval_id}'")
            if row.status != "pending":
                refused = f"approval '{approval_id}' is no longer pending (it is {row.status})"
            else:
                refused = None
                conn.execute(
                    update(approvals)
                    .where(approvals.c.id == approval_id)
                    .values(status=status, decided_by=by, decided_at=now)
                )
        if refused is not None:  # raised after the commit: the expiry above is kept
            raise Conflict(refused)
        decided = replace(_approval(row), status=status, decided_by=by, decided_at=now)
        event = AuditEvent(
            "approval_decision",
            decided.session,
            by,
            decided.tool,
            status,
            "person",
            {"approval": decided.id, "args_hash": decided.args_hash, "for": decided.principal},
        )
        self.append([event], now)
        return decided

    def approval(self, approval_id: str, now: float | None = None) -> Approval | None:
        """The approval ``approval_id`` (None: no such id). Expiry is written to the store
        only by calls that take ``now`` and write; with ``now`` here, an open approval past
        its expiry is reported as expired (nothing is written: a cheap poll)."""
        with self._reading() as conn:
            row = conn.execute(select(approvals).where(approvals.c.id == approval_id)).first()
        if row is None:
            return None
        found = _approval(row)
        if now is not None and found.status in _OPEN and found.expires_at <= now:
            return replace(found, status="expired")
        return found

    def consume(
        self, approval_id: str, session: str, tool: str, args_hash: str, now: float
    ) -> bool:
        """Spend an approval on the call it was given for: True once, when it is approved,
        unexpired, and session, tool and arguments hash all match; False otherwise."""
        with self._writing() as conn:
            done = conn.execute(
                update(approvals)
                .where(
                    approvals.c.id == approval_id,
                    approvals.c.status == "approved",
                    approvals.c.expires_at > now,
                    approvals.c.session == session,
                    approvals.c.tool == tool,
                    approvals.c.args_hash == args_hash,
                )
                .values(status="used")
            )
            return done.rowcount == 1

    def list_approvals(
        self, status: ApprovalStatus | None = None, now: float | None = None
    ) -> list[Approval]:
        """Approvals, oldest first (of one status); with ``now``, open ones past their
        expiry are marked expired first."""
        if now is not None:
            with self._writing() as conn:
                _expire(conn, now)
        with self._reading() as conn:
            query = select(approvals).order_by(approvals.c.created_at, approvals.c.id)
            if status is not None:
                query = query.where(approvals.c.status == status)
            return [_approval(row) for row in conn.execute(query)]


def _expire(conn: Connection, now: float) -> None:
    conn.execute(
        update(approvals)
        .where(approvals.c.status.in_(_OPEN), approvals.c.expires_at <= now)
        .values(status="expired")
    )
