"""Keys, teams and organisations as the request path reads them: in memory, never the store.

A :class:`Directory` holds one :class:`~pilothouse.governance.records.Snapshot` indexed for
the lookups a request makes (a key by its digest, a team by id or name). The governor's sync
task replaces it whenever :meth:`Store.version <pilothouse.governance.ports.Store.version>`
moves, so a key revoked on any replica (or with the CLI) is refused by every replica within
one ``sync_interval_s``. A store that is down leaves the last snapshot in place: requests
keep being served with the identities known so far.
"""

from __future__ import annotations

from dataclasses import dataclass

from pilothouse.governance.records import KeyRecord, Organisation, Snapshot, Team


@dataclass(frozen=True, slots=True)
class _Index:
    version: int
    keys: dict[str, KeyRecord]
    teams: dict[str, Team]
    team_names: dict[str, Team]
    orgs: dict[str, Organisation]


class Directory:
    """The current snapshot, swapped whole (a reader never sees half of an update)."""

    def __init__(self, snapshot: Snapshot | None = None) -> None:
        self._index = _index(snapshot or Snapshot(version=-1))

    @property
    def version(self) -> int:
        return self._index.version

    def load(self, snapshot: Snapshot) -> None:
        self._index = _index(snapshot)

    def key(self, digest: str) -> KeyRecord | None:
        """The live (unrevoked) key with this digest."""
        return self._index.keys.get(digest)

    def team(self, team_id: str) -> Team | None:
        return self._index.teams.get(team_id)

    def team_named(self, name: str) -> Team | None:
        """A team by name (JWT claims name teams); ids are accepted too."""
        index = self._index
        return index.team_names.get(name) or index.teams.get(name)

    def org(self, org_id: str) -> Organisation | None:
        return self._index.orgs.get(org_id)

    def teams(self) -> list[Team]:
        return list(self._index.teams.values())


def _index(snapshot: Snapshot) -> _Index:
    return _Index(
        version=snapshot.version,
        keys={k.digest: k for k in snapshot.keys if not k.revoked},
        teams={t.id: t for t in snapshot.teams},
        team_names={t.name: t for t in snapshot.teams},
        orgs={o.id: o for o in snapshot.orgs},
    )
