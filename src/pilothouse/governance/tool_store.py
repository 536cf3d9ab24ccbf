"""What the tool gateway keeps in the governance store: pinned tool definitions, approvals
of single calls, and the hash-chained audit log.

**Pins** defend against a tool that changes after an admin approved it (a "rug pull") or
hides instructions in its description. A tool's definition (name, title, description,
schemas, annotations) is hashed as exact text (:func:`definition_digest`): one invisible
Unicode character changes the digest. Gateways :meth:`ToolStore.observe` each server's
current listing; :meth:`ToolStore.review` compares it with the pins and shows every
difference as a diff with invisible characters escaped (``\\u200b``), so the reviewer sees
what the model would read; :meth:`ToolStore.approve` pins what was observed.
:meth:`ToolStore.version` moves with every pin change, so gateways reload cheaply.

**Approvals** bind a person's decision to one exact call: session, tool and the hash of its
arguments (:func:`args_hash`). :meth:`ToolStore.consume` turns an approved, unexpired,
matching approval into ``used`` in one conditional UPDATE, so it is spent once, and a replay
with other arguments or from another session finds nothing to consume.

**Audit** rows are appended, never changed: each row's ``hash`` is
``sha256(prev_hash + canonical JSON of its fields, seq included)``, the first row's
``prev_hash`` is 64 zeros, and ``audit_head`` holds the last seq and hash, written in the
same transaction. :meth:`ToolStore.verify` recomputes the chain: an edited row breaks its
hash, a deleted row leaves a gap in seq (or a head beyond the last row), swapped rows break
the hashes that cover their seq. The chain is global: an append locks the head row
(PostgreSQL ``FOR UPDATE``; on SQLite the writer holds the file's write lock), so two
writers cannot fork it. The request path never writes here itself: it hands events to
:class:`pilothouse.governance.audit.AuditLog`, which batches them in the background.

Sync SQLAlchemy Core on the :class:`~pilothouse.governance.store.SqlStore`'s engine, with
its error translation (StoreUnavailable / NotFound / Conflict).
"""

from __future__ import annotations

from pilothouse.governance.tool_approvals import ApprovalBook
from pilothouse.governance.tool_pins import PinBook
from pilothouse.governance.tool_records import (
    DEFINITION_FIELDS,
    GENESIS,
    Approval,
    ApprovalStatus,
    AuditEvent,
    AuditRecord,
    AuditVerdict,
    ChangeKind,
    Pin,
    PinChange,
    args_hash,
    audit_hash,
    canonical_json,
    definition_digest,
    pinned_definition,
    reveal,
)


class ToolStore(PinBook, ApprovalBook):
    """Pins, approvals and the audit log in the governance store (thread-safe)."""

    def __repr__(self) -> str:
        return f"ToolStore({self._store!r})"


__all__ = [
    "DEFINITION_FIELDS",
    "GENESIS",
    "Approval",
    "ApprovalStatus",
    "AuditEvent",
    "AuditRecord",
    "AuditVerdict",
    "ChangeKind",
    "Pin",
    "PinChange",
    "ToolStore",
    "args_hash",
    "audit_hash",
    "canonical_json",
    "definition_digest",
    "pinned_definition",
    "reveal",
]
