"""The simulator server's pure parts: tokenizer, filler text, request parsing, settings."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from pilothouse.engines.tokenizer import (
    ChatMessage,
    DummyTokenizer,
    filler_seed,
    filler_text,
    natural_length,
)
from pilothouse.errors import BadRequest, ConfigError, ModelNotFound
from pilothouse.servers.sim.protocol import parse_call, stream_chunk
from pilothouse.servers.sim.settings import FaultSettings, KVEventSettings, SimSettings
from pilothouse.sim import EngineOverrides

TOKENIZER = DummyTokenizer()


def test_tokenizer_is_deterministic_and_splits_long_words() -> None:
    ids = TOKENIZER.encode("Hello, world! internationalization")
    assert ids == TOKENIZER.encode("Hello, world! internationalization")
    assert len(ids) == 2 + 2 + 4  # Hello , world ! + 20 letters in chunks of 6
    assert all(256 <= i < 32_000 for i in ids)
    assert len(TOKENIZER.encode("<|im_start|>")) == 1


def test_chat_template_ends_with_the_assistant_turn() -> None:
    text = TOKENIZER.apply_chat_template([ChatMessage("user", "hi")])
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_filler_text_is_stable_and_continuous() -> None:
    start = filler_seed([1, 2, 3], seed=0)
    assert filler_seed([1, 2, 3], seed=0) == start != filler_seed([1, 2, 3], seed=1)
    whole = filler_text(start, 0, 6)
    assert filler_text(start, 0, 2) + filler_text(start, 2, 4) == whole
    assert len(whole.split()) == 6
    assert 16 <= natural_length(start) <= 128


def call(kind: str, doc: dict[str, Any]) -> Any:
    return parse_call(kind, orjson.dumps(doc), TOKENIZER, "m", frozenset({"lora-a"}))


def test_parse_chat_and_completion() -> None:
    chat = call(
        "chat",
        {
            "model": "lora-a",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_completion_tokens": 3,
        },
    )
    assert (chat.lora, chat.max_tokens, chat.stream, chat.include_usage) == (
        "lora-a",
        3,
        True,
        True,
    )
    text = call("completion", {"model": "m", "prompt": ["one two"]})
    assert (text.lora, text.max_tokens, text.include_usage) == (None, None, False)
    assert text.prompt_ids == tuple(TOKENIZER.encode("one two"))
    assert call("completion", {"model": "m", "prompt": [[4, 5]]}).prompt_ids == (4, 5)


@pytest.mark.parametrize(
    ("kind", "doc", "param"),
    [
        ("chat", {"model": 3, "messages": []}, "model"),
        ("chat", {"model": "m", "messages": [{"content": "x"}]}, "messages"),
        ("chat", {"model": "m", "messages": [{"role": "user", "content": 5}]}, "messages"),
        ("completion", {"model": "m", "prompt": ["a", "b"]}, "prompt"),
        ("completion", {"model": "m", "prompt": [1, -2]}, "prompt"),
        ("completion", {"model": "m", "prompt": ""}, "prompt"),
        ("completion", {"model": "m", "prompt": "x", "max_tokens": True}, "max_tokens"),
        ("completion", {"model": "m", "prompt": "x", "n": 2}, "n"),
    ],
)
def test_bad_requests_name_the_field(kind: str, doc: dict[str, Any], param: str) -> None:
    with pytest.raises(BadRequest) as caught:
        call(kind, doc)
    assert caught.value.param == param


def test_unknown_model_and_bad_json() -> None:
    with pytest.raises(ModelNotFound, match="`other` does not exist"):
        call("completion", {"model": "other", "prompt": "x"})
    with pytest.raises(BadRequest, match="not valid JSON"):
        parse_call("chat", b"{", TOKENIZER, "m", frozenset())
    with pytest.raises(BadRequest, match="JSON object"):
        parse_call("chat", b"[]", TOKENIZER, "m", frozenset())


def test_completion_chunks_are_not_chat_chunks() -> None:
    text = call("completion", {"model": "m", "prompt": "x"})
    event = orjson.loads(stream_chunk(text, "id", 1, " a").removeprefix(b"data: "))
    assert event["object"] == "text_completion"
    assert event["choices"][0]["text"] == " a"


@pytest.mark.parametrize(
    ("build", "path"),
    [
        (lambda: FaultSettings(error_rate=0.7, hang_rate=0.5), "hang_rate"),
        (lambda: FaultSettings(crash_after=0), "crash_after"),
        (lambda: KVEventSettings(replay_port=5), "kv_replay_port"),
        (lambda: KVEventSettings(port=1, encoding="json"), "kv_event_format"),
        (lambda: SimSettings(time_scale=0), "time_scale"),
        (lambda: SimSettings(lora_modules=("a", "a")), "lora_modules"),
    ],
)
def test_invalid_settings_name_the_field(build: Any, path: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build()
    assert caught.value.path == path


def test_lora_modules_enable_a_slot_and_bad_overrides_are_config_errors() -> None:
    assert SimSettings(lora_modules=("a",)).engine_config().max_loras == 1
    bad = SimSettings(overrides=EngineOverrides(max_model_len=10**9))
    with pytest.raises(ConfigError, match="exceeds the KV cache"):
        bad.engine_config()
