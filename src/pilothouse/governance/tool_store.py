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

import difflib
import hashlib
import json
import secrets
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Literal, cast

from sqlalchemy import Connection, Row, delete, insert, select, update

from pilothouse.errors import BadRequest, Conflict, NotFound
from pilothouse.governance.database import guard
from pilothouse.governance.store import SqlStore
from pilothouse.governance.tables import (
    approvals,
    audit,
    audit_head,
    changes,
    tool_observations,
    tool_observed,
    tool_pins,
)

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


# -- the store ----------------------------------------------------------------------------------


class ToolStore:
    """Pins, approvals and the audit log in the governance store (thread-safe)."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store
        self._engine = store._engine
        self._shown_url = store._shown_url

    def __repr__(self) -> str:
        return f"ToolStore({self._store!r})"

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        with guard(self._shown_url), self._engine.connect() as conn:
            yield conn

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        with guard(self._shown_url), self._store._writing() as conn:
            yield conn

    # -- pins ---------------------------------------------------------------------------------

    def observe(
        self, server: str, definitions: Sequence[Mapping[str, Any]], now: float | None = None
    ) -> None:
        """Record ``server``'s current listing (replacing its previous one). Pins are not
        touched: a changed tool stays quarantined until someone approves it."""
        rows: dict[str, dict[str, Any]] = {}
        for definition in definitions:
            name = definition.get("name")
            if not isinstance(name, str) or not name:
                raise BadRequest(f"a tool of server '{server}' has no name", param="name")
            pinned = pinned_definition(definition)
            rows[name] = {
                "server": server,
                "tool": name,
                "digest": definition_digest(pinned),
                "definition": pinned,
            }
        at = self._store._wall() if now is None else now
        with self._writing() as conn:
            conn.execute(delete(tool_observed).where(tool_observed.c.server == server))
            if rows:
                conn.execute(insert(tool_observed), list(rows.values()))
            seen = conn.execute(
                update(tool_observations)
                .where(tool_observations.c.server == server)
                .values(observed_at=at)
            )
            if seen.rowcount == 0:
                conn.execute(insert(tool_observations).values(server=server, observed_at=at))

    def pins(self) -> dict[tuple[str, str], Pin]:
        """Every approved pin, by (server, tool)."""
        with self._reading() as conn:
            return {(p.server, p.tool): p for p in map(_pin, conn.execute(select(tool_pins)))}

    def approve(
        self, server: str, by: str, tools: Sequence[str] | None = None, now: float | None = None
    ) -> list[Pin]:
        """Pin what ``server`` was last observed to offer: all its tools (pins of tools it no
        longer offers are dropped), or the named ones (a named tool it no longer offers loses
        its pin). Returns the pins of the approved tools, by name."""
        if not by.strip():
            raise BadRequest("say who approves (--by)", param="by")
        at = self._store._wall() if now is None else now
        with self._writing() as conn:
            if not conn.execute(
                select(tool_observations.c.server).where(tool_observations.c.server == server)
            ).first():
                raise NotFound(f"no listing of server '{server}' was observed yet")
            observed = {
                row.tool: row
                for row in conn.execute(
                    select(tool_observed).where(tool_observed.c.server == server)
                )
            }
            pinned = {
                row.tool: _pin(row)
                for row in conn.execute(select(tool_pins).where(tool_pins.c.server == server))
            }
            names = (
                sorted(set(observed) | set(pinned)) if tools is None else list(dict.fromkeys(tools))
            )
            unknown = [n for n in names if n not in observed and n not in pinned]
            if unknown:
                raise NotFound(
                    f"server '{server}' has no tool named {', '.join(map(repr, unknown))}"
                )
            result: list[Pin] = []
            changed = False
            for name in names:
                row = observed.get(name)
                old = pinned.get(name)
                if row is None:
                    conn.execute(
                        delete(tool_pins).where(
                            tool_pins.c.server == server, tool_pins.c.tool == name
                        )
                    )
                    changed = True
                    continue
                if old is not None and old.digest == row.digest:
                    result.append(old)
                    continue
                pin = Pin(server, name, row.digest, row.definition, at, by)
                if old is not None:
                    conn.execute(
                        delete(tool_pins).where(
                            tool_pins.c.server == server, tool_pins.c.tool == name
                        )
                    )
                conn.execute(insert(tool_pins).values(_pin_values(pin)))
                result.append(pin)
                changed = True
            if changed:
                conn.execute(
                    update(changes)
                    .where(changes.c.id == _PINS_ROW)
                    .values(version=changes.c.version + 1)
                )
        if changed:  # who pinned what is part of the audit trail
            detail = {"server": server, "pins": {p.tool: p.digest for p in result}}
            self.append([AuditEvent("pin", None, by, None, "approved", "admin", detail)], at)
        return result

    def review(self, server: str | None = None) -> list[PinChange]:
        """How each observed server's listing differs from its pins, by server and tool.
        Servers never observed are left out (nothing is known of them)."""
        with self._reading() as conn:
            servers_q = select(tool_observations.c.server)
            observed_q = select(tool_observed)
            pins_q = select(tool_pins)
            if server is not None:
                servers_q = servers_q.where(tool_observations.c.server == server)
                observed_q = observed_q.where(tool_observed.c.server == server)
                pins_q = pins_q.where(tool_pins.c.server == server)
            servers = set(conn.execute(servers_q).scalars())
            observed = {(r.server, r.tool): r for r in conn.execute(observed_q)}
            pinned = {(r.server, r.tool): r for r in conn.execute(pins_q) if r.server in servers}
        found: list[PinChange] = []
        for key in sorted(set(observed) | set(pinned)):
            seen, pin = observed.get(key), pinned.get(key)
            if seen is not None and pin is not None and seen.digest == pin.digest:
                continue
            kind: ChangeKind = "new" if pin is None else "removed" if seen is None else "changed"
            before = None if pin is None else dict(pin.definition)
            after = None if seen is None else dict(seen.definition)
            found.append(PinChange(key[0], key[1], kind, before, after, _diff(key, before, after)))
        return found

    def version(self) -> int:
        """Grows with every change of a pin (one indexed read: poll it)."""
        with self._reading() as conn:
            query = select(changes.c.version).where(changes.c.id == _PINS_ROW)
            return int(conn.execute(query).scalar_one())

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


def _expire(conn: Connection, now: float) -> None:
    conn.execute(
        update(approvals)
        .where(approvals.c.status.in_(_OPEN), approvals.c.expires_at <= now)
        .values(status="expired")
    )


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
    "ToolStore",
    "args_hash",
    "audit_hash",
    "canonical_json",
    "definition_digest",
    "reveal",
]
