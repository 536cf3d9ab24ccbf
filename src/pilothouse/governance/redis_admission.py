"""A request's rate limits, token budgets and money budgets in Redis: one call to hold them
all, one to settle them (:class:`RedisAdmission`).

:class:`~pilothouse.governance.redis_backend.RedisLimits` and
:class:`~pilothouse.governance.redis_backend.RedisBudgets` each make one script call per
reserve and per settle: three round trips each way for a request with limits, token budgets
and money budgets. Here their scripts are composed (as local Lua functions, each with its own
``KEYS`` and ``ARGV``: one source of truth for what a reserve or settle does) into
``redis_admit.lua`` and ``redis_settle_all.lua`` over the argument layout of
``redis_parts.lua``. Same keys, same semantics, one round trip each way, and all or nothing
inside Redis: a money budget that refuses gives back the rate-limit slot and the token hold in
the same atomic call.

Not a pipeline of three ``EVALSHA``: redis-py checks ``SCRIPT EXISTS`` before every
pipeline that carries scripts, one more round trip. One call's keys must live on one node (a
single Redis or a replicated primary; not Redis Cluster).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from pilothouse.errors import LimitStoreUnavailable
from pilothouse.governance.budgets import Charge
from pilothouse.governance.limits import Limit, Reservation
from pilothouse.governance.redis_backend import (
    UNHELD,
    RedisBudgets,
    RedisGuard,
    RedisLimits,
    lua_source,
    reservation_of,
)

_Call = tuple[list[str], list[str | int]]
"""The keys and arguments of one backend's script call."""


def _composed(client: aioredis.Redis, name: str) -> Any:
    """Script ``name`` over ``redis_parts.lua``, the single-backend scripts as functions."""
    functions = [
        f"local function {part}(KEYS, ARGV)\n{lua_source(part)}\nend\n"
        for part in ("limits_reserve", "limits_settle", "budgets_reserve", "budgets_settle")
    ]
    return client.register_script("".join([*functions, lua_source("parts"), lua_source(name)]))


class RedisAdmission:
    """:class:`~pilothouse.governance.ports.SharedAdmission` in Redis (module docstring).
    The three backends must share one client."""

    def __init__(self, limits: RedisLimits, tokens: RedisBudgets, money: RedisBudgets) -> None:
        client = limits.client
        if tokens.client is not client or money.client is not client:
            raise ValueError("RedisAdmission needs backends that share one Redis client")
        self._limits, self._tokens, self._money = limits, tokens, money
        self._guard = RedisGuard(limits.fail_open)
        self._admit = _composed(client, "admit")
        self._settle_all = _composed(client, "settle_all")

    async def reserve(
        self,
        limits: Sequence[tuple[str, Limit]],
        tokens: int,
        token_budgets: Sequence[tuple[str, float]],
        money_budgets: Sequence[tuple[str, float]],
        cost: float,
        now: float,
    ) -> tuple[Reservation | None, Charge | None, Charge | None]:
        """Hold ``tokens`` on the rate limits and the token budgets and ``cost`` on the money
        budgets (a part without subjects is skipped: ``None``), or raise the refusal of the
        first part that refuses (:class:`RateLimited`, :class:`BudgetExceeded`)."""
        amount = float(tokens)
        limit_call = self._limits.reserve_call(limits, tokens, now) if limits else None
        token_call = self._tokens.reserve_call(token_budgets, amount) if token_budgets else None
        money_call = self._money.reserve_call(money_budgets, cost) if money_budgets else None
        keys, args = _layout([c and (c[1], c[2]) for c in (limit_call, token_call, money_call)])
        try:
            answer = await self._guard.call(lambda: self._admit(keys=keys, args=args))
        except LimitStoreUnavailable:
            if not self._guard.fail_open:
                raise
            return (
                Reservation(UNHELD, _names(limits), tokens, now) if limits else None,
                Charge(UNHELD, _names(token_budgets), amount) if token_budgets else None,
                Charge(UNHELD, _names(money_budgets), cost) if money_budgets else None,
            )
        if int(answer[0]) == 0:
            # The refusing part's own answer raises as that backend alone would.
            part, refusal = int(answer[1]), [0, *answer[2:]]
            if part == 1:
                reservation_of(limits, tokens, 0, refusal)
            if part == 2:
                self._tokens.charge_of(token_budgets, amount, 0, refusal)
            self._money.charge_of(money_budgets, cost, 0, refusal)
        at = float(answer[1]) if limit_call else now
        return (
            Reservation(limit_call[0], _names(limits), tokens, at) if limit_call else None,
            Charge(token_call[0], _names(token_budgets), amount) if token_call else None,
            Charge(money_call[0], _names(money_budgets), cost) if money_call else None,
        )

    async def settle(
        self,
        reservation: Reservation | None,
        tokens: Charge | None,
        money: Charge | None,
        used_tokens: int,
        cost: float,
        now: float,
    ) -> None:
        """The request ended having used ``used_tokens`` costing ``cost``: correct the
        windows, free the slot, charge the budgets (at most what each reserved)."""
        await self._finish(reservation, tokens, money, now, used_tokens, cost)

    async def release(
        self,
        reservation: Reservation | None,
        tokens: Charge | None,
        money: Charge | None,
        now: float,
    ) -> None:
        """The request did no engine work: give back its request, tokens, slot and money."""
        await self._finish(reservation, tokens, money, now, None, 0.0)

    async def _finish(
        self,
        reservation: Reservation | None,
        tokens: Charge | None,
        money: Charge | None,
        now: float,
        used_tokens: int | None,
        cost: float,
    ) -> None:
        calls: list[_Call | None] = [None, None, None]
        if reservation is not None and reservation.id != UNHELD:
            calls[0] = self._limits.finish_call(reservation, used_tokens, now)
        if tokens is not None and tokens.id != UNHELD:
            calls[1] = self._tokens.settle_call(tokens, float(used_tokens or 0))
        if money is not None and money.id != UNHELD:
            calls[2] = self._money.settle_call(money, cost)
        if calls == [None, None, None]:
            return
        keys, args = _layout(calls)
        await self._guard.quiet(lambda: self._settle_all(keys=keys, args=args))


def _names(subjects: Sequence[tuple[str, object]]) -> tuple[str, ...]:
    return tuple(s for s, _ in subjects)


def _layout(calls: Sequence[_Call | None]) -> _Call:
    """The keys and arguments of a composed call (``redis_parts.lua``) of up to three parts."""
    keys: list[str] = []
    body: list[str | int] = []
    counts = [(len(c[0]), len(c[1])) if c is not None else (0, 0) for c in calls]
    head: list[str | int] = [*(k for k, _ in counts), *(a for _, a in counts)]
    for call in calls:
        if call is not None:
            keys += call[0]
            body += call[1]
    return keys, [*head, *body]
