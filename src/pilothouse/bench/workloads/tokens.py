"""Synthetic prompts whose text, token ids and block hashes agree.

Token id ``t`` (0..65535) is written as exactly four characters, its lower-case hex
(``0x1f2a`` → ``"1f2a"``). A prompt's text is its tokens' texts joined, so two prompts share
``k`` leading tokens exactly when they share ``4k`` leading characters: the scheduler's
character-level prefix matching and the engine's token-level prefix cache see the same
sharing. With the engine's 16-token blocks, a block is 64 characters, which is also the
``approx-prefix`` scorer's default block.

:class:`PromptBuilder` grows a prompt piece by piece (a system prompt, a question, a turn)
and keeps the chained block hashes of its full blocks up to date
(:func:`pilothouse.sim.hashing.chain_block_hashes`), so extending a shared prefix only
hashes the new blocks.
"""

from __future__ import annotations

import random
import sys
from array import array
from collections.abc import Sequence
from dataclasses import dataclass

from pilothouse.sim.hashing import chain_block_hashes

CHARS_PER_TOKEN = 4
VOCAB_SIZE = 1 << 16
_TEXT = tuple(f"{token:04x}" for token in range(VOCAB_SIZE))


def render(token_ids: Sequence[int]) -> str:
    """The text of ``token_ids`` (four characters per token)."""
    return "".join(map(_TEXT.__getitem__, token_ids))


def random_tokens(rng: random.Random, count: int) -> array[int]:
    """``count`` uniformly random token ids from ``rng`` (same seed, same ids, any machine)."""
    tokens = array("H")
    tokens.frombytes(rng.randbytes(2 * count))
    if sys.byteorder == "big":
        tokens.byteswap()
    return tokens


def tokens_of_text(text: str) -> list[int]:
    """Token ids for arbitrary text (a trace's literal prompt): one per 4 characters.

    Equal 4-character chunks give equal ids, so equal text prefixes give equal token
    prefixes; the id is a checksum of the chunk, so unrelated chunks rarely collide.
    """
    ids = []
    for start in range(0, len(text), CHARS_PER_TOKEN):
        chunk = text[start : start + CHARS_PER_TOKEN].encode("utf-8")
        ids.append(int.from_bytes(chunk.ljust(4, b"\0")[:4], "little") % VOCAB_SIZE)
    return ids


@dataclass(frozen=True, slots=True)
class Prompt:
    """A finished prompt: text, length in tokens, hashes of its full blocks."""

    text: str
    tokens: int
    block_hashes: tuple[int, ...]


class PromptBuilder:
    """Appends token pieces and keeps text and block hashes consistent; fork to branch."""

    __slots__ = ("_block_size", "_hashes", "_parts", "_tail", "_tokens")

    def __init__(self, block_size: int) -> None:
        if block_size < 1:
            raise ValueError("block_size must be >= 1")
        self._block_size = block_size
        self._parts: list[str] = []
        self._hashes: list[int] = []
        self._tail: list[int] = []  # tokens after the last full block
        self._tokens = 0

    @property
    def tokens(self) -> int:
        return self._tokens

    def extend(self, token_ids: Sequence[int], text: str | None = None) -> PromptBuilder:
        """Append tokens (and their text, when it is not :func:`render` of them)."""
        self._parts.append(render(token_ids) if text is None else text)
        self._tokens += len(token_ids)
        tail = self._tail
        tail.extend(token_ids)
        size = self._block_size
        full = len(tail) // size * size
        if full:
            parent = self._hashes[-1] if self._hashes else None
            self._hashes.extend(chain_block_hashes(tail[:full], size, parent=parent))
            del tail[:full]
        return self

    def fork(self) -> PromptBuilder:
        """An independent copy (to branch a shared prefix into several prompts)."""
        copy = PromptBuilder(self._block_size)
        copy._parts = [self.text()]
        copy._hashes = list(self._hashes)
        copy._tail = list(self._tail)
        copy._tokens = self._tokens
        return copy

    def block_hashes_from(self, start: int) -> tuple[int, ...]:
        """The hashes of the full blocks from block ``start`` on (what a request's answer
        adds to the chain once the builder has been extended by it)."""
        return tuple(self._hashes[start:])

    def text(self) -> str:
        if len(self._parts) > 1:
            self._parts[:] = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    def build(self) -> Prompt:
        return Prompt(self.text(), self._tokens, tuple(self._hashes))
