"""Secrets: read once, substituted, listed for redaction, never printed."""

from __future__ import annotations

from pathlib import Path

import pytest

from pilothouse.errors import ConfigError
from pilothouse.toolgateway.secrets import Secrets


def test_env_and_file_are_read(tmp_path: Path) -> None:
    (tmp_path / "tok").write_text("from-file\n")
    secrets = Secrets.resolve(
        {"A": "env:VAR_A", "B": f"file:{tmp_path / 'tok'}"}, {"VAR_A": "from-env"}
    )
    assert secrets.substitute("Bearer ${secret:A}/${secret:B}") == "Bearer from-env/from-file"
    assert secrets.values() == ["from-file", "from-env"]
    assert "from-env" not in repr(secrets)


@pytest.mark.parametrize(
    ("refs", "named"),
    [
        ({"A": "env:NOPE"}, "tools.secrets.A: environment variable NOPE"),
        ({"B": "file:/nonexistent/x"}, "tools.secrets.B: cannot read /nonexistent/x"),
    ],
)
def test_a_missing_secret_names_itself(refs: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Secrets.resolve(refs, {})
    assert str(caught.value).startswith(named)


def test_an_unknown_reference_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no secret named 'X'"):
        Secrets({}).substitute_all({"Authorization": "${secret:X}"}, "tools.servers.gh.headers")


def test_text_without_references_is_unchanged() -> None:
    assert Secrets({"A": "v"}).substitute("$HOME ${A} ${secret:}") == "$HOME ${A} ${secret:}"
