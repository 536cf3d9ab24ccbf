"""``pilothouse toolgateway`` refuses a fleet it cannot serve safely."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from pilothouse.cli import cli

MODELS = "models: [{name: m, engine: sim, endpoints: ['127.0.0.1:1']}]\n"


def _run(tmp_path: Path, text: str) -> str:
    path = tmp_path / "fleet.yaml"
    path.write_text(MODELS + text)
    result = CliRunner().invoke(cli, ["toolgateway", "-f", str(path)])
    assert result.exit_code == 2
    return result.output


def test_without_tools(tmp_path: Path) -> None:
    assert "no tools: section" in _run(tmp_path, "")


def test_without_identities(tmp_path: Path) -> None:
    output = _run(tmp_path, "tools: {servers: [{name: a, command: [x]}]}\n")
    assert "gateway.governance" in output
    assert "needs identities" in output


def test_without_a_file() -> None:
    result = CliRunner().invoke(cli, ["toolgateway"])
    assert result.exit_code == 2
    assert "pilothouse toolgateway -f fleet.yaml" in result.output
