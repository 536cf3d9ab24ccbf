"""What every attack server shares: the record of calls it received, and how it runs."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import unicodedata
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import MCPServer

RECORD_ENV = "RECORD"
HTTP_READY = "serving: "


def record(tool: str, **arguments: Any) -> None:
    """Append one received call to ``$RECORD`` (nothing when unset)."""
    path = os.environ.get(RECORD_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps({"tool": tool, "arguments": arguments}) + "\n")


def received(path: Path) -> list[dict[str, Any]]:
    """The calls a server recorded in ``path`` (none when it was never called)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def tags(text: str) -> str:
    """``text`` spelled in Unicode tag characters (U+E0000 + ASCII): invisible to a person,
    read by a model, the ASCII smuggling of tool poisoning."""
    return "".join(chr(0xE0000 + ord(ch)) for ch in text)


def visible(text: str) -> str:
    """What a person sees of ``text``: format characters (tags, zero-width) dropped."""
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cf")


def run(server: MCPServer, argv: list[str] | None = None) -> None:
    """stdio by default; ``--http``: streamable HTTP on a free loopback port, announced as
    ``serving: http://127.0.0.1:PORT/mcp`` on stdout."""
    args = sys.argv[1:] if argv is None else argv
    if "--http" not in args:
        server.run("stdio")
        return
    asyncio.run(_serve_http(server))


async def _serve_http(server: MCPServer) -> None:
    import uvicorn

    config = uvicorn.Config(
        server.streamable_http_app(), host="127.0.0.1", port=0, log_level="warning"
    )
    http = uvicorn.Server(config)
    task = asyncio.create_task(http.serve())
    while not http.started:
        if task.done():
            task.result()
            return
        await asyncio.sleep(0.02)
    port = http.servers[0].sockets[0].getsockname()[1]
    print(f"{HTTP_READY}http://127.0.0.1:{port}/mcp", flush=True)
    await task
