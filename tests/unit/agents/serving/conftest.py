"""An agent service on loopback, serving fake runners, for the official clients to call."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass

import pytest

from pilothouse.agents.serving.app import create_agent_app
from pilothouse.agents.serving.auth import Authenticate, static_key
from pilothouse.agents.serving.runs import ServedAgent
from pilothouse.config.agents import AgentSpec
from pilothouse.testing.fake_agent_runner import FakeAgentRunner, ScriptedStep

KEY = "ph-test-agent-caller"
ANSWER = "Filed issue #12 for the refund of order 42."
SCRIPT = [
    ScriptedStep("model", "chat", tokens=30),
    ScriptedStep("tool", "crm__lookup", '{"order": 42}', "order 42: refund requested"),
    ScriptedStep("model", "chat", tokens=40),
    ScriptedStep("final", "chat", content=ANSWER, tokens=12),
]
TRIAGE = AgentSpec(
    name="triage",
    description="Triage support tickets",
    model="chat",
    tools=["crm__lookup", "github__*"],
    approvals=["github__*"],
)
SUMMARISER = AgentSpec(name="summariser", description="Summarise text", model="chat")


@dataclass
class Service:
    url: str
    runners: dict[str, FakeAgentRunner]


@contextlib.asynccontextmanager
async def serving(
    agents: Sequence[ServedAgent], authenticate: Authenticate | None = None
) -> AsyncIterator[str]:
    """Serve ``agents`` with uvicorn on a 127.0.0.1 socket; yields the base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    app = create_agent_app(agents, authenticate=authenticate or static_key(KEY), public_url=url)

    class Quiet(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    server = Quiet(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield url
    finally:
        server.should_exit = True
        await task
        sock.close()


@pytest.fixture
async def service() -> AsyncIterator[Service]:
    runners = {
        "triage": FakeAgentRunner("triage", SCRIPT),
        "summariser": FakeAgentRunner(
            "summariser", [ScriptedStep("final", "chat", content="short")]
        ),
    }
    agents = [
        ServedAgent(TRIAGE, runners["triage"]),
        ServedAgent(SUMMARISER, runners["summariser"]),
    ]
    async with serving(agents) as url:
        yield Service(url, runners)
