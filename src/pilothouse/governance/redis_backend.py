"""Rate limits and budgets shared by several gateway replicas through one Redis.

:class:`RedisLimits` and :class:`RedisBudgets` keep the semantics of the in-process
:class:`~pilothouse.governance.limits.RateLimiter` and
:class:`~pilothouse.governance.budgets.Budgets` (all or nothing across subjects, settle at
most once, release gives everything back) but hold the counters in Redis, so N replicas
admit together exactly what one would. Each reserve, settle or release is one Lua script
call (``redis_*.lua`` beside this module): Redis runs a script alone, so the check and the
hold across every subject are one atomic step whatever the number of replicas.

Choices, and why:

- **Time.** Limits read the caller's ``now`` only with ``time_source="caller"`` (tests, the
  simulator); by default they read the Redis server's ``TIME`` inside the script. The
  gateway's clock is monotonic, which means nothing to another process, let alone another
  host, and even wall clocks drift apart: one clock for every replica is the only one under
  which "the last minute" is the same minute everywhere. Budgets take no ``now`` and always
  use the server's ``TIME``.
- **Leaked holds.** A replica that dies between reserve and settle must not hold slots or
  money forever. Every in-flight slot and every budget reservation is a member of a sorted
  set scored by the end of its *lease* (``lease_s``, the longest a request may run); each
  reserve first drops members whose lease ended (and, for budgets, gives their amount
  back). A request that outlives its lease loses its slot early; its settle still charges
  what it spent. Per-second window buckets expire with their key after two windows;
  idle budget sums after ``idle_s`` (subjects carry their period, so a finished month ages
  out).
- **Retries are safe.** Reservation ids are 62-bit random numbers, and each hold is
  recorded under its id: a reserve retried after a lost reply holds nothing twice, a settle
  or release retried applies once.
- **Redis down.** Any Redis error becomes :class:`~pilothouse.errors.LimitStoreUnavailable`
  (503): by default a request is refused rather than served unchecked (fail closed). With
  ``fail_open=True`` a reserve that cannot reach Redis admits the request unheld (logged
  once per outage) and settle/release errors are logged, never raised.

Keys start with ``prefix`` (default ``pilothouse:``), so several fleets can share one
Redis. They are spread over many hash slots: Redis Cluster needs a prefix with a hash tag
(``{fleet-a}:``) so that one script's keys share a slot.
"""

from __future__ import annotations

import logging
import math
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from importlib.resources import files
from typing import Any, Literal

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from pilothouse.errors import BudgetExceeded, LimitStoreUnavailable, RateLimited
from pilothouse.governance.budgets import Charge
from pilothouse.governance.limits import WINDOW_S, Limit, Reservation

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "pilothouse:"
DEFAULT_LEASE_S = 600.0
DEFAULT_IDLE_S = 62 * 86_400.0  # two monthly periods
UNHELD = -1
"""The id of a reservation admitted while Redis was out of reach (``fail_open``)."""

_WHAT = {1: "concurrent requests", 2: "requests per minute", 3: "tokens per minute"}
TimeSource = Literal["redis", "caller"]


def lua_source(name: str) -> str:
    """The text of ``redis_<name>.lua`` beside this module."""
    return files("pilothouse.governance").joinpath(f"redis_{name}.lua").read_text()


def _script(client: aioredis.Redis, name: str) -> Any:
    return client.register_script(lua_source(name))


def _num(value: float) -> str:
    return repr(float(value))


class RedisGuard:
    """Turns Redis errors into :class:`LimitStoreUnavailable` and applies ``fail_open``."""

    def __init__(self, fail_open: bool) -> None:
        self.fail_open = fail_open
        self._down = False

    async def call(self, action: Callable[[], Awaitable[Any]]) -> Any:
        try:
            result = await action()
        except RedisError as exc:
            if not self._down:
                log.warning("redis for limits and budgets is out of reach: %s", exc)
            self._down = True
            raise LimitStoreUnavailable(f"limit store out of reach: {exc}") from exc
        if self._down:
            log.warning("redis for limits and budgets answers again")
        self._down = False
        return result

    async def quiet(self, action: Callable[[], Awaitable[Any]]) -> None:
        """Settle and release: raise only when failing closed."""
        try:
            await self.call(action)
        except LimitStoreUnavailable:
            if not self.fail_open:
                raise


class RedisLimits:
    """:class:`~pilothouse.governance.ports.LimitBackend` held in Redis (module docstring)."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        lease_s: float = DEFAULT_LEASE_S,
        time_source: TimeSource = "redis",
        fail_open: bool = False,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._lease_ms = math.ceil(lease_s * 1000)
        self._caller_time = time_source == "caller"
        self._guard = RedisGuard(fail_open)
        self._reserve = _script(client, "limits_reserve")
        self._settle = _script(client, "limits_settle")

    async def reserve(
        self, subjects: Sequence[tuple[str, Limit]], tokens: int, now: float
    ) -> Reservation:
        """Hold one request of ``tokens`` on every subject, or raise :class:`RateLimited`
        naming the first limit it would exceed (nothing is held then). The reservation's
        ``at`` is the second it was counted in: the Redis server's time unless
        ``time_source="caller"`` (then ``now``, which is otherwise ignored)."""
        rid, keys, args = self.reserve_call(subjects, tokens, now)
        try:
            answer = await self._guard.call(lambda: self._reserve(keys=keys, args=args))
        except LimitStoreUnavailable:
            if not self._guard.fail_open:
                raise
            return Reservation(UNHELD, tuple(s for s, _ in subjects), tokens, now)
        return reservation_of(subjects, tokens, rid, answer)

    def reserve_call(
        self, subjects: Sequence[tuple[str, Limit]], tokens: int, now: float
    ) -> tuple[int, list[str], list[str | int]]:
        """A reservation's id, and the keys and arguments of its script call."""
        rid = secrets.randbits(62)
        args: list[str | int] = [rid, tokens, self._lease_ms, WINDOW_S, self._now(now)]
        for _, limit in subjects:
            args += [_cap(limit.requests_per_min), _cap(limit.tokens_per_min)]
            args.append(_cap(limit.concurrent))
        keys = [self._key("held", str(rid)), *self._subject_keys(s for s, _ in subjects)]
        return rid, keys, args

    def finish_call(
        self, res: Reservation, used_tokens: int | None, now: float
    ) -> tuple[list[str], list[str | int]]:
        """The keys and arguments of the settle script for ``res``: having used
        ``used_tokens``, or released (``None``: its request and tokens come back)."""
        if used_tokens is None:
            tokens, requests = -res.tokens, -1
        else:
            tokens, requests = used_tokens - res.tokens, 0
        keys = [self._key("held", str(res.id)), *self._subject_keys(res.subjects)]
        return keys, [res.id, _num(res.at), tokens, requests, WINDOW_S, self._now(now)]

    async def settle(self, reservation: Reservation, used_tokens: int, now: float) -> None:
        """The request ended having used ``used_tokens``: correct the count, free its slot."""
        await self._finish(reservation, used_tokens, now)

    async def release(self, reservation: Reservation, now: float) -> None:
        """The request did no engine work: give back its request, tokens and slot."""
        await self._finish(reservation, None, now)

    async def usage(self, subject: str, now: float) -> tuple[int, int, int]:
        """Requests and tokens in the last minute, and requests in flight, of ``subject``
        (read-only; for tests and dashboards)."""
        window_key, flight_key = self._subject_keys([subject])
        at = now if self._caller_time else await self._server_time()
        horizon = math.floor(at) - WINDOW_S

        async def read() -> tuple[dict[bytes, bytes], int]:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.hgetall(window_key)
                pipe.zcount(flight_key, f"({at!r}", "+inf")
                fields, in_flight = await pipe.execute()
            return fields, int(in_flight)

        fields, in_flight = await self._guard.call(read)
        totals = {b"r": 0, b"t": 0}
        for field, value in fields.items():
            if int(field[1:]) > horizon:
                totals[field[:1]] += int(value)
        return totals[b"r"], totals[b"t"], in_flight

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _finish(self, res: Reservation, used_tokens: int | None, now: float) -> None:
        if res.id == UNHELD:
            return
        keys, args = self.finish_call(res, used_tokens, now)
        await self._guard.quiet(lambda: self._settle(keys=keys, args=args))

    @property
    def client(self) -> aioredis.Redis:
        return self._client

    @property
    def fail_open(self) -> bool:
        return self._guard.fail_open

    def _now(self, now: float) -> str:
        return _num(now) if self._caller_time else ""

    async def _server_time(self) -> float:
        seconds, micros = await self._guard.call(self._client.time)
        return float(seconds) + float(micros) / 1_000_000

    def _key(self, *parts: str) -> str:
        return self._prefix + "limit:" + ":".join(parts)

    def _subject_keys(self, subjects: Iterable[str]) -> list[str]:
        return [k for s in subjects for k in (self._key("window", s), self._key("inflight", s))]


class RedisBudgets:
    """:class:`~pilothouse.governance.ports.BudgetBackend` held in Redis (module docstring)."""

    def __init__(
        self,
        client: aioredis.Redis,
        unit: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        lease_s: float = DEFAULT_LEASE_S,
        idle_s: float = DEFAULT_IDLE_S,
        fail_open: bool = False,
    ) -> None:
        self.unit = unit
        self._client = client
        self._prefix = prefix
        self._lease_ms = math.ceil(lease_s * 1000)
        self._idle_ms = math.ceil(idle_s * 1000)
        self._guard = RedisGuard(fail_open)
        self._reserve = _script(client, "budgets_reserve")
        self._settle = _script(client, "budgets_settle")
        self._seed = _script(client, "budgets_seed")

    async def reserve(self, subjects: Sequence[tuple[str, float]], amount: float) -> Charge:
        """Hold ``amount`` on every ``(subject, limit)``, or raise :class:`BudgetExceeded`
        for the first one it would overrun (nothing is held then)."""
        amount = float(amount)
        cid, keys, args = self.reserve_call(subjects, amount)
        try:
            answer = await self._guard.call(lambda: self._reserve(keys=keys, args=args))
        except LimitStoreUnavailable:
            if not self._guard.fail_open:
                raise
            return Charge(UNHELD, tuple(s for s, _ in subjects), amount)
        return self.charge_of(subjects, amount, cid, answer)

    def reserve_call(
        self, subjects: Sequence[tuple[str, float]], amount: float
    ) -> tuple[int, list[str], list[str | int]]:
        """A charge's id, and the keys and arguments of its script call."""
        cid = secrets.randbits(62)
        keys = [self._key("held", str(cid)), *self._subject_keys(s for s, _ in subjects)]
        args: list[str | int] = [cid, _num(amount), self._lease_ms, self._idle_ms]
        args += [_num(limit) for _, limit in subjects]
        return cid, keys, args

    def charge_of(
        self, subjects: Sequence[tuple[str, float]], amount: float, cid: int, answer: Any
    ) -> Charge:
        """The charge a reserve script's ``answer`` grants, or :class:`BudgetExceeded`."""
        if int(answer[0]) == 0:
            subject = subjects[int(answer[1]) - 1][0]
            raise BudgetExceeded(subject, max(0.0, float(answer[2])), amount, self.unit)
        return Charge(cid, tuple(s for s, _ in subjects), amount)

    def settle_call(self, charge: Charge, actual: float) -> tuple[list[str], list[str | int]]:
        spent = min(max(0.0, float(actual)), charge.amount)
        keys = [self._key("held", str(charge.id)), *self._subject_keys(charge.subjects)]
        return keys, [charge.id, _num(charge.amount), _num(spent), self._idle_ms]

    async def settle(self, charge: Charge, actual: float) -> None:
        """Charge what the request cost (at most what was reserved) and free the rest."""
        if charge.id == UNHELD:
            return
        keys, args = self.settle_call(charge, actual)
        await self._guard.quiet(lambda: self._settle(keys=keys, args=args))

    async def release(self, charge: Charge) -> None:
        """The request did no engine work: nothing is charged."""
        await self.settle(charge, 0.0)

    async def seed(self, spent: Mapping[str, float]) -> None:
        """Start subjects not seen yet from what they already spent (read from the ledger
        after a restart); a subject already counting keeps its own figure."""
        if not spent:
            return
        keys = [self._key("sums", s) for s in spent]
        args = [self._idle_ms, *(_num(v) for v in spent.values())]
        await self._guard.call(lambda: self._seed(keys=keys, args=args))

    async def spent(self, subject: str) -> float:
        return (await self._sums(subject))[0]

    async def committed(self, subject: str) -> float:
        """Spent plus reserved by requests still running (leases not yet swept included)."""
        spent, reserved = await self._sums(subject)
        return spent + reserved

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _sums(self, subject: str) -> tuple[float, float]:
        key = self._key("sums", subject)
        values = await self._guard.call(lambda: self._client.hmget(key, ["spent", "reserved"]))
        return float(values[0] or 0.0), float(values[1] or 0.0)

    @property
    def client(self) -> aioredis.Redis:
        return self._client

    def _key(self, *parts: str) -> str:
        return self._prefix + "budget:" + ":".join(parts)

    def _subject_keys(self, subjects: Iterable[str]) -> list[str]:
        return [k for s in subjects for k in (self._key("sums", s), self._key("open", s))]


def reservation_of(
    subjects: Sequence[tuple[str, Limit]], tokens: int, rid: int, answer: Any
) -> Reservation:
    """The reservation a limits reserve script's ``answer`` grants, or :class:`RateLimited`."""
    if int(answer[0]) == 0:
        subject, limit = subjects[int(answer[1]) - 1]
        what = int(answer[2])
        if what == 1:
            raise RateLimited(subject, _WHAT[1], limit.concurrent or 0, retry_after=1.0)
        value = limit.requests_per_min if what == 2 else limit.tokens_per_min
        raise RateLimited(subject, _WHAT[what], value or 0)
    return Reservation(rid, tuple(s for s, _ in subjects), tokens, float(answer[1]))


def _cap(value: int | None) -> int:
    return -1 if value is None else value


def connect(
    url: str, *, timeout_s: float = 1.0, max_connections: int = 128, pool_wait_s: float = 10.0
) -> aioredis.Redis:
    """A client for ``url`` (``redis://host:port/db``) fit for the request path.

    hiredis parses replies when installed. At most ``max_connections`` sockets: a burst of
    requests waits up to ``pool_wait_s`` for one rather than opening a socket each (a busy
    pool is not an outage: only a socket that fails within ``timeout_s`` is). One
    immediate retry, no backoff: a pooled connection gone stale (Redis restarted) is
    replaced transparently, but an outage answers within about ``timeout_s`` instead of
    after redis-py's default ten backed-off retries.
    """
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=pool_wait_s,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), retries=1),
    )
    return aioredis.Redis.from_pool(pool)


def redis_backends(
    url: str,
    unit: str,
    *,
    prefix: str = DEFAULT_PREFIX,
    lease_s: float = DEFAULT_LEASE_S,
    timeout_s: float = 1.0,
    fail_open: bool = False,
) -> tuple[RedisLimits, RedisBudgets]:
    """Limits and budgets on the Redis at ``url``, sharing one client (:func:`connect`).

    Closing either backend closes the client; closing both is harmless.
    """
    client = connect(url, timeout_s=timeout_s)
    limits = RedisLimits(client, prefix=prefix, lease_s=lease_s, fail_open=fail_open)
    budgets = RedisBudgets(client, unit, prefix=prefix, lease_s=lease_s, fail_open=fail_open)
    return limits, budgets
