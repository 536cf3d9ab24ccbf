"""Engine prerequisites: what `up` checks before it starts anything."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from pilothouse.config.fleet import parse_fleet
from pilothouse.engines.kinds.vllm import VLLM_PYTHON_ENV, VllmPrerequisites
from pilothouse.engines.launch import check_prerequisites
from pilothouse.errors import ConfigError, EngineError

NO_VLLM_HERE = importlib.util.find_spec("vllm") is None


def fake_python(tmp_path: Path, exit_code: int) -> str:
    script = tmp_path / "python"
    script.write_text(f"#!/bin/sh\nexit {exit_code}\n")
    script.chmod(0o755)
    return str(script)


def test_an_env_python_that_can_import_vllm_passes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(VLLM_PYTHON_ENV, fake_python(tmp_path, 0))
    VllmPrerequisites().check()


@pytest.mark.parametrize(
    ("python", "why"),
    [
        ("{tmp}/missing", "is not an executable Python"),
        ("{tmp}", "is not an executable Python"),  # a directory
        ("{fails}", "cannot import vllm"),
    ],
)
def test_an_env_python_without_vllm_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, python: str, why: str
) -> None:
    failing = fake_python(tmp_path, 1)
    monkeypatch.setenv(VLLM_PYTHON_ENV, python.format(tmp=tmp_path, fails=failing))
    with pytest.raises(EngineError, match=why):
        VllmPrerequisites().check()


@pytest.mark.skipif(not NO_VLLM_HERE, reason="this environment has vLLM")
def test_without_the_env_variable_vllm_must_be_in_this_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(VLLM_PYTHON_ENV, raising=False)
    with pytest.raises(EngineError, match="not installed in pilothouse's environment"):
        VllmPrerequisites().check()


def test_the_fleet_check_names_each_kind_once_at_its_first_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(VLLM_PYTHON_ENV, "/nonexistent/python")
    spec = parse_fleet(
        {
            "models": [
                {"name": "remote", "engine": "vllm", "endpoints": ["127.0.0.1:9"]},
                {"name": "s", "engine": "sim"},
                {"name": "a", "engine": "vllm"},
                {"name": "b", "engine": "vllm"},
            ]
        }
    )
    with pytest.raises(ConfigError) as caught:
        check_prerequisites(spec)
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith("models[2].engine: vllm: ")


def test_a_fleet_of_engines_with_no_prerequisites_passes() -> None:
    check_prerequisites(parse_fleet({"models": [{"name": "s", "engine": "sim"}]}))
