"""The OpenAI routes the front doors serve."""

from __future__ import annotations

from enum import Enum


class Route(Enum):
    CHAT = "/v1/chat/completions"
    COMPLETIONS = "/v1/completions"
    EMBEDDINGS = "/v1/embeddings"
