"""The gateway process of ``bench gateway-lag``: ``pilothouse gateway``, plus endpoint labels.

``pilothouse gateway -f FLEET`` builds its pool from the spec's bare ``endpoints`` addresses,
which cannot carry the KV-event labels (``pilothouse.dev/kv-events``…) that ``kv_events``
needs (docs/kv-events.md, "Limits"). This entry point runs the same thing, the gateway's
``build_gateway`` and ``serve``, with the endpoints read from a JSON file instead::

    python -m pilothouse.bench.lag.server FLEET.yaml ENDPOINTS.json

Each endpoint is ``{"name", "address", "model", "engine", "labels"}``. It prints
``pilothouse is ready: URL`` once listening, as ``pilothouse gateway`` does.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import orjson

from pilothouse.config.fleet import load_fleet
from pilothouse.gateway.serve import build_gateway, serve
from pilothouse.scheduling.types import Endpoint

READY = "pilothouse is ready: "


def load_endpoints(path: Path) -> list[Endpoint]:
    docs = orjson.loads(path.read_bytes())
    return [
        Endpoint(
            name=d["name"], address=d["address"], model=d["model"], engine=d["engine"],
            labels=dict(d.get("labels", {})),
        )
        for d in docs
    ]  # fmt: skip


async def main(fleet_file: Path, endpoints_file: Path) -> None:
    spec = load_fleet(fleet_file)
    app = build_gateway(spec, load_endpoints(endpoints_file), ready=True)
    await serve(
        app, spec.gateway.host, spec.gateway.port, lambda url: print(READY + url, flush=True)
    )


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2])))
