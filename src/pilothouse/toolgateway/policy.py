"""Cedar policy over tool listing and calls: who may see and call which tool, given what.

The policy file is parsed once (:class:`ToolPolicy`); each decision builds a handful of
entities and a context and asks Cedar. The vocabulary a policy can use:

- principal ``Agent::"<subject>"`` (``key_…``, ``jwt:<sub>``, ``anonymous``), in
  ``Team::"<team>"``, itself in ``Org::"<org>"``; attributes ``team``, ``org`` (strings,
  empty when none) and ``kind`` (a key's kind: ``user``/``agent``/…, ``jwt``, ``anonymous``);
- action ``Action::"list"`` (``tools/list``: the tool is shown) or ``Action::"call"``;
- resource ``Tool::"<server>__<tool>"`` in ``Server::"<server>"``; attributes ``server``,
  ``name`` (as its server names it) and ``labels`` (a set of ``untrusted_output``,
  ``egress``, ``sensitive``);
- context: ``taint`` (the session's labels so far: a set), ``approved`` (a person approved
  this exact call), ``approvals`` (approvals this session has used), ``calls`` (this
  session's calls of this tool: ``minute``, ``hour``, ``session``), ``user`` (the
  ``User::"<id>"`` the agent acts for, only when there is one: test with ``context has
  user``) and, for calls, ``arguments``: the call's arguments as a Cedar record. Numbers
  that are not integers become strings (Cedar has no floats), ``null`` members are left
  out, lists become sets, and members named ``__entity``, ``__extn`` or ``__expr`` are
  dropped (they would be read as Cedar escapes: an argument could forge an entity).

Every decision names the policy that made it: the ``@id("…")`` annotation of the first
determining policy (Cedar's own ``policyN`` when there is none), or ``default-deny`` when
no policy permits. Without a policy file, :data:`DEFAULT_POLICY` permits everything; the
other rules (pinning, taint, approvals, budgets) still apply.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cedarpy

from pilothouse.config.tools import Label
from pilothouse.errors import ConfigError
from pilothouse.governance.governor import Identity
from pilothouse.toolgateway.guard import ToolDefinition

DEFAULT_POLICY = '@id("default-permit")\npermit (principal, action, resource);\n'
DEFAULT_DENY = "default-deny"
"""The rule named when no policy permits (Cedar's implicit deny)."""

_ESCAPES = frozenset({"__entity", "__extn", "__expr"})
_MAX_DEPTH = 16
_I64 = 2**63
_MAX_CACHED = 4096


@dataclass(frozen=True, slots=True)
class History:
    """A session's calls of one tool over windows, and its approvals used."""

    minute: int = 0
    hour: int = 0
    session: int = 0


@dataclass(frozen=True, slots=True)
class PolicyRequest:
    """One question to the policy."""

    action: Literal["list", "call"]
    identity: Identity
    tool: ToolDefinition
    labels: frozenset[Label] = frozenset()
    acting_for: str | None = None
    arguments: Mapping[str, Any] | None = None
    taint: frozenset[Label] = frozenset()
    calls: History = field(default_factory=History)
    approved: bool = False
    approvals: int = 0


@dataclass(frozen=True, slots=True)
class PolicyDecision:
    allowed: bool
    policy: str
    """The id of the policy that decided (see the module docstring)."""
    errors: tuple[str, ...] = ()
    """Policies that failed to evaluate (they are skipped, as Cedar does)."""


class ToolPolicy:
    """A parsed Cedar policy set (see the module docstring)."""

    def __init__(self, text: str, source: str = "default policy") -> None:
        try:
            self._policies = cedarpy.PolicySet.from_str(text)
        except ValueError as exc:
            raise ConfigError(
                f"{source}: not a Cedar policy set: {exc}", path="tools.policy"
            ) from exc
        self.source = source
        self._entities: dict[tuple[object, ...], cedarpy.Entities] = {}

    @classmethod
    def load(cls, path: Path | None) -> ToolPolicy:
        """The policy in ``path``, or :data:`DEFAULT_POLICY` without one."""
        if path is None:
            return cls(DEFAULT_POLICY)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc}", path="tools.policy") from exc
        return cls(text, str(path))

    def decide(self, request: PolicyRequest) -> PolicyDecision:
        query = {
            "principal": {"type": "Agent", "id": request.identity.subject},
            "action": {"type": "Action", "id": request.action},
            "resource": {"type": "Tool", "id": request.tool.federated},
            "context": _context(request),
        }
        result = cedarpy.is_authorized(query, self._policies, self._entities_of(request))
        diagnostics = result.diagnostics
        reasons = diagnostics.reasons
        if reasons:
            names = diagnostics.id_annotations_by_reason
            policy = str(names.get(reasons[0], reasons[0]))
        else:
            policy = DEFAULT_DENY
        return PolicyDecision(result.allowed, policy, tuple(diagnostics.errors))

    def _entities_of(self, request: PolicyRequest) -> cedarpy.Entities:
        """Parsed entities, cached per principal, user and tool: parsing them is about half
        the cost of a decision."""
        identity = request.identity
        key = (
            identity.subject,
            identity.team_name,
            identity.org.name if identity.org is not None else "",
            identity.key.kind if identity.key is not None else "",
            request.acting_for,
            request.tool.federated,
            request.labels,
        )
        entities = self._entities.get(key)
        if entities is None:
            if len(self._entities) >= _MAX_CACHED:
                self._entities.clear()
            entities = cedarpy.Entities.from_json_str(json.dumps(_entities(request)))
            self._entities[key] = entities
        return entities


def _entities(request: PolicyRequest) -> list[dict[str, Any]]:
    identity = request.identity
    team = identity.team_name
    org = identity.org.name if identity.org is not None else ""
    kind = identity.key.kind if identity.key is not None else _kind(identity.subject)
    agent: dict[str, Any] = {
        "uid": {"type": "Agent", "id": identity.subject},
        "attrs": {"team": team, "org": org, "kind": kind},
        "parents": [{"type": "Team", "id": team}] if team else [],
    }
    entities = [agent]
    if team:
        entities.append(
            {
                "uid": {"type": "Team", "id": team},
                "attrs": {},
                "parents": [{"type": "Org", "id": org}] if org else [],
            }
        )
    if org:
        entities.append({"uid": {"type": "Org", "id": org}, "attrs": {}, "parents": []})
    if request.acting_for is not None:
        entities.append(
            {"uid": {"type": "User", "id": request.acting_for}, "attrs": {}, "parents": []}
        )
    tool = request.tool
    entities.append(
        {
            "uid": {"type": "Tool", "id": tool.federated},
            "attrs": {"server": tool.server, "name": tool.name, "labels": sorted(request.labels)},
            "parents": [{"type": "Server", "id": tool.server}],
        }
    )
    entities.append({"uid": {"type": "Server", "id": tool.server}, "attrs": {}, "parents": []})
    return entities


def _kind(subject: str) -> str:
    return "jwt" if subject.startswith("jwt:") else "anonymous"


def _context(request: PolicyRequest) -> dict[str, Any]:
    calls = request.calls
    context: dict[str, Any] = {
        "taint": sorted(request.taint),
        "approved": request.approved,
        "approvals": request.approvals,
        "calls": {"minute": calls.minute, "hour": calls.hour, "session": calls.session},
    }
    if request.acting_for is not None:
        context["user"] = {"__entity": {"type": "User", "id": request.acting_for}}
    if request.arguments is not None:
        context["arguments"] = _record(request.arguments, 0)
    return context


def to_cedar(value: object, depth: int = 0) -> object | None:
    """A JSON value as a Cedar value (see the module docstring); ``None`` to leave out."""
    if value is None:
        return None
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value if -_I64 <= value < _I64 else str(value)
    if isinstance(value, float):
        return repr(value)
    if depth >= _MAX_DEPTH:
        return json.dumps(value, default=str)
    if isinstance(value, Mapping):
        return _record(value, depth + 1)
    if isinstance(value, list | tuple):
        items = (to_cedar(item, depth + 1) for item in value)
        return [item for item in items if item is not None]
    return str(value)


def _record(value: Mapping[Any, Any], depth: int) -> dict[str, object]:
    record: dict[str, object] = {}
    for key, item in value.items():
        if str(key) in _ESCAPES:
            continue
        converted = to_cedar(item, depth)
        if converted is not None:
            record[str(key)] = converted
    return record


def decision_cost_us(policy: ToolPolicy, request: PolicyRequest, n: int = 1000) -> float:
    """Mean microseconds of one :meth:`ToolPolicy.decide` over ``n`` (a benchmark helper:
    the tool gateway's added latency budget is about a millisecond per call)."""
    started = time.perf_counter()
    for _ in range(n):
        policy.decide(request)
    return (time.perf_counter() - started) / n * 1e6
