"""Command lines that start one replica of each engine kind on a given port.

vLLM replicas run ``python -m vllm.entrypoints.openai.api_server`` with pilothouse's own
interpreter, or with the one ``PILOTHOUSE_VLLM_PYTHON`` names: vLLM pins its own torch and
is often installed in an environment of its own (``make vllm`` does that for the tests).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Mapping

from pilothouse.config.fleet import ArgValue, ModelSpec
from pilothouse.errors import ConfigError, EngineError


def engine_args(args: Mapping[str, ArgValue]) -> list[str]:
    """Engine flags from a mapping.

    ``{"max-model-len": 2048, "enforce-eager": True}`` → ``--max-model-len 2048 --enforce-eager``.
    """
    out: list[str] = []
    for key, value in args.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            out.append(flag)
        elif value is not False:
            out += [flag, str(value)]
    return out


def adapter_args(model: ModelSpec) -> list[str]:
    """Flags that serve ``model.adapters`` from the start, as vLLM takes them.

    vLLM: ``--enable-lora --lora-modules NAME=PATH ...`` (``hf://ORG/NAME`` becomes the Hub
    id vLLM resolves; ``--max-loras`` keeps vLLM's default of 1 unless ``args`` sets it);
    the simulator takes the same ``--lora-modules`` and also serves vLLM's dynamic LoRA
    endpoints (``--allow-runtime-lora-updating``) so adapters can be loaded later too.
    """
    if not model.adapters:
        return []
    modules = [f"{a.name}={a.source.removeprefix('hf://')}" for a in model.adapters]
    given = {key.replace("_", "-") for key in model.args}
    out: list[str] = []
    if model.engine == "vllm" and "enable-lora" not in given:
        out.append("--enable-lora")
    if model.engine == "sim" and "allow-runtime-lora-updating" not in given:
        out.append("--allow-runtime-lora-updating")
    if "lora-modules" not in given:
        out += ["--lora-modules", *modules] if model.engine == "vllm" else _repeat(modules)
    return out


def _repeat(modules: list[str]) -> list[str]:
    return [part for module in modules for part in ("--lora-modules", module)]


VLLM_PYTHON_ENV = "PILOTHOUSE_VLLM_PYTHON"


def vllm_python() -> str:
    """The interpreter for vLLM replicas; :class:`EngineError` when it cannot have vLLM."""
    configured = os.environ.get(VLLM_PYTHON_ENV)
    if configured:
        if not os.access(configured, os.X_OK):
            raise EngineError(f"{VLLM_PYTHON_ENV}={configured} is not an executable Python")
        return configured
    if importlib.util.find_spec("vllm") is None:
        raise EngineError(
            "vLLM is not installed in pilothouse's environment: install it there, or set "
            f"{VLLM_PYTHON_ENV} to the Python of an environment that has it (docs/engines.md)"
        )
    return sys.executable


def replica_command(model: ModelSpec, host: str, port: int) -> list[str]:
    """The argv that starts one replica of ``model`` listening on ``host:port``."""
    extra = engine_args(model.args) + adapter_args(model)
    if model.engine == "llamacpp":
        return [
            sys.executable,
            "-m",
            "pilothouse",
            "engine",
            "llamacpp",
            "--source",
            model.source,
            "--served-name",
            model.name,
            "--host",
            host,
            "--port",
            str(port),
            *extra,
        ]
    if model.engine == "sim":
        return [
            sys.executable,
            "-m",
            "pilothouse",
            "engine",
            "sim",
            "--model",
            model.name,
            "--host",
            host,
            "--port",
            str(port),
            *extra,
        ]
    if model.engine == "vllm":
        source = model.source.removeprefix("hf://")
        return [
            vllm_python(),
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            source,
            "--served-model-name",
            model.name,
            "--host",
            host,
            "--port",
            str(port),
            *extra,
        ]
    raise ConfigError(
        f"engine '{model.engine}' cannot be launched locally; give 'endpoints' instead",
        path="models.engine",
    )
