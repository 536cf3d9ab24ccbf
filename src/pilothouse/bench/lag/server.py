"""The gateway process of ``bench gateway-lag``: ``pilothouse gateway``, plus endpoint labels.

``pilothouse gateway -f FLEET`` builds its pool from the spec's bare ``endpoints`` addresses,
which cannot carry the KV-event labels (``pilothouse.dev/kv-events``…) that ``kv_events``
needs (docs/kv-events.md, "Limits"). This entry point runs the same thing, the gateway's
``build_gateway`` and ``serve``, with the endpoints read from a JSON file instead::

    python -m pilothouse.bench.lag.server FLEET.yaml ENDPOINTS.json [LOOP_CPU]

Each endpoint is ``{"name", "address", "model", "engine", "labels"}``. It prints
``pilothouse is ready: URL`` once listening, as ``pilothouse gateway`` does.

With ``LOOP_CPU`` (Linux), the event loop's thread runs on that CPU alone and every other
thread of the process (the tokenizer worker, the Rust tokenizer's own threads, executor
threads) and of its child processes (``gateway.tokenize: process``) on the CPUs it started
with minus that one, re-applied as threads appear: the
gateway's loop gets a core of its own, as it would on a machine where the gateway is not
sharing two cores with its load generator and engines (``bench gateway-lag --pin``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
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


PIN_EVERY_S = 0.2


async def pin_threads(loop_cpu: int) -> None:
    """Keep the loop's thread on ``loop_cpu`` and every other thread off it, the threads of
    child processes (a tokenizer process inherits the loop thread's CPU) included."""
    others = os.sched_getaffinity(0) - {loop_cpu}
    if not others:
        raise SystemExit(f"--pin needs a CPU besides {loop_cpu}")
    main_tid = threading.get_native_id()
    os.sched_setaffinity(0, {loop_cpu})  # 0: the calling thread, here the loop's
    pinned: set[tuple[int, int]] = {(os.getpid(), main_tid)}
    while True:
        for pid in (os.getpid(), *_children()):
            with contextlib.suppress(OSError):  # a process that just ended
                for entry in os.listdir(f"/proc/{pid}/task"):
                    if (pid, int(entry)) not in pinned:
                        with contextlib.suppress(OSError):  # a thread that just ended
                            os.sched_setaffinity(int(entry), others)
                        pinned.add((pid, int(entry)))
        await asyncio.sleep(PIN_EVERY_S)


def _children() -> list[int]:
    pids: list[int] = []
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError):
            pids += [int(p) for p in Path(f"/proc/self/task/{tid}/children").read_text().split()]
    return pids


async def main(fleet_file: Path, endpoints_file: Path, loop_cpu: int | None = None) -> None:
    spec = load_fleet(fleet_file)
    pinning = asyncio.create_task(pin_threads(loop_cpu)) if loop_cpu is not None else None
    app = build_gateway(spec, load_endpoints(endpoints_file), ready=True)
    try:
        await serve(
            app, spec.gateway.host, spec.gateway.port, lambda url: print(READY + url, flush=True)
        )
    finally:
        if pinning is not None:
            pinning.cancel()


if __name__ == "__main__":
    cpu = int(sys.argv[3]) if len(sys.argv) > 3 else None
    asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2]), cpu))
