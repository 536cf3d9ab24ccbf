"""Secret values taken out of tool results before the agent sees them.

The gateway injects secrets into upstream servers (headers, environment); a server that
echoes one (an error message quoting its token, a debug dump) must not hand it to the agent,
whose context may leak through any egress tool. Every string in a result (text blocks,
embedded resources, structured content, keys included) has each secret value replaced by
``[redacted]``, and so are the value's base64 encodings (standard and URL-safe, with and
without padding) and its URL-encoding, which is how a token usually appears in a dump.
Values shorter than :data:`MIN_SECRET` characters are left alone: they would redact
ordinary text, and a secret that short protects nothing anyway.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from pilothouse.toolgateway.guard import ToolResult

REDACTED = "[redacted]"
MIN_SECRET = 4


def forms(secret: str) -> set[str]:
    """The ways ``secret`` is looked for (see the module docstring)."""
    raw = secret.encode()
    found = {secret, quote(secret, safe="")}
    for encoded in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
        text = encoded.decode("ascii")
        found.update({text, text.rstrip("=")})
    return {form for form in found if len(form) >= MIN_SECRET}


class Redactor:
    """Replaces secret values; rebuilt only when the set of values changes (rotation)."""

    def __init__(self) -> None:
        self._values: tuple[str, ...] = ()
        self._pattern: re.Pattern[str] | None = None

    def update(self, values: Sequence[str]) -> None:
        current = tuple(sorted(v for v in values if len(v) >= MIN_SECRET))
        if current == self._values:
            return
        self._values = current
        alternatives = sorted({f for v in current for f in forms(v)}, key=len, reverse=True)
        self._pattern = (
            re.compile("|".join(re.escape(a) for a in alternatives)) if alternatives else None
        )

    def text(self, text: str) -> tuple[str, int]:
        """``text`` with every secret replaced, and how many were."""
        if self._pattern is None:
            return text, 0
        return self._pattern.subn(REDACTED, text)

    def result(self, result: ToolResult) -> tuple[ToolResult, int]:
        """``result`` with every secret replaced in every string, and how many were."""
        if self._pattern is None:
            return result, 0
        counter = [0]
        content = [self._walk(block, counter) for block in result.content]
        structured = (
            self._walk(result.structured, counter) if result.structured is not None else None
        )
        if counter[0] == 0:
            return result, 0
        return ToolResult(content, structured, result.is_error), counter[0]

    def _walk(self, value: Any, counter: list[int]) -> Any:
        if isinstance(value, str):
            text, n = self.text(value)
            counter[0] += n
            return text
        if isinstance(value, Mapping):
            return {self._walk(k, counter): self._walk(v, counter) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._walk(item, counter) for item in value]
        return value
