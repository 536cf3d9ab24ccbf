"""Scripted replies: the file model, the matcher, and the reply's tokens and wire shapes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from pilothouse.engines.tokenizer import ChatMessage, DummyTokenizer
from pilothouse.errors import ConfigError
from pilothouse.openai.tool_calls import conversation_key, tool_call_id
from pilothouse.servers.sim.cli import settings_from_options
from pilothouse.servers.sim.protocol import parse_call
from pilothouse.servers.sim.script import Conversation, Script, load_script
from pilothouse.servers.sim.scripted import ScriptedOutput

TOKENIZER = DummyTokenizer()
EXAMPLE = Path(__file__).parents[4] / "examples" / "agents" / "scripts" / "weather.yaml"

SCRIPT = Script.model_validate(
    {
        "replies": [
            {
                "when": {"last_role": "user", "contains": "weather", "tool": "get_weather"},
                "tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}],
            },
            {"when": {"last_role": "tool"}, "content": "It is sunny in Paris."},
            {"when": {"turn": 2}, "content": "Third turn."},
            {"when": {"last_role": "system"}, "content": "Only a system prompt."},
        ]
    }
)


SECOND_TURN = (("assistant", "b"), ("user", "c"), ("assistant", "d"))


def convo(*messages: tuple[str, str], tools: tuple[str, ...] = ()) -> Conversation:
    chat = [ChatMessage(role, text) for role, text in messages]
    return Conversation(tuple(chat), tools, conversation_key([[m.role, m.content] for m in chat]))


@pytest.mark.parametrize(
    ("conversation", "expected"),
    [
        (convo(("user", "the weather?"), tools=("get_weather",)), 0),
        (convo(("user", "the weather?")), None),  # the tool is not offered
        (convo(("user", "the Weather?"), tools=("get_weather",)), None),  # case matters
        (convo(("user", "weather"), ("assistant", ""), ("tool", "sun")), 1),
        (convo(("user", "a"), ("assistant", "b"), ("user", "c")), None),  # turn 1
        (convo(("user", "a"), *SECOND_TURN, ("user", "e")), 2),
        (convo(("system", "be brief")), 3),
        (convo(("user", "hello")), None),
    ],
)
def test_script_first_matching_reply_answers(
    conversation: Conversation, expected: int | None
) -> None:
    reply = SCRIPT.reply_for(conversation)
    assert reply is (None if expected is None else SCRIPT.replies[expected])


def test_script_contains_is_a_regex_and_a_reply_without_when_always_matches() -> None:
    script = Script.model_validate(
        {"replies": [{"when": {"contains": r"(?i)^pa.is$"}, "content": "x"}, {"content": "y"}]}
    )
    assert script.reply_for(convo(("user", "PARIS"))) is script.replies[0]
    assert script.reply_for(convo(("user", "Paris!"))) is script.replies[1]


def replies(*items: dict[str, Any]) -> dict[str, Any]:
    return {"replies": list(items)}


BAD_FILES = [
    (replies({"when": {"contains": "("}, "content": "x"}), "replies[0].when.contains", "regular"),
    (replies({"when": {"role": "user"}, "content": "x"}), "replies[0].when.role", "unknown field"),
    (replies({"when": {"last_role": "bot"}, "content": "x"}), "replies[0].when.last_role", ""),
    (replies({"content": "x"}, {"when": {}}), "replies[1]", "'content', 'tool_calls' or both"),
    (replies({"tool_calls": [{"name": "a b"}]}), "replies[0].tool_calls[0].name", ""),
    (replies({"when": {"turn": -1}, "content": "x"}), "replies[0].when.turn", ""),
    (
        replies({"tool_calls": [{"name": "f", "arguments": {"s": {1}}}]}),
        "replies[0].tool_calls[0].arguments",
        "JSON",
    ),
    (replies(), "replies", ""),
]


@pytest.mark.parametrize(("doc", "path", "message"), BAD_FILES)
def test_script_bad_file_names_the_field(
    tmp_path: Path, doc: dict[str, Any], path: str, message: str
) -> None:
    file = tmp_path / "script.yaml"
    file.write_text(yaml.safe_dump(doc))  # a set (!!set) is valid YAML, not JSON
    with pytest.raises(ConfigError) as caught:
        load_script(file)
    assert caught.value.path == path
    assert message in str(caught.value)
    assert str(file) in str(caught.value)


def test_script_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_script(tmp_path / "absent.yaml")


def test_script_example_file_loads_and_drives_the_weather_loop() -> None:
    script = load_script(EXAMPLE)
    ask = convo(("user", "What is the weather in Paris?"), tools=("get_weather",))
    first = script.reply_for(ask)
    assert first is not None
    assert first.tool_calls[0].name == "get_weather"
    answered = convo(("user", "weather?"), ("assistant", ""), ("tool", "Sunny, 24 C"))
    second = script.reply_for(answered)
    assert second is not None
    assert second.content == "It is sunny in Paris today."


def test_script_output_counts_tokens_of_content_and_calls() -> None:
    reply = Script.model_validate(
        {
            "replies": [
                {
                    "content": "Let me check.",
                    "tool_calls": [
                        {"name": "get_weather", "arguments": {"city": "Paris"}},
                        {"name": "get_time", "arguments": {}},
                    ],
                }
            ]
        }
    ).replies[0]
    conversation = convo(("user", "hi"))
    out = ScriptedOutput.build(reply, conversation, TOKENIZER)
    arguments = '{"city":"Paris"}'
    expected = sum(
        len(TOKENIZER.encode(text))
        for text in ("Let me check.", "get_weather", arguments, "get_time", "{}")
    )
    assert out.tokens == expected
    message = out.message(out.tokens)
    assert message["content"] == "Let me check."
    assert message["tool_calls"] == [
        {
            "id": tool_call_id(conversation.key, 0),
            "type": "function",
            "function": {"name": "get_weather", "arguments": arguments},
        },
        {
            "id": tool_call_id(conversation.key, 1),
            "type": "function",
            "function": {"name": "get_time", "arguments": "{}"},
        },
    ]
    assert out.finish_reason("stop") == "tool_calls"
    assert out.finish_reason("length") == "length"


def test_script_tool_call_ids_are_deterministic_per_conversation() -> None:
    reply = SCRIPT.replies[0]
    one = convo(("user", "weather"), tools=("get_weather",))
    other = convo(("user", "weather in Rome"), tools=("get_weather",))
    first = ScriptedOutput.build(reply, one, TOKENIZER).calls[0].id
    assert first == ScriptedOutput.build(reply, one, TOKENIZER).calls[0].id
    assert first != ScriptedOutput.build(reply, other, TOKENIZER).calls[0].id
    assert first.startswith("call_")


def test_script_stream_steps_rebuild_the_message() -> None:
    """Any cut of the tokens into engine steps streams the same answer, OpenAI-style."""
    reply = Script.model_validate(
        {"replies": [{"content": "Sure.", "tool_calls": [{"name": "f", "arguments": {"a": 1}}]}]}
    ).replies[0]
    out = ScriptedOutput.build(reply, convo(("user", "x")), TOKENIZER)
    for step in (1, 2, 3, out.tokens):
        content, calls, reasons = "", {}, []
        for offset in range(0, out.tokens, step):
            count = min(step, out.tokens - offset)
            done = "stop" if offset + count == out.tokens else None
            for delta, reason in out.step(offset, count, done):
                reasons.append(reason)
                content += delta.get("content", "")
                for entry in delta.get("tool_calls", ()):
                    if "id" in entry:
                        calls[entry["index"]] = {**entry, "function": dict(entry["function"])}
                    else:
                        calls[entry["index"]]["function"]["arguments"] += entry["function"][
                            "arguments"
                        ]
        assert content == "Sure."
        assert [{k: v for k, v in c.items() if k != "index"} for c in calls.values()] == (
            out.message(out.tokens)["tool_calls"]
        )
        assert reasons[-1] == "tool_calls"
        assert not any(reasons[:-1])


def test_script_cut_by_max_tokens_keeps_what_was_written() -> None:
    reply = SCRIPT.replies[0]
    out = ScriptedOutput.build(reply, convo(("user", "weather")), TOKENIZER)
    name_tokens = len(TOKENIZER.encode("get_weather"))
    message = out.message(name_tokens + 2)
    assert message["content"] is None
    assert message["tool_calls"][0]["function"]["arguments"] == '{"'
    assert out.message(0) == {"role": "assistant", "content": None}
    last = out.step(name_tokens + 1, 1, "length")
    assert last == [({"tool_calls": [{"index": 0, "function": {"arguments": '"'}}]}, "length")]


def test_script_reason_alone_when_the_last_step_adds_nothing() -> None:
    reply = Script.model_validate({"replies": [{"tool_calls": [{"name": "get_weather"}]}]})
    out = ScriptedOutput.build(reply.replies[0], convo(("user", "x")), TOKENIZER)
    assert out.step(1, 1, None) == []  # the name's second token is silent
    assert out.step(1, 1, "stop") == [({}, "tool_calls")]


def test_script_parse_call_keeps_the_conversation_and_accepts_tool_messages() -> None:
    messages = [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "sunny"}]},
    ]
    doc = {
        "model": "m",
        "messages": messages,
        "tools": [{"type": "function", "function": {"name": "get_weather"}}, {"bad": 1}],
    }
    call = parse_call("chat", orjson.dumps(doc), TOKENIZER, "m", frozenset())
    conversation = call.conversation
    assert conversation is not None
    assert [(m.role, m.content) for m in conversation.messages] == [
        ("user", "weather?"),
        ("assistant", ""),
        ("tool", "sunny"),
    ]
    assert conversation.tools == ("get_weather",)
    assert conversation.turn == 1
    assert conversation.key == conversation_key(messages)
    completion = parse_call(
        "completion", b'{"model": "m", "prompt": "x"}', TOKENIZER, "m", frozenset()
    )
    assert completion.conversation is None


def test_script_tokenizer_pieces_match_encode() -> None:
    for text in ("Hello, world!  ", " <|im_end|> 0001abcd x", '{"city":"Paris"}', "", "  "):
        pieces = TOKENIZER.pieces(text)
        assert len(pieces) == len(TOKENIZER.encode(text))
        assert "".join(pieces) == (text if pieces else "")


def test_script_cli_option_loads_the_file_or_names_the_bad_field(tmp_path: Path) -> None:
    settings = settings_from_options({"script": str(EXAMPLE)})
    assert settings.script == load_script(EXAMPLE)
    assert settings_from_options({}).script is None
    bad = tmp_path / "bad.yaml"
    bad.write_text("replies:\n  - when: {last_role: bot}\n    content: x\n")
    with pytest.raises(ConfigError, match=r"replies\[0\]\.when\.last_role"):
        settings_from_options({"script": str(bad)})
