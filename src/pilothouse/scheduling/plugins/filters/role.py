"""``role`` filter: keeps the endpoints whose role label is one of ``roles``.

Prefill/decode disaggregation labels each replica with its role, as llm-d does:
``llm-d.ai/role: prefill | decode | both``. A profile restricted to decode replicas keeps
``[decode, both]`` (and, with ``allow_unlabeled``, replicas without the label, so a pool
that is not disaggregated at all still routes); a prefill profile keeps ``[prefill]``.
The label's name is a parameter, so any label works (``label: tier``, ``roles: [gpu]``).

Unlike ``not-saturated`` it may remove every endpoint: the profile then produces no
target, which a profile handler such as ``pd-disaggregation`` treats as "no prefill
replica available" and falls back to decode only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pydantic import Field

from pilothouse.scheduling.context import PluginContext
from pilothouse.scheduling.interfaces import CycleState
from pilothouse.scheduling.plugins.base import NamedPlugin
from pilothouse.scheduling.types import Endpoint, SchedulingRequest
from pilothouse.scheduling.validation import ParametersModel, parse_parameters

ROLE_LABEL = "llm-d.ai/role"


class RoleParameters(ParametersModel):
    roles: list[str] = Field(min_length=1)
    label: str = Field(default=ROLE_LABEL, min_length=1)
    allow_unlabeled: bool = False


class RoleFilter(NamedPlugin):
    """Keeps endpoints labelled with an accepted role (or unlabelled, when allowed)."""

    __slots__ = ("_label", "_roles", "_unlabeled")

    def __init__(
        self,
        name: str,
        *,
        roles: Sequence[str],
        label: str = ROLE_LABEL,
        allow_unlabeled: bool = False,
    ) -> None:
        super().__init__(name)
        self._roles = frozenset(roles)
        self._label = label
        self._unlabeled = allow_unlabeled

    @classmethod
    def create(cls, name: str, parameters: Mapping[str, object], ctx: PluginContext) -> RoleFilter:
        p = parse_parameters(RoleParameters, parameters)
        return cls(name, roles=p.roles, label=p.label, allow_unlabeled=p.allow_unlabeled)

    def accepts(self, endpoint: Endpoint) -> bool:
        role = endpoint.labels.get(self._label)
        return self._unlabeled if role is None else role in self._roles

    def filter(
        self, state: CycleState, request: SchedulingRequest, endpoints: Sequence[Endpoint]
    ) -> Sequence[Endpoint]:
        kept = [e for e in endpoints if self.accepts(e)]
        return endpoints if len(kept) == len(endpoints) else kept
