"""The official ``openai`` client calls agents through ``/v1/responses`` (the agent as the
model), streamed and not, on a real socket; and ``/v1/models`` lists the agents."""

from __future__ import annotations

import openai
import pytest
from openai import AsyncOpenAI

from pilothouse.agents.serving.runs import ServedAgent
from pilothouse.testing.fake_agent_runner import FakeAgentRunner, ScriptedStep
from tests.unit.agents.serving.conftest import ANSWER, KEY, SCRIPT, TRIAGE, Service, serving


def _client(url: str, key: str = KEY) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=30)


async def test_agent_responses_non_streamed(service: Service) -> None:
    async with _client(service.url) as client:
        response = await client.responses.create(model="triage", input="Ticket 42: refund?")
    assert response.status == "completed"
    assert response.model == "triage"
    assert response.output_text == ANSWER
    assert service.runners["triage"].tasks == ["Ticket 42: refund?"]
    # The three intermediate steps as reasoning summaries, then the answer.
    kinds = [item.type for item in response.output]
    assert kinds == ["reasoning", "reasoning", "reasoning", "message"]
    summary = response.output[1].summary[0].text  # type: ignore[union-attr]
    assert summary == 'tool crm__lookup({"order": 42}) -> order 42: refund requested'
    assert response.metadata == {"run_id": "triage-run-1"}
    assert response.usage is not None
    assert response.usage.total_tokens == 82


async def test_agent_responses_streamed(service: Service) -> None:
    async with (
        _client(service.url) as client,
        client.responses.stream(model="triage", input="Ticket 42") as stream,
    ):
        types = [event.type async for event in stream]
        final = await stream.get_final_response()
    assert types[0] == "response.created"
    assert types[-1] == "response.completed"
    assert types.count("response.reasoning_summary_text.delta") == 3
    tail = types[-7:]
    assert tail == [
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert final.output_text == ANSWER
    assert final.status == "completed"


async def test_agent_responses_streamed_raw_events_are_numbered(service: Service) -> None:
    async with _client(service.url) as client:
        stream = await client.responses.create(
            model="summariser", input=[{"role": "user", "content": "Summarise this"}], stream=True
        )
        events = [event async for event in stream]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert deltas == ["short"]
    assert service.runners["summariser"].tasks == ["Summarise this"]


async def test_agent_responses_list_models_and_retrieve(service: Service) -> None:
    async with _client(service.url) as client:
        models = [m.id async for m in client.models.list()]
        created = await client.responses.create(model="summariser", input="text")
        again = await client.responses.retrieve(created.id)
    assert sorted(models) == ["summariser", "triage"]
    assert again.id == created.id
    assert again.status == "completed"
    assert again.output_text == "short"


async def test_agent_responses_unknown_agent_is_404(service: Service) -> None:
    async with _client(service.url) as client:
        with pytest.raises(openai.NotFoundError) as err:
            await client.responses.create(model="nobody", input="hi")
    assert "no agent named 'nobody'" in str(err.value)


async def test_agent_responses_need_an_accepted_key(service: Service) -> None:
    async with _client(service.url, key="ph-wrong") as client:
        with pytest.raises(openai.AuthenticationError):
            await client.responses.create(model="triage", input="hi")
    assert service.runners["triage"].tasks == []


async def test_agent_responses_empty_input_is_400(service: Service) -> None:
    async with _client(service.url) as client:
        with pytest.raises(openai.BadRequestError, match="no text"):
            await client.responses.create(model="triage", input=[])


@pytest.mark.parametrize("status", ["budget_exceeded", "waiting_approval", "failed"])
async def test_agent_responses_runs_that_do_not_complete(status: str) -> None:
    script = [*SCRIPT[:2], ScriptedStep("approval", "github__create_issue", "{}"), SCRIPT[-1]]
    runner = FakeAgentRunner("triage", script, status=status, reason="stopped: " + status)  # type: ignore[arg-type]
    async with serving([ServedAgent(TRIAGE, runner)]) as url, _client(url) as client:
        response = await client.responses.create(model="triage", input="go")
        async with client.responses.stream(model="triage", input="go") as stream:
            last = [event async for event in stream][-1]
    if status == "failed":
        assert response.status == "failed"
        assert response.error is not None
        assert "stopped: failed" in response.error.message
        assert last.type == "response.failed"
    else:
        assert response.status == "incomplete"
        assert response.incomplete_details is not None
        assert response.incomplete_details.reason == status  # type: ignore[comparison-overlap]
        assert response.output_text == "stopped: " + status
        assert last.type == "response.incomplete"
    if status == "waiting_approval":
        assert response.metadata is not None
        assert response.metadata["approval_id"] == f"appr-{response.metadata['run_id']}"
