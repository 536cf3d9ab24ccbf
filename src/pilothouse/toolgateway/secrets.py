"""The secrets the gateway injects into upstream tool servers (issue #13 point 6).

``tools.secrets`` maps a name to where its value is read (``env:VAR`` or ``file:/path``).
They are read once, when the gateway starts: a missing variable or unreadable file stops
the start with a :class:`~pilothouse.errors.ConfigError` naming the secret, rather than a
server that fails on its first call. The values then go only two ways: into the headers and
environment of upstream servers (``${secret:NAME}``), and to the rules, which redact them
from anything a tool returns. They never reach an agent and are never logged.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from pilothouse.errors import ConfigError

_REFERENCE = re.compile(r"\$\{secret:([A-Za-z_][A-Za-z0-9_]*)\}")


class Secrets:
    """Resolved secret values; see the module docstring."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)

    @classmethod
    def resolve(cls, refs: Mapping[str, str], env: Mapping[str, str] | None = None) -> Secrets:
        """Read every secret ``refs`` names (``tools.secrets``); ConfigError for any missing."""
        environ = os.environ if env is None else env
        values: dict[str, str] = {}
        for name, ref in refs.items():
            kind, _, where = ref.partition(":")
            path = f"tools.secrets.{name}"
            if kind == "env":
                if where not in environ:
                    raise ConfigError(f"environment variable {where} is not set", path)
                values[name] = environ[where]
            elif kind == "file":
                try:
                    values[name] = Path(where).read_text(encoding="utf-8").rstrip("\r\n")
                except OSError as exc:
                    raise ConfigError(f"cannot read {where}: {exc.strerror}", path) from exc
            else:
                raise ConfigError(f"read a secret from env:VAR or file:/path, not {ref!r}", path)
        return cls(values)

    def substitute(self, text: str, where: str = "") -> str:
        """``text`` with each ``${secret:NAME}`` replaced; ConfigError for an unknown name."""

        def value(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in self._values:
                raise ConfigError(f"no secret named {name!r} in tools.secrets", where)
            return self._values[name]

        return _REFERENCE.sub(value, text)

    def substitute_all(self, items: Mapping[str, str], where: str = "") -> dict[str, str]:
        """Each value of ``items`` substituted (headers, environment)."""
        return {key: self.substitute(text, f"{where}.{key}") for key, text in items.items()}

    def values(self) -> list[str]:
        """Every secret value (non-empty), longest first: what the rules redact."""
        return sorted({v for v in self._values.values() if v}, key=len, reverse=True)

    def __repr__(self) -> str:  # never print a value
        return f"Secrets({sorted(self._values)})"
