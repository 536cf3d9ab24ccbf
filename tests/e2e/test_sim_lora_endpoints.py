"""The simulator's dynamic LoRA endpoints, as vLLM serves them with runtime updating on."""

from __future__ import annotations

from collections.abc import Coroutine
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from click.testing import CliRunner

from pilothouse.servers.sim import SimSettings
from pilothouse.servers.sim.cli import settings_from_options, sim_command
from tests.e2e.test_engine_sim import FAST, metric_samples, post, serving

pytestmark = pytest.mark.e2e

DYNAMIC = replace(FAST, runtime_lora_updating=True)
LOAD = "/v1/load_lora_adapter"
UNLOAD = "/v1/unload_lora_adapter"


async def _text_post(
    http: aiohttp.ClientSession, path: str, body: dict[str, object]
) -> tuple[int, str]:
    async with http.post(path, json=body) as response:
        return response.status, await response.text()


async def test_load_serve_unload_adapter() -> None:
    async with serving(DYNAMIC) as (server, http):
        completion = {"model": "sql", "prompt": "select", "max_tokens": 3}
        status, body = await post(http, "/v1/completions", completion)
        assert status == 404
        assert body["error"]["message"] == "The model `sql` does not exist."

        status, text = await _text_post(http, LOAD, {"lora_name": "sql", "lora_path": "/a/sql"})
        assert (status, text) == (200, "Success: LoRA adapter 'sql' added successfully.")
        async with http.get("/v1/models") as response:
            models = (await response.json())["data"]
        assert [(m["id"], m["root"], m["parent"]) for m in models] == [
            ("sim-model", "sim-model", None),
            ("sql", "/a/sql", "sim-model"),
        ]
        status, body = await post(http, "/v1/completions", completion)
        assert status == 200
        assert body["model"] == "sql"
        async with http.get("/metrics") as response:
            samples = metric_samples(await response.text())
        assert {s.labels["max_lora"] for s in samples["vllm:lora_requests_info"]} == {"1"}

        status, text = await _text_post(http, UNLOAD, {"lora_name": "sql"})
        assert (status, text) == (200, "Success: LoRA adapter 'sql' removed successfully.")
        assert server.state.loras == frozenset()
        status, body = await post(http, "/v1/completions", completion)
        assert status == 404


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        (LOAD, {"lora_name": "a"}, 400, "Both 'lora_name' and 'lora_path' must be provided."),
        (LOAD, {"lora_name": "pre", "lora_path": "/x"}, 400, "has already been loaded"),
        (LOAD, {"lora_name": "sim-model", "lora_path": "/x"}, 400, "base model"),
        (UNLOAD, {"lora_name": "nope"}, 404, "The lora adapter 'nope' cannot be found."),
        (UNLOAD, {}, 400, "'lora_name' needs to be provided"),
    ],
)
async def test_bad_adapter_calls(
    path: str, body: dict[str, object], status: int, message: str
) -> None:
    async with serving(replace(DYNAMIC, lora_modules=("pre=/p",))) as (_server, http):
        got, answer = await post(http, path, body)
        assert got == status
        assert message in answer["error"]["message"]


async def test_endpoints_need_runtime_updating() -> None:
    async with serving(FAST) as (_server, http):
        status, _ = await _text_post(http, LOAD, {"lora_name": "a", "lora_path": "/a"})
        assert status == 404


def test_flag_and_environment_enable_runtime_updating(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings_from_options({"allow_runtime_lora_updating": True}).runtime_lora_updating
    assert settings_from_options({}).runtime_lora_updating is False
    started: list[SimSettings] = []

    def run(coro: Coroutine[Any, Any, None]) -> None:
        started.append(coro.cr_frame.f_locals["settings"])  # type: ignore[attr-defined]
        coro.close()

    monkeypatch.setenv("VLLM_ALLOW_RUNTIME_LORA_UPDATING", "True")
    monkeypatch.setattr("pilothouse.servers.sim.cli._run", run)
    result = CliRunner().invoke(sim_command, ["--port", "0", "--lora-modules", "a=/p"])
    assert result.exit_code == 0, result.output
    assert started[0].runtime_lora_updating
    assert started[0].lora_names == ("a",)
    assert started[0].engine_config().max_loras == 1
