"""What admission reads and holds for one request: its credentials, its identity, what it
asks for, the holds it was granted, what it used, and where its ledger entry goes.

The records made anew for every request (:class:`Credentials`, :class:`Ask`, :class:`Used`)
are named tuples, immutable like the frozen dataclasses elsewhere but built at a third of
their cost: a frozen dataclass sets each field through ``object.__setattr__``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple, Protocol

from pilothouse.governance.budgets import Charge
from pilothouse.governance.jwt import Claims
from pilothouse.governance.keys import KeyScope
from pilothouse.governance.limits import Reservation
from pilothouse.governance.records import (
    KeyRecord,
    LedgerEntry,
    Organisation,
    Team,
)

if TYPE_CHECKING:
    from pilothouse.governance.plans import AdmissionPlan


class Recorder(Protocol):
    """Where settled requests go: the ledger (:mod:`pilothouse.governance.ledger`)."""

    def record(self, entry: LedgerEntry) -> None: ...


class Credentials(NamedTuple):
    """What a request presented: a bearer token (an API key or a JWT), its client address,
    and, behind Envoy's ``jwt_authn``, the verified JWT payload Envoy forwarded."""

    bearer: str | None = None
    client: str | None = None
    envoy_payload: str | None = None


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a request is: a key (and its team and organisation), a JWT's team, or nobody."""

    subject: str
    """For logs: ``key_…``, ``jwt:<sub>`` or ``anonymous`` (never a secret)."""
    key: KeyRecord | None = None
    team: Team | None = None
    org: Organisation | None = None
    scope: KeyScope = field(default_factory=KeyScope)
    priority: int | None = None
    """A priority the identity itself asks for (a JWT's priority class)."""

    @property
    def team_name(self) -> str:
        return self.team.name if self.team is not None else ""


ANONYMOUS = Identity(subject="anonymous")


class Ask(NamedTuple):
    """What a request asks for, as admission sees it."""

    model: str
    prompt_bytes: int
    """UTF-8 length of the prompt text: an upper bound of its tokens (byte-level BPE)."""
    max_tokens: int
    priority: int
    """The priority its headers ask for (objective names, trusted numbers), else 0."""
    request_id: str
    messages: int = 1


@dataclass(slots=True, eq=False)
class Grant:
    """One admitted request's holds, until it is settled or released (exactly once)."""

    identity: Identity
    ask: Ask
    priority: int
    reserved_tokens: int
    reservation: Reservation | None
    tokens: Charge | None
    money: Charge | None
    started: float
    """Wall time of admission (the ledger entry's time)."""
    routed: float | None = None
    """When it was first sent to a replica, on the routing pipeline's clock (which counts
    engine time from here and hands it over in :attr:`Used.engine_s`)."""
    done: bool = False
    plan: AdmissionPlan | None = None
    """What admission worked out for its identity and model (price, owners, counts)."""


class Used(NamedTuple):
    """What a request really used: from the engine's usage, or counted while relaying."""

    prompt_tokens: int
    completion_tokens: int
    status: int = 200
    engine_s: float | None = None


class JwtCheck(Protocol):
    """Verifies JWTs (and reads Envoy-verified payloads) into claims: the service's adapter
    over :mod:`pilothouse.governance.jwt` (a protocol, so the governor's tests need no
    keys)."""

    def looks_like(self, token: str) -> bool: ...

    def verify(self, token: str, now: float) -> Claims: ...

    def from_envoy(self, payload: str) -> Claims: ...
