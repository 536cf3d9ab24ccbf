"""Declared adapters reach the replicas' command lines."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pilothouse.config.fleet import ModelSpec
from pilothouse.config.traffic import AdapterSpec
from pilothouse.engines.kinds import vllm as launch
from pilothouse.engines.launch import VLLM_PYTHON_ENV, adapter_args, replica_command
from pilothouse.errors import EngineError


@pytest.fixture(autouse=True)
def _vllm_python(monkeypatch: pytest.MonkeyPatch) -> None:
    """vLLM is not installed here: name an interpreter, as a user with a vLLM venv does."""
    monkeypatch.setenv(VLLM_PYTHON_ENV, sys.executable)


ADAPTERS = [
    AdapterSpec(name="sql", source="hf://org/sql-lora"),
    AdapterSpec(name="support", source="/adapters/support"),
]


def test_vllm_gets_enable_lora_and_one_lora_modules_list() -> None:
    model = ModelSpec(name="llama", engine="vllm", source="hf://meta/llama", adapters=ADAPTERS)
    assert adapter_args(model) == [
        "--enable-lora",
        "--lora-modules",
        "sql=org/sql-lora",
        "support=/adapters/support",
    ]
    command = replica_command(model, "127.0.0.1", 9000)
    assert command[command.index("--lora-modules") + 1] == "sql=org/sql-lora"


def test_flags_given_in_args_are_not_repeated() -> None:
    model = ModelSpec(
        name="llama", engine="vllm", args={"enable-lora": True, "max-loras": 4}, adapters=ADAPTERS
    )
    command = replica_command(model, "127.0.0.1", 9000)
    assert command.count("--enable-lora") == 1
    assert command[command.index("--max-loras") + 1] == "4"


def test_sim_repeats_lora_modules_and_allows_runtime_loading() -> None:
    model = ModelSpec(name="chat", engine="sim", adapters=ADAPTERS)
    assert adapter_args(model) == [
        "--allow-runtime-lora-updating",
        "--lora-modules",
        "sql=org/sql-lora",
        "--lora-modules",
        "support=/adapters/support",
    ]
    assert adapter_args(ModelSpec(name="chat", engine="sim")) == []


def test_vllm_runs_with_the_configured_interpreter() -> None:
    model = ModelSpec(name="llama", engine="vllm", source="/models/llama")
    command = replica_command(model, "127.0.0.1", 9000)
    assert command[:3] == [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]


def test_a_configured_interpreter_that_cannot_run_is_an_engine_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(VLLM_PYTHON_ENV, str(tmp_path / "no-python"))
    model = ModelSpec(name="llama", engine="vllm", source="/models/llama")
    with pytest.raises(EngineError, match="not an executable Python"):
        replica_command(model, "127.0.0.1", 9000)


def test_without_vllm_and_without_the_variable_the_error_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(VLLM_PYTHON_ENV)
    monkeypatch.setattr(launch.importlib.util, "find_spec", lambda name: None)
    model = ModelSpec(name="llama", engine="vllm", source="/models/llama")
    with pytest.raises(EngineError, match=VLLM_PYTHON_ENV):
        replica_command(model, "127.0.0.1", 9000)


def test_sim_script_arg_reaches_the_command() -> None:
    """A Fleet's ``args: {script: FILE}`` becomes the simulator's ``--script FILE``."""
    model = ModelSpec(name="scripted", engine="sim", args={"script": "scripts/weather.yaml"})
    argv = replica_command(model, "127.0.0.1", 8000)
    assert argv[argv.index("--script") + 1] == "scripts/weather.yaml"
