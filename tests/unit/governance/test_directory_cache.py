"""A front door that starts while the governance store is out of reach serves the keys it
knew (``<state_dir>/directory.json``) and catches up once the store answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from pilothouse.config.governance import GovernanceSpec
from pilothouse.errors import StoreUnavailable, Unauthorized
from pilothouse.governance.directory_cache import FILE, DirectoryCache
from pilothouse.governance.governor import Credentials, Used
from pilothouse.governance.records import Quota
from pilothouse.governance.requests import Ask
from pilothouse.governance.service import start_governance
from pilothouse.governance.store import SqlStore


class _Flaky:
    """A store that can be taken away (every call: StoreUnavailable), as PostgreSQL down."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self.down = False
        self.migrations = 0

    def __repr__(self) -> str:
        return repr(self.store)

    def migrate(self) -> None:
        self._check()
        self.migrations += 1
        self.store.migrate()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.store, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            self._check()
            return attribute(*args, **kwargs)

        return call

    def _check(self) -> None:
        if self.down:
            raise StoreUnavailable("governance store sqlite:///x: connection refused")


def _ask(request_id: str) -> Ask:
    return Ask("m", 100, 50, priority=0, request_id=request_id, messages=1)


@pytest.fixture
def store(tmp_path: Path) -> SqlStore:
    store = SqlStore(f"sqlite:///{tmp_path / 'governance.db'}")
    store.migrate()
    return store


def _team_with_a_budget(store: SqlStore, tmp_path: Path) -> tuple[str, GovernanceSpec]:
    """A key of team ``ml`` (1,000 tokens of budget), and a spec keeping state in tmp_path."""
    store.create_org("acme")
    store.create_team("acme", "ml", Quota(budget_tokens=1_000.0))
    key, _ = store.create_key("ml", "bot")
    return key, GovernanceSpec(state_dir=tmp_path / "state", sync_interval_s=60)


async def test_a_start_without_the_store_serves_the_keys_and_spending_it_knew(
    tmp_path: Path, store: SqlStore
) -> None:
    key, spec = _team_with_a_budget(store, tmp_path)
    flaky = _Flaky(store)
    first = await start_governance(spec, "gw", CollectorRegistry(), store=flaky)  # type: ignore[arg-type]
    governor = first.governor
    grant = await governor.admit(governor.authenticate(Credentials(key)), _ask("r1"))
    governor.charge(grant, Used(100, 50))
    await first.sync_once()  # the cache keeps the spending too
    await first.aclose()
    assert (tmp_path / "state" / FILE).stat().st_mode & 0o777 == 0o600

    flaky.down = True  # PostgreSQL is away when the gateway restarts
    second = await start_governance(spec, "gw", CollectorRegistry(), store=flaky)  # type: ignore[arg-type]
    governor = second.governor
    identity = governor.authenticate(Credentials(key))
    assert identity.team_name == "ml"
    with pytest.raises(Unauthorized):
        governor.authenticate(Credentials("ph-not-a-key"))
    team = identity.team
    assert team is not None
    subject = next(s for s, _ in governor._plans.get(identity, "m", governor.wall()).token_budgets)
    assert governor.tokens.core.spent(subject) == 150.0  # type: ignore[attr-defined]
    grant = await governor.admit(identity, _ask("r2"))  # served, charged, written ahead
    governor.charge(grant, Used(10, 5))
    with pytest.raises(StoreUnavailable):
        await second.sync_once()
    flaky.down = False  # it answers again: nothing else to do
    await second.sync_once()
    await second.aclose()
    (total,) = store.usage([])
    assert (total.requests, total.prompt_tokens) == (2, 110)


async def test_a_first_start_without_the_store_says_why_it_cannot_serve(
    tmp_path: Path, store: SqlStore
) -> None:
    flaky = _Flaky(store)
    flaky.down = True
    spec = GovernanceSpec(state_dir=tmp_path / "state")
    with pytest.raises(StoreUnavailable, match="no directory of this store"):
        await start_governance(spec, "gw", CollectorRegistry(), store=flaky)  # type: ignore[arg-type]


def test_a_cache_of_another_store_or_a_damaged_one_is_ignored(tmp_path: Path) -> None:
    from pilothouse.governance.records import Snapshot

    path = tmp_path / FILE
    written = DirectoryCache(path, "store-a")
    written.save_directory(Snapshot(version=3), at=1.0)
    written.save_spent(1.0, {"t@total": 2.0}, {})
    found = DirectoryCache(path, "store-a").load()
    assert found is not None
    assert found.snapshot == Snapshot(version=3)
    assert found.tokens == {"t@total": 2.0}
    assert DirectoryCache(path, "store-b").load() is None
    path.write_text("{not json")
    assert DirectoryCache(path, "store-a").load() is None
    assert DirectoryCache(tmp_path / "none.json", "store-a").load() is None


async def test_spending_under_load_rewrites_only_the_small_file(
    tmp_path: Path, store: SqlStore
) -> None:
    # The directory grows with the keys (50,000: 22 MB): it is written when it changes,
    # not on every sync after which spending moved.
    from pilothouse.governance.directory_cache import SPENT_FILE

    key, spec = _team_with_a_budget(store, tmp_path)
    governance = await start_governance(spec, "gw", CollectorRegistry(), store=store)
    directory, spent = tmp_path / "state" / FILE, tmp_path / "state" / SPENT_FILE
    written = directory.read_bytes()
    governor = governance.governor
    for n in range(3):
        grant = await governor.admit(governor.authenticate(Credentials(key)), _ask(f"r{n}"))
        governor.charge(grant, Used(100, 50))
        await governance.sync_once()
        assert directory.read_bytes() == written
        cached = DirectoryCache(directory, repr(store)).load()
        assert cached is not None
        assert sum(cached.tokens.values()) == 150.0 * (n + 1)
    assert spent.stat().st_mode & 0o777 == 0o600
    store.create_key("ml", "another")  # the directory moves: written again
    await governance.sync_once()
    assert directory.read_bytes() != written
    await governance.aclose()


def test_spending_kept_by_an_older_version_in_the_directory_file_still_seeds(
    tmp_path: Path,
) -> None:
    from pilothouse.governance.directory_cache import _ADAPTER, CachedDirectory
    from pilothouse.governance.records import Snapshot

    path = tmp_path / FILE
    old = CachedDirectory("store-a", 1.0, Snapshot(version=2), {"t@total": 5.0}, {"o@total": 1.5})
    path.write_bytes(_ADAPTER.dump_json(old))  # one file, as before spent.json
    found = DirectoryCache(path, "store-a").load()
    assert found is not None
    assert (found.tokens, found.money) == ({"t@total": 5.0}, {"o@total": 1.5})
    cache = DirectoryCache(path, "store-b")  # another store's spending is not used
    cache.save_spent(2.0, {"t@total": 9.0}, {})
    found = DirectoryCache(path, "store-a").load()
    assert found is not None
    assert found.tokens == {"t@total": 5.0}
    DirectoryCache(path, "store-a").save_spent(3.0, {"t@total": 7.0}, {})
    found = DirectoryCache(path, "store-a").load()
    assert found is not None
    assert (found.tokens, found.at) == ({"t@total": 7.0}, 3.0)
