"""Pinned tool definitions in the governance store (see :mod:`.tool_store`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import delete, insert, select, update

from pilothouse.errors import BadRequest, NotFound
from pilothouse.governance.tables import (
    changes,
    tool_observations,
    tool_observed,
    tool_pins,
)
from pilothouse.governance.tool_audit import AuditBook
from pilothouse.governance.tool_records import (
    _PINS_ROW,
    AuditEvent,
    ChangeKind,
    Pin,
    PinChange,
    _diff,
    _pin,
    _pin_values,
    definition_digest,
    pinned_definition,
)


class PinBook(AuditBook):
    """Observe listings, pin them, review the differences."""

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
