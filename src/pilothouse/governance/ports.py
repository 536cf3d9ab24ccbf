"""The seams of governance: the store, the limit and budget backends, the ledger's sink.

The request path never waits on the store: keys, teams and organisations are read from an
in-memory :class:`~pilothouse.governance.directory.Directory` refreshed from
:meth:`Store.snapshot` every ``sync_interval_s``; usage goes through the ledger, which
writes ahead to local disk and sends batches to :meth:`Store.write_ledger`. Limits and
budgets are held where every gateway replica sees them: in this process
(:class:`LocalLimits`, :class:`LocalBudgets`) or in Redis (``governance.redis_backend``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol

from pilothouse.errors import PilothouseError
from pilothouse.governance.budgets import Budgets, Charge
from pilothouse.governance.keys import KeyScope
from pilothouse.governance.limits import Limit, RateLimiter, Reservation
from pilothouse.governance.records import (
    KeyKind,
    KeyRecord,
    LedgerEntry,
    Organisation,
    Quota,
    Snapshot,
    Team,
    UsageDimension,
    UsageRow,
)


class Store(Protocol):
    """Identities and the ledger, in SQLite or PostgreSQL (``governance.store``).

    Synchronous (SQLAlchemy); async callers run it in a worker thread. Names or ids are
    accepted wherever an organisation, team or key is named. Unknown names raise
    :class:`~pilothouse.errors.NotFound`; duplicates :class:`~pilothouse.errors.Conflict`.
    """

    def migrate(self) -> None:
        """Create or upgrade the schema (Alembic) to the newest revision."""

    def close(self) -> None: ...

    def create_org(self, name: str, quota: Quota | None = None) -> Organisation: ...

    def create_team(
        self,
        org: str,
        name: str,
        quota: Quota | None = None,
        *,
        max_priority: int | None = None,
        default_priority: int = 0,
    ) -> Team: ...

    def update_quota(self, subject: str, quota: Quota) -> None:
        """Replace the quota of an organisation, team or key (by id)."""

    def create_key(
        self,
        team: str,
        name: str,
        *,
        kind: KeyKind = "user",
        owner: str | None = None,
        scope: KeyScope | None = None,
        quota: Quota | None = None,
    ) -> tuple[str, KeyRecord]:
        """A new key: its plaintext (to show once, never stored) and its record."""

    def revoke_key(self, key: str) -> KeyRecord: ...

    def list_orgs(self) -> list[Organisation]: ...

    def list_teams(self, org: str | None = None) -> list[Team]: ...

    def list_keys(self, team: str | None = None, *, revoked: bool = False) -> list[KeyRecord]: ...

    def version(self) -> int:
        """A number that grows with every change of an organisation, team or key."""

    def snapshot(self) -> Snapshot:
        """Every organisation, team and unrevoked key, and the version they are at."""

    def write_ledger(self, entries: Sequence[LedgerEntry]) -> int:
        """Insert entries in one transaction; one whose ``request_id`` is already there is
        skipped. Returns how many were new."""

    def usage(
        self,
        by: Sequence[UsageDimension],
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[UsageRow]:
        """Ledger totals grouped by ``by`` (an empty ``by``: one row of grand totals)."""

    def spent(self, since: datetime) -> Mapping[str, tuple[float, float]]:
        """Tokens and cost spent since ``since`` per subject id (key, team and org ids):
        what budgets start from after a restart."""


class LedgerSink(Protocol):
    """Where the ledger's batches go (a :class:`Store`, or a test double)."""

    def write_ledger(self, entries: Sequence[LedgerEntry]) -> int: ...


class LimitBackend(Protocol):
    """Token rate limits (see :mod:`pilothouse.governance.limits`), possibly shared."""

    async def reserve(
        self, subjects: Sequence[tuple[str, Limit]], tokens: int, now: float
    ) -> Reservation: ...

    async def settle(self, reservation: Reservation, used_tokens: int, now: float) -> None: ...

    async def release(self, reservation: Reservation, now: float) -> None: ...

    async def aclose(self) -> None: ...


class BudgetBackend(Protocol):
    """Budgets in one unit (see :mod:`pilothouse.governance.budgets`), possibly shared.

    Subjects carry their period (``team_x@2026-12``), so a new month starts from zero.
    """

    unit: str

    async def reserve(self, subjects: Sequence[tuple[str, float]], amount: float) -> Charge: ...

    async def settle(self, charge: Charge, actual: float) -> None: ...

    async def release(self, charge: Charge) -> None: ...

    async def seed(self, spent: Mapping[str, float]) -> None:
        """Start subjects not yet known from what the ledger says they spent."""

    async def aclose(self) -> None: ...


class SharedAdmission(Protocol):
    """A request's limits and both budgets held in one call to a shared store and settled in
    one (``governance.redis_admission.RedisAdmission``): all or nothing across the three, the
    semantics of the three backends, one round trip instead of three each way. A part
    without subjects is skipped (``None`` in and out)."""

    async def reserve(
        self,
        limits: Sequence[tuple[str, Limit]],
        tokens: int,
        token_budgets: Sequence[tuple[str, float]],
        money_budgets: Sequence[tuple[str, float]],
        cost: float,
        now: float,
    ) -> tuple[Reservation | None, Charge | None, Charge | None]: ...

    async def settle(
        self,
        reservation: Reservation | None,
        tokens: Charge | None,
        money: Charge | None,
        used_tokens: int,
        cost: float,
        now: float,
    ) -> None: ...

    async def release(
        self,
        reservation: Reservation | None,
        tokens: Charge | None,
        money: Charge | None,
        now: float,
    ) -> None: ...


class SeparateAdmission:
    """:class:`SharedAdmission` over any three backends, one call each: all or nothing by
    giving back what the parts before a refusing one held."""

    def __init__(self, limits: LimitBackend, tokens: BudgetBackend, money: BudgetBackend):
        self.limits, self.tokens, self.money = limits, tokens, money

    async def reserve(
        self,
        limits: Sequence[tuple[str, Limit]],
        tokens: int,
        token_budgets: Sequence[tuple[str, float]],
        money_budgets: Sequence[tuple[str, float]],
        cost: float,
        now: float,
    ) -> tuple[Reservation | None, Charge | None, Charge | None]:
        reservation = token_charge = money_charge = None
        try:
            if limits:
                reservation = await self.limits.reserve(limits, tokens, now)
            if token_budgets:
                token_charge = await self.tokens.reserve(token_budgets, float(tokens))
            if money_budgets:
                money_charge = await self.money.reserve(money_budgets, cost)
        except PilothouseError:
            await self.release(reservation, token_charge, money_charge, now)
            raise
        return reservation, token_charge, money_charge

    async def settle(
        self,
        reservation: Reservation | None,
        tokens: Charge | None,
        money: Charge | None,
        used_tokens: int,
        cost: float,
        now: float,
    ) -> None:
        if reservation is not None:
            await self.limits.settle(reservation, used_tokens, now)
        if tokens is not None:
            await self.tokens.settle(tokens, float(used_tokens))
        if money is not None:
            await self.money.settle(money, cost)

    async def release(
        self,
        reservation: Reservation | None,
        tokens: Charge | None,
        money: Charge | None,
        now: float,
    ) -> None:
        if reservation is not None:
            await self.limits.release(reservation, now)
        if tokens is not None:
            await self.tokens.release(tokens)
        if money is not None:
            await self.money.release(money)


class LocalLimits:
    """:class:`RateLimiter` in this process (one gateway replica)."""

    def __init__(self) -> None:
        self.core = RateLimiter()

    async def reserve(
        self, subjects: Sequence[tuple[str, Limit]], tokens: int, now: float
    ) -> Reservation:
        return self.core.reserve(subjects, tokens, now)

    async def settle(self, reservation: Reservation, used_tokens: int, now: float) -> None:
        self.core.settle(reservation, used_tokens, now)

    async def release(self, reservation: Reservation, now: float) -> None:
        self.core.release(reservation, now)

    async def aclose(self) -> None:
        return None


class LocalBudgets:
    """:class:`Budgets` in this process (one gateway replica)."""

    def __init__(self, unit: str) -> None:
        self.unit = unit
        self.core = Budgets(unit)

    async def reserve(self, subjects: Sequence[tuple[str, float]], amount: float) -> Charge:
        return self.core.reserve(subjects, amount)

    async def settle(self, charge: Charge, actual: float) -> None:
        self.core.settle(charge, actual)

    async def release(self, charge: Charge) -> None:
        self.core.release(charge)

    async def seed(self, spent: Mapping[str, float]) -> None:
        self.core.seed(spent)

    async def aclose(self) -> None:
        return None


__all__ = [
    "BudgetBackend",
    "LedgerSink",
    "LimitBackend",
    "LocalBudgets",
    "LocalLimits",
    "SeparateAdmission",
    "SharedAdmission",
    "Store",
    "Team",
]
