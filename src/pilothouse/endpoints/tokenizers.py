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

Each of them is also a :class:`PromptRenderer` for the
:class:`~pilothouse.endpoints.prompt_tokens.PromptTokenizerProducer`, which tokenizes before
scheduling, in a worker thread: ``render`` cuts the rendered prompt right after each special
token (where the tokenizer restarts: :func:`split_after`), so that a repeated system prompt is
a repeated segment, tokenized once. :class:`HFPromptTokenizer` checks at load time that its
tokenizer really restarts there and keeps whole prompts otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from pilothouse.endpoints.prompt_tokens import PromptRenderer, PromptText
from pilothouse.engines.registry import builtin_tokenizer_kinds
from pilothouse.engines.tokenizer import DummyTokenizer
from pilothouse.errors import ConfigError
from pilothouse.scheduling.plugins.scorers.precise_prefix import (
    ChatEncoder,
    PromptTokenizer,
    chat_turns,
)
from pilothouse.scheduling.types import SchedulingRequest

DUMMY_MARKERS = re.compile(r"<\|[^|<>\s]{1,32}\|>")  # the simulator's special tokens
_PROBE = [  # contents around which a tokenizer might not restart at special tokens
    {"role": "system", "content": " You are  brief.\n\n"},
    {"role": "user", "content": "12 34\t<b>x</b>  "},
    {"role": "assistant", "content": "\n ok"},
    {"role": "user", "content": "é ü 中文 😀 "},
]


class ModelTokenizer(PromptTokenizer, PromptRenderer, Protocol):
    """Tokenizes a prompt inline, or renders it for the producer."""


def split_after(text: str, markers: re.Pattern[str] | None) -> tuple[str, ...]:
    """``text`` cut right after each match of ``markers`` (the pieces join to ``text``)."""
    if markers is None:
        return (text,)
    cuts = [m.end() for m in markers.finditer(text)]
    starts = [0, *cuts]
    ends = [*cuts, len(text)]
    return tuple(text[a:b] for a, b in zip(starts, ends, strict=True) if b > a) or (text,)


class _BackendEncoder:
    """A fast tokenizer's Rust backend: ``encode_batch`` releases the GIL."""

    __slots__ = ("_backend", "_special")

    def __init__(self, backend: Any, special: bool) -> None:
        self._backend = backend
        self._special = special

    def encode_segments(self, texts: Sequence[str]) -> list[list[int]]:
        encodings = self._backend.encode_batch(list(texts), add_special_tokens=self._special)
        return [e.ids for e in encodings]


class HFPromptTokenizer:
    """A :class:`PromptTokenizer` over a Hugging Face tokenizer, as vLLM applies it."""

    __slots__ = ("_chat", "_markers", "_plain", "_tokenizer")

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        backend = tokenizer.backend_tokenizer
        self._chat = _BackendEncoder(backend, special=False)
        self._plain = _BackendEncoder(backend, special=True)
        self._markers = _special_markers(tokenizer)
        if self._markers is not None and not self._restarts_at_markers():
            self._markers = None  # never cut: whole prompts are still cached

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

    @property
    def segmented(self) -> bool:
        """Whether prompts are cut at special tokens (the tokenizer restarts there)."""
        return self._markers is not None

    def tokenize(self, request: SchedulingRequest, engine: str) -> Sequence[int] | None:
        turns = chat_turns(request.prompt)
        if turns is None:  # /v1/completions: vLLM adds the tokenizer's special tokens
            return list(self._tokenizer.encode(request.prompt))
        text = self._template(turns)
        return list(self._tokenizer.encode(text, add_special_tokens=False))

    def render(self, request: SchedulingRequest, engine: str) -> PromptText:
        turns = chat_turns(request.prompt)
        if turns is None:
            return PromptText(self._plain, (request.prompt,))
        return PromptText(self._chat, split_after(self._template(turns), self._markers))

    def _template(self, turns: Sequence[Any]) -> str:
        messages = [{"role": t.role, "content": t.content} for t in turns]
        return str(
            self._tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
        )

    def _restarts_at_markers(self) -> bool:
        try:
            text = self._tokenizer.apply_chat_template(
                _PROBE, tokenize=False, add_generation_prompt=True
            )
        except (ValueError, TypeError, LookupError):  # templates may refuse some roles
            return False
        whole = self._chat.encode_segments([text])[0]
        parts = self._chat.encode_segments(split_after(text, self._markers))
        return whole == [t for part in parts for t in part]


def _special_markers(tokenizer: Any) -> re.Pattern[str] | None:
    """A pattern of the tokenizer's special added tokens, longest first; ``None``: none."""
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    special = sorted({t.content for t in added.values() if t.special}, key=len, reverse=True)
    return re.compile("|".join(map(re.escape, special))) if special else None


class TemplateRenderer:
    """A :class:`ModelTokenizer` over a :class:`ChatEncoder` (the simulator's dummy one).

    Chat prompts get the encoder's chat template and are cut after each match of
    ``markers``; other prompts are encoded as they are. ``engines`` limits the engine kinds
    it serves (``None``: all).
    """

    __slots__ = ("_encoder", "_engines", "_markers")

    def __init__(
        self,
        encoder: ChatEncoder,
        markers: re.Pattern[str] | None = DUMMY_MARKERS,
        engines: frozenset[str] | None = None,
    ) -> None:
        self._encoder = encoder
        self._markers = markers
        self._engines = engines

    def tokenize(self, request: SchedulingRequest, engine: str) -> Sequence[int] | None:
        text = self.render(request, engine)
        return None if text is None else list(self._encoder.encode("".join(text.segments)))

    def render(self, request: SchedulingRequest, engine: str) -> PromptText | None:
        if self._engines is not None and engine not in self._engines:
            return None
        turns = chat_turns(request.prompt)
        if turns is None:
            return PromptText(self, (request.prompt,))
        text = self._encoder.apply_chat_template(turns)
        return PromptText(self, split_after(text, self._markers))

    def encode_segments(self, texts: Sequence[str]) -> list[list[int]]:
        return [list(self._encoder.encode(t)) for t in texts]


class ModelTokenizers:
    """Per request: the simulator's tokenizer for the engine kinds that tokenize as it does
    (``sim``), else the model's own, else none."""

    __slots__ = ("_builtin", "_models", "_sim")

    def __init__(
        self, models: Mapping[str, ModelTokenizer], sim: ModelTokenizer | None = None
    ) -> None:
        self._models = dict(models)
        self._sim = sim or TemplateRenderer(DummyTokenizer())
        self._builtin = builtin_tokenizer_kinds()

    def _pick(self, request: SchedulingRequest, engine: str) -> ModelTokenizer | None:
        return self._sim if engine in self._builtin else self._models.get(request.model)

    def tokenize(self, request: SchedulingRequest, engine: str) -> Sequence[int] | None:
        tokenizer = self._pick(request, engine)
        return None if tokenizer is None else tokenizer.tokenize(request, engine)

    def render(self, request: SchedulingRequest, engine: str) -> PromptText | None:
        tokenizer = self._pick(request, engine)
        return None if tokenizer is None else tokenizer.render(request, engine)


def load_tokenizers(directories: Mapping[str, str], field: str = "tokenizers") -> ModelTokenizers:
    """:class:`ModelTokenizers` from ``model name → tokenizer directory``.

    Models sharing a directory share one loaded tokenizer. A missing or unreadable directory
    is a :class:`ConfigError` naming the model.
    """
    loaded: dict[str, HFPromptTokenizer] = {}
    models: dict[str, ModelTokenizer] = {}
    for model, directory in directories.items():
        if directory not in loaded:
            try:
                loaded[directory] = HFPromptTokenizer.load(directory)
            except ConfigError as exc:
                raise ConfigError(exc.message, f"{field}.{model}") from exc
        models[model] = loaded[directory]
    return ModelTokenizers(models)
