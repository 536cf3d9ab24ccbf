"""Governance for one front door: the store, the directory sync, the backends, the ledger.

:func:`start_governance` builds everything ``governance`` in a spec asks for and returns a
running :class:`Governance`; the front door hands its :attr:`Governance.governor` to its
routing pipeline and closes it when it stops (the ledger flushes what it holds).

- The store (SQLite under the state directory by default, PostgreSQL by URL) is migrated
  to the newest schema, then read into the in-memory directory; a task re-reads it every
  ``sync_interval_s`` when its version moved (revocations reach every replica that fast).
- Limits and budgets live in this process, or in Redis (``governance.redis``) when several
  replicas share them; budgets start from what the ledger says was spent this period.
- The ledger writes ahead to ``<state_dir>/ledger/<instance>`` (one directory per front
  door instance: a restarted gateway replays its own log) and flushes to the store.
- Every sync keeps the directory (and in-process budgets' spending) in
  ``<state_dir>/directory.json`` (:mod:`~pilothouse.governance.directory_cache`): a start
  that cannot reach the store serves the keys it knew, and catches up when the store
  answers (migrations included), instead of not starting at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry

from pilothouse.clock import Clock, SystemClock
from pilothouse.config.governance import GovernanceSpec, JwtSpec
from pilothouse.errors import ConfigError, PilothouseError, StoreUnavailable, Unauthorized
from pilothouse.governance.directory import Directory
from pilothouse.governance.directory_cache import FILE as CACHE_FILE
from pilothouse.governance.directory_cache import CachedDirectory, DirectoryCache
from pilothouse.governance.governor import Governor, Wall, period_of, period_start
from pilothouse.governance.jwt import Claims, JwtVerifier, claims_from_envoy_payload, looks_like_jwt
from pilothouse.governance.ledger import Ledger
from pilothouse.governance.ledger_wal import LedgerInUse
from pilothouse.governance.metrics import GovernanceMetrics, LedgerCollector
from pilothouse.governance.ports import (
    BudgetBackend,
    LimitBackend,
    LocalBudgets,
    LocalLimits,
    SharedAdmission,
    Store,
)
from pilothouse.governance.records import BudgetPeriod, Snapshot
from pilothouse.governance.store import default_state_dir, open_store

log = logging.getLogger("pilothouse.governance")

_MAX_INSTANCES = 64
_REPLAY_TIMEOUT_S = 30.0
_PERIODS: tuple[BudgetPeriod, ...] = ("total", "month", "day")


@dataclass(slots=True)
class Governance:
    """A running governance stack (see the module docstring)."""

    governor: Governor
    store: Store
    ledger: Ledger
    state_dir: Path
    jwt: JwtIdentities | None = None
    cache: DirectoryCache | None = None
    snapshot: Snapshot | None = None
    """The directory's snapshot as last read (what the cache keeps)."""
    migrated: bool = True
    """False after a start without the store: the first sync migrates it."""
    _sync: asyncio.Task[None] | None = field(default=None)
    _kept: tuple[int, dict[str, float], dict[str, float]] | None = None

    async def sync_once(self) -> bool:
        """Re-read the store if it changed; True when the directory was replaced."""
        if not self.migrated:
            await asyncio.to_thread(self.store.migrate)
            self.migrated = True
        directory = self.governor.directory
        version = await asyncio.to_thread(self.store.version)
        changed = version != directory.version
        if changed:
            self.snapshot = await asyncio.to_thread(self.store.snapshot)
            directory.load(self.snapshot)
        await self.keep()
        return changed

    async def keep(self) -> None:
        """Write the directory cache when the directory moved, and the spending kept
        beside it when (in-process) spending moved: under load only the small file."""
        cache, snapshot = self.cache, self.snapshot
        if cache is None or snapshot is None:
            return
        tokens, money = _local_totals(self.governor)
        kept, at = self._kept, self.governor.wall()
        if kept is None or kept[0] != snapshot.version:
            await asyncio.to_thread(cache.save_directory, snapshot, at)
        if kept is None or kept[1] != tokens or kept[2] != money:
            await asyncio.to_thread(cache.save_spent, at, tokens, money)
        self._kept = (snapshot.version, tokens, money)

    async def _sync_forever(self, interval_s: float) -> None:
        failing = False
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.sync_once()
            except PilothouseError as exc:  # the store is down: keep the last snapshot
                if not failing:
                    log.warning("governance store unreachable, keeping known keys: %s", exc)
                failing = True
            else:
                if failing:
                    log.info("governance store reachable again")
                failing = False

    async def aclose(self) -> None:
        if self._sync is not None:
            self._sync.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sync
        if self.jwt is not None and self.jwt.verifier is not None:
            await self.jwt.verifier.stop()
        await self.ledger.aclose()
        await self.governor.limits.aclose()
        await self.governor.tokens.aclose()
        await self.governor.money.aclose()
        await asyncio.to_thread(self.store.close)


async def start_governance(
    spec: GovernanceSpec,
    instance: str,
    registry: CollectorRegistry | None = None,
    *,
    env: Mapping[str, str] | None = None,
    wall: Wall = time.time,
    store: Store | None = None,
) -> Governance:
    """Open, migrate and read the store, start the ledger and the directory sync.

    ``instance`` names this front door (``gateway-8000``): its ledger directory.
    """
    state_dir = spec.state_dir or default_state_dir(os.environ if env is None else env)
    given = store is not None
    if store is None:
        store = await asyncio.to_thread(open_store, spec, state_dir)
    cache = DirectoryCache(state_dir / CACHE_FILE, repr(store))
    cached: CachedDirectory | None = None
    try:
        if not given:
            await asyncio.to_thread(store.migrate)
        snapshot = await asyncio.to_thread(store.snapshot)
    except StoreUnavailable as exc:
        cached = await asyncio.to_thread(cache.load)
        if cached is None:
            raise StoreUnavailable(
                f"{exc}; and {cache.path} holds no directory of this store from an earlier "
                "start, so no key would be known: start once with the store reachable"
            ) from exc
        snapshot = cached.snapshot
        age = max(0.0, wall() - cached.at)
        log.warning(
            "governance store unreachable at start (%s): serving the keys known %.0f s ago "
            "(%s); usage waits in the ledger's log until the store answers",
            exc,
            age,
            cache.path,
        )
    directory = Directory(snapshot)
    limits, tokens, money, shared = _backends(spec)
    jwt = _jwt(spec, SystemClock())
    if jwt is not None and jwt.verifier is not None:
        await jwt.verifier.start()
    ledger = await _start_ledger(spec, state_dir / "ledger", instance, store)
    if cached is None:
        # What an earlier process left in its log is in the store before budgets are read.
        await ledger.flush(_REPLAY_TIMEOUT_S)
        await _seed(store, tokens, money, wall())
    else:  # what was spent by the last sync before the outage (in-process budgets)
        await tokens.seed(cached.tokens)
        await money.seed(cached.money)
    metrics = GovernanceMetrics(registry)
    metrics.registry.register(LedgerCollector(ledger.stats))
    governor = Governor(
        spec,
        directory,
        limits,
        tokens,
        money,
        ledger,
        metrics,
        jwt=jwt,
        wall=wall,
        shared=shared,
    )
    governance = Governance(
        governor,
        store,
        ledger,
        state_dir,
        jwt,
        cache=cache,
        snapshot=snapshot,
        migrated=given or cached is None,
    )
    if cached is None:
        await governance.keep()
    governance._sync = asyncio.get_running_loop().create_task(
        governance._sync_forever(spec.sync_interval_s)
    )
    return governance


async def _start_ledger(spec: GovernanceSpec, root: Path, instance: str, store: Store) -> Ledger:
    """The first ledger directory ``instance``, ``instance-1``, … no live process holds.

    Replicas on one port number (``port: 0``, or hosts sharing a state directory) each get
    their own; a restarted one takes the first free one, which is a crashed process's if
    one left its log behind, and replays it: no log is left orphaned.
    """
    for n in range(_MAX_INSTANCES):
        name = instance if n == 0 else f"{instance}-{n}"
        ledger = Ledger(root / name, store, spec.ledger)
        try:
            await ledger.start()
        except LedgerInUse:
            continue
        return ledger
    raise ConfigError(
        f"{_MAX_INSTANCES} front doors already use ledgers in {root}",
        path="governance.state_dir",
    )


def _backends(
    spec: GovernanceSpec,
) -> tuple[LimitBackend, BudgetBackend, BudgetBackend, SharedAdmission | None]:
    """The counters, and with Redis the call that reserves (and settles) all three at once."""
    if spec.redis is None:
        return LocalLimits(), LocalBudgets("tokens"), LocalBudgets(spec.budget_unit), None
    from pilothouse.governance import redis_backend as rb  # the 'stores' extra
    from pilothouse.governance.redis_admission import RedisAdmission

    client = rb.connect(spec.redis)
    limits = rb.RedisLimits(client, prefix=f"{rb.DEFAULT_PREFIX}limits:")
    tokens = rb.RedisBudgets(client, "tokens", prefix=f"{rb.DEFAULT_PREFIX}tokens:")
    money = rb.RedisBudgets(client, spec.budget_unit, prefix=f"{rb.DEFAULT_PREFIX}money:")
    return limits, tokens, money, RedisAdmission(limits, tokens, money)


def _local_totals(governor: Governor) -> tuple[dict[str, float], dict[str, float]]:
    """What in-process budgets say each subject spent (nothing when they live in Redis,
    which keeps them through a restart itself)."""
    tokens, money = governor.tokens, governor.money
    if isinstance(tokens, LocalBudgets) and isinstance(money, LocalBudgets):
        return tokens.core.totals(), money.core.totals()
    return {}, {}


async def _seed(store: Store, tokens: BudgetBackend, money: BudgetBackend, now: float) -> None:
    """Budgets start from what the ledger says each subject spent in its current period."""
    token_spent: dict[str, float] = {}
    money_spent: dict[str, float] = {}
    for period in _PERIODS:
        since = period_start(period, now)
        label = period_of(period, now)
        spent = await asyncio.to_thread(store.spent, since)
        for subject, (used_tokens, cost) in spent.items():
            token_spent[f"{subject}@{label}"] = used_tokens
            money_spent[f"{subject}@{label}"] = cost
    await tokens.seed(token_spent)
    await money.seed(money_spent)


class JwtIdentities:
    """The governor's :class:`JwtCheck`: bearer JWTs checked by a :class:`JwtVerifier`
    (when the spec names a JWKS), Envoy-verified payloads read as they are."""

    def __init__(self, spec: JwtSpec, verifier: JwtVerifier | None) -> None:
        self.spec = spec
        self.verifier = verifier

    def looks_like(self, token: str) -> bool:
        return self.verifier is not None and looks_like_jwt(token)

    def verify(self, token: str, now: float) -> Claims:
        if self.verifier is None:
            raise Unauthorized("JWT bearer tokens are not accepted here", code="invalid_api_key")
        return self.verifier.verify(token, now)

    def from_envoy(self, payload: str) -> Claims:
        return claims_from_envoy_payload(payload, self.spec)


def _jwt(spec: GovernanceSpec, clock: Clock) -> JwtIdentities | None:
    if spec.jwt is None:
        return None
    verifier = None
    if spec.jwt.jwks_file is not None or spec.jwt.jwks_url is not None:
        verifier = JwtVerifier(spec.jwt, clock)
    return JwtIdentities(spec.jwt, verifier)
