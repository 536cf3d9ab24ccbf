"""What the tool gateway knows of its upstream tools against their approved pins.

:class:`PinState` follows each server's listing (``tools_changed``) and the store's pins
(re-read when the store's version moves, checked at most every ``refresh_s``), and answers
whether a tool is held back (:meth:`PinState.quarantine`, rules of :mod:`.pinning`). Each
change of a tool's state, held back or released, is reported once through ``report``: the
:class:`~pilothouse.toolgateway.rules.Rules` audit it as a ``quarantine`` event.

The store is synchronous (a database behind it) and only called from a worker thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pilothouse.clock import Clock
from pilothouse.toolgateway.guard import ToolDefinition
from pilothouse.toolgateway.pinning import (
    Observed,
    PinIndex,
    Quarantine,
    always_quarantined,
    definition_of,
    observe,
    same_name_elsewhere,
)
from pilothouse.toolgateway.ports import Pin, ToolStore

Digest = Callable[[Mapping[str, Any]], str]
Report = Callable[[str, Quarantine | None], None]
"""Called with a tool's federated name and its new state (``None``: released)."""


class PinState:
    """See the module docstring."""

    def __init__(
        self, store: ToolStore, clock: Clock, digest: Digest, report: Report, refresh_s: float
    ) -> None:
        self.store = store
        self.clock = clock
        self.refresh_s = refresh_s
        """Longest time between two checks of the store's version."""
        self._digest = digest
        self._report = report
        self._observed: dict[tuple[str, str], Observed] = {}
        self._listed: dict[str, set[str]] = {}
        self._gone: set[tuple[str, str]] = set()
        self._readded: dict[tuple[str, str], float] = {}
        self._pins: Mapping[tuple[str, str], Pin] = {}
        self._index = PinIndex.of(())
        self._version: int | None = None
        self._checked = float("-inf")
        self._assessed: dict[tuple[str, str], Quarantine | None] = {}
        self._reported: dict[tuple[str, str], tuple[str, str] | None] = {}

    async def tools_changed(self, server: str, tools: Sequence[ToolDefinition]) -> None:
        """``server`` now lists ``tools``: observe them (the store keeps what was seen) and
        re-read the pins."""
        now = self.clock.now()
        seen = [observe(tool, self._digest(definition_of(tool))) for tool in tools]
        names = {s.tool.name for s in seen}
        before = self._listed.get(server, set())
        for name in before - names:
            self._gone.add((server, name))
            self._observed.pop((server, name), None)
        for name in names & {n for s, n in self._gone if s == server}:
            self._gone.discard((server, name))
            self._readded[(server, name)] = now
        self._listed[server] = names
        for s in seen:
            self._observed[(server, s.tool.name)] = s
            self._assessed.pop((server, s.tool.name), None)
        await asyncio.to_thread(self.store.observe, server, [dict(s.definition) for s in seen])
        await self.refresh(force=True)
        self._report_changes()

    async def refresh(self, force: bool = False) -> None:
        """Re-read the pins if the store's version moved (checked at most every
        ``refresh_s`` unless ``force``)."""
        now = self.clock.now()
        if not force and now - self._checked < self.refresh_s:
            return
        self._checked = now
        version = await asyncio.to_thread(self.store.version)
        if version == self._version:
            return
        pins = await asyncio.to_thread(self.store.pins)
        self._pins, self._version = pins, version
        self._index = PinIndex.of(pins.keys())
        self._assessed.clear()
        self._report_changes()

    def quarantine(self, tool: ToolDefinition) -> Quarantine | None:
        """Why ``tool`` is held back, or None when it may be used (module docstring of
        :mod:`.pinning`)."""
        key = (tool.server, tool.name)
        seen = self._observed.get(key)
        if seen is None or seen.tool != tool:
            return Quarantine("pinning", "not in its server's current listing")
        if key not in self._assessed:
            self._assessed[key] = self._assess(seen)
        return self._assessed[key]

    def _assess(self, seen: Observed) -> Quarantine | None:
        found = always_quarantined(seen, self._index)
        if found is not None:
            return found
        key = (seen.tool.server, seen.tool.name)
        pin = self._pins.get(key)
        if pin is None:
            other = same_name_elsewhere(seen, self._index)
            if other is not None:
                return Quarantine("shadowing", f"new, with the name of {other}: not approved")
            return Quarantine("pinning", "new: not approved")
        if pin.digest != seen.digest:
            return Quarantine("pinning", f"changed since {pin.approved_by} approved it")
        readded = self._readded.get(key)
        if readded is not None and pin.approved_at < readded:
            return Quarantine("pinning", "removed and listed again since it was approved")
        return None

    def _report_changes(self) -> None:
        """Report each tool whose state changed (held back or released) since last time."""
        for key, seen in self._observed.items():
            found = self.quarantine(seen.tool)
            state = (seen.digest, found.rule) if found is not None else None
            if self._reported.get(key) == state or (state is None and key not in self._reported):
                continue
            self._reported[key] = state
            self._report(seen.tool.federated, found)
