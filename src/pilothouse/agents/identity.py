"""An agent's own identity: an agent key of its team, made on first start and kept locally.

Every model call and tool call of an agent carries its key, so the gateway and the tool
gateway see *the agent* (its team's quotas, its audit trail, the tool rules for it), never
the person who started it. :func:`ensure_agent_key` finds or makes that key:

- a key given explicitly (``--key`` or ``$PILOTHOUSE_API_KEY``) is used as it is;
- else ``<state_dir>/agents/<agent>.key`` (mode 0600) holds the key made earlier, used
  while the store still has it live;
- else a new governance key is made: kind ``agent``, named :func:`key_name` (``agent-<name>``)
  in the agent's team, owned by whoever starts it, scoped to the agent's model; only its
  SHA-256 is in the store, the plaintext goes to the file, created 0600 and never widened.
  A live key of that name whose plaintext was lost is revoked first: nobody can use it.
"""

from __future__ import annotations

import os
from pathlib import Path

from pilothouse.config.agents import AgentSpec, agent_key_name
from pilothouse.errors import ConfigError, NotFound
from pilothouse.governance.keys import KeyScope, digest
from pilothouse.governance.store import SqlStore

key_name = agent_key_name
"""The name of an agent's key in its team (the tool gateway finds the agent by it)."""


def key_file(state_dir: Path, agent: str) -> Path:
    return state_dir / "agents" / f"{agent}.key"


def ensure_agent_key(
    store: SqlStore, agent: AgentSpec, state_dir: Path, owner: str, models: frozenset[str]
) -> tuple[str, bool]:
    """The agent's key (see the module docstring) and whether it was made just now (the
    gateways learn of a new key within ``governance.sync_interval_s``); ``models``: what
    the key may call."""
    path = key_file(state_dir, agent.name)
    try:
        team = store.get_team(agent.team)
    except NotFound as exc:
        raise ConfigError(
            f"agent '{agent.name}' belongs to team '{agent.team}', which does not exist: "
            f"create it (pilothouse teams create ORG {agent.team})",
            f"agents.{agent.name}.team",
        ) from exc
    live = {k.name: k for k in store.list_keys(team.id)}
    existing = live.get(key_name(agent.name))
    if path.exists():
        plaintext = path.read_text().strip()
        if existing is not None and existing.digest == digest(plaintext):
            return plaintext, False
        path.unlink()
    if existing is not None:
        store.revoke_key(existing.id)
    plaintext, _ = store.create_key(
        team.id,
        key_name(agent.name),
        kind="agent",
        owner=owner,
        scope=KeyScope(models=models),
    )
    _write_private(path, plaintext)
    return plaintext, True


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to a new file only its owner can read (0600 from its creation)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text + "\n")
