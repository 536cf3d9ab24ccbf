"""Agents as A2A servers (official ``a2a-sdk``): a client resolves each agent's Agent Card
and gets a task result; a run waiting for an approval ends input-required and resumes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from a2a.client import A2ACardResolver, ClientConfig, create_client
from a2a.helpers.proto_helpers import get_artifact_text, get_message_text
from a2a.types.a2a_pb2 import Message, Part, Role, SendMessageRequest, StreamResponse, TaskState

from pilothouse.agents.serving.runs import ServedAgent
from pilothouse.testing.fake_agent_runner import FakeAgentRunner, ScriptedStep
from tests.unit.agents.serving.conftest import ANSWER, KEY, SCRIPT, TRIAGE, Service, serving


def _http(key: str | None = KEY) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.AsyncClient(headers=headers, timeout=30)


def _ask(text: str, task_id: str = "") -> SendMessageRequest:
    message = Message(
        message_id=str(uuid.uuid4()), role=Role.ROLE_USER, parts=[Part(text=text)], task_id=task_id
    )
    return SendMessageRequest(message=message)


async def _events(url: str, request: SendMessageRequest, streaming: bool) -> list[StreamResponse]:
    async with _http() as http:
        config = ClientConfig(httpx_client=http, streaming=streaming)
        client = await create_client(url, client_config=config)
        events: AsyncIterator[StreamResponse] = client.send_message(request)
        return [event async for event in events]


async def test_a2a_agent_card_per_agent(service: Service) -> None:
    async with _http(None) as http:  # the card is public
        card = await A2ACardResolver(http, f"{service.url}/agents/triage").get_agent_card()
        other = await A2ACardResolver(http, f"{service.url}/agents/summariser").get_agent_card()
    assert (card.name, card.description) == ("triage", "Triage support tickets")
    assert other.name == "summariser"
    [interface] = card.supported_interfaces
    assert interface.url == f"{service.url}/agents/triage/"
    assert interface.protocol_binding == "JSONRPC"
    skills = {s.id: s for s in card.skills}
    assert set(skills) == {"triage", "crm__lookup", "github__*"}
    assert "approval" in skills["github__*"].description
    assert "approval" not in skills["crm__lookup"].description
    assert "bearer" in card.security_schemes


@pytest.mark.parametrize("streaming", [True, False], ids=["streamed", "blocking"])
async def test_a2a_task_result(service: Service, streaming: bool) -> None:
    events = await _events(f"{service.url}/agents/triage", _ask("Ticket 42"), streaming)
    assert service.runners["triage"].tasks == ["Ticket 42"]
    if streaming:
        states = [e.status_update.status.state for e in events if e.HasField("status_update")]
        assert states[0] == TaskState.TASK_STATE_WORKING
        assert states[-1] == TaskState.TASK_STATE_COMPLETED
        notes = [
            get_message_text(e.status_update.status.message)
            for e in events
            if e.HasField("status_update") and e.status_update.status.HasField("message")
        ]
        assert 'tool crm__lookup({"order": 42}) -> order 42: refund requested' in notes
        [artifact] = [e.artifact_update.artifact for e in events if e.HasField("artifact_update")]
        assert get_artifact_text(artifact) == ANSWER
    else:
        [event] = events
        task = event.task
        assert task.status.state == TaskState.TASK_STATE_COMPLETED
        assert [get_artifact_text(a) for a in task.artifacts] == [ANSWER]


async def test_a2a_needs_a_bearer_key(service: Service) -> None:
    async with _http("ph-wrong") as http:
        response = await http.post(f"{service.url}/agents/triage/", json={})
    assert response.status_code == 401
    assert service.runners["triage"].tasks == []


async def test_a2a_waiting_approval_is_input_required_then_resumes() -> None:
    script = [*SCRIPT[:2], ScriptedStep("approval", "github__create_issue", "{}"), SCRIPT[-1]]
    runner = FakeAgentRunner("triage", script, status="waiting_approval", reason="needs a person")
    async with serving([ServedAgent(TRIAGE, runner)]) as url:
        first = await _events(url, _ask("Ticket 42"), streaming=False)
        task = first[-1].task
        assert task.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
        assert "needs a person" in get_message_text(task.status.message)
        # A single-agent service also serves its card at the root.
        async with _http(None) as http:
            root = await A2ACardResolver(http, url).get_agent_card()
        assert root.name == "triage"
        again = await _events(f"{url}/agents/triage", _ask("approved", task.id), streaming=False)
    done = again[-1].task
    assert done.status.state == TaskState.TASK_STATE_COMPLETED
    assert [get_artifact_text(a) for a in done.artifacts] == [ANSWER]
    assert list(runner.runs) == ["triage-run-1"]  # resumed, not started again
    assert [s.kind for s in runner.runs["triage-run-1"].steps].count("tool") == 1
