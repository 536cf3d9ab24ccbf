"""`pilothouse up` end to end: two real llama.cpp replicas of the embedded model.

The tests run in file order against one fleet; the last one kills a replica, and the module
finalizer stops the fleet and checks that no engine process is left.
"""

from __future__ import annotations

import importlib.util
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from tests.e2e.procs import alive, children, kill_quietly, start_until_ready, stop

if importlib.util.find_spec("llama_cpp") is None:  # not imported here: it opens /dev/null
    pytest.skip("needs the 'embedded' extra (llama-cpp-python)", allow_module_level=True)

MODEL = "smollm2-135m-instruct"
pytestmark = [pytest.mark.e2e, pytest.mark.embedded]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[subprocess.Popen[str], str]]:
    tmp = tmp_path_factory.mktemp("up")
    spec = tmp / "fleet.yaml"
    # A second model whose only endpoint never answers: requests for it must get 503.
    spec.write_text(
        "apiVersion: pilothouse.dev/v1alpha1\nkind: Fleet\nmodels:\n"
        f"  - name: {MODEL}\n    engine: llamacpp\n    replicas: 2\n"
        f"  - name: offline-model\n    engine: openai\n"
        f"    endpoints: ['127.0.0.1:{_closed_port()}']\n"
        "gateway:\n  port: 0\n  max_body_bytes: 65536\n"
    )
    proc, url = start_until_ready(
        ["up", "-f", str(spec), "--log-dir", str(tmp / "logs")], tmp / "up.log"
    )
    yield proc, url
    stop(proc, timeout_s=5)
    for pid in children(proc.pid):
        kill_quietly(pid)


@pytest.fixture(scope="module")
def client(fleet: tuple[subprocess.Popen[str], str]) -> openai.OpenAI:
    return openai.OpenAI(base_url=fleet[1], api_key="unused", max_retries=0, timeout=120)


def test_chat_completion_returns_generated_text(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Name a colour."}], max_tokens=16
    )
    assert reply.choices[0].message.content
    assert reply.usage is not None
    assert reply.usage.completion_tokens > 0


def test_streamed_chat_ends_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Count to five."}],
        max_tokens=12,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens > 0
    assert 0 < chunks[-1].usage.completion_tokens <= 12


def test_text_completion(client: openai.OpenAI) -> None:
    reply = client.completions.create(model=MODEL, prompt="The sky is", max_tokens=8)
    assert reply.choices[0].text


def test_models_list(client: openai.OpenAI) -> None:
    assert {m.id for m in client.models.list()} == {MODEL, "offline-model"}


def test_concurrent_requests_use_both_replicas(client: openai.OpenAI) -> None:
    def one(i: int) -> str:
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL,
            messages=[{"role": "user", "content": f"Question {i}: what is {i}+{i}?"}],
            max_tokens=4,
        )
        assert raw.parse().choices[0].message.content is not None
        return raw.headers["x-pilothouse-endpoint"]

    with ThreadPoolExecutor(20) as pool:
        served_by = list(pool.map(one, range(20)))
    assert set(served_by) == {f"{MODEL}-0", f"{MODEL}-1"}


def _post(url: str, body: bytes | str) -> httpx.Response:
    data = body.encode() if isinstance(body, str) else body
    return httpx.post(
        url + "/chat/completions",
        content=data,
        timeout=60,
        headers={"content-type": "application/json"},
    )


@pytest.mark.parametrize(
    ("body", "status", "mentions"),
    [
        ("{not json", 400, "not valid JSON"),
        ('["a list"]', 400, "JSON object"),
        ('{"messages": [{"role": "user", "content": "hi"}]}', 400, "'model'"),
        (f'{{"model": "{MODEL}"}}', 400, "'messages'"),
        (f'{{"model": "{MODEL}", "messages": "hi"}}', 400, "'messages'"),
        (
            f'{{"model": "{MODEL}", "messages": [{{"role": "user", "content": "x"}}], '
            '"max_tokens": "ten"}',
            400,
            "'max_tokens'",
        ),
        (
            f'{{"model": "{MODEL}", "messages": [{{"role": "user", "content": "x"}}], '
            '"stream": "yes"}',
            400,
            "'stream'",
        ),
        (
            '{"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]}',
            404,
            "no-such-model",
        ),
        (
            '{"model": "offline-model", "messages": [{"role": "user", "content": "x"}]}',
            503,
            "offline-model",
        ),
        ("x" * 70_000, 413, "limit"),
    ],
    ids=[
        "malformed-json",
        "not-an-object",
        "missing-model",
        "missing-messages",
        "messages-wrong-type",
        "max-tokens-wrong-type",
        "stream-wrong-type",
        "unknown-model",
        "no-ready-replica",
        "too-large",
    ],
)
def test_bad_requests_get_openai_errors(
    fleet: tuple[subprocess.Popen[str], str], body: str, status: int, mentions: str
) -> None:
    response = _post(fleet[1], body)
    assert response.status_code == status
    error = response.json()["error"]
    assert mentions in error["message"]
    assert set(error) == {"message", "type", "param", "code"}
    assert response.headers["x-request-id"]


def test_unknown_route_is_a_json_404(fleet: tuple[subprocess.Popen[str], str]) -> None:
    response = httpx.get(fleet[1] + "/nope", timeout=10)
    assert response.status_code == 404
    assert "error" in response.json()


def test_requests_survive_a_killed_replica(
    fleet: tuple[subprocess.Popen[str], str], client: openai.OpenAI
) -> None:
    replicas = children(fleet[0].pid)
    assert len(replicas) == 2
    victim = replicas[0]
    kill_quietly(victim)
    served = set()
    for i in range(6):
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL,
            messages=[{"role": "user", "content": f"After the crash {i}"}],
            max_tokens=4,
        )
        assert raw.parse().choices[0].message.content is not None
        served.add(raw.headers["x-pilothouse-endpoint"])
    assert len(served) == 1


def test_stopping_up_leaves_no_engine_process(fleet: tuple[subprocess.Popen[str], str]) -> None:
    proc = fleet[0]
    engines = children(proc.pid)
    assert engines, "the fleet should still have its surviving replica"
    assert stop(proc, signal.SIGTERM) == 0
    assert not [pid for pid in engines if alive(pid)]


def test_sigkilled_up_leaves_no_engine_process(tmp_path: Path) -> None:
    """Even when pilothouse itself is SIGKILLed, its engines follow it (PR_SET_PDEATHSIG)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux-only")
    proc, _ = start_until_ready(
        ["up", "--replicas", "1", "--port", "0", "--log-dir", str(tmp_path / "logs")],
        tmp_path / "up.log",
    )
    engines = children(proc.pid)
    assert len(engines) == 1
    stop(proc, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while any(alive(p) for p in engines) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in engines if alive(pid)]
