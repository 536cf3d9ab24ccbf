"""Tenant and priority from request headers: ours, and llm-d's as aliases."""

from __future__ import annotations

import pytest

from pilothouse.openai.requests import Route, parse_request
from pilothouse.routing import scheduling_request
from pilothouse.scheduling.types import SchedulingRequest

BODY = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'
OBJECTIVES = {"critical": 10, "batch": -5}


def _request(headers: dict[str, str], trusted: bool = True) -> tuple[str | None, int]:
    parsed = parse_request(Route.CHAT, BODY)
    req = scheduling_request(parsed, headers.get, "r", OBJECTIVES, trusted)
    return req.tenant, req.priority


@pytest.mark.parametrize(
    ("headers", "tenant", "priority"),
    [
        pytest.param({}, None, 0, id="none"),
        pytest.param({"x-pilothouse-tenant": "acme"}, "acme", 0, id="tenant"),
        pytest.param({"x-gateway-inference-fairness-id": "t1"}, "t1", 0, id="gateway-fairness"),
        pytest.param({"x-llm-d-inference-fairness-id": "t2"}, "t2", 0, id="llm-d-fairness"),
        pytest.param(
            {"x-pilothouse-tenant": "ours", "x-gateway-inference-fairness-id": "theirs"},
            "ours",
            0,
            id="ours-first",
        ),
        pytest.param({"x-pilothouse-tenant": ""}, None, 0, id="empty-tenant"),
        pytest.param({"x-pilothouse-priority": "7"}, None, 7, id="priority"),
        pytest.param({"x-pilothouse-priority": "-2"}, None, -2, id="negative"),
        pytest.param({"x-pilothouse-priority": "high"}, None, 0, id="garbage"),
        pytest.param({"x-pilothouse-priority": "--5"}, None, 0, id="double-minus"),
        pytest.param({"x-gateway-inference-objective": "critical"}, None, 10, id="objective"),
        pytest.param({"x-llm-d-inference-objective": "batch"}, None, -5, id="llm-d-objective"),
        pytest.param({"x-gateway-inference-objective": "3"}, None, 3, id="numeric-objective"),
        pytest.param({"x-gateway-inference-objective": "unknown"}, None, 0, id="unknown-objective"),
        pytest.param(
            {"x-pilothouse-priority": "oops", "x-gateway-inference-objective": "critical"},
            None,
            10,
            id="falls-through",
        ),
        pytest.param({"x-pilothouse-priority": "batch"}, None, -5, id="objective-in-ours"),
    ],
)
def test_tenant_and_priority(headers: dict[str, str], tenant: str | None, priority: int) -> None:
    assert _request(headers) == (tenant, priority)


@pytest.mark.parametrize(
    ("headers", "priority"),
    [
        pytest.param({"x-pilothouse-priority": "99999"}, 0, id="number-ignored"),
        pytest.param({"x-gateway-inference-objective": "3"}, 0, id="numeric-objective-ignored"),
        pytest.param({"x-gateway-inference-objective": "critical"}, 10, id="objective-honoured"),
        pytest.param(
            {"x-pilothouse-priority": "99999", "x-gateway-inference-objective": "batch"},
            -5,
            id="number-skipped-objective-taken",
        ),
    ],
)
def test_an_untrusted_client_cannot_outrank_the_objectives(
    headers: dict[str, str], priority: int
) -> None:
    assert _request(headers, trusted=False) == (None, priority)


def test_with_owner_changes_the_tenant_and_priority_and_keeps_every_other_field() -> None:
    from dataclasses import fields, replace

    from pilothouse.routing.request import with_owner

    # A distinct value in every field, so that a field passed in the wrong place shows.
    request = SchedulingRequest(
        request_id="r",
        model="m",
        prompt="p",
        prompt_tokens=3,
        max_tokens=4,
        stream=True,
        headers={"h": "v"},
        session_id="s",
        tenant="t",
        priority=5,
        lora="l",
        prompt_token_ids={"sim": (1, 2)},
        prompt_block_keys={("sim", 16, None): (7,)},
    )
    owned = with_owner(request, "team", 2)
    assert owned == replace(request, tenant="team", priority=2)
    assert [f.name for f in fields(SchedulingRequest)][8:10] == ["tenant", "priority"]
    assert with_owner(request, "t", 5) is request  # its own already: not rebuilt
