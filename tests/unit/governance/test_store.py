"""The governance store on SQLite: every method of the Store protocol, its errors included.

The same tests run against a real PostgreSQL in tests/e2e/governance/test_store_postgres.py
(which imports them with its own ``store`` fixture), so both dialects keep one contract.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pilothouse.errors import BadRequest, Conflict, NotFound
from pilothouse.governance.keys import KeyScope, digest
from pilothouse.governance.limits import Limit
from pilothouse.governance.ports import Store
from pilothouse.governance.records import LedgerEntry, Quota
from pilothouse.governance.store import SqlStore

T0 = 1_800_000_000.0  # 2027-01-15


class Wall:
    """A settable wall clock for created_at / revoked_at."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def wall() -> Wall:
    return Wall()


@pytest.fixture
def store(tmp_path: Path, wall: Wall) -> Iterator[SqlStore]:
    s = SqlStore(f"sqlite:///{tmp_path / 'governance.db'}", wall=wall)
    s.migrate()
    yield s
    s.close()


def _entry(request_id: str, at: float = T0, **fields: object) -> LedgerEntry:
    values: dict[str, object] = {"model": "chat", "prompt_tokens": 10, "completion_tokens": 5}
    values.update(fields)
    return LedgerEntry(request_id=request_id, at=at, **values)  # type: ignore[arg-type]


def test_store_satisfies_the_protocol(store: SqlStore) -> None:
    checked: Store = store
    assert checked.version() >= 1


def test_store_creates_and_lists_orgs_teams_and_keys(store: SqlStore, wall: Wall) -> None:
    org = store.create_org("acme", Quota(budget_cost=100.0))
    assert org.id.startswith("org_")
    assert org.created_at == T0
    team = store.create_team("acme", "ml", max_priority=5, default_priority=2)
    assert team.id.startswith("team_")
    assert team.org_id == org.id
    plaintext, key = store.create_key(team.id, "ci")
    assert key.id.startswith("key_")
    assert plaintext.startswith("ph-")
    assert key.digest == digest(plaintext)
    assert key.shown == plaintext[:8]

    assert store.list_orgs() == [org]
    assert store.list_teams() == [team]
    assert store.list_teams("acme") == [team]
    assert store.list_teams(org.id) == [team]
    assert store.list_keys() == [key]
    assert store.list_keys("acme/ml") == [key]
    assert store.get_team("ml") == team
    assert store.get_org(org.id) == org
    assert store.get_key("ml/ci") == key


def test_store_refuses_taken_names_with_conflict(store: SqlStore) -> None:
    store.create_org("acme")
    store.create_org("globex")
    store.create_team("acme", "ml")
    store.create_team("globex", "ml")  # a team name is unique within its organisation only
    store.create_key("acme/ml", "ci")
    with pytest.raises(Conflict, match="acme"):
        store.create_org("acme")
    with pytest.raises(Conflict, match="ml"):
        store.create_team("acme", "ml")
    with pytest.raises(Conflict, match="ci"):
        store.create_key("acme/ml", "ci")
    store.create_key("globex/ml", "ci")


def test_store_raises_not_found_for_unknown_names(store: SqlStore) -> None:
    store.create_org("acme")
    with pytest.raises(NotFound, match="nope"):
        store.create_team("nope", "ml")
    with pytest.raises(NotFound):
        store.create_key("acme/ml", "ci")
    with pytest.raises(NotFound):
        store.revoke_key("key_000000000000")
    with pytest.raises(NotFound):
        store.list_teams("nope")
    with pytest.raises(NotFound):
        store.list_keys("acme/nope")
    with pytest.raises(NotFound):
        store.update_quota("team_000000000000", Quota())


def test_store_asks_for_org_slash_team_when_a_team_name_is_ambiguous(store: SqlStore) -> None:
    for org in ("acme", "globex"):
        store.create_org(org)
        store.create_team(org, "ml")
    with pytest.raises(BadRequest, match="org/team"):
        store.create_key("ml", "ci")
    _, key = store.create_key("globex/ml", "ci")
    assert key.team_id == store.get_team("globex/ml").id


def test_store_checks_names_and_key_kinds(store: SqlStore) -> None:
    with pytest.raises(BadRequest):
        store.create_org("")
    with pytest.raises(BadRequest, match="/"):
        store.create_org("a/b")
    store.create_org("acme")
    store.create_team("acme", "ml")
    with pytest.raises(BadRequest, match="owner"):
        store.create_key("ml", "bot", kind="agent")
    _, agent = store.create_key("ml", "bot", kind="agent", owner="alice@example.com")
    assert (agent.kind, agent.owner) == ("agent", "alice@example.com")


def test_store_keeps_a_keys_scope_and_quota(store: SqlStore) -> None:
    store.create_org("acme")
    store.create_team("acme", "ml")
    scope = KeyScope(
        models=frozenset({"chat", "embed"}),
        max_priority=3,
        expires_at=T0 + 86_400,
        networks=(ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8::/32")),
    )
    quota = Quota(Limit(60, 10_000, 4), budget_tokens=1e6, budget_cost=5.5, budget_period="day")
    _, key = store.create_key("ml", "ci", scope=scope, quota=quota)
    (stored,) = store.list_keys()
    assert stored == key
    assert stored.scope == scope
    assert stored.quota == quota


def test_store_never_keeps_a_keys_plaintext(store: SqlStore, tmp_path: Path) -> None:
    store.create_org("acme")
    store.create_team("acme", "ml")
    plaintext, _ = store.create_key("ml", "ci")
    store.close()
    for path in tmp_path.glob("governance.db*"):  # the database, its WAL and shared memory
        assert plaintext.encode() not in path.read_bytes()


def test_store_revokes_keys_once(store: SqlStore, wall: Wall) -> None:
    store.create_org("acme")
    store.create_team("acme", "ml")
    _, key = store.create_key("ml", "ci")
    wall.now = T0 + 60
    revoked = store.revoke_key("ci")
    assert revoked.id == key.id
    assert revoked.revoked_at == T0 + 60
    assert store.list_keys() == []
    assert store.list_keys(revoked=True) == [revoked]
    assert store.snapshot().keys == ()
    version = store.version()
    wall.now = T0 + 120
    assert store.revoke_key(key.id) == revoked  # again: nothing changes
    assert store.version() == version
    with pytest.raises(NotFound):
        store.revoke_key("ci")  # by name, only live keys are found
    _, again = store.create_key("ml", "ci")  # a revoked key's name may be used again
    assert store.list_keys() == [again]


def test_store_version_grows_with_every_change_and_only_then(store: SqlStore) -> None:
    seen = [store.version()]

    def changed() -> None:
        seen.append(store.version())
        assert seen[-1] > seen[-2]

    store.create_org("acme")
    changed()
    store.create_team("acme", "ml")
    changed()
    _, key = store.create_key("ml", "ci")
    changed()
    store.update_quota(key.id, Quota(Limit(requests_per_min=1)))
    changed()
    store.revoke_key(key.id)
    changed()
    store.list_keys(revoked=True)
    store.snapshot()
    store.write_ledger([_entry("r1")])
    assert store.version() == seen[-1]


def test_store_snapshot_holds_orgs_teams_and_live_keys(store: SqlStore) -> None:
    org = store.create_org("acme")
    team = store.create_team("acme", "ml")
    _, live = store.create_key("ml", "live")
    _, gone = store.create_key("ml", "gone")
    store.revoke_key(gone.id)
    snapshot = store.snapshot()
    assert snapshot.version == store.version()
    assert snapshot.orgs == (org,)
    assert snapshot.teams == (team,)
    assert snapshot.keys == (live,)


def test_store_replaces_quotas_of_orgs_teams_and_keys(store: SqlStore) -> None:
    org = store.create_org("acme", Quota(budget_cost=1.0))
    team = store.create_team("acme", "ml")
    _, key = store.create_key("ml", "ci")
    for subject in (org.id, team.id, key.id):
        quota = Quota(Limit(10, 1000, 2), budget_tokens=50.0, budget_period="total")
        store.update_quota(subject, quota)
    assert store.get_org("acme").quota.budget_cost is None  # replaced, not merged
    for record in (store.get_org("acme"), store.get_team("ml"), store.get_key("ci")):
        assert record.quota == Quota(Limit(10, 1000, 2), budget_tokens=50.0, budget_period="total")
    store.update_quota("acme/ml", Quota())
    assert store.get_team("ml").quota == Quota()


def test_store_writes_the_ledger_once_per_request_id(store: SqlStore) -> None:
    assert store.write_ledger([]) == 0
    assert store.write_ledger([_entry("r1"), _entry("r2"), _entry("r1")]) == 2
    assert store.write_ledger([_entry("r1"), _entry("r2")]) == 0  # a replay after a crash
    assert store.write_ledger([_entry("r2"), _entry("r3")]) == 1
    (total,) = store.usage([])
    assert (total.requests, total.prompt_tokens, total.completion_tokens) == (3, 30, 15)


@pytest.mark.parametrize("size", [3, 250, 500, 513, 1100, 2000, 2049, 4500])
def test_store_writes_batches_of_any_size_once(store: SqlStore, size: int) -> None:
    # Sizes that make padded statements (500: one of 512; 2000: one of 2048, the most rows
    # in one) and unpadded ones (3: 2 + 1; 4500: 2048 + 2048 + 256 + 128 + 16 + 4):
    # padding rows are replays of a row in the same statement, never counted or stored.
    entries = [_entry(f"r{i}", id=f"e{i:05d}") for i in range(size)]
    assert store.write_ledger(entries[: size // 3]) == size // 3
    assert store.write_ledger(entries) == size - size // 3
    assert store.write_ledger(entries) == 0
    (total,) = store.usage([])
    assert total.requests == size


def test_store_keeps_entries_that_share_a_request_id(store: SqlStore) -> None:
    # A client may send the same x-request-id twice (a retry): two requests, two charges.
    # Only the entry id (the governor's) makes an entry a replay.
    assert store.write_ledger([_entry("same", id="e1"), _entry("same", id="e2")]) == 2
    assert store.write_ledger([_entry("same", id="e2"), _entry("same", id="e3")]) == 1
    (total,) = store.usage([])
    assert (total.requests, total.prompt_tokens) == (3, 30)


def test_store_groups_ledger_usage(store: SqlStore) -> None:
    store.write_ledger(
        [
            _entry("a", T0, team_id="team_a", key_id="key_1", model="chat", cost=1.0),
            _entry("b", T0 + 10, team_id="team_a", key_id="key_2", model="embed", cost=2.0),
            _entry("c", T0 + 20, team_id="team_b", key_id="key_3", model="chat", cost=4.0),
            _entry("d", T0 + 30, team_id="team_a", key_id="key_1", model="chat", cost=8.0),
        ]
    )
    by_team = store.usage(["team"])
    assert [(r.group, r.requests, r.cost) for r in by_team] == [
        (("team_a",), 3, 11.0),
        (("team_b",), 1, 4.0),
    ]
    by_team_model = store.usage(["team", "model"])
    assert [(r.group, r.prompt_tokens) for r in by_team_model] == [
        (("team_a", "chat"), 20),
        (("team_a", "embed"), 10),
        (("team_b", "chat"), 10),
    ]
    since = datetime.fromtimestamp(T0 + 10, UTC)
    until = datetime.fromtimestamp(T0 + 30, UTC)
    window = store.usage(["key"], since=since, until=until)  # since ≤ at < until
    assert [(r.group, r.requests) for r in window] == [(("key_2",), 1), (("key_3",), 1)]
    naive = datetime.fromtimestamp(T0 + 10, UTC).replace(tzinfo=None)  # naive is UTC
    assert store.usage([], since=naive)[0].requests == 3
    with pytest.raises(BadRequest, match="not 'day'"):
        store.usage(["day"])  # type: ignore[list-item]


def test_store_usage_of_an_empty_ledger(store: SqlStore) -> None:
    (total,) = store.usage([])
    assert (total.group, total.requests, total.cost) == ((), 0, 0.0)
    assert store.usage(["team"]) == []


def test_store_spent_per_key_team_and_org(store: SqlStore) -> None:
    store.write_ledger(
        [
            _entry("old", T0 - 100, key_id="key_1", team_id="team_a", org_id="org_x", cost=9.0),
            _entry("a", T0, key_id="key_1", team_id="team_a", org_id="org_x", cost=1.0),
            _entry("b", T0 + 1, key_id="key_2", team_id="team_a", org_id="org_x", cost=2.0),
            _entry("c", T0 + 2, cost=4.0),  # anonymous: counted for nobody
        ]
    )
    spent = store.spent(datetime.fromtimestamp(T0, UTC))
    assert spent == {
        "key_1": (15.0, 1.0),
        "key_2": (15.0, 2.0),
        "team_a": (30.0, 3.0),
        "org_x": (30.0, 3.0),
    }


def test_ledger_entries_are_rows_in_the_order_of_the_ledger_columns() -> None:
    from pilothouse.governance.schema import LEDGER_COLUMNS, ledger_values
    from pilothouse.governance.tables import ledger

    assert set(LEDGER_COLUMNS) == {c.name for c in ledger.columns}
    entry = _entry("r1", id="e1")
    assert dict(zip(LEDGER_COLUMNS, entry, strict=True)) == ledger_values(entry)
    old = _entry("r2")  # written by a version without entry ids: its request id is its key
    assert ledger_values(old)["id"] == "r2"
    assert dict(zip(LEDGER_COLUMNS, old.keyed(), strict=True)) == ledger_values(old)
