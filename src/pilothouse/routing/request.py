"""From a parsed OpenAI request and its headers to a :class:`SchedulingRequest`.

Both front doors (the gateway's HTTP request, the endpoint picker's ext_proc headers) read
the same routing headers here: tenant (fairness id), priority (an integer or an objective
name), session.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from pilothouse.openai.requests import ParsedRequest
from pilothouse.scheduling.types import Endpoint, SchedulingRequest

HeaderLookup = Callable[[str], str | None]

#: Where the tenant (fairness id) is read from, first present wins: ours, then llm-d's.
TENANT_HEADERS = (
    "x-pilothouse-tenant",
    "x-llm-d-inference-fairness-id",
    "x-gateway-inference-fairness-id",
)
#: Where the priority is read from: an integer, or an objective name mapped to one.
PRIORITY_HEADERS = (
    "x-pilothouse-priority",
    "x-llm-d-inference-objective",
    "x-gateway-inference-objective",
)


def scheduling_request(
    parsed: ParsedRequest,
    header: HeaderLookup,
    request_id: str,
    objectives: Mapping[str, int] | None = None,
    trusted: bool = False,
) -> SchedulingRequest:
    """What routing needs from a request: body fields plus the routing headers.

    ``lora`` is left unset here: whether ``model`` names a LoRA adapter depends on the
    endpoints, so the pipeline decides it (:func:`with_adapter`).
    """
    return SchedulingRequest(
        request_id=request_id,
        model=parsed.model,
        prompt=parsed.prompt,
        prompt_tokens=parsed.prompt_tokens,
        max_tokens=parsed.max_tokens,
        stream=parsed.stream,
        session_id=header("x-session-id") or parsed.user,
        tenant=request_tenant(header),
        priority=request_priority(header, objectives or {}, trusted),
    )


def with_owner(request: SchedulingRequest, tenant: str | None, priority: int) -> SchedulingRequest:
    """``request`` with the tenant and priority governance gave it (the same one if they
    are its own already). Built field by field, not with ``dataclasses.replace``, which walks
    the fields and passes them by name: twice the cost, on every governed request."""
    if request.tenant == tenant and request.priority == priority:
        return request
    r = request
    return SchedulingRequest(
        r.request_id, r.model, r.prompt, r.prompt_tokens, r.max_tokens, r.stream, r.headers,
        r.session_id, tenant, priority, r.lora, r.prompt_token_ids, r.prompt_block_keys,
    )  # fmt: skip


def request_tenant(header: HeaderLookup) -> str | None:
    """The first non-empty tenant header, if any."""
    for name in TENANT_HEADERS:
        value = header(name)
        if value:
            return value
    return None


def request_priority(
    header: HeaderLookup, objectives: Mapping[str, int], trusted: bool = False
) -> int:
    """The first priority header that names a known objective, or (only from a ``trusted``
    source) is an integer; else 0.

    Objective names map to the priorities the operator configured, so any client may send
    them; a bare number would let a client outrank every objective (``99999``), so it is
    honoured only when the front door trusts the header (a proxy that sets or strips it).
    """
    for name in PRIORITY_HEADERS:
        value = header(name)
        if value is None:
            continue
        value = value.strip()
        if value in objectives:
            return objectives[value]
        if not trusted:
            continue
        try:
            return int(value)
        except ValueError:
            continue
    return 0


def with_adapter(request: SchedulingRequest, endpoints: Sequence[Endpoint]) -> SchedulingRequest:
    """``request`` with ``lora`` set when an engine serves its ``model`` as a LoRA adapter.

    vLLM serves an adapter under its own model name and reports the adapters it runs or
    queues in ``vllm:lora_requests_info``: a model listed there by any candidate is an
    adapter. One that no engine has loaded yet is routed as a plain model; once it runs
    somewhere, ``lora-affinity`` keeps its requests there.
    """
    if request.lora is not None:
        return request
    model = request.model
    for endpoint in endpoints:
        metrics = endpoint.metrics
        if model in metrics.running_loras or model in metrics.waiting_loras:
            return replace(request, lora=model)
    return request
