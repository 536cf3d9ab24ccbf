"""Prompt tokenizers for the ``precise-prefix`` scorer: the token ids each engine computes.

KV events carry the engine's own token ids, so a request can only be matched against them
when it is tokenized exactly as the engine does it: same vocabulary, same chat template,
same special tokens. Two sources:

- the simulator (``engine: sim``) tokenizes with its deterministic dummy tokenizer, whatever
  the model name;
- a real engine (vLLM) tokenizes with the model's Hugging Face tokenizer:
  :class:`HFPromptTokenizer` loads one from a local directory (``tokenizer.json`` and
  ``tokenizer_config.json`` with its chat template, as ``save_pretrained`` writes them) and
  applies it as vLLM's OpenAI server does: chat messages through the chat template with the
  assistant's generation prompt, then encoded without adding special tokens (the template
  has them); completion prompts encoded with the tokenizer's special tokens.

:class:`ModelTokenizers` picks per request: the simulator's for ``sim`` endpoints, else the
tokenizer configured for the request's model (``gateway.tokenizers`` in the Fleet spec), else
none (the scorer then falls back to its routing history). Loading needs ``transformers``
(extra ``pilothouse[hf]``; it runs without torch); tokenizing is pure and synchronous.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pilothouse.engines.registry import builtin_tokenizer_kinds
from pilothouse.engines.tokenizer import DummyTokenizer
from pilothouse.errors import ConfigError
from pilothouse.scheduling.plugins.scorers.precise_prefix import (
    PromptTokenizer,
    TemplateTokenizer,
    chat_turns,
)
from pilothouse.scheduling.types import SchedulingRequest


class HFPromptTokenizer:
    """A :class:`PromptTokenizer` over a Hugging Face tokenizer, as vLLM applies it."""

    __slots__ = ("_tokenizer",)

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer

    @classmethod
    def load(cls, path: str | Path) -> HFPromptTokenizer:
        """The tokenizer saved in directory ``path`` (never downloaded)."""
        directory = Path(path).expanduser()
        if not directory.is_dir():
            raise ConfigError(f"tokenizer directory {directory} does not exist")
        try:
            from transformers import AutoTokenizer
        except ImportError as exc:
            raise ConfigError(
                "Hugging Face tokenizers need the 'hf' extra: pip install 'pilothouse[hf]'"
            ) from exc
        try:
            tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load a tokenizer from {directory}: {exc}") from exc
        return cls(tokenizer)

    def tokenize(self, request: SchedulingRequest, engine: str) -> Sequence[int] | None:
        turns = chat_turns(request.prompt)
        if turns is None:  # /v1/completions: vLLM adds the tokenizer's special tokens
            return list(self._tokenizer.encode(request.prompt))
        messages = [{"role": t.role, "content": t.content} for t in turns]
        text = self._tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        return list(self._tokenizer.encode(text, add_special_tokens=False))


class ModelTokenizers:
    """Per request: the simulator's tokenizer for the engine kinds that tokenize as it does
    (``sim``), else the model's own, else none."""

    __slots__ = ("_builtin", "_models", "_sim")

    def __init__(
        self, models: Mapping[str, PromptTokenizer], sim: PromptTokenizer | None = None
    ) -> None:
        self._models = dict(models)
        self._sim = sim or TemplateTokenizer(DummyTokenizer())
        self._builtin = builtin_tokenizer_kinds()

    def tokenize(self, request: SchedulingRequest, engine: str) -> Sequence[int] | None:
        if engine in self._builtin:
            return self._sim.tokenize(request, engine)
        tokenizer = self._models.get(request.model)
        return None if tokenizer is None else tokenizer.tokenize(request, engine)


def load_tokenizers(directories: Mapping[str, str], field: str = "tokenizers") -> ModelTokenizers:
    """:class:`ModelTokenizers` from ``model name → tokenizer directory``.

    Models sharing a directory share one loaded tokenizer. A missing or unreadable directory
    is a :class:`ConfigError` naming the model.
    """
    loaded: dict[str, HFPromptTokenizer] = {}
    models: dict[str, PromptTokenizer] = {}
    for model, directory in directories.items():
        if directory not in loaded:
            try:
                loaded[directory] = HFPromptTokenizer.load(directory)
            except ConfigError as exc:
                raise ConfigError(exc.message, f"{field}.{model}") from exc
        models[model] = loaded[directory]
    return ModelTokenizers(models)
