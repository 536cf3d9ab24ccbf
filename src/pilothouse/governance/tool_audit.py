"""The hash-chained audit log in the governance store (see :mod:`.tool_store`)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import insert, select, update

from pilothouse.governance.tables import (
    audit,
    audit_head,
)
from pilothouse.governance.tool_records import (
    _VERIFY_PAGE,
    GENESIS,
    AuditEvent,
    AuditRecord,
    AuditVerdict,
    _audit_fields,
    _json_detail,
    _record,
    _StoreAccess,
    audit_hash,
)


class AuditBook(_StoreAccess):
    """Append to the chain, read it, verify it."""

    # -- audit ----------------------------------------------------------------------------------

    def append(self, events: Sequence[AuditEvent], now: float) -> list[AuditRecord]:
        """Append ``events`` to the chain in one transaction (all or none)."""
        if not events:
            return []
        with self._writing() as conn:
            head = conn.execute(
                select(audit_head.c.seq, audit_head.c.hash)
                .where(audit_head.c.id == 1)
                .with_for_update()
            ).one()
            seq, prev = int(head.seq), str(head.hash)
            written: list[AuditRecord] = []
            for event in events:
                seq += 1
                at = float(now if event.at is None else event.at)
                fields = _audit_fields(seq, at, event, _json_detail(event.detail))
                digest = audit_hash(prev, fields)
                written.append(AuditRecord(**fields, prev_hash=prev, hash=digest))
                prev = digest
            conn.execute(
                insert(audit),
                [
                    {
                        "seq": r.seq,
                        "at": r.at,
                        "kind": r.kind,
                        "session": r.session,
                        "principal": r.principal,
                        "tool": r.tool,
                        "decision": r.decision,
                        "rule": r.rule,
                        "detail": r.detail,
                        "prev_hash": r.prev_hash,
                        "hash": r.hash,
                    }
                    for r in written
                ],
            )
            conn.execute(update(audit_head).where(audit_head.c.id == 1).values(seq=seq, hash=prev))
        return written

    def records(self, since_seq: int = 0, limit: int | None = None) -> list[AuditRecord]:
        """Audit rows after ``since_seq``, in order (at most ``limit``)."""
        with self._reading() as conn:
            query = select(audit).where(audit.c.seq > since_seq).order_by(audit.c.seq)
            if limit is not None:
                query = query.limit(limit)
            return [_record(row) for row in conn.execute(query)]

    def verify(self) -> AuditVerdict:
        """Recompute the chain up to the head as it is now; the first row that is missing,
        out of place or not as written fails it."""
        with self._reading() as conn:
            head = conn.execute(select(audit_head.c.seq, audit_head.c.hash)).one()
        head_seq = int(head.seq)
        expected, prev, checked = 1, GENESIS, 0
        while expected <= head_seq:
            page = self._page(expected - 1, head_seq)
            if not page:
                break
            for row in page:
                if row.seq != expected:
                    problem = (
                        f"row {expected} is missing (the rows jump from {expected - 1} to "
                        f"{row.seq})"
                        if row.seq > expected
                        else f"row {row.seq} is out of place"
                    )
                    return AuditVerdict(False, checked, expected, problem)
                if row.prev_hash != prev:
                    return AuditVerdict(
                        False,
                        checked,
                        row.seq,
                        f"row {row.seq}'s prev_hash is not row {row.seq - 1}'s hash "
                        "(a row before it was changed, removed or moved)",
                    )
                fields = {name: getattr(row, name) for name in _HASHED}
                if audit_hash(prev, fields) != row.hash:
                    return AuditVerdict(
                        False,
                        checked,
                        row.seq,
                        f"row {row.seq} is not as written (its hash does not match its contents)",
                    )
                prev = row.hash
                expected += 1
                checked += 1
        if expected <= head_seq:
            return AuditVerdict(
                False,
                checked,
                expected,
                f"rows {expected} to {head_seq} are missing (the log ends at {expected - 1})",
            )
        if prev != head.hash:
            return AuditVerdict(
                False, checked, head_seq, f"the last row {head_seq} is not the one written"
            )
        return AuditVerdict(True, checked)

    def _page(self, after: int, upto: int) -> list[AuditRecord]:
        with self._reading() as conn:
            query = (
                select(audit)
                .where(audit.c.seq > after, audit.c.seq <= upto)
                .order_by(audit.c.seq)
                .limit(_VERIFY_PAGE)
            )
            return [_record(row) for row in conn.execute(query)]


_HASHED = ("seq", "at", "kind", "session", "principal", "tool", "decision", "rule", "detail")
