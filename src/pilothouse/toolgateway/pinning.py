"""Which upstream tools are quarantined: not approved, changed, re-added, hiding text, or
shadowing another server's tool.

A tool is usable only while the digest of its current definition (its name, title,
description, schemas and annotations: :func:`definition_of`) equals the digest an admin
approved (its *pin*). On top of that, some definitions are quarantined whatever was pinned:

**Invisible text** (rule ``invisible-unicode``). Any string of the definition (description,
title, property descriptions and names in the schemas, annotations) holding a character a
person reviewing it cannot see: Unicode format characters (category Cf: zero-width
space/joiners, bidi embeddings, overrides and isolates, the word joiner, the BOM, the tag
characters U+E0000 to U+E007F that spell ASCII invisibly, the soft hyphen), variation selectors
(U+FE00 to U+FE0F, U+E0100 to U+E01EF: another way to smuggle bytes), Hangul fillers, and control
characters other than tab and newline. Pins carry no "I saw the hidden text" flag, and no
honest tool needs hidden characters, so such a tool is *never* callable: the server must
drop them. Each finding is audited (``quarantine``, once per definition).

**Shadowing** (rule ``shadowing``). Namespacing (``<server>__<tool>``) means two servers'
tools can never collide in the agent's list, so the risk is not a collision but a tool that
steers the model towards or away from *another* server's tool. Let ``skeleton(s)`` be ``s``
after NFKC normalisation, with invisible characters removed, case-folded and with everything
but letters and digits removed (``Send-Email`` and ``send_email`` share ``sendemail``). A
tool T of server A shadows a *pinned* tool U of another server B when

1. T's name is a look-alike of U's: the same skeleton but a different spelling
   (``Create_Issue`` beside ``create_issue``) — always quarantined;
2. T's name imitates U's federated name: ``skeleton(T.name) == skeleton(B) + skeleton(U.name)``
   (a tool called ``github__create_issue`` on server ``evil``) — always quarantined;
3. T's text (description, title, schemas; NFKC, case-folded, invisibles removed) names U
   by server and tool joined by ``__``, ``_``, ``.``, ``/`` or ``:`` (``github__create_issue``,
   ``GitHub.create-issue``): instructions aimed at another server's tool, the classic
   shadowing attack — always quarantined. Prose (``github's create issue``) is not caught:
   plain words collide with generic names too often to quarantine on them;
4. T's name *is* U's name, spelled the same (a second server exposing a trusted tool's
   name): quarantined until T itself is approved. This one can be legitimate (two servers
   with a ``search``), and an approval of T is the explicit decision.

Tool names outside the MCP charset ``[A-Za-z0-9_.-]{1,128}`` are quarantined (rule
``pinning``): with non-ASCII names, homoglyphs (a Cyrillic ``\\u0456``) could imitate a pinned
name without sharing its skeleton.

**Re-added** (rule ``pinning``). A tool that disappeared from its server's listing and came
back is quarantined until approved again after it came back, even with an unchanged
definition: the server behind the name may not be the one that was approved. This is
remembered by this process (a restarted gateway sees every tool as present from the start);
a server that drops its connection should not be reported as listing no tools.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pilothouse.toolgateway.guard import ToolDefinition

TOOL_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")
"""Tool names the MCP specification (2025-11-25) recommends; anything else is refused."""

_HANGUL_FILLERS = frozenset("\u115f\u1160\u3164\uffa0")
_ALLOWED_CONTROLS = frozenset("\t\n\r")


def is_invisible(ch: str) -> bool:
    """A character a person reading a definition would not see (see the module docstring)."""
    code = ord(ch)
    if 0xFE00 <= code <= 0xFE0F or 0xE0100 <= code <= 0xE01EF or 0xE0000 <= code <= 0xE007F:
        return True
    if ch in _HANGUL_FILLERS:
        return True
    category = unicodedata.category(ch)
    return category == "Cf" or (category == "Cc" and ch not in _ALLOWED_CONTROLS)


def invisible_in(text: str) -> list[str]:
    """The invisible characters of ``text`` as ``U+XXXX`` (in order, each once)."""
    found: dict[str, None] = {}
    for ch in text:
        if (ch < " " or ch >= "\x7f") and is_invisible(ch):
            found.setdefault(f"U+{ord(ch):04X}", None)
    return list(found)


def skeleton(text: str) -> str:
    """``text`` as a look-alike comparison sees it: NFKC, no invisibles, case-folded,
    letters and digits only."""
    normal = unicodedata.normalize("NFKC", text)
    return "".join(ch for ch in normal.casefold() if ch.isalnum() and not is_invisible(ch))


def definition_of(tool: ToolDefinition) -> dict[str, Any]:
    """The mapping that is pinned (MCP's field names; absent fields left out)."""
    definition: dict[str, Any] = {"name": tool.name, "inputSchema": tool.input_schema}
    if tool.title is not None:
        definition["title"] = tool.title
    if tool.description is not None:
        definition["description"] = tool.description
    if tool.output_schema is not None:
        definition["outputSchema"] = tool.output_schema
    if tool.annotations is not None:
        definition["annotations"] = tool.annotations
    return definition


def strings_of(value: object) -> Iterator[str]:
    """Every string in a definition: values and keys of nested mappings and lists."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield str(key)
            yield from strings_of(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from strings_of(item)


@dataclass(frozen=True, slots=True)
class Observed:
    """One listed tool with what the checks need, computed once per listing."""

    tool: ToolDefinition
    definition: Mapping[str, Any]
    digest: str
    invisible: tuple[str, ...]
    name_skeleton: str
    texts: tuple[str, ...]
    """Every string but the name, NFKC, case-folded, invisibles removed (for references
    to other servers' tools)."""


def observe(tool: ToolDefinition, digest: str) -> Observed:
    definition = definition_of(tool)
    invisible: dict[str, None] = {}
    texts = []
    for text in strings_of(definition):
        invisible.update(dict.fromkeys(invisible_in(text)))
        texts.append(text)
    texts.remove(tool.name)  # the "name" value; its key is harmless
    return Observed(
        tool,
        definition,
        digest,
        tuple(invisible),
        skeleton(tool.name),
        tuple(fold(text) for text in texts),
    )


def fold(text: str) -> str:
    """NFKC, case-folded, invisibles removed: how text is searched for references."""
    normal = unicodedata.normalize("NFKC", text).casefold()
    return "".join(ch for ch in normal if not is_invisible(ch))


_JOIN = r"(?:__|[_./:])"


def reference_pattern(server: str, tool: str) -> re.Pattern[str]:
    """Matches ``server`` joined to ``tool`` (whose own ``-_.`` match any of them)."""
    parts = [re.escape(fold(part)) for part in re.split(r"[-_.]+", tool) if part]
    name = r"[-_.]+".join(parts)
    return re.compile(rf"(?<![0-9a-z]){re.escape(fold(server))}{_JOIN}{name}(?![0-9a-z])")


@dataclass(frozen=True, slots=True)
class Quarantine:
    """Why a tool is held back: the rule (``pinning``, ``shadowing``,
    ``invisible-unicode``) and words for the audit and for people."""

    rule: str
    reason: str


@dataclass(frozen=True, slots=True)
class PinIndex:
    """The approved tools as the shadowing checks look them up."""

    by_name: Mapping[str, tuple[tuple[str, str], ...]]
    """Name skeleton → the (server, tool) pins having it."""
    federated: Mapping[str, tuple[str, str]]
    """skeleton(server) + skeleton(tool) → that pin."""
    references: tuple[tuple[re.Pattern[str], tuple[str, str]], ...]
    """A pattern finding each pin's federated name in text."""

    @staticmethod
    def of(pinned: Iterable[tuple[str, str]]) -> PinIndex:
        by_name: dict[str, list[tuple[str, str]]] = {}
        federated: dict[str, tuple[str, str]] = {}
        references = []
        for server, tool in pinned:
            by_name.setdefault(skeleton(tool), []).append((server, tool))
            federated[skeleton(server) + skeleton(tool)] = (server, tool)
            references.append((reference_pattern(server, tool), (server, tool)))
        return PinIndex({k: tuple(v) for k, v in by_name.items()}, federated, tuple(references))


def always_quarantined(seen: Observed, index: PinIndex) -> Quarantine | None:
    """The findings no pin overrides: invisible text, an invalid name, look-alike names,
    imitated federated names and references to other servers' tools."""
    tool = seen.tool
    if seen.invisible:
        return Quarantine(
            "invisible-unicode",
            f"hidden characters in its definition ({', '.join(seen.invisible[:8])})",
        )
    if not TOOL_NAME.match(tool.name):
        return Quarantine("pinning", "its name has characters outside [A-Za-z0-9_.-]")
    for server, name in index.by_name.get(seen.name_skeleton, ()):
        if server != tool.server and name != tool.name:
            return Quarantine("shadowing", f"its name imitates {server}__{name}")
    imitated = index.federated.get(seen.name_skeleton)
    if imitated is not None and imitated[0] != tool.server:
        return Quarantine("shadowing", f"its name imitates {imitated[0]}__{imitated[1]}")
    for pattern, (server, name) in index.references:
        if server != tool.server and any(pattern.search(text) for text in seen.texts):
            return Quarantine("shadowing", f"its description refers to {server}__{name}")
    return None


def same_name_elsewhere(seen: Observed, index: PinIndex) -> str | None:
    """Another server's pinned tool with exactly this name (case 4), as ``server__tool``."""
    for server, name in index.by_name.get(seen.name_skeleton, ()):
        if server != seen.tool.server and name == seen.tool.name:
            return f"{server}__{name}"
    return None
