"""Upstreams reconnect a tool server that died, and tell the watchers both ways."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from pilothouse.config.tools import ToolsSpec
from pilothouse.toolgateway.guard import ToolDefinition
from pilothouse.toolgateway.secrets import Secrets
from pilothouse.toolgateway.upstream import Upstreams
from tests.e2e.toolgateway.harness import TOOL_SERVER

pytestmark = pytest.mark.e2e


async def test_a_dead_server_is_reconnected(tmp_path: Path) -> None:
    spec = ToolsSpec.model_validate(
        {"servers": [{"name": "files", "command": [sys.executable, str(TOOL_SERVER), "files"]}]}
    )
    upstreams = Upstreams(spec, Secrets({}), ping_interval_s=0.2, retry_s=0.1)
    listings: list[int] = []
    back = asyncio.Event()

    async def watcher(server: str, tools: Sequence[ToolDefinition]) -> None:
        listings.append(len(tools))
        if len(listings) >= 3 and tools:
            back.set()

    upstreams.watch(watcher)
    async with upstreams:
        die = upstreams.find("files__die")
        assert die is not None
        result = await upstreams.call(die, {})
        assert result.is_error
        await asyncio.wait_for(back.wait(), 30)
        echo = upstreams.find("files__echo")
        assert echo is not None
        assert not (await upstreams.call(echo, {"text": "again"})).is_error
    assert listings[0] > 0
    assert 0 in listings  # the dead server's tools were withdrawn meanwhile
