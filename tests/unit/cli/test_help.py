"""Every command, lazy ones included, has a help text."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from pilothouse.cli import cli


def _commands(
    group: click.Group, ctx: click.Context, prefix: tuple[str, ...] = ()
) -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        found.append((*prefix, name))
        if isinstance(command, click.Group):
            found += _commands(command, ctx, (*prefix, name))
    return found


ALL = _commands(cli, click.Context(cli))


def test_the_documented_commands_exist() -> None:
    names = {" ".join(c) for c in ALL}
    assert {"up", "gateway", "validate", "engine", "engine llamacpp", "bench"} <= names


@pytest.mark.parametrize("command", ALL, ids=" ".join)
def test_help(command: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) > 2  # a description, not just the usage line


def test_api_key_env_var_is_named_in_help() -> None:
    for command in ("up", "gateway"):
        assert "PILOTHOUSE_API_KEY" in CliRunner().invoke(cli, [command, "--help"]).output


def test_validate_reports_the_bad_field(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text("models:\n  - name: a\n    replicas: many\n")
    result = CliRunner().invoke(cli, ["validate", "-f", str(path)])
    assert result.exit_code != 0
    assert "models[0].replicas" in result.output


def test_validate_accepts_a_good_fleet(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text("models:\n  - name: a\n    engine: sim\n    replicas: 1\n")
    result = CliRunner().invoke(cli, ["validate", "-f", str(path)])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output


def test_validate_reports_a_bad_scheduler(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text("models:\n  - name: a\ngateway:\n  scheduler: no-such-config\n")
    result = CliRunner().invoke(cli, ["validate", "-f", str(path)])
    assert result.exit_code != 0
    assert "no-such-config" in result.output
