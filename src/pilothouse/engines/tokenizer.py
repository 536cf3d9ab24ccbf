"""A deterministic dummy tokenizer, chat template and filler text for the simulator.

Text is split into special markers (``<|...|>``), words of at most six characters, single
punctuation marks and runs of whitespace-free symbols; each piece maps to an id through
CRC-32, so the same text always yields the same ids in every process. Generated text is
drawn from a fixed word list, one word per token, deterministically from the prompt's ids
and the server seed.

One exception keeps the benchmark workloads' token counts and block boundaries: a whole
word of lower-case hex digits whose length is a multiple of four (at least eight) is the
text of workload tokens (:mod:`pilothouse.bench.workloads.tokens` writes token ``t`` as
``f"{t:04x}"``), so it is split into four-character tokens whose ids are their hex values:
the same ids, counts and block hashes as the workload's.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

VOCAB_SIZE = 32_000
_RESERVED = 256  # ids below this are never produced
_HEX_WORD = r"(?<!\w)(?:[0-9a-f]{4}){2,}(?!\w)"
_PIECE = re.compile(rf"<\|[^|<>\s]{{1,32}}\|>|{_HEX_WORD}|\w{{1,6}}|[^\w\s]")
_HEX_CHARS = 4

FILLER_WORDS = (
    "the", "model", "engine", "token", "cache", "block", "batch", "prefix", "router",
    "replica", "queue", "request", "stream", "latency", "decode", "prefill", "gateway",
    "scheduler", "memory", "layer", "attention", "simulated", "answer", "is", "a", "of",
    "and", "to", "in", "with", "fast", "steady",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: str
    content: str


class DummyTokenizer:
    """Maps text to stable token ids; never fails on any input."""

    __slots__ = ()

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for piece in _PIECE.findall(text):
            if len(piece) >= 2 * _HEX_CHARS and not piece.startswith("<|"):
                ids.extend(_hex_ids(piece))  # \w{1,6} pieces are shorter
            else:
                ids.append(_piece_id(piece))
        return ids

    def pieces(self, text: str) -> list[str]:
        """``text`` cut into one string per token of :meth:`encode`, joined back whole.

        Whitespace before a token goes with it and trailing whitespace with the last one, so
        a scripted answer can be streamed token by token at the engine's pace. Text without
        any token (empty, or only whitespace) gives no pieces.
        """
        out: list[str] = []
        end = 0
        for match in _PIECE.finditer(text):
            piece = match.group()
            if len(piece) >= 2 * _HEX_CHARS and not piece.startswith("<|"):
                parts = [piece[i : i + _HEX_CHARS] for i in range(0, len(piece), _HEX_CHARS)]
            else:
                parts = [piece]
            out.append(text[end : match.start()] + parts[0])
            out.extend(parts[1:])
            end = match.end()
        if out and end < len(text):
            out[-1] += text[end:]
        return out

    def apply_chat_template(self, messages: Sequence[ChatMessage]) -> str:
        """ChatML-like flattening, ending with the assistant's turn."""
        turns = [f"<|im_start|>{m.role}\n{m.content}<|im_end|>\n" for m in messages]
        return "".join(turns) + "<|im_start|>assistant\n"


def _hex_ids(word: str) -> list[int]:
    """Workload token text: one id (its hex value) per four characters."""
    return [int(word[i : i + _HEX_CHARS], 16) for i in range(0, len(word), _HEX_CHARS)]


def _piece_id(piece: str) -> int:
    return _RESERVED + zlib.crc32(piece.encode("utf-8")) % (VOCAB_SIZE - _RESERVED)


def filler_seed(token_ids: Sequence[int], seed: int) -> int:
    """Where in the word list a request's answer starts: depends on its prompt and the seed."""
    head = ",".join(map(str, token_ids[:64]))
    return zlib.crc32(f"{seed}:{len(token_ids)}:{head}".encode())


def filler_text(start: int, offset: int, count: int) -> str:
    """Words ``offset .. offset + count`` of the answer that starts at ``start``."""
    words = len(FILLER_WORDS)
    pieces = [FILLER_WORDS[(start + 7 * index) % words] for index in range(offset, offset + count)]
    return "".join(f" {piece}" for piece in pieces)


def natural_length(start: int, low: int = 16, high: int = 128) -> int:
    """A deterministic answer length in ``[low, high]`` when the client sets no max_tokens."""
    return low + start % (high - low + 1)
