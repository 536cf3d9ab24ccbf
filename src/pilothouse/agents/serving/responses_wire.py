"""The OpenAI Responses API as an agent speaks it: the request's task, Response objects and
the streamed events, built as plain JSON-ready dicts (no I/O).

A run maps onto one Response: each intermediate step (model turn, tool call, delegation, wait
for approval) becomes a ``reasoning`` output item whose summary says what happened, and the
final answer one assistant ``message`` with a single ``output_text`` part. A streamed response
sends ``response.created``, then per step the reasoning item's events, then the message's
``output_item.added``, ``content_part.added``, one ``output_text.delta`` with the whole answer
(the runtime yields it whole), the ``.done`` events and ``response.completed`` (or
``response.incomplete`` / ``response.failed``), each with a growing ``sequence_number``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from pilothouse.agents.ports import RunResult, Step
from pilothouse.errors import BadRequest

Json = dict[str, Any]
ResponseStatus = Literal["in_progress", "completed", "incomplete", "failed"]
_SUMMARY_MAX = 2000


@dataclass(frozen=True, slots=True)
class ResponsesRequest:
    model: str
    task: str
    stream: bool


def parse_request(doc: object) -> ResponsesRequest:
    """``model`` (an agent's name), ``input`` (a string, or message items whose user texts
    make the task) and ``stream``; other fields (``instructions``, ``tools``, sampling) are
    the agent's own and ignored."""
    if not isinstance(doc, dict):
        raise BadRequest("the body must be a JSON object")
    model = doc.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' must name an agent", param="model")
    stream = doc.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest("'stream' must be a boolean", param="stream")
    task = _task(doc.get("input"))
    if not task.strip():
        raise BadRequest("'input' holds no text for the agent", param="input")
    return ResponsesRequest(model, task, stream)


def _task(value: object) -> str:
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise BadRequest("'input' must be a string or a list of messages", param="input")
    texts: list[str] = []
    for item in value:
        if not isinstance(item, dict) or item.get("type", "message") != "message":
            continue
        if item.get("role", "user") != "user":
            continue
        texts += list(_texts(item.get("content")))
    return "\n\n".join(texts)


def _texts(content: object) -> Iterator[str]:
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and part.get("type") in ("input_text", "text"):
                text = part.get("text")
                if isinstance(text, str):
                    yield text


def step_summary(step: Step) -> str:
    """One line a person can read for an intermediate step."""
    content = step.content[:_SUMMARY_MAX]
    if step.kind == "tool":
        return f"tool {step.name}({step.arguments}) -> {content}"
    if step.kind == "delegate":
        return f"delegated to {step.name}({step.arguments}) -> {content}"
    if step.kind == "approval":
        return f"waiting for a person to approve {step.name}({step.arguments})"
    return f"model {step.name}: {content}" if content else f"model {step.name}"


def reasoning_item(item_id: str, text: str) -> Json:
    return {"type": "reasoning", "id": item_id, "summary": [_summary(text)], "status": "completed"}


def message_item(item_id: str, text: str, status: str = "completed") -> Json:
    content = [_output_text(text)] if status == "completed" else []
    return {
        "type": "message",
        "id": item_id,
        "role": "assistant",
        "status": status,
        "content": content,
    }


def _summary(text: str) -> Json:
    return {"type": "summary_text", "text": text}


def _output_text(text: str) -> Json:
    return {"type": "output_text", "text": text, "annotations": []}


@dataclass(slots=True)
class ResponseState:
    """One Response being built: its identity, and the output items so far."""

    id: str
    model: str
    created_at: int
    output: list[Json] = field(default_factory=list)
    run_id: str | None = None

    def body(self, status: ResponseStatus, result: RunResult | None = None) -> Json:
        """The Response object, as ``POST /v1/responses`` answers it."""
        error: Json | None = None
        incomplete: Json | None = None
        if result is not None and result.status == "failed":
            error = {"code": "server_error", "message": result.output or "the run failed"}
        elif result is not None and result.status in ("budget_exceeded", "waiting_approval"):
            incomplete = {"reason": result.status}
        metadata = {"run_id": self.run_id} if self.run_id else {}
        if result is not None and result.pending_approval:
            metadata["approval_id"] = result.pending_approval
        tokens = result.tokens if result is not None else 0
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "model": self.model,
            "output": list(self.output),
            "error": error,
            "incomplete_details": incomplete,
            "instructions": None,
            "metadata": metadata,
            "parallel_tool_calls": False,
            "tool_choice": "auto",
            "tools": [],
            "temperature": None,
            "top_p": None,
            "usage": {
                "input_tokens": tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": 0,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": tokens,
            },
        }


def status_of(result: RunResult) -> ResponseStatus:
    """``completed`` → completed; ``failed`` → failed; a run stopped by its budget or
    waiting for a person → incomplete (``incomplete_details.reason`` says which)."""
    if result.status == "completed":
        return "completed"
    if result.status == "failed":
        return "failed"
    return "incomplete"


class EventWriter:
    """The streamed events of one Response, numbered in order."""

    def __init__(self, state: ResponseState) -> None:
        self.state = state
        self._sequence = 0

    def event(self, kind: str, **fields: Any) -> Json:
        out = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return out

    def created(self) -> list[Json]:
        body = self.state.body("in_progress")
        return [self.event("response.created", response=body)]

    def reasoning(self, item_id: str, text: str) -> list[Json]:
        index = len(self.state.output)
        added = {"type": "reasoning", "id": item_id, "summary": []}
        item = reasoning_item(item_id, text)
        self.state.output.append(item)
        where = {"item_id": item_id, "output_index": index, "summary_index": 0}
        return [
            self.event("response.output_item.added", output_index=index, item=added),
            self.event("response.reasoning_summary_part.added", **where, part=_summary("")),
            self.event("response.reasoning_summary_text.delta", **where, delta=text),
            self.event("response.reasoning_summary_text.done", **where, text=text),
            self.event("response.reasoning_summary_part.done", **where, part=_summary(text)),
            self.event("response.output_item.done", output_index=index, item=item),
        ]

    def message(self, item_id: str, text: str) -> list[Json]:
        index = len(self.state.output)
        item = message_item(item_id, text)
        self.state.output.append(item)
        where = {"item_id": item_id, "output_index": index, "content_index": 0}
        return [
            self.event(
                "response.output_item.added",
                output_index=index,
                item=message_item(item_id, "", "in_progress"),
            ),
            self.event("response.content_part.added", **where, part=_output_text("")),
            self.event("response.output_text.delta", **where, delta=text, logprobs=[]),
            self.event("response.output_text.done", **where, text=text, logprobs=[]),
            self.event("response.content_part.done", **where, part=_output_text(text)),
            self.event("response.output_item.done", output_index=index, item=item),
        ]

    def finished(self, result: RunResult) -> list[Json]:
        status = status_of(result)
        kind = {"completed": "response.completed", "failed": "response.failed"}.get(
            status, "response.incomplete"
        )
        return [self.event(kind, response=self.state.body(status, result))]
