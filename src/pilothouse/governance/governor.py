"""Identity → scope → limits → budgets before a request; usage → ledger after it.

The :class:`Governor` is what both front doors (the gateway, the endpoint picker) call
through the routing pipeline::

    identity = governor.authenticate(credentials)         # 401 / 403, synchronous
    grant = await governor.admit(identity, ask)           # 403 / 429, before any engine work
    ...                                                   # the request is routed and served
    await governor.settle(grant, used)                    # charged once, written to the ledger
    # or: await governor.release(grant)                   # it never reached an engine

Admission reserves on every subject at once (key, team, organisation and model for limits;
key, team and organisation for budgets) the most the request can cost: its prompt (an upper
bound: one token per byte, plus the chat template) and its ``max_tokens`` of output, priced
at the model's rates, plus ``max_request_s`` of engine time for models priced by GPU-hour.
Settling charges what it really used (never more than was reserved) and frees the rest.

Identity feeds scheduling: the request's tenant (the flow-control fairness id) becomes its
team, and its priority is capped by the key's and the team's ``max_priority``, so under
overload the noisy tenant waits (and is shed) first, whatever headers it sends.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Coroutine
from hashlib import sha256
from itertools import count

from pilothouse.config.governance import GovernanceSpec
from pilothouse.errors import BudgetExceeded, Forbidden, RateLimited, Unauthorized
from pilothouse.governance.budgets import Budgets
from pilothouse.governance.directory import Directory
from pilothouse.governance.jwt import Claims
from pilothouse.governance.keys import KeyScope, authorize, digest
from pilothouse.governance.limits import Limit, RateLimiter
from pilothouse.governance.metrics import GovernanceMetrics
from pilothouse.governance.plans import AdmissionPlan, Plans
from pilothouse.governance.ports import (
    BudgetBackend,
    LimitBackend,
    LocalBudgets,
    LocalLimits,
    SeparateAdmission,
    SharedAdmission,
)
from pilothouse.governance.pricing import cost_of, period_of, period_start
from pilothouse.governance.records import LedgerEntry
from pilothouse.governance.requests import (
    ANONYMOUS,
    Ask,
    Credentials,
    Grant,
    Identity,
    JwtCheck,
    Recorder,
    Used,
)

log = logging.getLogger("pilothouse.governance")

Wall = Callable[[], float]
KEY_PREFIX = "ph-"
_MAX_CACHED = 100_000
"""Identities and plans kept per directory version at most (beyond, worked out each time)."""
_TEMPLATE_TOKENS = 16
"""Tokens a chat template may add around the prompt (role markers, BOS): part of the bound."""
_Cores = tuple[RateLimiter, Budgets, Budgets]


class Governor:
    """See the module docstring. Built by :func:`pilothouse.governance.service.start`."""

    def __init__(
        self,
        spec: GovernanceSpec,
        directory: Directory,
        limits: LimitBackend,
        tokens: BudgetBackend,
        money: BudgetBackend,
        recorder: Recorder | None,
        metrics: GovernanceMetrics,
        *,
        jwt: JwtCheck | None = None,
        wall: Wall = time.time,
        shared: SharedAdmission | None = None,
    ) -> None:
        """``shared``: the three backends' counters reserved and settled in one call each
        (they live in one shared store); without it, one call per backend
        (:class:`SeparateAdmission`)."""
        self.spec = spec
        self.directory = directory
        self.limits = limits
        self.tokens = tokens
        self.money = money
        self.recorder = recorder
        self.metrics = metrics
        self.jwt = jwt
        self.wall = wall
        self.admission: SharedAdmission = shared or SeparateAdmission(limits, tokens, money)
        """Reserves, settles and releases through the backends' (async) calls: every hold
        of a shared store, and the give-backs of in-process ones."""
        self.enforce = spec.mode == "enforce"
        model_limits = {
            name: Limit(m.requests_per_min, m.tokens_per_min, m.concurrent)
            for name, m in spec.model_limits.items()
        }
        # What a key's requests need again and again, worked out once per directory version
        # (a revocation or a quota change empties them): its identity by digest, and per
        # model its admission plan (limit and budget subjects, price, owners, counts).
        self._version = directory.version
        self._identities: dict[str, Identity] = {}
        self._plans = Plans(model_limits, spec.prices, metrics, _MAX_CACHED)
        self._cores = _cores_of(limits, tokens, money)
        # Ledger entry ids: unique across processes (64 random bits), increasing within
        # one (the store's key index is appended to, not written at random places).
        self._entry_prefix = os.urandom(8).hex()
        self._entry_ids = count()

    # -- who ------------------------------------------------------------------------------

    def authenticate(self, credentials: Credentials) -> Identity:
        """The request's identity; :class:`Unauthorized` (401) for a missing, unknown,
        revoked or expired key or token."""
        bearer = credentials.bearer
        if bearer and credentials.envoy_payload is None and bearer.startswith(KEY_PREFIX):
            # The common case first: a known API key is one hash and one lookup.
            if self.directory.version != self._version:
                self._forget()
            identity = self._identities.get(sha256(bearer.encode()).hexdigest())  # digest()
            if identity is not None:
                return identity
        try:
            identity = self._identify(credentials)
        except Unauthorized:
            self.metrics.refused("", "", "unauthorized")
            raise
        return identity

    def _identify(self, credentials: Credentials) -> Identity:
        if credentials.envoy_payload is not None and self.jwt is not None:
            return self._team_identity(self.jwt.from_envoy(credentials.envoy_payload))
        bearer = credentials.bearer
        if not bearer:
            if self.spec.require_key:
                raise Unauthorized(
                    "missing API key: send 'Authorization: Bearer <key>'", code="invalid_api_key"
                )
            return ANONYMOUS
        if bearer.startswith(KEY_PREFIX):
            return self._key_identity(digest(bearer))
        if self.jwt is not None and self.jwt.looks_like(bearer):
            return self._team_identity(self.jwt.verify(bearer, self.wall()))
        raise Unauthorized("invalid API key", code="invalid_api_key")

    def _key_identity(self, key_digest: str) -> Identity:
        self._follow_directory()
        identity = self._identities.get(key_digest)
        if identity is not None:
            return identity
        record = self.directory.key(key_digest)
        if record is None:
            raise Unauthorized("invalid or revoked API key", code="invalid_api_key")
        team = self.directory.team(record.team_id)
        org = self.directory.org(team.org_id) if team is not None else None
        identity = Identity(record.id, record, team, org, record.scope)
        if len(self._identities) < _MAX_CACHED:
            self._identities[key_digest] = identity
        return identity

    def _follow_directory(self) -> None:
        if self.directory.version != self._version:
            self._forget()

    def _forget(self) -> None:
        """Forget what was worked out from an older directory (a key revoked, a quota
        changed): the next request reads the new one."""
        self._version = self.directory.version
        self._identities.clear()
        self._plans.clear()

    def _team_identity(self, claims: Claims) -> Identity:
        team = self.directory.team_named(claims.team) if claims.team else None
        if team is None:
            raise Unauthorized(
                "the token names no known team" + (f" ('{claims.team}')" if claims.team else ""),
                code="invalid_api_key",
            )
        org = self.directory.org(team.org_id)
        scope = KeyScope(expires_at=claims.expires_at)
        return Identity(f"jwt:{claims.subject}", None, team, org, scope, claims.priority)

    # -- before ---------------------------------------------------------------------------

    async def admit(self, identity: Identity, ask: Ask, client: str | None = None) -> Grant:
        """Check scope, then reserve limits and budgets (all or nothing), or raise."""
        now = self.wall()
        if self.directory.version != self._version:
            self._forget()
        plan = self._plans.get(identity, ask.model, now)
        wanted = ask.priority
        if identity.priority is not None:
            wanted = identity.priority
        elif wanted == 0:
            wanted = plan.default_priority
        expires_at = identity.scope.expires_at
        if plan.open_scope and (expires_at is None or now < expires_at):
            # A key's scope that lets this model in from anywhere: only its priority cap
            # applies (the same outcome as authorize(), without its checks per request).
            cap = plan.max_priority
            priority = wanted if cap is None or wanted <= cap else cap
        else:
            try:
                priority = self._priority(identity, ask, wanted, client, now)
            except (Unauthorized, Forbidden) as exc:
                self.metrics.refused(identity.team_name, ask.model, "forbidden")
                if self.enforce or isinstance(exc, Unauthorized):
                    raise
                priority = ask.priority
        reserved = ask.prompt_bytes + _TEMPLATE_TOKENS * ask.messages + ask.max_tokens
        grant = Grant(identity, ask, priority, reserved, None, None, None, now, plan=plan)
        cores = self._cores
        try:
            if cores is not None:  # synchronous: atomic on this event loop
                limits, tokens, money = cores
                if plan.limits:
                    grant.reservation = limits.reserve(plan.limits, reserved, now)
                if plan.token_budgets:
                    grant.tokens = tokens.reserve(plan.token_budgets, float(reserved))
                if plan.money_budgets:
                    cost = _maxcost_of(plan, ask, reserved)
                    grant.money = money.reserve(plan.money_budgets, cost)
            else:
                await self._reserve_shared(grant, plan, now)
        except (RateLimited, BudgetExceeded) as exc:
            await self.admission.release(grant.reservation, grant.tokens, grant.money, now)
            reason = "rate_limited" if isinstance(exc, RateLimited) else "over_budget"
            self.metrics.refused(identity.team_name, ask.model, reason)
            if self.enforce:
                raise
            grant = Grant(identity, ask, priority, reserved, None, None, None, now, plan=plan)
        plan.counts.admitted += 1
        return grant

    async def _reserve_shared(self, grant: Grant, plan: AdmissionPlan, now: float) -> None:
        reserved = grant.reserved_tokens
        cost = _maxcost_of(plan, grant.ask, reserved) if plan.money_budgets else 0.0
        grant.reservation, grant.tokens, grant.money = await self.admission.reserve(
            plan.limits, reserved, plan.token_budgets, plan.money_budgets, cost, now
        )

    def _priority(
        self, identity: Identity, ask: Ask, wanted: int, client: str | None, now: float
    ) -> int:
        priority = authorize(identity.scope, ask.model, wanted, client or "", now)
        if identity.team is not None and identity.team.max_priority is not None:
            priority = min(priority, identity.team.max_priority)
        return priority

    # -- after ----------------------------------------------------------------------------

    def charge(
        self, grant: Grant, used: Used, measured_s: float = 0.0
    ) -> Coroutine[None, None, None] | None:
        """Charge what the request used, once: its ledger entry is written now
        (synchronously: a front door calls this before the answer's last bytes go out).
        In-process counters are settled here too; with a shared store (Redis) the returned
        coroutine settles them (the caller runs it soon). ``measured_s``: the engine time
        the caller measured, charged when ``used`` brings none."""
        if grant.done:
            return None
        grant.done = True
        ask, plan = grant.ask, grant.plan
        assert plan is not None  # every grant admit() made has its plan
        engine_s = used.engine_s if used.engine_s is not None else measured_s
        price = plan.price
        cost = 0.0
        if price is not None:
            cost = cost_of(price, used.prompt_tokens, used.completion_tokens, engine_s)
        if grant.money is not None:
            cost = min(cost, grant.money.amount)  # what was reserved is the most it can cost
        entry = LedgerEntry(
            ask.request_id,
            grant.started,
            ask.model,
            used.prompt_tokens,
            used.completion_tokens,
            cost,
            engine_s,
            used.status,
            plan.key_id,
            plan.team_id,
            plan.org_id,
            f"{self._entry_prefix}{next(self._entry_ids):012x}",
        )
        if self.recorder is not None:
            try:
                self.recorder.record(entry)
            except OSError as exc:  # a full or failing disk: serve, and say so loudly
                self.metrics.ledger_failed()
                log.error("the ledger could not record request %s: %s", ask.request_id, exc)
        counts = plan.counts
        counts.prompt += used.prompt_tokens
        counts.completion += used.completion_tokens
        counts.cost += cost
        if grant.reservation is None and grant.tokens is None and grant.money is None:
            return None
        tokens = used.prompt_tokens + used.completion_tokens
        cores = self._cores
        if cores is None:
            return self.admission.settle(
                grant.reservation, grant.tokens, grant.money, tokens, cost, self.wall()
            )
        limits, budgets, money = cores
        if grant.reservation is not None:
            limits.settle(grant.reservation, tokens, self.wall())
        if grant.tokens is not None:
            budgets.settle(grant.tokens, float(tokens))
        if grant.money is not None:
            money.settle(grant.money, cost)
        return None

    def release(self, grant: Grant) -> Coroutine[None, None, None] | None:
        """The request never reached an engine (or failed there before any output): give
        every hold back, charge nothing. Returns the coroutine that does it, if any."""
        if grant.done:
            return None
        grant.done = True
        if grant.reservation is None and grant.tokens is None and grant.money is None:
            return None
        return self.admission.release(grant.reservation, grant.tokens, grant.money, self.wall())


def _cores_of(limits: LimitBackend, tokens: BudgetBackend, money: BudgetBackend) -> _Cores | None:
    """The counters themselves when every one lives in this process: their calls are
    synchronous, so a coroutine per backend call (what a shared store needs) is pure cost.
    ``None`` when a backend is remote (Redis)."""
    if (
        isinstance(limits, LocalLimits)
        and isinstance(tokens, LocalBudgets)
        and isinstance(money, LocalBudgets)
    ):
        return limits.core, tokens.core, money.core
    return None


def _maxcost_of(plan: AdmissionPlan, ask: Ask, reserved: int) -> float:
    """The most ``ask`` can cost: its token bound at the model's price, plus its longest
    engine time for a model priced by GPU-hour (:func:`cost_of`, term for term)."""
    price = plan.price
    if price is None:
        return 0.0
    prompt, completion = reserved - ask.max_tokens, ask.max_tokens
    per_token = (
        prompt * price.prompt_per_million + completion * price.completion_per_million
    ) / 1_000_000
    return per_token + plan.max_engine_cost


__all__ = [
    "ANONYMOUS",
    "Ask",
    "Credentials",
    "Governor",
    "Grant",
    "Identity",
    "JwtCheck",
    "Recorder",
    "Used",
    "Wall",
    "period_of",
    "period_start",
]
