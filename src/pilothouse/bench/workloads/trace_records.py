"""Parsing one line of a JSONL trace (the format is documented in :mod:`.trace`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pilothouse.errors import ConfigError

_FIELDS = frozenset(
    {
        "arrival_s",
        "timestamp",
        "output_tokens",
        "output_length",
        "prompt",
        "prompt_tokens",
        "input_length",
        "prefix_group",
        "prefix_tokens",
        "hash_ids",
        "block_tokens",
        "request_id",
        "max_tokens",
        "session_id",
        "tenant",
    }
)


@dataclass(frozen=True, slots=True)
class TraceRecord:
    """One parsed line; the prompt itself is built only when the request is replayed."""

    index: int
    request_id: str
    arrival_s: float
    output_tokens: int
    prompt_tokens: int
    text: str | None = None
    prefix_group: str | None = None
    prefix_tokens: int = 0
    hash_ids: tuple[int, ...] = ()
    block_tokens: int | None = None
    max_tokens: int | None = None
    session_id: str | None = None
    tenant: str | None = None

    @property
    def shared_tokens(self) -> int:
        """Tokens this line may share with others (for the workload's shape)."""
        if self.hash_ids:
            return self.prompt_tokens
        return self.prefix_tokens


def _float(doc: Mapping[str, object], names: tuple[str, ...], where: str) -> float | None:
    """The first of ``names`` present, as a non-negative number (``None`` if absent)."""
    for name in names:
        if name in doc:
            value = doc[name]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{name} must be a number", where)
            if value < 0:
                raise ConfigError(f"{name} must be >= 0", where)
            return float(value)
    return None


def _int(doc: Mapping[str, object], names: tuple[str, ...], where: str) -> int | None:
    value = _float(doc, names, where)
    if value is None:
        return None
    if value != int(value):
        raise ConfigError(f"{'/'.join(names)} must be an integer", where)
    return int(value)


def _text(doc: Mapping[str, object], name: str, where: str) -> str | None:
    value = doc.get(name)
    if value is not None and not isinstance(value, str | int):
        raise ConfigError(f"{name} must be a string", where)
    return None if value is None else str(value)


def _arrival(doc: Mapping[str, object], where: str) -> float:
    seconds = _float(doc, ("arrival_s",), where)
    if seconds is not None:
        return seconds
    millis = _float(doc, ("timestamp",), where)
    if millis is not None:
        return millis / 1000.0
    raise ConfigError("needs arrival_s (seconds) or timestamp (milliseconds)", where)


def _hash_ids(doc: Mapping[str, object], where: str) -> tuple[int, ...]:
    raw = doc.get("hash_ids", [])
    if not isinstance(raw, list) or not all(
        isinstance(x, int) and not isinstance(x, bool) for x in raw
    ):
        raise ConfigError("hash_ids must be a list of integers", where)
    return tuple(raw)


def _prompt_length(doc: Mapping[str, object], text: object, where: str) -> int:
    if text is not None:
        if not isinstance(text, str):
            raise ConfigError("prompt must be a string", where)
        length: int | None = -(-len(text) // 4)
    else:
        length = _int(doc, ("prompt_tokens", "input_length"), where)
    if not length:
        raise ConfigError("needs a prompt, prompt_tokens or input_length >= 1", where)
    return length


def parse_record(doc: object, index: int, where: str) -> TraceRecord:
    """One line's object as a record; ConfigError (path ``file:line``) when it is malformed."""
    if not isinstance(doc, dict):
        raise ConfigError("each line must be a JSON object", where)
    unknown = sorted(set(doc) - _FIELDS)
    if unknown:
        raise ConfigError(f"unknown field(s): {', '.join(unknown)}", where)
    output = _int(doc, ("output_tokens", "output_length"), where)
    if not output:
        raise ConfigError("needs output_tokens (or output_length) >= 1", where)
    text = doc.get("prompt")
    length = _prompt_length(doc, text, where)
    prefix = _int(doc, ("prefix_tokens",), where) or 0
    group = _text(doc, "prefix_group", where)
    if prefix > length or (prefix and group is None):
        raise ConfigError("prefix_tokens needs a prefix_group and at most the prompt", where)
    return TraceRecord(
        index=index,
        request_id=_text(doc, "request_id", where) or f"trace-{index}",
        arrival_s=_arrival(doc, where),
        output_tokens=output,
        prompt_tokens=length,
        text=text if isinstance(text, str) else None,
        prefix_group=group,
        prefix_tokens=prefix if group is not None else 0,
        hash_ids=_hash_ids(doc, where),
        block_tokens=_int(doc, ("block_tokens",), where) or None,
        max_tokens=_int(doc, ("max_tokens",), where),
        session_id=_text(doc, "session_id", where),
        tenant=_text(doc, "tenant", where),
    )
