"""What the Responses and Messages translators share: reading the engine's SSE back."""

from __future__ import annotations

from pilothouse.openai.translation import ChatChunks, json_arguments


def test_chat_chunks_are_read_across_any_split_of_the_bytes() -> None:
    data = b'data: {"a": 1}\r\n\r\ndata: {"b": 2}\n\n: keep-alive\n\ndata: [DONE]\n\n'
    for size in range(1, len(data) + 1):
        reader = ChatChunks()
        got = [c for i in range(0, len(data), size) for c in reader.feed(data[i : i + size])]
        assert got == [{"a": 1}, {"b": 2}], size


def test_chat_chunks_skip_what_is_not_a_json_object() -> None:
    reader = ChatChunks()
    assert list(reader.feed(b"data: nonsense\n\ndata: [1]\n\ndata: {bad\n\n")) == []


def test_tool_arguments_that_are_not_an_object_are_kept() -> None:
    assert json_arguments('{"city": "Paris"}') == {"city": "Paris"}
    assert json_arguments("") == {}
    assert json_arguments("not json") == {"arguments": "not json"}
    assert json_arguments("[1]") == {"arguments": [1]}
