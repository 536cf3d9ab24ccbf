"""The agent examples under ``pilothouse up``, as a user runs them (issue #14).

``examples/agents/fleet-agents.yaml``: one command serves the scripted model, the gateway,
the tool gateway and the agents; the official ``openai`` client asks the weather agent, which
runs a two-tool task with its own key (asked again through A2A with the official ``a2a-sdk``
client), under its budget, every call in the hash-chained audit
log and every reservation settled in the run's ledger. ``fleet-agents-embedded.yaml``: the
same agent on the embedded SmolLM2 makes its one tool call through grammar-constrained output.

The examples are run as they are, with three changes for a shared machine: the fixed ports of
the tool gateway and the agents become free ones, state lives in a temporary directory, and the
tool server is told where to log the calls it executes.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import openai
import pytest
import yaml
from a2a.client import A2ACardResolver, ClientConfig, create_client
from a2a.helpers.proto_helpers import get_artifact_text
from a2a.types.a2a_pb2 import (
    AgentCard,
    Message,
    Part,
    Role,
    SendMessageRequest,
    Task,
    TaskState,
)

from pilothouse.governance.agent_runs import RunBook
from pilothouse.governance.store import SqlStore
from pilothouse.governance.tool_store import ToolStore
from tests.e2e.agents.stack import wait_for
from tests.e2e.procs import start_until_ready, stop

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "examples" / "agents"
ANSWER = "Paris is sunny at 21 °C today; tomorrow brings light rain at 17 °C."


@contextmanager
def _up(example: str, tmp: Path) -> Iterator[tuple[str, str, Path]]:
    """``up -f`` the example from the repository root; yields the agents' URL, a caller's
    key (made before the start, so every service knows it at once) and the state dir. The
    tool server runs as ``python``: the project's interpreter, first on PATH as in an
    activated virtual environment."""
    fleet = yaml.safe_load((EXAMPLES / example).read_text())
    fleet["local"] = {"tool_gateway_port": 0, "agents_port": 0}
    for server in fleet["tools"]["servers"]:  # what the tool server really executed
        server["env"] = {"HELPDESK_LOG": str(tmp / "tools.jsonl")}
    spec = tmp / example
    spec.write_text(yaml.safe_dump(fleet))
    state = tmp / "xdg"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "XDG_STATE_HOME": str(state),
    }
    _cli(env, "orgs", "create", "demo")
    _cli(env, "teams", "create", "demo", "default")
    caller = _cli(env, "keys", "create", "--team", "default", "--name", "caller")
    log = tmp / "up.log"
    args = ["up", "-f", str(spec), "--port", "0", "--log-dir", str(tmp / "logs")]
    up, _ = _start(args, log, env)
    try:
        url = wait_for(lambda: _found(r"agents ready on (\S+)", log), "the agents", 120)
        for server in {s["name"] for s in fleet["tools"]["servers"]}:
            _cli(env, "tools", "approve", server, "--by", "test")
        yield url, caller, state / "pilothouse"
    finally:
        assert stop(up, signal.SIGINT) == 0


def _start(args: list[str], log: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        os.chdir(ROOT)
        return start_until_ready(args, log, timeout_s=300)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "pilothouse", *args],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _found(pattern: str, log: Path) -> str | None:
    match = re.search(pattern, log.read_text())
    return match.group(1) if match else None


async def _a2a(url: str, key: str, text: str) -> tuple[AgentCard, Task]:
    """The agent's card, then one blocking task, with the official ``a2a-sdk`` client."""
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=120) as http:
        card = await A2ACardResolver(http, url).get_agent_card()
        client = await create_client(
            url, client_config=ClientConfig(httpx_client=http, streaming=False)
        )
        message = Message(
            message_id=str(uuid.uuid4()), role=Role.ROLE_USER, parts=[Part(text=text)]
        )
        try:
            [event] = [e async for e in client.send_message(SendMessageRequest(message=message))]
        finally:
            await client.close()
    return card, event.task


def _executed(tmp: Path) -> list[dict[str, object]]:
    path = tmp / "tools.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_agent_scripted_example_runs_a_multi_step_task_under_up(tmp_path: Path) -> None:
    with _up("fleet-agents.yaml", tmp_path) as (url, caller, state):
        with openai.OpenAI(base_url=url + "/v1", api_key=caller, timeout=120) as client:
            response = client.responses.create(
                model="weather", input="What's the weather in Paris?"
            )
        card, task = asyncio.run(_a2a(f"{url}/agents/weather", caller, "Weather in Paris?"))
    assert response.status == "completed"
    assert response.output_text == ANSWER
    assert card.name == "weather"
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    assert [get_artifact_text(a) for a in task.artifacts] == [ANSWER]
    assert [c["tool"] for c in _executed(tmp_path)] == ["get_weather", "get_forecast"] * 2

    store = SqlStore(f"sqlite:///{state / 'governance.db'}")
    try:
        agent_key = next(k for k in store.list_keys("default") if k.name == "agent-weather")
        audit = ToolStore(store)
        results = [r for r in audit.records() if r.kind == "result"]
        verdict = audit.verify()
        book = RunBook(store)
        runs = book.list_runs("weather")
        ledger = [e for r in runs for e in book.budget_events(r.id)]
    finally:
        store.close()
    assert [r.tool for r in results] == ["weather__get_weather", "weather__get_forecast"] * 2
    assert {r.principal for r in results} == {agent_key.id}
    assert verdict.ok, verdict
    assert [r.status for r in runs] == ["completed", "completed"]
    reserved = {(e.hold, e.resource) for e in ledger if e.action == "reserve"}
    assert reserved, "every model and tool call reserves the run's budget first"
    assert reserved == {(e.hold, e.resource) for e in ledger if e.action == "settle"}
    spent = sum(e.amount for e in ledger if e.action == "settle" and e.resource == "tokens")
    assert 0 < spent <= 2 * 20_000  # two runs, each within the agent's budgets.tokens


def test_agent_embedded_example_makes_its_tool_call_on_smollm2(tmp_path: Path) -> None:
    with (
        _up("fleet-agents-embedded.yaml", tmp_path) as (url, caller, _state),
        openai.OpenAI(base_url=url + "/v1", api_key=caller, timeout=300) as client,
    ):
        response = client.responses.create(model="weather", input="What is the weather in Paris?")
    assert response.status == "completed", response
    executed = _executed(tmp_path)
    assert [c["tool"] for c in executed] == ["get_weather"]  # once, as the model asked
    arguments = executed[0]["arguments"]
    assert isinstance(arguments, dict)
    assert set(arguments) == {"city"}
    assert response.output_text.strip()
