"""What governance needs from a parsed OpenAI request, shared by both front doors.

Admission reserves from an :class:`~pilothouse.governance.governor.Ask` (the prompt's bytes
bound its tokens; ``max_tokens`` bounds the output). A request that sets no ``max_tokens``
gets ``governance.max_output_tokens`` written into its body, so the bound holds for the
engine too. After the answer, :func:`used_of` reads the engine's usage, or estimates it
when the engine sent none (a stream cut short): the prompt estimate plus one token per
relayed chunk.
"""

from __future__ import annotations

from pilothouse.governance.governor import Ask, Governor, Used
from pilothouse.openai.requests import ParsedRequest, Route
from pilothouse.scheduling.types import SchedulingRequest


def governed_fields(governor: Governor | None, parsed: ParsedRequest) -> dict[str, object]:
    """Body fields to set before forwarding: ``max_tokens`` when governed and absent
    (embeddings produce no output tokens: nothing to bound)."""
    if governor is None or parsed.max_tokens is not None or parsed.route is Route.EMBEDDINGS:
        return {}
    return {"max_tokens": governor.spec.max_output_tokens}


def ask_of(parsed: ParsedRequest, request: SchedulingRequest) -> Ask:
    """Admission's view of a request (after :func:`governed_fields` was applied)."""
    prompt = parsed.prompt
    messages = prompt.count("\n") + 1 if parsed.route is Route.CHAT else 1
    # An ASCII prompt's UTF-8 length is its length (isascii() reads a flag): no copy.
    size = len(prompt) if prompt.isascii() else len(prompt.encode())
    return Ask(
        model=request.model,
        prompt_bytes=size,
        max_tokens=parsed.max_tokens or 0,
        priority=request.priority,
        request_id=request.request_id,
        messages=messages,
    )


def used_of(
    parsed: ParsedRequest,
    prompt_tokens: int | None,
    completion_tokens: int | None,
    chunks: int,
    status: int,
) -> Used:
    """The engine's usage, or an estimate where it sent none."""
    prompt = prompt_tokens if prompt_tokens is not None else parsed.prompt_tokens
    completion = completion_tokens if completion_tokens is not None else chunks
    return Used(prompt, completion, status)
