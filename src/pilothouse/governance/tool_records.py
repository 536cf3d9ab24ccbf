"""Tool-gateway records in the governance store: canonical JSON and digests, pins,
approvals, audit rows and their hashes, and how rows become records (no I/O).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import unicodedata
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from sqlalchemy import Connection, Row

from pilothouse.governance.database import guard
from pilothouse.governance.store import SqlStore

DEFINITION_FIELDS = ("name", "title", "description", "inputSchema", "outputSchema", "annotations")
"""What of an MCP tool is pinned: everything the model reads or the client acts on."""
GENESIS = "0" * 64
"""The ``prev_hash`` of the first audit row."""
_PINS_ROW = 2
"""The ``changes`` row counting pin changes (row 1 counts identities)."""
_VERIFY_PAGE = 1000

ChangeKind = Literal["new", "changed", "removed"]
ApprovalStatus = Literal["pending", "approved", "denied", "used", "expired"]
_OPEN: tuple[ApprovalStatus, ...] = ("pending", "approved")


# -- canonical JSON and digests -------------------------------------------------------------


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, exact Unicode (no escaping, no normalisation): the text
    that is hashed, so that equal values hash equally and any visible or invisible change
    does not."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def pinned_definition(definition: Mapping[str, Any]) -> dict[str, Any]:
    """The pinned fields of an MCP tool definition (absent ones as ``None``)."""
    return {name: definition.get(name) for name in DEFINITION_FIELDS}


def definition_digest(definition: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of the pinned fields (:data:`DEFINITION_FIELDS`)."""
    return _sha256(canonical_json(pinned_definition(definition)))


def args_hash(arguments: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of a call's arguments: what an approval is bound to."""
    return _sha256(canonical_json(dict(arguments)))


def reveal(text: str) -> str:
    """``text`` with every character a reader cannot see escaped (``\\u200b``, ``\\U000e0041``):
    format and control characters (zero-width, bidi, tag characters), unusual spaces,
    private-use and unassigned code points, variation selectors. Newlines stay."""
    out: list[str] = []
    for char in text:
        code = ord(char)
        if char == "\n" or (char == " ") or not _invisible(char, code):
            out.append(char)
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out)


def _invisible(char: str, code: int) -> bool:
    if 0xFE00 <= code <= 0xFE0F or 0xE0100 <= code <= 0xE01EF:  # variation selectors
        return True
    return unicodedata.category(char) in ("Cc", "Cf", "Co", "Cn", "Cs", "Zs", "Zl", "Zp")


# -- records ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pin:
    """An approved tool definition: calls go ahead only while the server still shows it."""

    server: str
    tool: str
    digest: str
    definition: Mapping[str, Any]
    approved_at: float
    approved_by: str


@dataclass(frozen=True, slots=True)
class PinChange:
    """A difference between a server's observed listing and its pins (what review shows)."""

    server: str
    tool: str
    kind: ChangeKind
    pinned: Mapping[str, Any] | None
    observed: Mapping[str, Any] | None
    diff: str
    """Unified diff of the pinned and observed definitions' JSON, invisible characters
    escaped."""


@dataclass(frozen=True, slots=True)
class Approval:
    """A person's decision on one exact call (session + tool + arguments hash)."""

    id: str
    session: str
    principal: str
    tool: str
    args_hash: str
    reason: str
    status: ApprovalStatus
    created_at: float
    expires_at: float
    decided_by: str | None = None
    decided_at: float | None = None


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """Something the tool gateway decided or saw. ``at`` (seconds since the epoch): when it
    happened; ``None`` takes the time of the append."""

    kind: str
    session: str | None = None
    principal: str | None = None
    tool: str | None = None
    decision: str | None = None
    rule: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)
    at: float | None = None


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """An audit row as stored: the event, its place in the chain, and the chain's hashes."""

    seq: int
    at: float
    kind: str
    session: str | None
    principal: str | None
    tool: str | None
    decision: str | None
    rule: str | None
    detail: Mapping[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class AuditVerdict:
    """What :meth:`ToolStore.verify` found: ``ok``, or the first row that is not as written."""

    ok: bool
    checked: int
    first_bad_seq: int | None = None
    problem: str | None = None


def audit_hash(prev_hash: str, fields: Mapping[str, Any]) -> str:
    """A row's hash: sha256 of the previous row's hash followed by the canonical JSON of the
    row's fields (seq, at, kind, session, principal, tool, decision, rule, detail)."""
    return _sha256(prev_hash + canonical_json(dict(fields)))


def _audit_fields(
    seq: int, at: float, event: AuditEvent, detail: Mapping[str, Any]
) -> dict[str, Any]:
    return {
        "seq": seq,
        "at": at,
        "kind": event.kind,
        "session": event.session,
        "principal": event.principal,
        "tool": event.tool,
        "decision": event.decision,
        "rule": event.rule,
        "detail": detail,
    }


def _json_detail(detail: Mapping[str, Any]) -> dict[str, Any]:
    """``detail`` as it will read back from the store (JSON types only), so the hash covers
    exactly what is stored. Values JSON cannot carry become strings; a detail that cannot be
    written at all (NaN) is kept as its repr rather than losing the event."""
    try:
        return cast(
            dict[str, Any], json.loads(json.dumps(dict(detail), default=str, allow_nan=False))
        )
    except (TypeError, ValueError):
        return {"unserialisable": repr(detail)[:2000]}


def _pin(row: Row[Any]) -> Pin:
    return Pin(row.server, row.tool, row.digest, row.definition, row.approved_at, row.approved_by)


def _pin_values(pin: Pin) -> dict[str, Any]:
    return {
        "server": pin.server,
        "tool": pin.tool,
        "digest": pin.digest,
        "definition": dict(pin.definition),
        "approved_at": pin.approved_at,
        "approved_by": pin.approved_by,
    }


def _approval(row: Row[Any]) -> Approval:
    return Approval(
        id=row.id,
        session=row.session,
        principal=row.principal,
        tool=row.tool,
        args_hash=row.args_hash,
        reason=row.reason,
        status=cast(ApprovalStatus, row.status),
        created_at=row.created_at,
        expires_at=row.expires_at,
        decided_by=row.decided_by,
        decided_at=row.decided_at,
    )


def _approval_values(approval: Approval) -> dict[str, Any]:
    return {
        "id": approval.id,
        "session": approval.session,
        "principal": approval.principal,
        "tool": approval.tool,
        "args_hash": approval.args_hash,
        "reason": approval.reason,
        "status": approval.status,
        "created_at": approval.created_at,
        "expires_at": approval.expires_at,
        "decided_by": approval.decided_by,
        "decided_at": approval.decided_at,
    }


def _record(row: Row[Any]) -> AuditRecord:
    return AuditRecord(
        seq=int(row.seq),
        at=row.at,
        kind=row.kind,
        session=row.session,
        principal=row.principal,
        tool=row.tool,
        decision=row.decision,
        rule=row.rule,
        detail=row.detail,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


def _diff(
    key: tuple[str, str], before: Mapping[str, Any] | None, after: Mapping[str, Any] | None
) -> str:
    def lines(value: Mapping[str, Any] | None) -> list[str]:
        if value is None:
            return []
        text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
        return [reveal(line) + "\n" for line in text.splitlines()]

    name = f"{key[0]}/{key[1]}"
    return "".join(
        difflib.unified_diff(
            lines(before),
            lines(after),
            fromfile=f"pinned {name}" if before is not None else "/dev/null",
            tofile=f"observed {name}" if after is not None else "/dev/null",
        )
    )


__all__ = [
    "GENESIS",
    "Approval",
    "ApprovalStatus",
    "AuditEvent",
    "AuditRecord",
    "AuditVerdict",
    "ChangeKind",
    "Pin",
    "PinChange",
    "args_hash",
    "audit_hash",
    "canonical_json",
    "definition_digest",
    "reveal",
]


class _StoreAccess:
    """Connections of the governance store, with its error translation."""

    """Pins, approvals and the audit log in the governance store (thread-safe)."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store
        self._engine = store._engine
        self._shown_url = store._shown_url

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        with guard(self._shown_url), self._engine.connect() as conn:
            yield conn

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        with guard(self._shown_url), self._store._writing() as conn:
            yield conn
