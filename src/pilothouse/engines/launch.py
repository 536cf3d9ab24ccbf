"""Command lines that start one replica of a model's engine kind on a given port.

The kind's adapter (:func:`pilothouse.engines.registry.engine_kind`) writes the command;
the Fleet's ``args`` follow as flags, then the flags that serve its LoRA adapters.
"""

from __future__ import annotations

from pilothouse.config.fleet import FleetSpec, ModelSpec
from pilothouse.engines.args import engine_args
from pilothouse.engines.kinds.vllm import VLLM_PYTHON_ENV, vllm_python
from pilothouse.engines.registry import engine_kind
from pilothouse.errors import ConfigError, EngineError

__all__ = [
    "VLLM_PYTHON_ENV",
    "adapter_args",
    "check_prerequisites",
    "engine_args",
    "replica_command",
    "vllm_python",
]


def adapter_args(model: ModelSpec) -> list[str]:
    """Flags that serve ``model.adapters`` from the start, as its engine kind takes them.

    vLLM: ``--enable-lora --lora-modules NAME=PATH ...`` (``hf://ORG/NAME`` becomes the Hub
    id vLLM resolves; ``--max-loras`` keeps vLLM's default of 1 unless ``args`` sets it);
    the simulator takes the same ``--lora-modules`` and also serves vLLM's dynamic LoRA
    endpoints (``--allow-runtime-lora-updating``) so adapters can be loaded later too.
    """
    return engine_kind(model.engine).lora_flags(model)


def replica_command(model: ModelSpec, host: str, port: int) -> list[str]:
    """The argv that starts one replica of ``model`` listening on ``host:port``."""
    return engine_kind(model.engine).launch_command(model, host, port)


def check_prerequisites(spec: FleetSpec) -> None:
    """Check, once per engine kind, that this machine can start the spec's launched models.

    One :class:`ConfigError` listing every kind that cannot start, each at the ``engine``
    field of the first model that uses it, so nothing starts when one of them cannot.
    """
    problems: list[str] = []
    checked: set[str] = set()
    for index, model in enumerate(spec.models):
        if not model.launched or model.engine in checked:
            continue
        checked.add(model.engine)
        try:
            engine_kind(model.engine).check_prerequisites()
        except EngineError as exc:
            problems.append(f"models[{index}].engine: {model.engine}: {exc}")
    if problems:
        raise ConfigError("; ".join(problems), problems=problems)
