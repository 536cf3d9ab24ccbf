"""Replay of a JSONL trace: one request per line, at its recorded time (or rescaled).

Each line is a JSON object (blank lines and lines starting with ``#`` are skipped):

- ``arrival_s``: seconds from the start of the trace, or ``timestamp`` in milliseconds
  (Mooncake traces). Lines may come in any order; they are replayed sorted by time.
- ``output_tokens`` (or ``output_length``): tokens the model generates.
- the prompt, one of:

  - ``prompt``: literal text (one token per 4 characters, equal text gives equal tokens);
  - ``prompt_tokens`` (or ``input_length``), optionally with ``prefix_group`` and
    ``prefix_tokens``: the first ``prefix_tokens`` tokens are shared by every line of the
    same group, the rest are unique to the line;
  - ``hash_ids`` with ``input_length`` (Mooncake): block ``i`` holds the content named by
    ``hash_ids[i]``, ``block_tokens`` tokens each (default 512, Mooncake's), cut to
    ``input_length``.

- optional: ``request_id``, ``max_tokens`` (at least the output), ``session_id``,
  ``tenant``.

With a QPS, arrival times are scaled so the trace's mean rate becomes that QPS; without
one it replays as recorded (:meth:`TraceWorkload.native_qps`).
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from pilothouse.bench.workloads.arrivals import ArrivalSpec
from pilothouse.bench.workloads.base import WorkloadShape, child_rng
from pilothouse.bench.workloads.tokens import (
    Prompt,
    PromptBuilder,
    random_tokens,
    tokens_of_text,
)
from pilothouse.bench.workloads.trace_records import TraceRecord, parse_record
from pilothouse.errors import ConfigError
from pilothouse.sim.cluster_types import SimRequest

_CHUNK = 1024


@dataclass(frozen=True, slots=True)
class TraceParams:
    block_tokens: int = 512
    """Tokens per ``hash_ids`` block when a line does not say (Mooncake uses 512)."""


def load_trace(path: Path) -> list[TraceRecord]:
    """Parse and sort a trace; a bad line raises ConfigError naming ``file:line``."""
    records: list[TraceRecord] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read trace {str(path)!r}: {exc.strerror}") from exc
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        where = f"{path.name}:{number}"
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"invalid JSON: {exc.msg}", where) from exc
        records.append(parse_record(document, len(records), where))
    if not records:
        raise ConfigError(f"trace {str(path)!r} has no requests")
    records.sort(key=lambda r: (r.arrival_s, r.index))
    return records


class TraceWorkload:
    """See the module docstring."""

    def __init__(self, path: Path, params: TraceParams, *, block_size: int, seed: int) -> None:
        self.name = path.name
        self._path = path
        self._p = params
        self._block_size = block_size
        self._seed = seed
        self._records = load_trace(path)
        self._streams: dict[tuple[str, object], array[int]] = {}

    def parameters(self) -> Mapping[str, object]:
        return {"path": str(self._path), "requests": len(self._records), **vars_of(self._p)}

    def shape(self) -> WorkloadShape:
        records = self._records
        prompt = sum(r.prompt_tokens for r in records) / len(records)
        output = sum(r.output_tokens for r in records) / len(records)
        shared = sum(r.shared_tokens for r in records) / len(records)
        return WorkloadShape(prompt, output, min(1.0, shared / prompt))

    def native_qps(self) -> float | None:
        records = self._records
        span = records[-1].arrival_s - records[0].arrival_s
        return (len(records) - 1) / span if span > 0 else None

    def requests(
        self, qps: float | None, count: int, arrivals: ArrivalSpec
    ) -> Iterator[SimRequest]:
        native = self.native_qps()
        scale = native / qps if qps is not None and native is not None else 1.0
        start = self._records[0].arrival_s
        for record in self._records[:count]:
            prompt = self._prompt(record)
            yield SimRequest(
                request_id=record.request_id,
                arrival_s=(record.arrival_s - start) * scale,
                prompt=prompt.text,
                prompt_tokens=prompt.tokens,
                block_hashes=prompt.block_hashes,
                output_tokens=record.output_tokens,
                max_tokens=max(record.max_tokens or 0, record.output_tokens),
                session_id=record.session_id,
                tenant=record.tenant,
            )

    # -- prompts -------------------------------------------------------------------------

    def _prompt(self, record: TraceRecord) -> Prompt:
        builder = PromptBuilder(self._block_size)
        if record.text is not None:
            return builder.extend(tokens_of_text(record.text), record.text).build()
        tokens = array("H")
        if record.hash_ids:
            size = record.block_tokens or self._p.block_tokens
            for block in record.hash_ids:
                tokens.extend(self._stream(("block", block), size))
        elif record.prefix_group is not None:
            tokens.extend(self._stream(("group", record.prefix_group), record.prefix_tokens))
        del tokens[record.prompt_tokens :]
        missing = record.prompt_tokens - len(tokens)
        if missing > 0:
            tokens.extend(random_tokens(child_rng(self._seed, "trace", record.index), missing))
        return builder.extend(tokens).build()

    def _stream(self, key: tuple[str, object], length: int) -> array[int]:
        """The first ``length`` tokens of a deterministic stream (built in fixed chunks)."""
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = array("H")
        while len(stream) < length:
            chunk = len(stream) // _CHUNK
            stream.extend(random_tokens(child_rng(self._seed, "trace", *key, chunk), _CHUNK))
        return stream[:length]


def vars_of(params: TraceParams) -> dict[str, object]:
    return {"block_tokens": params.block_tokens}
