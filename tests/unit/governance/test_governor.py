"""The governor: identity → scope → limits → budgets before; charge and ledger after."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest

from pilothouse.config.governance import GovernanceSpec, LimitSpec, PriceSpec
from pilothouse.errors import BudgetExceeded, Forbidden, RateLimited, Unauthorized
from pilothouse.governance.directory import Directory
from pilothouse.governance.governor import (
    Ask,
    Credentials,
    Governor,
    Used,
    period_of,
)
from pilothouse.governance.jwt import Claims
from pilothouse.governance.keys import KeyScope, new_key
from pilothouse.governance.limits import Limit
from pilothouse.governance.metrics import GovernanceMetrics
from pilothouse.governance.ports import LocalBudgets, LocalLimits
from pilothouse.governance.records import (
    KeyRecord,
    LedgerEntry,
    Organisation,
    Quota,
    Snapshot,
    Team,
)

NOW = 1_800_000_000.0  # 2027-01-15


class Ledger:
    def __init__(self) -> None:
        self.entries: list[LedgerEntry] = []

    def record(self, entry: LedgerEntry) -> None:
        self.entries.append(entry)


class Jwt:
    def looks_like(self, token: str) -> bool:
        return token.count(".") == 2

    def verify(self, token: str, now: float) -> Claims:
        if token != "a.b.c":
            raise Unauthorized("bad token")
        return Claims("alice", "research", 5, None, {})

    def from_envoy(self, payload: str) -> Claims:
        return Claims("bob", payload, None, None, {})


def _key(team: Team, quota: Quota | None = None, scope: KeyScope | None = None):
    plaintext, stored = new_key("k", scope)
    record = KeyRecord(
        id=f"key_{len(plaintext)}{plaintext[-4:]}",
        digest=stored.digest,
        shown=stored.shown,
        name="k",
        team_id=team.id,
        scope=stored.scope,
        quota=quota or Quota(),
    )
    return plaintext, record


def _setup(
    team_quota: Quota | None = None,
    key_quota: Quota | None = None,
    scope: KeyScope | None = None,
    **spec: object,
):
    org = Organisation("org_1", "acme")
    team = Team("team_1", "research", "org_1", team_quota or Quota(), max_priority=7)
    plaintext, record = _key(team, key_quota, scope)
    directory = Directory(Snapshot(1, (org,), (team,), (record,)))
    ledger = Ledger()
    governor = Governor(
        GovernanceSpec(**spec),  # type: ignore[arg-type]
        directory,
        LocalLimits(),
        LocalBudgets("tokens"),
        LocalBudgets("USD"),
        ledger,
        GovernanceMetrics(),
        jwt=Jwt(),
        wall=lambda: NOW,
    )
    return governor, plaintext, record, ledger


def _ask(request_id: str = "r1", prompt: int = 100, max_tokens: int = 50, model: str = "m"):
    return Ask(model, prompt, max_tokens, priority=0, request_id=request_id, messages=1)


async def _settle(coro) -> None:
    if coro is not None:
        await coro


def test_a_key_is_identified_with_its_team_and_org() -> None:
    governor, plaintext, record, _ = _setup()
    identity = governor.authenticate(Credentials(plaintext))
    assert identity.key == record
    assert identity.team is not None
    assert identity.team.name == "research"
    assert identity.org is not None
    assert identity.org.name == "acme"
    assert plaintext not in identity.subject


@pytest.mark.parametrize("bearer", [None, "", "ph-unknown", "sk-other", "x.y.z"])
def test_missing_unknown_and_forged_credentials_are_refused(bearer: str | None) -> None:
    governor, *_ = _setup()
    with pytest.raises(Unauthorized):
        governor.authenticate(Credentials(bearer))


def test_anonymous_requests_pass_only_when_keys_are_not_required() -> None:
    governor, *_ = _setup(require_key=False)
    assert governor.authenticate(Credentials(None)).subject == "anonymous"


def test_a_revoked_key_is_refused_once_the_directory_has_the_change() -> None:
    governor, plaintext, record, _ = _setup()
    governor.authenticate(Credentials(plaintext))
    team = governor.directory.team(record.team_id)
    assert team is not None
    revoked = KeyRecord(**{**_fields(record), "revoked_at": NOW})
    governor.directory.load(Snapshot(2, (), (team,), (revoked,)))
    with pytest.raises(Unauthorized):
        governor.authenticate(Credentials(plaintext))


def _fields(record: KeyRecord) -> dict[str, object]:
    return {name: getattr(record, name) for name in record.__dataclass_fields__}


def test_jwt_claims_name_the_team_and_the_priority_class() -> None:
    governor, *_ = _setup()
    identity = governor.authenticate(Credentials("a.b.c"))
    assert identity.team_name == "research"
    assert identity.subject == "jwt:alice"
    assert identity.priority == 5
    assert governor.authenticate(Credentials(None, None, "research")).subject == "jwt:bob"
    with pytest.raises(Unauthorized, match="no known team"):
        governor.authenticate(Credentials(None, None, "ghosts"))


async def test_priority_is_capped_by_the_key_and_the_team() -> None:
    governor, plaintext, *_ = _setup(scope=KeyScope(max_priority=3))
    identity = governor.authenticate(Credentials(plaintext))
    ask = Ask("m", 10, 10, priority=99, request_id="r")
    assert (await governor.admit(identity, ask)).priority == 3
    jwt_identity = governor.authenticate(Credentials("a.b.c"))  # asks for 5, team max 7
    assert (await governor.admit(jwt_identity, ask)).priority == 5


async def test_scope_refuses_other_models_and_networks() -> None:
    scope = KeyScope(models=frozenset({"m"}), networks=(ipaddress.ip_network("10.0.0.0/8"),))
    governor, plaintext, *_ = _setup(scope=scope)
    identity = governor.authenticate(Credentials(plaintext))
    with pytest.raises(Forbidden):
        await governor.admit(identity, _ask(model="other"), "10.1.2.3")
    with pytest.raises(Forbidden):
        await governor.admit(identity, _ask(), "192.168.1.1")
    await governor.admit(identity, _ask(), "10.1.2.3")


async def test_concurrent_reservations_never_pass_a_token_limit() -> None:
    """500 admissions at once against 10,000 tokens/min: each reserves 100 + 16 + 50."""
    quota = Quota(Limit(tokens_per_min=10_000))
    governor, plaintext, *_ = _setup(key_quota=quota)
    identity = governor.authenticate(Credentials(plaintext))

    async def one(i: int) -> bool:
        try:
            await governor.admit(identity, _ask(f"r{i}"))
        except RateLimited:
            return False
        return True

    admitted = sum(await asyncio.gather(*(one(i) for i in range(500))))
    assert admitted == 10_000 // 166


async def test_a_budget_is_reserved_before_and_settled_after() -> None:
    quota = Quota(budget_tokens=1000)
    governor, plaintext, record, ledger = _setup(team_quota=quota)
    identity = governor.authenticate(Credentials(plaintext))
    grants = [await governor.admit(identity, _ask(f"r{i}")) for i in range(6)]  # 6 x 166
    with pytest.raises(BudgetExceeded, match="budget of team_1"):
        await governor.admit(identity, _ask("r7"))
    for grant in grants:
        await _settle(governor.charge(grant, Used(20, 10)))
    assert len(ledger.entries) == 6
    assert {e.team_id for e in ledger.entries} == {"team_1"}
    assert {e.key_id for e in ledger.entries} == {record.id}
    subject = f"team_1@{period_of('month', NOW)}"
    assert governor.tokens.core.spent(subject) == 180  # type: ignore[attr-defined]
    await governor.admit(identity, _ask("r8"))  # room again: 820 left


async def test_charging_twice_or_releasing_after_charging_changes_nothing() -> None:
    governor, plaintext, _, ledger = _setup(key_quota=Quota(budget_tokens=10_000))
    identity = governor.authenticate(Credentials(plaintext))
    grant = await governor.admit(identity, _ask())
    await _settle(governor.charge(grant, Used(20, 10)))
    assert governor.charge(grant, Used(20, 10)) is None
    assert governor.release(grant) is None
    assert len(ledger.entries) == 1


async def test_a_released_request_costs_nothing() -> None:
    quota = Quota(Limit(requests_per_min=1), budget_tokens=200)
    governor, plaintext, _, ledger = _setup(key_quota=quota)
    identity = governor.authenticate(Credentials(plaintext))
    grant = await governor.admit(identity, _ask())
    await _settle(governor.release(grant))
    await governor.admit(identity, _ask("again"))  # its request and tokens came back
    assert ledger.entries == []


async def test_money_is_priced_per_token_and_by_engine_time() -> None:
    prices = {"m": PriceSpec(prompt_per_million=1e6, completion_per_million=2e6,
                             gpu_hour=3600, gpus=2, max_request_s=10)}  # fmt: skip
    governor, plaintext, _, ledger = _setup(key_quota=Quota(budget_cost=10_000), prices=prices)
    identity = governor.authenticate(Credentials(plaintext))
    grant = await governor.admit(identity, _ask(prompt=100, max_tokens=50))
    assert grant.money is not None
    assert grant.money.amount == 116 + 2 * 50 + 10 * 2  # prompt bound, output, engine time
    await _settle(governor.charge(grant, Used(30, 5, engine_s=1.5)))
    assert ledger.entries[0].cost == 30 + 10 + 3


async def test_a_model_limit_applies_to_every_caller() -> None:
    governor, plaintext, *_ = _setup(model_limits={"m": LimitSpec(concurrent=1)})
    identity = governor.authenticate(Credentials(plaintext))
    await governor.admit(identity, _ask())
    with pytest.raises(RateLimited, match="model:m"):
        await governor.admit(identity, _ask("r2"))


async def test_observe_mode_counts_but_refuses_nothing() -> None:
    governor, plaintext, *_ = _setup(key_quota=Quota(budget_tokens=1), mode="observe")
    identity = governor.authenticate(Credentials(plaintext))
    await governor.admit(identity, _ask())
    labels = {"team": "research", "model": "m", "outcome": "over_budget"}
    refused = governor.metrics.registry.get_sample_value("pilothouse_tenant_requests_total", labels)
    assert refused == 1


@pytest.mark.parametrize(
    ("when", "month", "day"),
    [
        ("2026-12-31T23:59:59.999+00:00", "2026-12", "2026-12-31"),
        ("2027-01-01T00:00:00+00:00", "2027-01", "2027-01-01"),
        ("2028-02-29T12:00:00+00:00", "2028-02", "2028-02-29"),
        ("1970-01-01T00:00:00+00:00", "1970-01", "1970-01-01"),
    ],
)
def test_budget_periods_are_utc_days_and_months_at_their_edges(
    when: str, month: str, day: str
) -> None:
    from datetime import datetime

    now = datetime.fromisoformat(when).timestamp()
    assert (period_of("month", now), period_of("day", now)) == (month, day)
    assert period_of("total", now) == "total"


async def test_in_process_counters_are_settled_by_charge_itself_without_a_task() -> None:
    quota = Quota(Limit(concurrent=1), budget_tokens=1000, budget_cost=1.0)
    governor, plaintext, record, _ = _setup(
        key_quota=quota, prices={"m": {"prompt_per_million": 1000.0}}
    )
    identity = governor.authenticate(Credentials(plaintext))
    grant = await governor.admit(identity, _ask())
    assert governor.charge(grant, Used(20, 10)) is None  # nothing left for the caller to run
    subject = f"{record.id}@{period_of('month', NOW)}"
    assert governor.tokens.core.spent(subject) == 30  # type: ignore[attr-defined]
    assert governor.money.core.spent(subject) == pytest.approx(0.02)  # type: ignore[attr-defined]
    await governor.admit(identity, _ask("r2"))  # the one concurrent slot is free again


async def test_every_charge_gets_an_entry_id_of_its_own_whatever_its_request_id() -> None:
    # A client's x-request-id is not unique (a retry may resend it): both requests are
    # charged and recorded. Entry ids increase within a process (the store appends them).
    governor, plaintext, _, ledger = _setup()
    identity = governor.authenticate(Credentials(plaintext))
    for _ in range(2):
        grant = await governor.admit(identity, _ask("same"))
        await _settle(governor.charge(grant, Used(10, 5)))
    first, second = ledger.entries
    assert first.request_id == second.request_id == "same"
    assert first.id
    assert second.id
    assert first.id < second.id
    other, *_ = _setup()
    assert other._entry_prefix != governor._entry_prefix  # another process: other ids
