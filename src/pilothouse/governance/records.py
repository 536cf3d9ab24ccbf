"""What governance keeps: organisations → teams → keys, their quotas, and ledger entries.

Frozen dataclasses on every boundary: the store returns them, the request path reads them
from an in-memory directory, the CLI and admin API print them. Ids are short random strings
with a kind prefix (``org_…``, ``team_…``, ``key_…``); names are unique within their parent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from pilothouse.governance.keys import KeyScope
from pilothouse.governance.limits import Limit

BudgetPeriod = Literal["total", "day", "month"]
KeyKind = Literal["user", "agent"]


@dataclass(frozen=True, slots=True)
class Quota:
    """Limits and budgets of one subject (an organisation, a team or a key); ``None``: none.

    Budgets count over ``budget_period`` (``month``: the calendar month in UTC), in tokens
    (prompt + completion) and in money (at the models' prices).
    """

    limit: Limit = field(default_factory=Limit)
    budget_tokens: float | None = None
    budget_cost: float | None = None
    budget_period: BudgetPeriod = "month"

    @property
    def empty(self) -> bool:
        return self.limit == Limit() and self.budget_tokens is None and self.budget_cost is None


@dataclass(frozen=True, slots=True)
class Organisation:
    id: str
    name: str
    quota: Quota = field(default_factory=Quota)
    created_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Team:
    id: str
    name: str
    org_id: str
    quota: Quota = field(default_factory=Quota)
    max_priority: int | None = None
    """Highest flow-control priority any of the team's requests may have."""
    default_priority: int = 0
    """Priority of the team's requests that ask for none."""
    created_at: float = 0.0


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A stored API key (never its plaintext: ``digest`` is its SHA-256)."""

    id: str
    digest: str
    shown: str
    """The key's first characters, for people to tell keys apart (``ph-AbCd``)."""
    name: str
    team_id: str
    kind: KeyKind = "user"
    owner: str | None = None
    """Who answers for an agent key (a person or service account)."""
    scope: KeyScope = field(default_factory=KeyScope)
    quota: Quota = field(default_factory=Quota)
    created_at: float = 0.0
    revoked_at: float | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every organisation, team and live key at one ``version`` of the store."""

    version: int
    orgs: tuple[Organisation, ...] = ()
    teams: tuple[Team, ...] = ()
    keys: tuple[KeyRecord, ...] = ()


class LedgerEntry(NamedTuple):
    """One settled request: who, which model, what it used and cost.

    ``id`` is the entry's own id, unique: writing an entry twice (a replay after a crash)
    keeps one. The governor makes it (a random prefix per process and a counter, so a
    store inserts ids in order). ``request_id`` is the request's ``x-request-id`` (the
    client's own when it sent one, which need not be unique: a retry may send the same
    one again, and both requests are charged). An entry without ``id`` (one written by an
    older version) is known by its ``request_id``: see :meth:`key`.

    A named tuple, not a frozen dataclass like the other records: one is built on every
    request, and a frozen dataclass sets each of its eleven fields through
    ``object.__setattr__`` (four times the cost of the tuple). Immutable all the same; its
    field order is the write-ahead log's (``ledger_wal``)."""

    request_id: str
    at: float
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost: float = 0.0
    engine_s: float = 0.0
    status: int = 200
    key_id: str | None = None
    team_id: str | None = None
    org_id: str | None = None
    id: str = ""

    def key(self) -> str:
        """What makes the entry unique in the store: its ``id``, or, for an entry an
        older version wrote, its ``request_id`` (which was unique then)."""
        return self.id or self.request_id

    def keyed(self) -> LedgerEntry:
        """The entry with its :meth:`key` as ``id`` (the store's primary key)."""
        return self if self.id else self._replace(id=self.request_id)


UsageDimension = Literal["key", "team", "org", "model"]


@dataclass(frozen=True, slots=True)
class UsageRow:
    """Ledger totals of one group (``group``: the dimension values, in the asked order)."""

    group: tuple[str | None, ...]
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost: float
