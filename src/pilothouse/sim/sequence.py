"""Mutable per-request state inside the engine model (never leaves :mod:`pilothouse.sim`)."""

from __future__ import annotations

from pilothouse.sim.types import EngineRequest, FinishedRequest


class Sequence:
    """A request's progress: tokens generated and computed, blocks held, timestamps.

    ``computed`` counts tokens whose KV is in the cache; ``total`` is prompt plus generated.
    A decoding sequence has ``computed == total - 1`` (its last sampled token is computed in
    the next step); while it sits in a :class:`~pilothouse.sim.decode_batch.DecodeBatch`,
    ``computed``, ``generated`` and ``n_blocks`` are only current after ``sync``.
    ``refs`` are the cached block hashes it holds (blocks ``0..len(refs)``); its other
    ``n_blocks - len(refs)`` blocks are private.
    """

    __slots__ = (
        "arrival",
        "base",
        "cached_tokens",
        "computed",
        "epoch",
        "first_scheduled",
        "first_token",
        "gbase",
        "generated",
        "n_blocks",
        "preemptions",
        "refs",
        "req",
        "target",
    )

    def __init__(self, req: EngineRequest, arrival: float) -> None:
        self.req = req
        self.arrival = arrival
        self.target = req.output_tokens
        self.generated = 0
        self.computed = 0
        self.refs: list[int] = []
        self.n_blocks = 0
        self.cached_tokens = 0
        self.first_scheduled: float | None = None
        self.first_token: float | None = None
        self.preemptions = 0
        # kept by DecodeBatch while the sequence decodes (computed = base + counter, ...)
        self.base = 0
        self.gbase = 0
        self.epoch = 0

    @property
    def request_id(self) -> str:
        return self.req.request_id

    @property
    def lora(self) -> str | None:
        return self.req.lora

    @property
    def total(self) -> int:
        return self.req.prompt_tokens + self.generated

    @property
    def remaining(self) -> int:
        return self.target - self.generated

    def reset_for_recompute(self) -> None:
        """After preemption: everything is recomputed (prompt and generated tokens)."""
        self.computed = 0
        self.refs = []
        self.n_blocks = 0
        self.preemptions += 1

    def finished(self, now: float, reason: str | None = None) -> FinishedRequest:
        return FinishedRequest(
            request_id=self.req.request_id,
            finish_reason=reason or self.req.finish_reason,
            prompt_tokens=self.req.prompt_tokens,
            completion_tokens=self.generated,
            cached_tokens=self.cached_tokens,
            arrival_time=self.arrival,
            first_scheduled_time=self.first_scheduled,
            first_token_time=self.first_token,
            finish_time=now,
            num_preemptions=self.preemptions,
            lora=self.req.lora,
        )
