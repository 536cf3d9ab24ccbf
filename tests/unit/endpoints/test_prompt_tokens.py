"""The prompt-token producer: same ids as inline tokenizing, in a worker, cached by segment."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

from pilothouse.endpoints.kv_index import block_keys
from pilothouse.endpoints.prompt_tokens import (
    PromptText,
    PromptTokenizerProducer,
    TokenLRU,
    fixed_engines,
    pool_engines,
)
from pilothouse.endpoints.tokenizers import DUMMY_MARKERS, ModelTokenizers, split_after
from pilothouse.engines.tokenizer import DummyTokenizer
from pilothouse.scheduling.types import Endpoint, SchedulingRequest

SYSTEM = "you are a terse assistant " * 20
CHAT = f"system\n{SYSTEM}\nuser\nhello there"
OTHER_CHAT = f"system\n{SYSTEM}\nuser\nsomething else entirely"


def request(
    prompt: str = CHAT, model: str = "m", rid: str = "r", lora: str | None = None
) -> SchedulingRequest:
    return SchedulingRequest(request_id=rid, model=model, prompt=prompt, lora=lora)


class Counting(DummyTokenizer):
    """The simulator's tokenizer, recording every text it encodes and in which thread."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.threads: list[str] = []

    def encode(self, text: str) -> list[int]:
        self.texts.append(text)
        self.threads.append(threading.current_thread().name)
        return super().encode(text)


class Recording(ThreadPoolExecutor):
    """A one-thread executor that counts what is submitted to it."""

    def __init__(self) -> None:
        super().__init__(1, thread_name_prefix="tokenize")
        self.submitted = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


def producer(
    encoder: DummyTokenizer | None = None, engines: Sequence[str] = ("sim",), **kwargs: Any
) -> PromptTokenizerProducer:
    from pilothouse.endpoints.tokenizers import TemplateRenderer

    tokenizers = ModelTokenizers({}, TemplateRenderer(encoder or DummyTokenizer()))
    return PromptTokenizerProducer(tokenizers, fixed_engines(engines), **kwargs)


@pytest.mark.parametrize("prompt", [CHAT, "plain completion text", "user\n", "system\nx\nuser\ny"])
def test_prepared_ids_are_the_inline_tokenizers_ids(prompt: str) -> None:
    inline = ModelTokenizers({}).tokenize(request(prompt), "sim")
    prepared = producer().prepare_now(request(prompt))
    assert prepared.prompt_token_ids == {"sim": tuple(inline or ())}
    assert prepared.prompt == prompt
    assert prepared.request_id == "r"


async def test_a_miss_is_tokenized_in_the_worker_a_hit_on_the_loop() -> None:
    encoder, executor = Counting(), Recording()
    tokens = producer(encoder, executor=executor)
    first = await tokens.prepare(request())
    assert executor.submitted == 1
    assert encoder.threads
    assert all(t.startswith("tokenize") for t in encoder.threads)
    encoded = len(encoder.texts)
    again = await tokens.prepare(request(rid="r2"))
    assert executor.submitted == 1  # the same prompt: answered without a thread hop
    assert len(encoder.texts) == encoded
    assert again.prompt_token_ids == first.prompt_token_ids
    assert again.request_id == "r2"
    assert tokens.stats().prompt_hits == 1
    executor.shutdown()


def test_block_keys_are_chained_for_each_declared_block_size() -> None:
    sizes = [4, 16]
    tokens = producer(block_sizes=lambda: sizes)
    prepared = tokens.prepare_now(request(lora=None))
    ids = (prepared.prompt_token_ids or {})["sim"]
    assert prepared.prompt_block_keys == {
        ("sim", 4, None): tuple(block_keys(ids, 4)),
        ("sim", 16, None): tuple(block_keys(ids, 16)),
    }
    assert len(ids) // 16 >= 1  # both sizes have keys to compare
    adapter = tokens.prepare_now(request(lora="sql"))
    assert adapter.prompt_block_keys == {
        ("sim", 4, "sql"): tuple(block_keys(ids, 4, "sql")),
        ("sim", 16, "sql"): tuple(block_keys(ids, 16, "sql")),
    }
    assert producer().prepare_now(request()).prompt_block_keys is None  # no index: no keys


async def test_a_hit_lacking_a_new_block_size_goes_to_the_worker() -> None:
    sizes, executor = [4], Recording()
    tokens = producer(block_sizes=lambda: sizes, executor=executor)
    first = await tokens.prepare(request())
    again = await tokens.prepare(request())
    assert executor.submitted == 1  # keys cached with the prompt: a hit on the loop
    assert again.prompt_block_keys == first.prompt_block_keys
    sizes.append(8)  # an endpoint declared a new block size
    third = await tokens.prepare(request())
    assert executor.submitted == 2
    assert set(third.prompt_block_keys or {}) == {("sim", 4, None), ("sim", 8, None)}
    assert tokens.stats().prompt_misses == 2  # ...but its tokens came from the cache
    executor.shutdown()


def test_a_repeated_system_prompt_is_tokenized_once() -> None:
    encoder = Counting()
    tokens = producer(encoder)
    tokens.prepare_now(request(CHAT))
    tokens.prepare_now(request(OTHER_CHAT))
    system_segments = [t for t in encoder.texts if SYSTEM in t]
    assert len(system_segments) == 1
    assert any("something else" in t for t in encoder.texts)
    stats = tokens.stats()
    assert stats.prompt_misses == 2
    assert stats.segment_hits >= 1


def test_ids_prepared_already_are_kept() -> None:
    given = request().__class__(request_id="r", model="m", prompt=CHAT, prompt_token_ids={})
    assert producer().prepare_now(given) is given


def test_engines_without_a_tokenizer_are_left_out() -> None:
    # no tokenizer for model "m" on vLLM: only the simulator's ids
    prepared = producer(engines=("vllm", "sim")).prepare_now(request())
    assert set(prepared.prompt_token_ids or {}) == {"sim"}
    none = producer(engines=("vllm",)).prepare_now(request())
    assert none.prompt_token_ids == {}  # prepared: the scorer uses its routing history


def test_a_failing_tokenizer_degrades_to_no_ids(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(DummyTokenizer):
        def encode(self, text: str) -> list[int]:
            raise RuntimeError("boom")

    with caplog.at_level(logging.ERROR, "pilothouse.tokenize"):
        prepared = producer(Broken()).prepare_now(request())
    assert prepared.prompt_token_ids == {}
    assert "cannot tokenize request r for sim" in caplog.text


def test_token_lru_is_bounded_by_tokens_oldest_first() -> None:
    lru = TokenLRU(max_tokens=10)
    lru.put("a", (1, 2, 3, 4))
    lru.put("b", (5, 6, 7, 8))
    assert lru.get("a") == (1, 2, 3, 4)  # now the most recent
    lru.put("c", (9, 10, 11))
    assert lru.get("b") is None
    assert lru.get("a") is not None
    assert lru.get("c") is not None
    assert lru.tokens == 7
    lru.put("huge", tuple(range(11)))  # larger than the whole cache: not kept
    assert lru.get("huge") is None
    assert len(lru) == 2


def test_pool_engines_reads_the_candidates_of_the_model() -> None:
    pool = {
        "m": [Endpoint("a", "a:1", "m", "vllm"), Endpoint("b", "b:1", "m", "sim")],
        "n": [Endpoint("c", "c:1", "n", "sglang")],
    }
    kinds = pool_engines(lambda model: pool.get(model, []))
    assert set(kinds(request(model="m"))) == {"vllm", "sim"}
    assert set(kinds(request(model="x"))) == set()


@pytest.mark.parametrize(
    "text",
    ["", "no markers", "<|a|>", "x<|a|>y<|b|>", "<|a|><|b|>z", "<|im_start|>user\nhi<|im_end|>\n"],
)
def test_split_after_cuts_after_each_marker_and_joins_back(text: str) -> None:
    pieces = split_after(text, DUMMY_MARKERS)
    assert "".join(pieces) == text
    assert all(DUMMY_MARKERS.search(p) is None or DUMMY_MARKERS.search(p).end() == len(p)  # type: ignore[union-attr]
               for p in pieces[:-1])  # fmt: skip


def test_segments_concatenate_to_the_whole_prompts_ids() -> None:
    dummy = DummyTokenizer()
    turns = [("system", SYSTEM), ("user", "ab12 cafe0000beef x"), ("assistant", "ok")]
    prompt = "\n".join(f"{role}\n{content}" for role, content in turns)
    text = ModelTokenizers({}).render(request(prompt), "sim")
    assert isinstance(text, PromptText)
    assert len(text.segments) > 2
    joined = [t for s in text.segments for t in dummy.encode(s)]
    assert joined == dummy.encode("".join(text.segments))


async def test_concurrent_prepares_agree() -> None:
    tokens = producer()
    prompts = [f"system\n{SYSTEM}\nuser\nquestion {i}" for i in range(20)]
    results = await asyncio.gather(*(tokens.prepare(request(p, rid=str(i)))
                                     for i, p in enumerate(prompts)))  # fmt: skip
    inline = ModelTokenizers({})
    for p, prepared in zip(prompts, results, strict=True):
        assert prepared.prompt_token_ids == {"sim": tuple(inline.tokenize(request(p), "sim") or ())}
    tokens.close()


async def test_a_tokenizer_process_prepares_the_same_ids_and_keys_as_the_thread() -> None:
    """gateway.tokenize: process. Block keys chain from a root hashed with a salted string
    hash, so the process must chain from the gateway's root, or no key would ever match."""
    sizes = [4, 16]
    threaded = producer(block_sizes=lambda: sizes)
    isolated = producer(block_sizes=lambda: sizes, process=True)
    try:
        for lora in (None, "adapter-a"):
            asked = request(lora=lora)
            want = await threaded.prepare(asked)
            got = await isolated.prepare(asked)
            assert got.prompt_token_ids == want.prompt_token_ids
            assert got.prompt_block_keys == want.prompt_block_keys
            assert got.prompt_block_keys
            assert got.prompt_block_keys["sim", 4, lora]
        other = await isolated.prepare(request(OTHER_CHAT))  # the shared system prompt: cached
        assert (
            other.prompt_token_ids == (await threaded.prepare(request(OTHER_CHAT))).prompt_token_ids
        )
        again = await isolated.prepare(request(rid="r2"))  # answered here, no hop
        assert again.prompt_token_ids == want.prompt_token_ids
        stats = isolated.stats()
        assert (stats.prompt_hits, stats.prompt_misses) == (1, 3)
        assert stats.segment_hits >= 1  # counted in the process, reported here
    finally:
        threaded.close()
        await isolated.aclose()


async def test_a_dead_tokenizer_process_is_restarted_and_a_stopped_one_fails_to_history(
    caplog: pytest.LogCaptureFixture,
) -> None:
    isolated = producer(process=True)
    want = producer().prepare_now(request()).prompt_token_ids
    try:
        await isolated.start()
        child = isolated._child
        assert child is not None
        proc = child._proc
        assert proc is not None
        with caplog.at_level(logging.ERROR, logger="pilothouse.tokenize"):
            proc.kill()
            await proc.wait()
            again = await isolated.prepare(request())  # a fresh process answers
        assert "the tokenizer process exited" in caplog.text
        assert again.prompt_token_ids == want
        assert child._proc is not proc
        waiting = asyncio.ensure_future(isolated.prepare(request(OTHER_CHAT)))
        await asyncio.sleep(0)  # sent, not yet answered
        await child.aclose()  # the gateway stopping: what waits is routed by history
        assert (await waiting).prompt_token_ids is None
    finally:
        await isolated.aclose()
